//! Tests of the frame allocator and the page tables.

use alloc::vec::Vec;

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::catch;
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::layout::{LAZY_REGION_BASE, PAGE_BYTES};
use crate::hw::paging;
use crate::mm::frames::{self, Frame, Injection, Urgency};

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "frames_accounting",
        run: frames_accounting,
    },
    KernelTest {
        name: "frames_reserve",
        run: frames_reserve,
    },
    KernelTest {
        name: "frames_injection",
        run: frames_injection,
    },
    KernelTest {
        name: "map_unmap",
        run: map_unmap,
    },
    KernelTest {
        name: "image_permissions",
        run: image_permissions,
    },
];

/// Page-fault error-code bits.
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_INSTRUCTION: u64 = 1 << 4;
const PAGE_FAULT: u8 = 14;

fn free_all(frames_held: Vec<Frame>) {
    for frame in frames_held {
        frames::free(frame);
    }
}

fn frames_accounting() -> TestResult {
    let before = frames::stats();
    let mut held = Vec::new();
    for _ in 0..100 {
        match frames::alloc_zeroed(Urgency::Normal) {
            Some(f) => held.push(f),
            None => check!(
                false,
                "allocation failed with {} frames free",
                frames::stats().free
            ),
        }
    }
    let during = frames::stats();
    check_eq!(during.free, before.free - 100);
    check_eq!(during.allocations, before.allocations + 100);
    let mut addresses: Vec<u64> = held.iter().map(Frame::address).collect();
    addresses.sort_unstable();
    addresses.dedup();
    check_eq!(addresses.len(), 100, "frames handed out twice");
    for frame in &held {
        let virt = paging::phys_to_virt(frame.address());
        check!(
            paging::translate(virt) == Some(frame.address()),
            "direct map of {frame:?}"
        );
    }
    free_all(held);
    let after = frames::stats();
    check_eq!(after.free, before.free);
    check_eq!(after.frees, before.frees + 100);
    Ok(())
}

fn frames_reserve() -> TestResult {
    let free = frames::stats().free;
    // Leave exactly 10 frames to normal allocations and 5 more to atomic ones.
    let old_reserve = frames::set_reserve(5);
    let mut filler = Vec::new();
    while frames::stats().free > 15 {
        match frames::alloc(Urgency::Normal) {
            Some(f) => filler.push(f),
            None => break,
        }
    }
    let mut normal = Vec::new();
    while let Some(f) = frames::alloc(Urgency::Normal) {
        normal.push(f);
    }
    let stats_normal_exhausted = frames::stats();
    let mut atomic = Vec::new();
    while let Some(f) = frames::alloc(Urgency::Atomic) {
        atomic.push(f);
    }
    let stats_all_exhausted = frames::stats();
    let (normal_got, atomic_got) = (normal.len(), atomic.len());
    free_all(filler);
    free_all(normal);
    free_all(atomic);
    frames::set_reserve(old_reserve);
    check_eq!(normal_got, 10, "normal allocations beyond the filler");
    check_eq!(stats_normal_exhausted.free, 5);
    check_eq!(atomic_got, 5, "atomic allocations dipped into the reserve");
    check_eq!(stats_all_exhausted.free, 0);
    check!(
        stats_all_exhausted.real_failures > 0,
        "failures not counted"
    );
    check_eq!(frames::stats().free, free, "frames lost");
    Ok(())
}

/// Makes `attempts` allocations of `urgency` and returns which (1-based) failed.
fn failing_attempts(attempts: usize, urgency: Urgency) -> Vec<usize> {
    let mut failed = Vec::new();
    let mut held = Vec::new();
    for i in 1..=attempts {
        match frames::alloc(urgency) {
            Some(f) => held.push(f),
            None => failed.push(i),
        }
    }
    free_all(held);
    failed
}

fn frames_injection() -> TestResult {
    let before = frames::stats();
    let old = frames::set_injection(Injection::EveryNth(3));
    let every_third = failing_attempts(10, Urgency::Normal);
    frames::set_injection(Injection::AtomicWindow { start: 2, len: 3 });
    let window_normal = failing_attempts(4, Urgency::Normal);
    let window_atomic = failing_attempts(8, Urgency::Atomic);
    frames::set_injection(Injection::AllAtomic);
    let all_atomic = failing_attempts(4, Urgency::Atomic);
    let all_atomic_normal = failing_attempts(4, Urgency::Normal);
    frames::set_injection(Injection::Percent {
        percent: 30,
        seed: 42,
    });
    let first = failing_attempts(200, Urgency::Normal);
    frames::set_injection(Injection::Percent {
        percent: 30,
        seed: 42,
    });
    let again = failing_attempts(200, Urgency::Normal);
    frames::set_injection(Injection::Percent {
        percent: 0,
        seed: 42,
    });
    let never = failing_attempts(50, Urgency::Atomic);
    frames::set_injection(Injection::Percent {
        percent: 100,
        seed: 42,
    });
    let always = failing_attempts(50, Urgency::Atomic);
    frames::set_injection(old);
    let after = frames::stats();

    check_eq!(every_third, alloc::vec![3, 6, 9]);
    check_eq!(window_normal, Vec::<usize>::new());
    check_eq!(
        window_atomic,
        alloc::vec![3, 4, 5],
        "atomic attempts 2..5 (0-based) fail"
    );
    check_eq!(all_atomic, alloc::vec![1, 2, 3, 4]);
    check_eq!(all_atomic_normal, Vec::<usize>::new());
    check_eq!(first, again, "same seed, same failures");
    check!(
        (30..=90).contains(&first.len()),
        "{} of 200 failed at 30%",
        first.len()
    );
    check_eq!(never.len(), 0);
    check_eq!(always.len(), 50);
    let injected = 3 + 3 + 4 + 2 * first.len() as u64 + 50;
    check_eq!(after.injected_failures - before.injected_failures, injected);
    check_eq!(after.free, before.free, "frames lost");
    Ok(())
}

fn map_unmap() -> TestResult {
    let irq = IrqGuard::new();
    let virt = LAZY_REGION_BASE + 16 * PAGE_BYTES;
    let before = catch::probe_read(&irq, virt);
    check!(
        matches!(before, Err(f) if f.vector == PAGE_FAULT && f.address == virt && f.error_code & PF_PRESENT == 0),
        "read before mapping: {before:?}"
    );

    let frame = frames::alloc_zeroed(Urgency::Normal).ok_or("no frame")?;
    let phys = frame.address();
    paging::map_lazy_page(virt, frame)
        .map_err(|(f, e)| {
            frames::free(f);
            alloc::format!("map failed: {e:?}")
        })?
        .flush();
    check_eq!(paging::translate(virt), Some(phys));
    let written = catch::probe_write(&irq, virt + 8, 0xfeed_f00d_dead_beef);
    check!(
        written.is_ok(),
        "write through the new mapping: {written:?}"
    );
    let through_direct_map = paging::read_phys_u64(phys + 8);
    check_eq!(
        through_direct_map,
        0xfeed_f00d_dead_beef_u64,
        "the direct map sees the write"
    );

    let (frame, flush) = paging::unmap_lazy_page(virt).ok_or("unmap found nothing")?;
    flush.flush();
    check_eq!(frame.address(), phys);
    frames::free(frame);
    check_eq!(paging::translate(virt), None);
    let after = catch::probe_read(&irq, virt + 8);
    check!(
        matches!(after, Err(f) if f.vector == PAGE_FAULT && f.address == virt + 8 && f.error_code & PF_PRESENT == 0),
        "read after unmapping: {after:?}"
    );
    check!(
        paging::unmap_lazy_page(virt).is_none(),
        "second unmap found a mapping"
    );
    Ok(())
}

fn image_permissions() -> TestResult {
    let irq = IrqGuard::new();
    let text = paging::image_sections()[0].0 + PAGE_BYTES;
    let original =
        catch::probe_read(&irq, text).map_err(|f| alloc::format!("text unreadable: {f:?}"))?;
    let write = catch::probe_write(&irq, text, original);
    check!(
        matches!(write, Err(f) if f.vector == PAGE_FAULT && f.error_code & (PF_PRESENT | PF_WRITE) == PF_PRESENT | PF_WRITE),
        "write to kernel text: {write:?}"
    );
    let rodata = paging::image_sections()[1].0;
    let value =
        catch::probe_read(&irq, rodata).map_err(|f| alloc::format!("rodata unreadable: {f:?}"))?;
    let write = catch::probe_write(&irq, rodata, value);
    check!(
        matches!(write, Err(f) if f.vector == PAGE_FAULT && f.error_code & PF_WRITE != 0),
        "write to rodata: {write:?}"
    );
    let execute = catch::probe_execute_data(&irq);
    check!(
        matches!(execute, Err(f) if f.vector == PAGE_FAULT && f.error_code & PF_INSTRUCTION != 0),
        "execute from data: {execute:?}"
    );
    Ok(())
}

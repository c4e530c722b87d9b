//! Tests of the trap path: guard pages, the red zone under preemption, caught exceptions,
//! NMIs (alone, inside a page fault) and machine checks (recoverable, corrected, inside an
//! NMI).

use alloc::sync::Arc;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::machine_check::queued_errors;
use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::cpu_ops::{self, IrqGuard};
use crate::hw::kstacks;
use crate::hw::layout::{KERNEL_STACK_BYTES, PAGE_BYTES};
use crate::hw::mca_regs as mca;
use crate::hw::{apic, catch, probes};
use crate::lazy;
use crate::mce::{self, Severity, global};
use crate::sched::{self, SpawnOptions};
use crate::trap_handlers::{NMIS, NMIS_NESTED, PREEMPTIONS, TIMER_TICKS, hooks};

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "guard_page",
        run: guard_page,
    },
    KernelTest {
        name: "red_zone",
        run: red_zone,
    },
    KernelTest {
        name: "caught_invalid_opcode",
        run: caught_invalid_opcode,
    },
    KernelTest {
        name: "nmi_to_self",
        run: nmi_to_self,
    },
    KernelTest {
        name: "nmi_inside_page_fault",
        run: nmi_inside_page_fault,
    },
    KernelTest {
        name: "machine_check_recoverable",
        run: machine_check_recoverable,
    },
    KernelTest {
        name: "machine_check_corrected_polled",
        run: machine_check_corrected_polled,
    },
    KernelTest {
        name: "machine_check_inside_nmi",
        run: machine_check_inside_nmi,
    },
];

/// Recurses with 512-byte frames that touch their locals until the stack runs out.
#[allow(unconditional_recursion)] // reason: overflowing the stack is the point
pub extern "C" fn recurse_forever(depth: usize) {
    let mut frame = [0u8; 512];
    frame[0] = depth as u8;
    black_box(&mut frame);
    recurse_forever(black_box(depth + 1));
    black_box(&frame);
}

fn guard_page() -> TestResult {
    let irq = IrqGuard::new();
    let stack = kstacks::alloc().ok_or("no memory for a test stack")?;
    let caught = catch::catch_fault(&irq, Some(stack.top()), recurse_forever, 0);
    let fault = match caught {
        Err(fault) => fault,
        Ok(()) => return Err("the endless recursion returned".into()),
    };
    check_eq!(fault.vector, 14, "a page fault");
    check_eq!(kstacks::guard_containing(fault.address), Some(stack));
    check!(
        (stack.bottom() - PAGE_BYTES..stack.bottom()).contains(&fault.address),
        "fault at {:#x} not in the guard page below {:#x}",
        fault.address,
        stack.bottom()
    );
    check!(
        fault.rsp >= stack.bottom() - PAGE_BYTES && fault.rsp < stack.bottom() + 1024,
        "rsp {:#x} not at the bottom of the stack {:#x}",
        fault.rsp,
        stack.bottom()
    );
    check!(
        stack.top() - fault.address > KERNEL_STACK_BYTES,
        "depth {} within the stack",
        stack.top() - fault.address
    );
    Ok(())
}

/// The red zone survives preemptions: a thread fills the 128 bytes below its stack pointer,
/// waits with interrupts on while another thread on its CPU is ready (so timer ticks preempt
/// it and the entry moves a frame to its stack) and finds them intact.
fn red_zone() -> TestResult {
    let cpu = sched::online_cpus() - 1;
    let stop = Arc::new(AtomicBool::new(false));
    // clobbered words, ticks seen, preemptions seen, interrupts were on
    let result = Arc::new([const { AtomicU64::new(u64::MAX) }; 4]);
    let options = SpawnOptions {
        pinned: Some(cpu),
        ..SpawnOptions::default()
    };
    let spinner = {
        let stop = stop.clone();
        sched::spawn("red-zone-rival", options, move || {
            while !stop.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        })
        .map_err(|e| alloc::format!("spawn: {e:?}"))?
    };
    let prober = {
        let result = result.clone();
        sched::spawn("red-zone-prober", options, move || {
            result[3].store(u64::from(cpu_ops::interrupts_enabled()), Ordering::Relaxed);
            let ticks = &TIMER_TICKS[cpu as usize];
            let preemptions = &PREEMPTIONS[cpu as usize];
            let (ticks_before, preempted_before) = (
                ticks.load(Ordering::Relaxed),
                preemptions.load(Ordering::Relaxed),
            );
            let clobbered = probes::red_zone_probe(ticks, 10);
            result[0].store(clobbered, Ordering::Relaxed);
            result[1].store(
                ticks.load(Ordering::Relaxed) - ticks_before,
                Ordering::Relaxed,
            );
            result[2].store(
                preemptions.load(Ordering::Relaxed) - preempted_before,
                Ordering::Relaxed,
            );
        })
        .map_err(|e| alloc::format!("spawn: {e:?}"))?
    };
    sched::join(&prober);
    stop.store(true, Ordering::Release);
    sched::join(&spinner);
    let [clobbered, ticks, preemptions, enabled] =
        [0, 1, 2, 3].map(|i| result[i].load(Ordering::Relaxed));
    check_eq!(enabled, 1, "threads run with interrupts on");
    check!(ticks >= 10, "only {ticks} timer interrupts arrived");
    check!(
        preemptions >= 2,
        "only {preemptions} preemptions on CPU {cpu} while the red zone was live"
    );
    check_eq!(
        clobbered,
        0,
        "red-zone words changed by {} interrupts and {} preemptions",
        ticks,
        preemptions
    );
    Ok(())
}

fn caught_invalid_opcode() -> TestResult {
    let irq = IrqGuard::new();
    extern "C" fn ud(_: usize) {
        catch::invalid_opcode();
    }
    let caught = catch::catch_fault(&irq, None, ud, 0);
    check!(matches!(caught, Err(f) if f.vector == 6), "ud2: {caught:?}");
    Ok(())
}

/// Waits (a bounded time) until `counter` has moved past `before`; returns its value.
fn wait_past(counter: &AtomicU64, before: u64, by: u64) -> u64 {
    for _ in 0..50_000_000u64 {
        let now = counter.load(Ordering::Acquire);
        if now >= before + by {
            return now;
        }
        cpu_ops::relax();
    }
    counter.load(Ordering::Acquire)
}

/// An NMI is handled and counted; the kernel goes on.
fn nmi_to_self() -> TestResult {
    let irq = IrqGuard::new();
    let cpu = cpu_ops::current_id(&irq) as usize;
    let (before, nested_before) = (
        NMIS[cpu].load(Ordering::Acquire),
        NMIS_NESTED[cpu].load(Ordering::Acquire),
    );
    apic::send_nmi_to_self();
    let after = wait_past(&NMIS[cpu], before, 1);
    let nested = NMIS_NESTED[cpu].load(Ordering::Acquire) - nested_before;
    drop(irq);
    // At least: an NMI from outside (QEMU's monitor) may add to the count.
    check!(
        after - before >= 1,
        "NMIs counted on CPU {cpu}: {}",
        after - before
    );
    check_eq!(nested, 0, "an NMI interrupting a thread is not nested");
    Ok(())
}

/// An NMI that arrives while the #PF frame is live (sent from inside the #PF handler) is
/// handled on its own stack, counted as nested, and the page fault completes.
fn nmi_inside_page_fault() -> TestResult {
    let address = lazy::DIRECT.start + 7 * PAGE_BYTES + 40;
    let irq = IrqGuard::new();
    let cpu = cpu_ops::current_id(&irq) as usize;
    let (before, nested_before) = (
        NMIS[cpu].load(Ordering::Acquire),
        NMIS_NESTED[cpu].load(Ordering::Acquire),
    );
    hooks::NMI_IN_PAGE_FAULT.store(true, Ordering::Release);
    catch::lazy_write(address, 0x5eed);
    let value = catch::lazy_read(address);
    let hook_left = hooks::NMI_IN_PAGE_FAULT.swap(false, Ordering::AcqRel);
    let (nmis, nested) = (
        NMIS[cpu].load(Ordering::Acquire) - before,
        NMIS_NESTED[cpu].load(Ordering::Acquire) - nested_before,
    );
    drop(irq);
    lazy::reset(lazy::DIRECT.start..lazy::DIRECT.start + 8 * PAGE_BYTES);
    check!(!hook_left, "the page fault did not run the hook");
    check_eq!(value, 0x5eed, "the faulting write completed");
    check!(nmis >= 1, "NMIs counted: {nmis}");
    check!(
        nested >= 1,
        "NMIs counted as nested (the #PF frame was live): {nested}"
    );
    Ok(())
}

/// A recoverable machine check (UC, PCC clear, RIPV set), raised in a thread: reported, the
/// bank and MCIP cleared, and the thread goes on.
fn machine_check_recoverable() -> TestResult {
    check!(mca::enabled(), "CR4.MCE is not set");
    check!(
        mca::bank_count() > mce::TEST_BANK,
        "no MCA bank {}",
        mce::TEST_BANK
    );
    let _held = mce::HeldLogger::new();
    let _ = queued_errors();
    let (exceptions, recoverable) = (
        mce::EXCEPTIONS.load(Ordering::Acquire),
        mce::RECOVERABLE.load(Ordering::Acquire),
    );
    let irq = IrqGuard::new();
    mce::raise_staged_recoverable();
    let (bank_after, global_after) = (mca::status(mce::TEST_BANK), mca::global_status());
    drop(irq);
    let errors = queued_errors();
    check_eq!(mce::EXCEPTIONS.load(Ordering::Acquire) - exceptions, 1);
    check_eq!(mce::RECOVERABLE.load(Ordering::Acquire) - recoverable, 1);
    check_eq!(bank_after, 0, "the bank is cleared");
    check_eq!(global_after & global::MCIP, 0, "MCIP is cleared");
    check_eq!(errors.len(), 1, "queued errors: {errors:?}");
    let error = errors[0];
    check_eq!(error.severity, Severity::Recoverable);
    check!(error.signaled, "found by the #MC handler");
    check_eq!(error.bank, mce::TEST_BANK);
    check_eq!(error.status, mce::SRAO_STATUS);
    check_eq!(error.global_status, global::RIPV | global::MCIP);
    Ok(())
}

/// A corrected error raises no #MC: the poller on the timer tick finds it, reports it and
/// clears the bank.
fn machine_check_corrected_polled() -> TestResult {
    check!(
        mca::bank_count() > mce::TEST_BANK,
        "no MCA bank {}",
        mce::TEST_BANK
    );
    let _held = mce::HeldLogger::new();
    let _ = queued_errors();
    let (exceptions, corrected) = (
        mce::EXCEPTIONS.load(Ordering::Acquire),
        mce::CORRECTED.load(Ordering::Acquire),
    );
    const CORRECTED_STATUS: u64 = mce::status::VAL | mce::status::EN | 0x17;
    let irq = IrqGuard::new();
    mca::stage(mce::TEST_BANK, CORRECTED_STATUS, 0);
    drop(irq);
    // The bank belongs to the CPU it was written on; its next tick polls it.
    for _ in 0..100 {
        if mce::CORRECTED.load(Ordering::Acquire) > corrected {
            break;
        }
        sched::sleep_ms(2);
    }
    let errors = queued_errors();
    check_eq!(mce::CORRECTED.load(Ordering::Acquire) - corrected, 1);
    check_eq!(
        mce::EXCEPTIONS.load(Ordering::Acquire),
        exceptions,
        "no #MC for a corrected error"
    );
    check_eq!(errors.len(), 1, "queued errors: {errors:?}");
    let error = errors[0];
    check_eq!(error.severity, Severity::Corrected);
    check!(!error.signaled, "found by polling");
    check_eq!(error.status, CORRECTED_STATUS);
    Ok(())
}

/// A machine check inside the NMI handler (which then sends itself another NMI): the #MC
/// handler returns to the NMI handler without `iretq`, so NMIs stay blocked and the second
/// NMI waits until the first has returned. Were they unblocked, the second NMI would arrive
/// while the first one's frame is live and the kernel would stop ("nested NMI").
fn machine_check_inside_nmi() -> TestResult {
    check!(
        mca::bank_count() > mce::TEST_BANK,
        "no MCA bank {}",
        mce::TEST_BANK
    );
    let _held = mce::HeldLogger::new();
    let _ = queued_errors();
    let irq = IrqGuard::new();
    let cpu = cpu_ops::current_id(&irq) as usize;
    let (before, nested_before) = (
        NMIS[cpu].load(Ordering::Acquire),
        NMIS_NESTED[cpu].load(Ordering::Acquire),
    );
    let (exceptions, recoverable) = (
        mce::EXCEPTIONS.load(Ordering::Acquire),
        mce::RECOVERABLE.load(Ordering::Acquire),
    );
    hooks::MACHINE_CHECK_IN_NMI.store(true, Ordering::Release);
    apic::send_nmi_to_self();
    let after = wait_past(&NMIS[cpu], before, 2);
    let nested = NMIS_NESTED[cpu].load(Ordering::Acquire) - nested_before;
    drop(irq);
    let errors = queued_errors();
    check!(after - before >= 2, "NMIs counted: {}", after - before);
    check_eq!(nested, 0, "the second NMI ran after the first returned");
    check_eq!(mce::EXCEPTIONS.load(Ordering::Acquire) - exceptions, 1);
    check_eq!(mce::RECOVERABLE.load(Ordering::Acquire) - recoverable, 1);
    check_eq!(errors.len(), 1, "queued errors: {errors:?}");
    check_eq!(errors[0].severity, Severity::Recoverable);
    Ok(())
}

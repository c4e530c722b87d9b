//! Traps at the edge of the populated stack: a preempted or faulting thread whose trap frame
//! lands on unpopulated pages (the bounce must populate them first).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use dks_core::Counter;

use super::{
    drain_all_magazines, events, fresh_stacks, me, recurse, recurse_to_edge,
    recurse_to_unpopulated_edge, spawn_with,
};
use crate::hw::cpu_ops::{self, IrqGuard};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::paging;
use crate::hw::probes;
use crate::hw::trap_entry::{PREEMPT_FRAME_BYTES, bounce_target};
use crate::ktest::{TestResult, check, check_eq};
use crate::mm::frames::{self, Injection};
use crate::sched;
use crate::stacks::{self, DYNAMIC, Policy};
use crate::{lazy, trap_handlers};

/// Where a test parks a thread to be preempted: 200 bytes above a page boundary whose page
/// below is unpopulated. Less than [`PREEMPT_FRAME_BYTES`] plus the red zone, so every
/// preemption there must populate that page first.
const PARK_ABOVE_BOUNDARY: u64 = 200;
const _: () = assert!(PARK_ABOVE_BOUNDARY < PREEMPT_FRAME_BYTES as u64 + 128);

pub(super) fn deep_preempted_migrated() -> TestResult {
    fresh_stacks();
    let cpus = sched::online_cpus();
    let mut threads = Vec::new();
    let grew = Arc::new(AtomicU32::new(0));
    let preempted = Arc::new(AtomicU32::new(0));
    let broken = Arc::new(AtomicU32::new(0));
    for i in 0..(2 * cpus as usize + 2) {
        let policy = DYNAMIC[i % DYNAMIC.len()];
        let (grew, preempted, broken) = (grew.clone(), preempted.clone(), broken.clone());
        threads.push(spawn_with("deep-spinner", policy, None, move || {
            let me = me();
            let top = me.stack.top();
            let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
            let _ = recurse_to_edge(top, 6 * 1024, &(1200..2400), 0, &mut |sp| {
                let boundary = sp & !(PAGE_BYTES - 1);
                let park = boundary + PARK_ABOVE_BOUNDARY;
                // Parked with interrupts on and without touching the stack: the only way the
                // page below can get populated is a preemption (the others keep the CPU
                // busy), whose frames need it; had the entry moved them there unpopulated,
                // the kernel would stop ("nested page fault"). Then the thread moves to the
                // next CPU, deep as it is, and is parked there again.
                for half in 0..2 {
                    let (faults, switches) = (me.stack.faults(), me.switches());
                    let ticks = &trap_handlers::TIMER_TICKS[cpu_ops::id_hint() as usize];
                    let until = ticks.load(Ordering::Relaxed) + 6;
                    probes::spin_at(bottom, park, ticks, until);
                    if half == 0 && me.stack.faults() > faults {
                        grew.fetch_add(1, Ordering::Relaxed);
                    }
                    if me.switches() > switches {
                        preempted.fetch_add(1, Ordering::Relaxed);
                    }
                    if half == 0 && cpus > 1 {
                        sched::migrate_to((cpu_ops::id_hint() + 1) % cpus);
                    }
                }
            });
            if recurse(top, 3 * PAGE_BYTES + 512, 0, &mut || sched::yield_now()).is_err() {
                broken.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "threads that found a frame changed after being preempted deep"
    );
    check!(
        threads.iter().all(|t| !t.was_killed()),
        "a thread was killed"
    );
    check!(
        preempted.load(Ordering::Relaxed) as usize >= threads.len(),
        "only {} of {} parkings were preempted",
        preempted.load(Ordering::Relaxed),
        2 * threads.len()
    );
    check_eq!(
        grew.load(Ordering::Relaxed) as usize,
        threads.len(),
        "threads whose stack grew while parked (only a preemption's population can do it)"
    );
    if cpus > 1 {
        let moved = threads
            .iter()
            .filter(|t| t.cpus_ran_on().count_ones() > 1)
            .count();
        check!(moved > 0, "no deep thread migrated");
    }
    Ok(())
}

pub(super) fn nonstack_fault_on_unpopulated_edge() -> TestResult {
    fresh_stacks();
    let target = lazy::BOUNCED.start + 5 * PAGE_BYTES + 24;
    let result = Arc::new([const { AtomicU64::new(0) }; 3]);
    let out = result.clone();
    let thread = spawn_with("edge-reader", Policy::Fault, None, move || {
        let me = me();
        let top = me.stack.top();
        let _ = recurse_to_unpopulated_edge(top, 4 * 1024, 0, &mut |_| {
            let faults = me.stack.faults();
            let bounced = lazy::BOUNCED_FAULTS.load(Ordering::Relaxed);
            crate::hw::catch::lazy_write(target, 0x1234_5678);
            let value = crate::hw::catch::lazy_read(target);
            out[0].store(value, Ordering::Relaxed);
            out[1].store(u64::from(me.stack.faults() - faults), Ordering::Relaxed);
            out[2].store(
                lazy::BOUNCED_FAULTS.load(Ordering::Relaxed) - bounced,
                Ordering::Relaxed,
            );
        });
    })?;
    sched::join(&thread);
    lazy::reset(lazy::BOUNCED.start..lazy::BOUNCED.start + 16 * PAGE_BYTES);
    check!(!thread.was_killed(), "the thread was killed");
    check_eq!(result[0].load(Ordering::Relaxed), 0x1234_5678);
    check!(
        result[1].load(Ordering::Relaxed) >= 1,
        "the bounce did not populate the next stack page"
    );
    check!(
        result[2].load(Ordering::Relaxed) >= 1,
        "no bounced lazy fault was counted"
    );
    Ok(())
}

/// Finding 2 of "sound under fire": a `fault` thread with an empty magazine (and every atomic
/// allocation failing) is preempted with its stack pointer at several distances above an
/// unpopulated page. Where the preemption's frames (red zone, light frame, switch frame) need
/// that page, the preemption must stop the thread (interrupts were on: it holds nothing);
/// where they fit, it must preempt and resume it. Either way the kernel lives (a page fault
/// while the entry moves the frames would stop it, reported as nested). Before the fix, at
/// 344 bytes the handler chain below the moved frame faulted with interrupts off and stopped
/// the kernel.
pub(super) fn preempted_near_unpopulated_page() -> TestResult {
    let cpu = sched::online_cpus() - 1;
    let mut outcomes = Vec::new();
    for offset in [200u64, 272, 344, 400, 464] {
        fresh_stacks();
        let ready = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        // boundary, switches before the parking, switches after it (0: never came back)
        let seen = Arc::new([const { AtomicU64::new(0) }; 3]);
        let victim = {
            let (ready, go, seen) = (ready.clone(), go.clone(), seen.clone());
            spawn_with("edge-victim", Policy::Fault, Some(cpu), move || {
                let me = me();
                let top = me.stack.top();
                let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
                let _ = recurse_to_edge(top, PAGE_BYTES, &(1200..2400), 0, &mut |sp| {
                    let boundary = sp & !(PAGE_BYTES - 1);
                    seen[0].store(boundary, Ordering::Relaxed);
                    ready.store(true, Ordering::Release);
                    // Preemptions here need no new page: the frames fit above the boundary.
                    while !go.load(Ordering::Acquire) {
                        core::hint::spin_loop();
                    }
                    seen[1].store(me.switches(), Ordering::Relaxed);
                    let ticks = &trap_handlers::TIMER_TICKS[cpu as usize];
                    let until = ticks.load(Ordering::Relaxed) + 8;
                    probes::spin_at(bottom, boundary + offset, ticks, until);
                    seen[2].store(me.switches(), Ordering::Relaxed);
                });
            })?
        };
        let spinner = {
            let stop = stop.clone();
            spawn_with("edge-spinner", Policy::Static, Some(cpu), move || {
                while !stop.load(Ordering::Acquire) {
                    core::hint::spin_loop();
                }
            })?
        };
        while !ready.load(Ordering::Acquire) {
            sched::sleep_ms(1);
        }
        let old = frames::set_injection(Injection::AllAtomic);
        drain_all_magazines()?;
        let fatal_before = events(Policy::Fault, Counter::Fatal);
        go.store(true, Ordering::Release);
        sched::join(&victim);
        stop.store(true, Ordering::Release);
        sched::join(&spinner);
        frames::set_injection(old);
        let boundary = seen[0].load(Ordering::Relaxed);
        let lowest = bounce_target(boundary + offset) - PREEMPT_FRAME_BYTES as u64;
        outcomes.push((
            offset,
            lowest < boundary,
            victim.was_killed(),
            seen[2]
                .load(Ordering::Relaxed)
                .saturating_sub(seen[1].load(Ordering::Relaxed)),
            events(Policy::Fault, Counter::Fatal) - fatal_before,
        ));
    }
    fresh_stacks();
    for &(offset, needs_page, killed, preemptions, fatal) in &outcomes {
        if needs_page {
            check!(
                killed && fatal == 1,
                "{offset} bytes above an unpopulated page: killed {killed}, fatal faults \
                 {fatal}; expected the preemption to stop the thread ({outcomes:?})"
            );
        } else {
            check!(
                !killed && fatal == 0 && preemptions >= 1,
                "{offset} bytes above an unpopulated page: killed {killed}, fatal faults \
                 {fatal}, preempted {preemptions} times; expected it preempted and resumed \
                 ({outcomes:?})"
            );
        }
    }
    check!(
        outcomes.iter().any(|o| o.1) && outcomes.iter().any(|o| !o.1),
        "the offsets do not cover both cases: {outcomes:?}"
    );
    Ok(())
}

/// Finding 3 of "sound under fire": a bounce whose frame spans a populated page (the lowest)
/// and an unpopulated one above it (a gap: the thread touched a deeper byte first). The bounce
/// must populate every page of the span; before the fix it checked only the lowest, and the
/// copy faulted and looped forever with interrupts off.
pub(super) fn bounce_over_a_gap() -> TestResult {
    fresh_stacks();
    let address = lazy::BOUNCED.start + 9 * PAGE_BYTES + 16;
    let result = Arc::new([const { AtomicU64::new(0) }; 4]);
    let out = result.clone();
    let thread = spawn_with("gap-reader", Policy::Fault, None, move || {
        let me = me();
        let top = me.stack.top();
        let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
        // Page 1 below the top page stays unpopulated, page 2 is touched: a gap.
        let gap = top - 2 * PAGE_BYTES;
        probes::touch_stack(bottom, gap - 64);
        let irq = IrqGuard::new();
        let gap_before = paging::translate(gap).is_some();
        let faults = me.stack.faults();
        // The bounce target is 172 bytes above the gap's lower boundary, the 688-byte frame
        // reaches into page 2.
        let value = probes::lazy_read_at(bottom, gap + 300, address);
        out[0].store(value, Ordering::Relaxed);
        out[1].store(u64::from(gap_before), Ordering::Relaxed);
        out[2].store(
            u64::from(paging::translate(gap).is_some()),
            Ordering::Relaxed,
        );
        out[3].store(u64::from(me.stack.faults() - faults), Ordering::Relaxed);
        drop(irq);
    })?;
    sched::join(&thread);
    lazy::reset(lazy::BOUNCED.start..lazy::BOUNCED.start + 16 * PAGE_BYTES);
    check!(!thread.was_killed(), "the thread was killed");
    check_eq!(
        result[0].load(Ordering::Relaxed),
        0,
        "a fresh lazy page reads 0"
    );
    check_eq!(result[1].load(Ordering::Relaxed), 0, "page 1 was a gap");
    check_eq!(
        result[2].load(Ordering::Relaxed),
        1,
        "page 1 populated by the bounce"
    );
    check!(
        result[3].load(Ordering::Relaxed) >= 1,
        "no stack page populated for the bounce"
    );
    Ok(())
}

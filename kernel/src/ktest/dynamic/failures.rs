//! When memory runs out or the stack overflows: `fault` against `guaranteed` under failing
//! atomic allocations and interrupts-off paths, and guard hits.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dks_core::Counter;

use super::{drain_all_magazines, events, fresh_stacks, me, recurse, spawn_with};
use crate::hw::cpu_ops;
use crate::hw::layout::PAGE_BYTES;
use crate::ktest::{TestResult, check, check_eq};
use crate::mm::frames::{self, Injection};
use crate::sched;
use crate::sched::wait::WaitQueue;
use crate::stacks::{self, Policy};
use crate::{trap_handlers, workload};

/// Deep paths with interrupts off under a spin lock (the workload's interrupts-off sections):
/// under `fault` with empty magazines and failing atomic allocations, the stack fault is one
/// that would stop a real kernel: it is counted as a kernel stop, the section's lock is given
/// up (another thread takes it afterwards) and only the thread stops. Under `guaranteed`, with
/// half of all atomic allocations failing, the same paths never fault fatally.
pub(super) fn irqoff_deep_paths_fault_vs_guaranteed() -> TestResult {
    const LOCK: usize = 5;
    let (stops_before, killed_before) = (
        stacks::policy_totals(Policy::Fault).kernel_stops,
        stacks::policy_totals(Policy::Fault).threads_stopped,
    );
    let guaranteed_fatal = events(Policy::Guaranteed, Counter::Fatal);

    fresh_stacks();
    let old = frames::set_injection(Injection::AllAtomic);
    drain_all_magazines()?;
    let victim = spawn_with("irqoff-victim", Policy::Fault, None, || {
        workload::with_irqoff_section(LOCK, || {
            let _ = recurse(me().stack.top(), 3 * PAGE_BYTES, 0, &mut || {});
        });
    })?;
    sched::join(&victim);
    frames::set_injection(old);
    // The lock was given up: another thread takes it and finishes.
    let taken = Arc::new(AtomicBool::new(false));
    let next = {
        let taken = taken.clone();
        spawn_with("irqoff-next", Policy::Static, None, move || {
            workload::with_irqoff_section(LOCK, || taken.store(true, Ordering::Release));
        })?
    };
    sched::join(&next);

    // Created first (creation needs memory), then let go while allocations fail.
    let completed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let mut crowd = Vec::new();
    for round in 0..12u64 {
        let (completed, gate, open) = (completed.clone(), gate.clone(), open.clone());
        crowd.push(spawn_with(
            "irqoff-crowd",
            Policy::Guaranteed,
            None,
            move || {
                gate.wait_until(|| open.load(Ordering::Acquire));
                workload::with_irqoff_section(LOCK + (round as usize % 2), || {
                    let _ = recurse(me().stack.top(), 3 * PAGE_BYTES + 1024, round, &mut || {});
                });
                completed.fetch_add(1, Ordering::AcqRel);
            },
        )?);
    }
    drain_all_magazines()?;
    let old = frames::set_injection(Injection::Percent {
        percent: 50,
        seed: 11,
    });
    open.store(true, Ordering::Release);
    gate.wake_all();
    for thread in &crowd {
        sched::join(thread);
    }
    frames::set_injection(old);
    fresh_stacks();

    check!(
        victim.was_killed(),
        "the fault thread survived an empty magazine"
    );
    check_eq!(
        stacks::policy_totals(Policy::Fault).kernel_stops - stops_before,
        1,
        "kernel stops counted for `fault`"
    );
    check_eq!(
        stacks::policy_totals(Policy::Fault).threads_stopped - killed_before,
        0,
        "a kernel stop is not counted as an ordinary thread stop"
    );
    check!(
        taken.load(Ordering::Acquire),
        "the next thread never took the section lock"
    );
    check_eq!(completed.load(Ordering::Acquire), crowd.len());
    check_eq!(
        events(Policy::Guaranteed, Counter::Fatal),
        guaranteed_fatal,
        "fatal faults under guaranteed with interrupts off"
    );
    check_eq!(stacks::policy_totals(Policy::Guaranteed).kernel_stops, 0);
    Ok(())
}

pub(super) fn atomic_failures_fault_vs_guaranteed() -> TestResult {
    let fault_fatal = events(Policy::Fault, Counter::Fatal);
    let guaranteed_fatal = events(Policy::Guaranteed, Counter::Fatal);
    let guaranteed_waits = events(Policy::Guaranteed, Counter::AdmitWait);

    // 1. Every atomic allocation fails and the magazines are empty: a `fault` thread's first
    //    stack fault finds nothing (the RFC's risk), a `guaranteed` one is not admitted.
    fresh_stacks();
    let old = frames::set_injection(Injection::AllAtomic);
    drain_all_magazines()?;
    let victim = spawn_with("rfc-victim", Policy::Fault, None, || {
        let _ = recurse(me().stack.top(), 3 * PAGE_BYTES, 0, &mut || {});
    })?;
    sched::join(&victim);
    let waiting_done = Arc::new(AtomicBool::new(false));
    let done = waiting_done.clone();
    let patient = spawn_with("patient", Policy::Guaranteed, None, move || {
        let _ = recurse(me().stack.top(), 3 * PAGE_BYTES, 0, &mut || {});
        done.store(true, Ordering::Release);
    })?;
    sched::sleep_ms(50);
    let ran_while_failing = waiting_done.load(Ordering::Acquire);
    frames::set_injection(Injection::None);
    sched::join(&patient);

    // 2. Half of all atomic allocations fail at random while 24 guaranteed threads go 4 pages
    //    deep, repeatedly: every one completes, none faults fatally.
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut crowd = Vec::new();
    for _ in 0..24 {
        let (gate, open, completed) = (gate.clone(), open.clone(), completed.clone());
        crowd.push(spawn_with("crowd", Policy::Guaranteed, None, move || {
            gate.wait_until(|| open.load(Ordering::Acquire));
            let top = me().stack.top();
            for round in 0..4 {
                let _ = recurse(top, 3 * PAGE_BYTES + 1024, round, &mut || {
                    sched::yield_now()
                });
            }
            completed.fetch_add(1, Ordering::AcqRel);
        })?);
    }
    drain_all_magazines()?;
    frames::set_injection(Injection::Percent {
        percent: 50,
        seed: 7,
    });
    open.store(true, Ordering::Release);
    gate.wake_all();
    for thread in &crowd {
        sched::join(thread);
    }
    frames::set_injection(old);

    check!(
        victim.was_killed(),
        "the fault-policy thread survived an empty magazine"
    );
    check!(
        events(Policy::Fault, Counter::Fatal) > fault_fatal,
        "no fatal fault counted for `fault`"
    );
    check!(
        !ran_while_failing,
        "the guaranteed thread ran although its need could not be covered"
    );
    check!(!patient.was_killed(), "the guaranteed thread was killed");
    check!(
        events(Policy::Guaranteed, Counter::AdmitWait) > guaranteed_waits,
        "no admission wait counted"
    );
    check_eq!(
        completed.load(Ordering::Acquire),
        crowd.len(),
        "guaranteed threads that completed"
    );
    check!(
        crowd.iter().all(|t| !t.was_killed()),
        "a guaranteed thread was killed"
    );
    check_eq!(
        events(Policy::Guaranteed, Counter::Fatal),
        guaranteed_fatal,
        "fatal faults under guaranteed"
    );
    Ok(())
}

/// Recurses with 512-byte frames until the stack overflows.
#[allow(unconditional_recursion)] // reason: overflowing the stack is the point
fn overflow(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    black_box(&mut frame);
    let below = overflow(black_box(depth + 1));
    black_box(&frame);
    below
}

pub(super) fn guard_hit_stops_the_thread() -> TestResult {
    for policy in stacks::IMPLEMENTED {
        let hits = events(policy, Counter::GuardHits);
        let victim = spawn_with("overflow-victim", policy, None, || {
            black_box(overflow(0));
        })?;
        sched::join(&victim);
        check!(
            victim.was_killed(),
            "{}: the overflowing thread was not stopped",
            policy.name()
        );
        check_eq!(
            trap_handlers::LAST_GUARD_HIT_THREAD.load(Ordering::Relaxed),
            victim.id(),
            "{}: the guard hit names its thread",
            policy.name()
        );
        check_eq!(
            events(policy, Counter::GuardHits),
            hits + 1,
            "{} guard hits",
            policy.name()
        );
    }
    check!(
        cpu_ops::interrupts_enabled(),
        "interrupts stay on in the test thread"
    );
    Ok(())
}

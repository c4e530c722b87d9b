//! `switch` (Dave Hansen's proposal) in the kernel: every page mapped while the thread runs,
//! so no stack fault ever; at switch-out the dead pages whose Accessed bit stayed clear go
//! back to the magazine without a flush, and the touched ones stay. On every online CPU (up
//! to 4), with migration, and under failing allocations.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dks_core::{Counter, StackPage};

use super::{events, fresh_stacks, me, recurse, spawn_with};
use crate::hw::cpu_ops;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::paging;
use crate::ktest::{TestResult, check, check_eq};
use crate::mm::frames::{self, Injection};
use crate::sched;
use crate::sched::wait::WaitQueue;
use crate::stacks::{self, Policy};

/// Whether page `index` of the stack in `slot` is mapped now.
fn mapped(slot: dks_core::SlotIndex, index: u8) -> bool {
    let layout = stacks::layout();
    paging::translate(layout.page_addr(slot, StackPage::new(index)).as_u64()).is_some()
}

/// Threads on every CPU recurse into the bottom page of their stacks (2 KiB above the guard,
/// and yield there) again and again, moving to the next CPU between recursions: no stack fault, no
/// bug count, every frame intact, and the whole stack mapped while each one runs.
pub(super) fn switch_deep_recursion_never_faults() -> TestResult {
    const THREADS: u32 = 8;
    const ROUNDS: u32 = 6;
    fresh_stacks();
    let faults = events(Policy::Switch, Counter::Faults);
    let bugs = events(Policy::Switch, Counter::SwitchFaults);
    let fatal = events(Policy::Switch, Counter::Fatal);
    let cpus = sched::online_cpus();
    let broken = Arc::new(AtomicUsize::new(0));
    let unmapped_while_running = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for i in 0..THREADS {
        let (broken, unmapped) = (broken.clone(), unmapped_while_running.clone());
        threads.push(spawn_with(
            "switch-deep",
            Policy::Switch,
            Some(i % cpus),
            move || {
                let me = me();
                let depth = u64::from(stacks::layout().stack_pages()) * PAGE_BYTES - 2048;
                for round in 0..ROUNDS {
                    if me.stack.populated_pages() != stacks::layout().stack_pages() {
                        unmapped.fetch_add(1, Ordering::Relaxed);
                    }
                    if recurse(me.stack.top(), depth, u64::from(round), &mut || {
                        sched::yield_now()
                    })
                    .is_err()
                    {
                        broken.fetch_add(1, Ordering::Relaxed);
                    }
                    if cpus > 1 {
                        sched::migrate_to((cpu_ops::id_hint() + 1) % cpus);
                    }
                }
            },
        )?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    check!(
        threads.iter().all(|t| !t.was_killed()),
        "a switch thread was killed"
    );
    check_eq!(broken.load(Ordering::Relaxed), 0, "frames changed");
    check_eq!(
        unmapped_while_running.load(Ordering::Relaxed),
        0,
        "times a running switch thread found a page of its stack unmapped"
    );
    check_eq!(
        events(Policy::Switch, Counter::Faults) - faults,
        0,
        "stack faults under switch"
    );
    check_eq!(
        events(Policy::Switch, Counter::SwitchFaults) - bugs,
        0,
        "dks_switch_faults"
    );
    check_eq!(events(Policy::Switch, Counter::Fatal) - fatal, 0);
    if cpus > 1 {
        let moved = threads
            .iter()
            .filter(|t| t.cpus_ran_on().count_ones() > 1)
            .count();
        check_eq!(moved, threads.len(), "threads that ran on several CPUs");
    }
    Ok(())
}

/// On every CPU, a `switch` thread touches its second page (a path 5,000 bytes deep), comes
/// back and sleeps 1 KiB deep. At that switch-out its second page, dead but touched (Accessed
/// set), stays mapped; its third and fourth pages, never touched, are gone, counted as
/// returned for a clear Accessed bit with no flush. Woken, it runs with all four mapped
/// again; the data it left above its stack pointer is intact.
pub(super) fn switch_returns_untouched_pages() -> TestResult {
    for cpu in 0..sched::online_cpus() {
        fresh_stacks();
        let returned = events(Policy::Switch, Counter::ReclaimedAccessedClear);
        let avoided = events(Policy::Switch, Counter::FlushesAvoided);
        let faults = events(Policy::Switch, Counter::Faults);
        let asleep = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(WaitQueue::new());
        // pages mapped while running before and after the sleep, checksum check
        let seen = Arc::new([const { AtomicU64::new(0) }; 3]);
        let thread = {
            let (asleep, release, gate, seen) =
                (asleep.clone(), release.clone(), gate.clone(), seen.clone());
            spawn_with("switch-touch", Policy::Switch, Some(cpu), move || {
                let me = me();
                seen[0].store(u64::from(me.stack.populated_pages()), Ordering::Relaxed);
                let ok = recurse(me.stack.top(), 5000, 0, &mut || {}).is_ok();
                let mut kept = [0u64; 64];
                for (i, word) in kept.iter_mut().enumerate() {
                    *word = 0x5157_0000 + i as u64;
                }
                core::hint::black_box(&mut kept);
                // A preemption before the sleep changes nothing: the switch-out the test
                // looks at is the last one, into the wait queue.
                asleep.store(true, Ordering::Release);
                gate.wait_until(|| release.load(Ordering::Acquire));
                core::hint::black_box(&mut kept);
                let intact = kept
                    .iter()
                    .enumerate()
                    .all(|(i, &w)| w == 0x5157_0000 + i as u64);
                seen[1].store(u64::from(me.stack.populated_pages()), Ordering::Relaxed);
                seen[2].store(u64::from(ok && intact), Ordering::Relaxed);
            })?
        };
        while !(asleep.load(Ordering::Acquire) && thread.state() == sched::State::Blocked) {
            sched::sleep_ms(1);
        }
        let slot = thread.stack.slot();
        let pages = [0u8, 1, 2, 3].map(|page| mapped(slot, page));
        let held = thread.stack.populated_pages();
        let returned_now = events(Policy::Switch, Counter::ReclaimedAccessedClear) - returned;
        let avoided_now = events(Policy::Switch, Counter::FlushesAvoided) - avoided;
        release.store(true, Ordering::Release);
        gate.wake_all();
        sched::join(&thread);
        check!(!thread.was_killed(), "cpu {cpu}: the thread was killed");
        check_eq!(
            seen[0].load(Ordering::Relaxed),
            4,
            "cpu {cpu}: pages mapped when it first ran"
        );
        check_eq!(
            pages,
            [true, true, false, false],
            "cpu {cpu}: pages mapped while asleep (top live, second touched, two untouched)"
        );
        check_eq!(held, 2, "cpu {cpu}: populated pages while asleep");
        check!(
            returned_now >= 2,
            "cpu {cpu}: only {returned_now} pages returned for a clear Accessed bit"
        );
        check!(avoided_now >= 1, "cpu {cpu}: no flush avoided");
        check_eq!(
            seen[1].load(Ordering::Relaxed),
            4,
            "cpu {cpu}: pages mapped when it ran again"
        );
        check_eq!(seen[2].load(Ordering::Relaxed), 1, "cpu {cpu}: data intact");
        check_eq!(
            events(Policy::Switch, Counter::Faults) - faults,
            0,
            "cpu {cpu}: stack faults under switch"
        );
    }
    Ok(())
}

/// `switch` threads on every CPU, migrating, go deep while half of all atomic allocations
/// fail, then while every atomic allocation fails with empty magazines (admission waits;
/// they finish once allocations work again): no fatal fault and no stack fault, every thread
/// done and intact.
pub(super) fn switch_under_failing_allocations() -> TestResult {
    const THREADS: u64 = 12;
    let fatal = events(Policy::Switch, Counter::Fatal);
    let faults = events(Policy::Switch, Counter::Faults);
    let cpus = sched::online_cpus();
    for injection in [
        Injection::Percent {
            percent: 50,
            seed: 7,
        },
        Injection::AllAtomic,
    ] {
        fresh_stacks();
        let gate = Arc::new(WaitQueue::new());
        let open = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for i in 0..THREADS {
            let (gate, open, done, broken) =
                (gate.clone(), open.clone(), done.clone(), broken.clone());
            threads.push(spawn_with(
                "switch-starved",
                Policy::Switch,
                None,
                move || {
                    gate.wait_until(|| open.load(Ordering::Acquire));
                    let top = me().stack.top();
                    for round in 0..3 {
                        // Into the third or fourth page, 2 KiB above the guard at most (the yield below).
                        let depth = 2 * PAGE_BYTES + (i * 977 + round * 1500) % (PAGE_BYTES + 2048);
                        if recurse(top, depth, i, &mut || sched::yield_now()).is_err() {
                            broken.fetch_add(1, Ordering::Relaxed);
                        }
                        if cpus > 1 {
                            sched::migrate_to((cpu_ops::id_hint() + 1) % cpus);
                        }
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                },
            )?);
        }
        super::drain_all_magazines()?;
        let old = frames::set_injection(injection);
        open.store(true, Ordering::Release);
        gate.wake_all();
        sched::sleep_ms(200);
        frames::set_injection(old);
        for thread in &threads {
            sched::join(thread);
        }
        check!(
            threads.iter().all(|t| !t.was_killed()),
            "{injection:?}: a switch thread was killed"
        );
        check_eq!(
            done.load(Ordering::Acquire),
            THREADS as usize,
            "{injection:?}"
        );
        check_eq!(
            broken.load(Ordering::Relaxed),
            0,
            "{injection:?}: frames changed"
        );
    }
    check_eq!(
        events(Policy::Switch, Counter::Fatal) - fatal,
        0,
        "fatal faults under switch"
    );
    check_eq!(
        events(Policy::Switch, Counter::Faults) - faults,
        0,
        "stack faults under switch"
    );
    Ok(())
}

//! Tests of the `reclaim` policy's trims (`stacks::trim`): exactly the pages below a sleeping
//! thread's saved stack pointer and its margin go, through the quarantine; the thread resumes
//! with its data intact and grows deep again, on several CPUs, with migration; wakes racing
//! trims, and trims under injected allocation failures, lose nothing and fault nothing fatally.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dks_core::reclaim::TrimCause;
use dks_core::{Counter, StackPage};

use super::{
    all_blocked, drain_all_magazines, events, fresh_stacks, mapped_pages, me, recurse, spawn_with,
};
use crate::hw::cpu_ops;
use crate::hw::layout::PAGE_BYTES;
use crate::ktest::{TestResult, check, check_eq};
use crate::mm::frames::{self, Injection};
use crate::sched::wait::WaitQueue;
use crate::sched::{self, State, Thread};
use crate::stacks::{self, Policy, quarantine, trim};
use crate::tlb;

/// Bytes below the saved stack pointer that hold live data: dks-core's red zone (the resume
/// frame lies at and above the saved stack pointer, see `stacks::trim`).
const MARGIN_BYTES: u64 = dks_core::layout::RED_ZONE_IN_BYTES;

/// Of `mapped`, the pages of `thread`'s stack that hold live data when its saved stack pointer
/// is `saved_sp`: every page not wholly below `saved_sp - MARGIN_BYTES`.
fn live_of(thread: &Thread, mapped: u32, saved_sp: u64) -> u32 {
    let layout = stacks::layout();
    let slot = thread.stack.slot();
    (0..layout.stack_pages())
        .filter(|&i| {
            let start = layout.page_addr(slot, StackPage::new(i)).as_u64();
            start + PAGE_BYTES > saved_sp - MARGIN_BYTES
        })
        .fold(0, |set, i| set | 1 << i)
        & mapped
}

/// Runs `test` with the reclaim thread trimming under pressure or not, and after long sleeps
/// or not, then restores both settings.
fn with_reclaim_thread_trims(
    pressure: bool,
    long_sleep: bool,
    test: impl FnOnce() -> TestResult,
) -> TestResult {
    let old_pressure = trim::set_pressure_trims(pressure);
    let old_age = trim::set_long_sleep_ms(if long_sleep {
        trim::LONG_SLEEP_MS
    } else {
        u64::MAX
    });
    let result = test();
    trim::set_pressure_trims(old_pressure);
    trim::set_long_sleep_ms(old_age);
    result
}

/// Rounds of sleep, trim and wake in [`reclaim_trims_exactly_below_saved_sp`].
const ROUNDS: u64 = 3;

pub(super) fn reclaim_trims_exactly_below_saved_sp() -> TestResult {
    fresh_stacks();
    // Only the trims this test makes: the reclaim thread's wait.
    with_reclaim_thread_trims(false, false, trims_exactly)
}

fn trims_exactly() -> TestResult {
    let cpus = sched::online_cpus();
    let layout = stacks::layout();
    let stack_bytes = u64::from(layout.stack_pages()) * PAGE_BYTES;
    let deep = stack_bytes - 1024;
    let gate = Arc::new(WaitQueue::new());
    let round_open = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let (fatal, faults) = (
        events(Policy::Reclaim, Counter::Fatal),
        events(Policy::Reclaim, Counter::Faults),
    );
    let mut sleepers = Vec::new();
    for i in 0..(2 * u64::from(cpus) + 1) {
        // Sleeping depths spread over the stack, each thread its own.
        let depth = 900 + (i * 2900 + 350) % (stack_bytes - 5000);
        let (gate, round_open, broken) = (gate.clone(), round_open.clone(), broken.clone());
        sleepers.push(spawn_with("trimmed", Policy::Reclaim, None, move || {
            let top = me().stack.top();
            for round in 0..ROUNDS {
                // Deep first, so that pages below the sleeping depth are populated and dead.
                let deep_ok = recurse(top, deep, 0, &mut || {}).is_ok();
                // Asleep at `depth`: the frames above are checked when it comes back up.
                let sleep_ok = recurse(top, depth, 0, &mut || {
                    gate.wait_until(|| round_open.load(Ordering::Acquire) > round);
                })
                .is_ok();
                if !deep_ok || !sleep_ok {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
                if cpus > 1 {
                    sched::migrate_to((cpu_ops::id_hint() + 1) % cpus);
                }
            }
            // And deep once more after the last trim.
            if recurse(top, deep, 0, &mut || {}).is_err() {
                broken.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    let mut trimmed_total = 0u64;
    for round in 0..ROUNDS {
        all_blocked(&sleepers)?;
        let before: Vec<(u32, u32)> = sleepers
            .iter()
            .map(|t| {
                let mapped = mapped_pages(t);
                (mapped, live_of(t, mapped, t.saved_stack_pointer()))
            })
            .collect();
        let expected: u64 = before
            .iter()
            .map(|(mapped, live)| u64::from((mapped & !live).count_ones()))
            .sum();
        let (reclaimed, pressure) = (
            events(Policy::Reclaim, Counter::Reclaimed),
            events(Policy::Reclaim, Counter::ReclaimedDeadPressure),
        );
        let trimmed = trim::trim_sleeping(TrimCause::Pressure, 0, u32::MAX);
        let held = quarantine::held().0 as u64;
        check!(expected > 0, "round {round}: no sleeper had a dead page");
        check_eq!(u64::from(trimmed.pages), expected, "round {round}");
        check_eq!(
            events(Policy::Reclaim, Counter::Reclaimed) - reclaimed,
            expected,
            "round {round}: dks_reclaimed"
        );
        check_eq!(
            events(Policy::Reclaim, Counter::ReclaimedDeadPressure) - pressure,
            expected,
            "round {round}: dks_reclaimed_dead_pressure"
        );
        for (thread, (_, live)) in sleepers.iter().zip(&before) {
            check_eq!(
                mapped_pages(thread),
                *live,
                "round {round}: {} pages left (saved sp {:#x}, top {:#x})",
                thread.name(),
                thread.saved_stack_pointer(),
                thread.stack.top()
            );
        }
        // The pages were used: their frames wait for a flush of every TLB.
        let Some(epoch) = trimmed.flush else {
            return Err(alloc::format!(
                "round {round}: trimmed pages went back with no TLB flush"
            ));
        };
        check!(
            held >= expected || tlb::flushed_everywhere(epoch),
            "round {round}: {held} frames in the quarantine for {expected} trimmed ones, before \
             their flush completed"
        );
        trimmed_total += expected;
        round_open.store(round + 1, Ordering::Release);
        gate.wake_all();
    }
    for thread in &sleepers {
        sched::join(thread);
    }
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "sleepers that found a frame above their saved stack pointer changed"
    );
    check!(
        sleepers.iter().all(|t| !t.was_killed()),
        "a trimmed thread was killed"
    );
    check_eq!(events(Policy::Reclaim, Counter::Fatal), fatal);
    check!(
        events(Policy::Reclaim, Counter::Faults) - faults >= trimmed_total,
        "{} stack faults after {trimmed_total} pages trimmed: the threads did not grow back",
        events(Policy::Reclaim, Counter::Faults) - faults
    );
    if cpus > 1 {
        check!(
            sleepers.iter().all(|t| t.cpus_ran_on().count_ones() > 1),
            "a trimmed thread never migrated"
        );
    }
    Ok(())
}

/// What [`race`] found.
struct Raced {
    trimmed: u64,
    rounds: u64,
}

/// Reclaim threads go deep and fall asleep shallow, over and over, for `ms`, while a thread
/// trims every sleeper it finds and another wakes them all, with `injection` set for the
/// frame allocator; the magazines are drained first. Fails on any changed frame, killed
/// thread or fatal fault.
fn race(ms: u64, injection: Injection) -> Result<Raced, alloc::string::String> {
    fresh_stacks();
    let cpus = sched::online_cpus();
    let deep = u64::from(stacks::layout().stack_pages()) * PAGE_BYTES - 1024;
    let gate = Arc::new(WaitQueue::new());
    let token = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let trimmed = Arc::new(AtomicU64::new(0));
    let fatal = events(Policy::Reclaim, Counter::Fatal);
    let mut threads = Vec::new();
    for i in 0..(2 * u64::from(cpus) + 2) {
        let depth = 1000 + (i * 1700) % (deep / 2);
        let (gate, token, stop, broken, rounds) = (
            gate.clone(),
            token.clone(),
            stop.clone(),
            broken.clone(),
            rounds.clone(),
        );
        threads.push(spawn_with("raced", Policy::Reclaim, None, move || {
            let top = me().stack.top();
            while !stop.load(Ordering::Acquire) {
                let deep_ok = recurse(top, deep, 0, &mut || {}).is_ok();
                let sleep_ok = recurse(top, depth, 0, &mut || {
                    let seen = token.load(Ordering::Acquire);
                    gate.wait_until(|| {
                        token.load(Ordering::Acquire) != seen || stop.load(Ordering::Acquire)
                    });
                })
                .is_ok();
                if !deep_ok || !sleep_ok {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    let trimmer = {
        let (stop, trimmed) = (stop.clone(), trimmed.clone());
        spawn_with("trimmer", Policy::Static, None, move || {
            while !stop.load(Ordering::Acquire) {
                let round = trim::trim_sleeping(TrimCause::Pressure, 0, u32::MAX);
                trimmed.fetch_add(u64::from(round.pages), Ordering::Relaxed);
                stacks::poll_quarantine();
                sched::yield_now();
            }
        })?
    };
    let waker = {
        let (gate, token, stop) = (gate.clone(), token.clone(), stop.clone());
        spawn_with("waker", Policy::Static, None, move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                token.fetch_add(1, Ordering::AcqRel);
                gate.wake_all();
                n += 1;
                // Now at once, now after the sleepers had time to be trimmed.
                if n.is_multiple_of(3) {
                    sched::sleep_ms(1);
                } else {
                    sched::yield_now();
                }
            }
        })?
    };
    drain_all_magazines()?;
    let old = frames::set_injection(injection);
    sched::sleep_ms(ms);
    frames::set_injection(old);
    stop.store(true, Ordering::Release);
    gate.wake_all();
    for thread in threads.iter().chain([&trimmer, &waker]) {
        sched::join(thread);
    }
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "paths that found a frame changed after a trim"
    );
    check!(
        threads.iter().all(|t| !t.was_killed()),
        "a reclaim thread was killed"
    );
    check_eq!(
        events(Policy::Reclaim, Counter::Fatal),
        fatal,
        "fatal reclaim faults"
    );
    Ok(Raced {
        trimmed: trimmed.load(Ordering::Relaxed),
        rounds: rounds.load(Ordering::Relaxed),
    })
}

pub(super) fn reclaim_wake_races_trim() -> TestResult {
    let [untouched, touched] = stacks::trim_claims_seen();
    let raced = race(400, Injection::None)?;
    check!(
        raced.trimmed > 0,
        "nothing was trimmed ({} rounds)",
        raced.rounds
    );
    check!(raced.rounds > 0, "no sleeper came back");
    // Both ways of the race of a wake-up with a trim for the sleeper's trim claim happened:
    // sleepers a trim had, admitted under the lock, and (with a trimmer on another CPU than
    // the wakes: on one CPU it trims every sleeper before the woken run) sleepers woken
    // without the stack's lock, no trim had them (docs/reclaim.md, "The switch without a
    // lock").
    let [untouched_now, touched_now] = stacks::trim_claims_seen();
    check!(
        touched_now > touched && (sched::online_cpus() == 1 || untouched_now > untouched),
        "claims taken back by a wake-up: {}, found with a trim: {}",
        untouched_now - untouched,
        touched_now - touched
    );
    Ok(())
}

pub(super) fn reclaim_under_injected_failures() -> TestResult {
    let waits = events(Policy::Reclaim, Counter::AdmitWait);
    let raced = race(
        400,
        Injection::Percent {
            percent: 50,
            seed: 12,
        },
    )?;
    check!(
        raced.trimmed > 0,
        "nothing was trimmed ({} rounds)",
        raced.rounds
    );
    check!(raced.rounds > 0, "no sleeper came back");
    check!(
        events(Policy::Reclaim, Counter::AdmitWait) > waits,
        "half of the atomic allocations failed with empty magazines, and no reclaim thread \
         waited for admission"
    );
    Ok(())
}

/// A `reclaim` thread that went deep and sleeps shallow for long: the reclaim thread's own
/// rounds trim it (cause "long sleep") while it sleeps, and it comes back intact.
pub(super) fn reclaim_trims_long_sleepers() -> TestResult {
    // Pressure from elsewhere (refused admissions) would trim it first, under another cause.
    with_reclaim_thread_trims(false, true, long_sleepers)
}

fn long_sleepers() -> TestResult {
    fresh_stacks();
    let deep = u64::from(stacks::layout().stack_pages()) * PAGE_BYTES - 1024;
    let asleep = events(Policy::Reclaim, Counter::ReclaimedDeadAsleep);
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let sleeper = spawn_with("long-sleeper", Policy::Reclaim, None, move || {
        let top = me().stack.top();
        let ok = recurse(top, deep, 0, &mut || {}).is_ok()
            && recurse(top, 1500, 0, &mut || sched::sleep_ms(400)).is_ok()
            && recurse(top, deep, 0, &mut || {}).is_ok();
        flag.store(!ok, Ordering::Release);
    })?;
    all_blocked(core::slice::from_ref(&sleeper))?;
    let mut trimmed = 0;
    for _ in 0..300 {
        sched::sleep_ms(1);
        trimmed = events(Policy::Reclaim, Counter::ReclaimedDeadAsleep) - asleep;
        if trimmed > 0 {
            break;
        }
    }
    let mapped = mapped_pages(&sleeper);
    let live = live_of(&sleeper, mapped, sleeper.saved_stack_pointer());
    let state = sleeper.state();
    sched::join(&sleeper);
    check!(trimmed > 0, "a thread asleep 300 ms was not trimmed");
    if state == State::Blocked {
        check_eq!(
            mapped,
            live,
            "pages of the long sleeper left after its trim"
        );
    }
    check!(
        !broken.load(Ordering::Acquire),
        "the long sleeper's frames changed"
    );
    check!(!sleeper.was_killed(), "the long sleeper was killed");
    Ok(())
}

/// A `pack` thread is `reclaim` until its pack is due (docs/pack.md): a `reclaim` and a `pack`
/// thread that went deep and then sleep shallower have their dead pages trimmed by the
/// stack-reclaim thread's long-sleep rounds alike, short of the pack threshold. Twice: asleep
/// past [`trim::LONG_SLEEP_MS`]; and woken before that age but not yet switched in (as a
/// thread woken by a peer waits in a busy run queue: the wake path,
/// `stacks::pack::restore_on_wake`, has run, admission has not), which a `reclaim` stack's
/// trims count as asleep from its switch-out. Both resume intact.
pub(super) fn pack_trims_long_sleepers_like_reclaim() -> TestResult {
    fresh_stacks();
    // No pack during the test: the trims alone.
    let after = crate::stacks::pack::set_after_ms(u64::MAX);
    let result = with_reclaim_thread_trims(false, true, || long_sleepers_of_both(false))
        .and_then(|()| with_reclaim_thread_trims(false, false, || long_sleepers_of_both(true)));
    crate::stacks::pack::set_after_ms(after);
    result
}

/// One pass of [`pack_trims_long_sleepers_like_reclaim`]; `woken`: the sleepers are woken
/// (the wake path's restore) before the long-sleep rounds may trim them, and then held off
/// the CPUs while the rounds run.
fn long_sleepers_of_both(woken: bool) -> TestResult {
    let deep = u64::from(stacks::layout().stack_pages()) * PAGE_BYTES - 1024;
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicU64::new(0));
    let policies = [Policy::Reclaim, Policy::Pack];
    let asleep: Vec<u64> = policies
        .iter()
        .map(|&policy| events(policy, Counter::ReclaimedDeadAsleep))
        .collect();
    let mut sleepers = Vec::new();
    for policy in policies {
        let (gate, open, broken) = (gate.clone(), open.clone(), broken.clone());
        sleepers.push(spawn_with("deep-then-asleep", policy, None, move || {
            let top = me().stack.top();
            let ok = recurse(top, deep, 0, &mut || {}).is_ok()
                && recurse(top, 1500, 0, &mut || {
                    gate.wait_until(|| open.load(Ordering::Acquire));
                })
                .is_ok()
                && recurse(top, deep, 0, &mut || {}).is_ok();
            if !ok {
                broken.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    all_blocked(&sleepers)?;
    // Each sleeper's pages when it blocked: some of them dead.
    for (thread, policy) in sleepers.iter().zip(policies) {
        let mapped = mapped_pages(thread);
        let live = live_of(thread, mapped, thread.saved_stack_pointer());
        let trimmed = events(policy, Counter::ReclaimedDeadAsleep) > asleep[policy_at(policy)];
        check!(
            mapped & !live != 0 || trimmed,
            "woken {woken}, {policy:?}: no dead page after going deep (mapped {mapped:#b}, \
             live {live:#b})"
        );
    }
    if woken {
        // No round ran for them yet (long-sleep trims are off): woken now, as by a peer,
        // not yet admitted (they stay blocked on the gate, as if queued behind others).
        for thread in &sleepers {
            let restore = crate::stacks::pack::restore_on_wake(thread.stack.slot());
            check!(
                restore == crate::stacks::pack::WakeRestore::NotPacked,
                "woken: {restore:?} for a stack never packed"
            );
        }
        trim::set_long_sleep_ms(trim::LONG_SLEEP_MS);
    }
    // Both are trimmed by the rounds, well within the time they sleep.
    let mut left = Vec::new();
    for _ in 0..2000 {
        left = sleepers
            .iter()
            .zip(policies)
            .filter(|(thread, policy)| {
                let mapped = mapped_pages(thread);
                let live = live_of(thread, mapped, thread.saved_stack_pointer());
                mapped != live
                    || events(*policy, Counter::ReclaimedDeadAsleep) == asleep[policy_at(*policy)]
            })
            .map(|(_, policy)| policy)
            .collect();
        if left.is_empty() {
            break;
        }
        sched::sleep_ms(1);
    }
    let blocked = sleepers.iter().all(|t| t.state() == State::Blocked);
    open.store(true, Ordering::Release);
    gate.wake_all();
    for thread in &sleepers {
        sched::join(thread);
    }
    check!(
        blocked,
        "woken {woken}: a sleeper left the gate before the end"
    );
    check!(
        left.is_empty(),
        "woken {woken}: 2 s past {} ms asleep, still holding dead pages: {left:?}",
        trim::LONG_SLEEP_MS
    );
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "woken {woken}: sleepers whose frames changed"
    );
    check!(
        sleepers.iter().all(|t| !t.was_killed()),
        "woken {woken}: a sleeper was killed"
    );
    Ok(())
}

/// Where `policy` is in [`long_sleepers_of_both`]'s list.
fn policy_at(policy: Policy) -> usize {
    usize::from(policy == Policy::Pack)
}

/// Admission refused for want of memory wakes the reclaim thread, which trims the sleepers'
/// dead pages (cause "pressure") before anything else.
pub(super) fn reclaim_trims_under_pressure() -> TestResult {
    fresh_stacks();
    let result = with_reclaim_thread_trims(true, false, under_pressure);
    frames::set_injection(Injection::None);
    result
}

fn under_pressure() -> TestResult {
    let deep = u64::from(stacks::layout().stack_pages()) * PAGE_BYTES - 1024;
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let mut sleepers = Vec::new();
    for i in 0..4u64 {
        let (gate, open) = (gate.clone(), open.clone());
        sleepers.push(spawn_with("pressed", Policy::Reclaim, None, move || {
            let top = me().stack.top();
            let _ = recurse(top, deep, 0, &mut || {});
            let _ = recurse(top, 1000 + 1000 * i, 0, &mut || {
                gate.wait_until(|| open.load(Ordering::Acquire));
            });
        })?);
    }
    all_blocked(&sleepers)?;
    let expected: u64 = sleepers
        .iter()
        .map(|t| {
            let mapped = mapped_pages(t);
            u64::from((mapped & !live_of(t, mapped, t.saved_stack_pointer())).count_ones())
        })
        .sum();
    let pressure = events(Policy::Reclaim, Counter::ReclaimedDeadPressure);
    // No atomic allocation succeeds and the magazines are empty: a fresh thread's need (all
    // but its top page) cannot be covered, so admission refuses it and wakes the reclaim
    // thread.
    let old = frames::set_injection(Injection::AllAtomic);
    drain_all_magazines()?;
    let refused = spawn_with("refused", Policy::Guaranteed, None, || {
        let _ = recurse(me().stack.top(), 2 * PAGE_BYTES, 0, &mut || {});
    })?;
    let mut trimmed = 0;
    for _ in 0..2000 {
        trimmed = events(Policy::Reclaim, Counter::ReclaimedDeadPressure) - pressure;
        if trimmed >= expected {
            break;
        }
        sched::sleep_ms(1);
    }
    frames::set_injection(old);
    open.store(true, Ordering::Release);
    gate.wake_all();
    for thread in sleepers.iter().chain([&refused]) {
        sched::join(thread);
    }
    check!(expected > 0, "the sleepers had no dead page");
    check_eq!(
        trimmed,
        expected,
        "pages trimmed under pressure (admission refused)"
    );
    Ok(())
}

/// A trimmed thread does not run before every CPU flushed its TLB for the trim: with CPU 1
/// busy with interrupts off (so it cannot take the flush IPI), a trimmed thread woken on
/// CPU 0 stays `Ready`; it runs, intact, once CPU 1 flushed.
pub(super) fn reclaim_waits_for_the_flush() -> TestResult {
    if sched::online_cpus() < 2 {
        return Ok(());
    }
    fresh_stacks();
    // On CPU 0 with the thread under test: a wake-up must not queue this thread behind the
    // spinner of CPU 1.
    sched::pin_me(Some(0));
    sched::yield_now();
    let result = with_reclaim_thread_trims(false, false, waits_for_the_flush);
    sched::pin_me(None);
    result
}

fn waits_for_the_flush() -> TestResult {
    let deep = u64::from(stacks::layout().stack_pages()) * PAGE_BYTES - 1024;
    let (spinning, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let spinner = {
        let (spinning, release) = (spinning.clone(), release.clone());
        spawn_with("irqoff-spinner", Policy::Static, Some(1), move || {
            let _irq = cpu_ops::IrqGuard::new();
            spinning.store(true, Ordering::Release);
            // At most ~2 s of guest time, whatever happens to the test.
            let start = cpu_ops::rdtsc();
            let limit = crate::hw::apic::tsc_per_us() * 2_000_000;
            while !release.load(Ordering::Acquire) && cpu_ops::rdtsc() - start < limit {
                cpu_ops::relax();
            }
        })?
    };
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let (gate, open, broken) = (gate.clone(), open.clone(), broken.clone());
        spawn_with("flush-waiter", Policy::Reclaim, Some(0), move || {
            let top = me().stack.top();
            let ok = recurse(top, deep, 0, &mut || {}).is_ok()
                && recurse(top, 1200, 0, &mut || {
                    gate.wait_until(|| open.load(Ordering::Acquire));
                })
                .is_ok()
                && recurse(top, deep, 0, &mut || {}).is_ok();
            broken.store(!ok, Ordering::Release);
        })?
    };
    all_blocked(core::slice::from_ref(&sleeper))?;
    while !spinning.load(Ordering::Acquire) {
        sched::sleep_ms(1);
    }
    let round = trim::trim_sleeping(TrimCause::Pressure, 0, u32::MAX);
    let switches = sleeper.switches();
    // CPU 0's magazine full, so that the grown need is covered: only the trim's claim on the
    // slot (and then the pending flush) keeps admission from switching to the thread at once.
    stacks::refill_magazine_here(&cpu_ops::IrqGuard::new());
    open.store(true, Ordering::Release);
    gate.wake_all();
    sched::sleep_ms(30);
    let ran_before_flush = sleeper.switches() != switches;
    let flushed = round.flush.is_some_and(tlb::flushed_everywhere);
    release.store(true, Ordering::Release);
    sched::join(&spinner);
    sched::join(&sleeper);
    check!(round.pages > 0, "nothing was trimmed");
    check!(round.flush.is_some(), "the trim requested no flush");
    check!(
        !flushed,
        "CPU 1 flushed with interrupts off (the test cannot tell)"
    );
    check!(
        !ran_before_flush,
        "the trimmed thread ran before CPU 1 flushed its TLB"
    );
    check!(
        !broken.load(Ordering::Acquire),
        "the thread's frames changed"
    );
    check!(!sleeper.was_killed(), "the trimmed thread was killed");
    Ok(())
}

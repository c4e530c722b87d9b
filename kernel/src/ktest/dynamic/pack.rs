//! Tests of the `pack` policy in the kernel (`stacks::pack`, docs/pack.md): a packed thread
//! resumes with every byte of its live stack, restored on the wake path or by admission, on
//! several CPUs, after migration, preempted right after the restore; a foreign read of a
//! packed stack stops the reader, not the sleeper, and names the address (and is counted as
//! a catch in guard mode); a restore without memory waits, then completes, with no fatal
//! fault.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use dks_core::Counter;

use super::{
    all_blocked, drain_all_magazines, events, fresh_stacks, mapped_pages, me, recurse, spawn_with,
};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::{cpu_ops, pack_memory};
use crate::ktest::{TestResult, check, check_eq};
use crate::mm::frames::{self, Injection};
use crate::sched::wait::WaitQueue;
use crate::sched::{self, State, Thread};
use crate::stacks::{self, Policy, pack, trim};
use crate::trap_handlers;

/// Rounds of sleep, pack and wake in [`pack_resumes_every_byte`].
const ROUNDS: u64 = 4;

/// How long a woken sleeper spins for its first preemption, at most (milliseconds).
const PREEMPTION_WAIT_MS: u64 = 200;

/// Runs `test` with only the packs and trims it makes itself (the reclaim thread neither
/// trims nor packs), then restores the settings.
fn with_scanner_off(test: impl FnOnce() -> TestResult) -> TestResult {
    let pressure = trim::set_pressure_trims(false);
    let age = trim::set_long_sleep_ms(u64::MAX);
    let after = pack::set_after_ms(u64::MAX);
    let result = test();
    trim::set_pressure_trims(pressure);
    trim::set_long_sleep_ms(age);
    pack::set_after_ms(after);
    result
}

/// Packs the stack of each of `threads` (asleep) and checks it holds no page afterwards.
fn pack_all(threads: &[Arc<Thread>], round: u64) -> TestResult {
    for thread in threads {
        let done = pack::pack_one(thread.stack.slot())
            .map_err(|e| alloc::format!("round {round}: {} not packed: {e:?}", thread.name()))?;
        check!(
            done.live_bytes > 0 && done.live_bytes <= PAGE_BYTES,
            "round {round}: {} live bytes",
            done.live_bytes
        );
        check!(pack::is_packed(thread.stack.slot()), "round {round}");
        check_eq!(
            mapped_pages(thread),
            0,
            "round {round}: pages of {} mapped while packed",
            thread.name()
        );
    }
    Ok(())
}

/// Spins until this thread is preempted or [`PREEMPTION_WAIT_MS`] passed; returns whether it
/// was preempted.
fn spin_until_preempted() -> bool {
    let me = me();
    let switches = me.switches();
    let until = sched::uptime_ms() + PREEMPTION_WAIT_MS;
    while me.switches() == switches && sched::uptime_ms() < until {
        core::hint::spin_loop();
    }
    me.switches() != switches
}

pub(super) fn pack_resumes_every_byte() -> TestResult {
    fresh_stacks();
    with_scanner_off(resumes)
}

fn resumes() -> TestResult {
    let cpus = sched::online_cpus();
    let gate = Arc::new(WaitQueue::new());
    let round_open = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let preempted = Arc::new(AtomicU64::new(0));
    let count = |c| events(Policy::Pack, c);
    let (fatal, packs, restores, mismatches) = (
        count(Counter::Fatal),
        count(Counter::Packs),
        count(Counter::Restores),
        count(Counter::PackChecksumFail),
    );
    let n = 2 * u64::from(cpus) + 1;
    let mut sleepers = Vec::new();
    for i in 0..n {
        // Sleeping depths spread over the top page, each thread its own: the frames of the
        // recursion are the locals checked on the way back up.
        let depth = 300 + (i * 700) % 2200;
        let (gate, round_open, broken, preempted) = (
            gate.clone(),
            round_open.clone(),
            broken.clone(),
            preempted.clone(),
        );
        sleepers.push(spawn_with("packed", Policy::Pack, None, move || {
            let top = me().stack.top();
            for round in 0..ROUNDS {
                let ok = recurse(top, depth, 0, &mut || {
                    gate.wait_until(|| round_open.load(Ordering::Acquire) > round);
                    // Preempted right after the restore, its restored frames live above.
                    if spin_until_preempted() {
                        preempted.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .is_ok();
                if !ok {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
                if cpus > 1 {
                    sched::migrate_to((cpu_ops::id_hint() + 1) % cpus);
                }
            }
        })?);
    }
    for round in 0..ROUNDS {
        all_blocked(&sleepers)?;
        pack_all(&sleepers, round)?;
        check_eq!(
            stacks::policy_totals(Policy::Pack).packed_threads_now,
            n as i64,
            "round {round}: nr_packed_threads"
        );
        let (on_wake, left) = (
            pack::WAKE_RESTORES.load(Ordering::Relaxed),
            pack::WAKE_RESTORES_LEFT.load(Ordering::Relaxed),
        );
        // Even rounds: woken from a static stack, pinned on one CPU after another, which
        // restores them on the wake path with its magazine. Odd rounds: woken from a dynamic
        // stack, which leaves the restores to admission on the CPUs that pick them.
        let (policy, cpu) = if round % 2 == 0 {
            (Policy::Static, Some(((round / 2) % u64::from(cpus)) as u32))
        } else {
            (Policy::Fault, None)
        };
        let (gate_, round_open_) = (gate.clone(), round_open.clone());
        let waker = spawn_with("pack-waker", policy, cpu, move || {
            round_open_.store(round + 1, Ordering::Release);
            gate_.wake_all();
        })?;
        sched::join(&waker);
        let (on_wake, left) = (
            pack::WAKE_RESTORES.load(Ordering::Relaxed) - on_wake,
            pack::WAKE_RESTORES_LEFT.load(Ordering::Relaxed) - left,
        );
        if round % 2 == 0 {
            check_eq!(
                (on_wake, left),
                (n, 0),
                "round {round}: restored on the wake path"
            );
        } else {
            check_eq!((on_wake, left), (0, n), "round {round}: left to admission");
        }
    }
    for thread in &sleepers {
        sched::join(thread);
    }
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "sleepers that found a frame of their restored stack changed"
    );
    check!(
        sleepers.iter().all(|t| !t.was_killed()),
        "a packed thread was stopped"
    );
    check_eq!(count(Counter::Fatal), fatal, "fatal faults");
    check_eq!(count(Counter::PackChecksumFail), mismatches);
    check_eq!(count(Counter::Packs) - packs, n * ROUNDS);
    check_eq!(count(Counter::Restores) - restores, n * ROUNDS);
    check_eq!(stacks::policy_totals(Policy::Pack).packed_threads_now, 0);
    check!(
        preempted.load(Ordering::Relaxed) > 0,
        "no sleeper was preempted right after its restore"
    );
    if cpus > 1 {
        check!(
            sleepers.iter().all(|t| t.cpus_ran_on().count_ones() > 1),
            "a packed thread never migrated"
        );
    }
    Ok(())
}

pub(super) fn pack_foreign_read_stops_the_reader() -> TestResult {
    fresh_stacks();
    let guard = pack::set_guard(true);
    let result = with_scanner_off(|| {
        foreign_read(true)?;
        pack::set_guard(false);
        foreign_read(false)
    });
    pack::set_guard(guard);
    result
}

/// Packs a sleeper (in guard mode or not), has another thread read its packed stack, and
/// checks the reader was stopped and named, and the sleeper resumes intact.
fn foreign_read(guard: bool) -> TestResult {
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let sleeper = {
        let (gate, open, broken) = (gate.clone(), open.clone(), broken.clone());
        spawn_with("packed-victim", Policy::Pack, None, move || {
            let top = me().stack.top();
            let ok = recurse(top, 1200, 0, &mut || {
                gate.wait_until(|| open.load(Ordering::Acquire) != 0);
            })
            .is_ok();
            if !ok {
                broken.fetch_add(1, Ordering::Relaxed);
            }
        })?
    };
    all_blocked(core::slice::from_ref(&sleeper))?;
    pack_all(core::slice::from_ref(&sleeper), 0)?;
    let slot = sleeper.stack.slot();
    let Some((lowest_live, _)) = pack::packed_top(slot) else {
        return Err("no pack to read".into());
    };
    // A word among the live bytes, as a pointer lent to another thread would name.
    let address = (lowest_live + 200) & !7;
    let (catches, fatal) = (
        events(Policy::Pack, Counter::PackGuardCatches),
        events(Policy::Pack, Counter::Fatal),
    );
    let reader = spawn_with("pack-culprit", Policy::Fault, None, move || {
        black_box(pack_memory::read_stack_word(address));
    })?;
    sched::join(&reader);
    check!(
        reader.was_killed(),
        "guard {guard}: the reader was not stopped"
    );
    check_eq!(
        trap_handlers::LAST_PACKED_TOUCH.load(Ordering::Acquire),
        address,
        "guard {guard}: the address named"
    );
    check_eq!(
        trap_handlers::LAST_PACKED_TOUCH_THREAD.load(Ordering::Acquire),
        reader.id(),
        "guard {guard}: the culprit named"
    );
    check_eq!(
        events(Policy::Pack, Counter::PackGuardCatches) - catches,
        u64::from(guard),
        "guard {guard}: catches"
    );
    check_eq!(
        events(Policy::Pack, Counter::Fatal) - fatal,
        1,
        "guard {guard}: the touch is a fatal fault"
    );
    check!(
        pack::is_packed(slot),
        "guard {guard}: the touch unpacked it"
    );
    check!(
        !sleeper.was_killed() && sleeper.state() == State::Blocked,
        "guard {guard}: the sleeper was disturbed: {:?}",
        sleeper.state()
    );
    let mismatches = events(Policy::Pack, Counter::PackChecksumFail);
    open.store(1, Ordering::Release);
    gate.wake_all();
    sched::join(&sleeper);
    check!(
        !sleeper.was_killed(),
        "guard {guard}: the sleeper was stopped"
    );
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "guard {guard}: frames changed"
    );
    check_eq!(
        events(Policy::Pack, Counter::PackChecksumFail),
        mismatches,
        "guard {guard}"
    );
    Ok(())
}

pub(super) fn pack_restore_waits_for_memory() -> TestResult {
    fresh_stacks();
    // Free mode whatever `pack_guard=` says: a guard-mode restore maps the frame it kept and
    // needs no page, so it would never wait.
    let guard = pack::set_guard(false);
    let result = with_scanner_off(waits_for_memory);
    pack::set_guard(guard);
    result
}

fn waits_for_memory() -> TestResult {
    const SLEEPERS: usize = 3;
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let mut sleepers = Vec::new();
    for i in 0..SLEEPERS {
        let (gate, open, broken) = (gate.clone(), open.clone(), broken.clone());
        sleepers.push(spawn_with(
            "packed-starved",
            Policy::Pack,
            None,
            move || {
                let top = me().stack.top();
                let ok = recurse(top, 600 + 500 * i as u64, 0, &mut || {
                    gate.wait_until(|| open.load(Ordering::Acquire) != 0);
                })
                .is_ok();
                if !ok {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
            },
        )?);
    }
    all_blocked(&sleepers)?;
    pack_all(&sleepers, 0)?;
    let count = |c| events(Policy::Pack, c);
    let (fatal, waits, restores) = (
        count(Counter::Fatal),
        count(Counter::RestoreWait),
        count(Counter::Restores),
    );
    // No page anywhere for a restore: every magazine empty, every atomic allocation fails.
    drain_all_magazines()?;
    let injection = frames::set_injection(Injection::AllAtomic);
    open.store(1, Ordering::Release);
    gate.wake_all();
    sched::sleep_ms(100);
    let starved = sleepers
        .iter()
        .all(|t| pack::is_packed(t.stack.slot()) && !t.has_exited());
    let waited = count(Counter::RestoreWait) - waits;
    frames::set_injection(injection);
    check!(starved, "a sleeper was restored without memory");
    check!(
        waited >= SLEEPERS as u64,
        "{waited} restore waits for {SLEEPERS} starved sleepers"
    );
    for thread in &sleepers {
        sched::join(thread);
    }
    check_eq!(count(Counter::Fatal), fatal, "fatal faults");
    check_eq!(count(Counter::Restores) - restores, SLEEPERS as u64);
    check_eq!(broken.load(Ordering::Relaxed), 0, "frames changed");
    check!(
        sleepers.iter().all(|t| !t.was_killed()),
        "a starved sleeper was stopped"
    );
    Ok(())
}

pub(super) fn pack_corrupt_restore_stops_the_thread() -> TestResult {
    fresh_stacks();
    with_scanner_off(|| {
        // Restored on the wake path (a static waker), then by admission (a dynamic one).
        corrupt_restore(Policy::Static)?;
        corrupt_restore(Policy::Fault)
    })
}

/// Packs a sleeper, flips a byte of its buffer, wakes it from a thread of `waker_policy`, and
/// checks it was stopped without running on its frames.
fn corrupt_restore(waker_policy: Policy) -> TestResult {
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicU64::new(0));
    let ran_on = Arc::new(AtomicU64::new(0));
    let sleeper = {
        let (gate, open, ran_on) = (gate.clone(), open.clone(), ran_on.clone());
        spawn_with("packed-corrupt", Policy::Pack, None, move || {
            let top = me().stack.top();
            let _ = recurse(top, 900, 0, &mut || {
                gate.wait_until(|| open.load(Ordering::Acquire) != 0);
                ran_on.fetch_add(1, Ordering::Relaxed);
            });
        })?
    };
    all_blocked(core::slice::from_ref(&sleeper))?;
    pack_all(core::slice::from_ref(&sleeper), 0)?;
    check!(pack::corrupt_buffer(sleeper.stack.slot()), "not packed");
    let (stops, mismatches, fatal) = (
        pack::CORRUPT_STOPS.load(Ordering::Relaxed),
        events(Policy::Pack, Counter::PackChecksumFail),
        events(Policy::Pack, Counter::Fatal),
    );
    let (gate_, open_) = (gate.clone(), open.clone());
    let waker = spawn_with("pack-waker", waker_policy, None, move || {
        open_.store(1, Ordering::Release);
        gate_.wake_all();
    })?;
    sched::join(&waker);
    sched::join(&sleeper);
    let by = waker_policy.name();
    check!(
        sleeper.was_killed(),
        "woken by {by}: the corrupt thread was not stopped"
    );
    check_eq!(
        ran_on.load(Ordering::Relaxed),
        0,
        "woken by {by}: the thread ran on its corrupt stack"
    );
    check_eq!(
        pack::CORRUPT_STOPS.load(Ordering::Relaxed) - stops,
        1,
        "woken by {by}"
    );
    check_eq!(
        events(Policy::Pack, Counter::PackChecksumFail) - mismatches,
        1,
        "woken by {by}"
    );
    check_eq!(events(Policy::Pack, Counter::Fatal), fatal, "woken by {by}");
    Ok(())
}

pub(super) fn pack_scanner_packs_long_sleepers() -> TestResult {
    fresh_stacks();
    let (after, guard) = (pack::set_after_ms(40), pack::set_guard(false));
    let result = scanned(false).and_then(|()| {
        pack::set_guard(true);
        scanned(true)
    });
    pack::set_after_ms(after);
    pack::set_guard(guard);
    result
}

/// Waits up to `ms` milliseconds for `done`; returns whether it came.
fn wait_for(ms: u64, done: impl Fn() -> bool) -> bool {
    let until = sched::uptime_ms() + ms;
    while !done() {
        if sched::uptime_ms() >= until {
            return false;
        }
        sched::sleep_ms(5);
    }
    true
}

/// `pack` sleepers, left to the stack-reclaim thread's rounds with a 40 ms threshold (in
/// guard mode or not), are packed, then woken, and resume intact.
fn scanned(guard: bool) -> TestResult {
    const SLEEPERS: u64 = 3;
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicU64::new(0));
    let packs = events(Policy::Pack, Counter::Packs);
    let mut sleepers = Vec::new();
    for i in 0..SLEEPERS {
        let (gate, open, broken) = (gate.clone(), open.clone(), broken.clone());
        sleepers.push(spawn_with(
            "packed-scanned",
            Policy::Pack,
            None,
            move || {
                let top = me().stack.top();
                let ok = recurse(top, 400 + 700 * i, 0, &mut || {
                    gate.wait_until(|| open.load(Ordering::Acquire) != 0);
                })
                .is_ok();
                if !ok {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
            },
        )?);
    }
    all_blocked(&sleepers)?;
    let packed = wait_for(3000, || {
        sleepers.iter().all(|t| pack::is_packed(t.stack.slot()))
    });
    check!(
        packed,
        "guard {guard}: the scanner did not pack every sleeper in 3 s"
    );
    check!(
        events(Policy::Pack, Counter::Packs) - packs >= SLEEPERS,
        "guard {guard}: packs"
    );
    open.store(1, Ordering::Release);
    gate.wake_all();
    let ended = wait_for(3000, || sleepers.iter().all(|t| t.has_exited()));
    check!(ended, "guard {guard}: woken sleepers did not end in 3 s");
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "guard {guard}: frames changed"
    );
    check!(
        sleepers.iter().all(|t| !t.was_killed()),
        "guard {guard}: a sleeper was stopped"
    );
    Ok(())
}

pub(super) fn pack_woken_thread_is_not_packed_again() -> TestResult {
    fresh_stacks();
    with_scanner_off(|| {
        // Restored on the wake path, then packed again while it waits in a run queue.
        woken_then_packed(Some(false))?;
        // The same with a restore that found its bytes corrupt: admission must not switch
        // the thread in (to stop it) while its stack is packed again.
        woken_then_packed(Some(true))?;
        // Woken before any pack: its stack stays asleep for the trims while it waits, and
        // must not be packed either.
        woken_then_packed(None)
    })
}

/// Packs a sleeper pinned to CPU 0 (or not), wakes it from a `static` thread on CPU 0 with interrupts
/// off (so the wake path restores it and nothing picks it yet), then tries to pack it again
/// as a scanner round would (its stack still reads as asleep): a woken thread is runnable,
/// not a sleeper, and must not be packed. `packed`: whether it is packed before the wake
/// (`Some`), and then whether its buffer is flipped first (`Some(true)`).
fn woken_then_packed(packed: Option<bool>) -> TestResult {
    let corrupt = packed == Some(true);
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicU64::new(0));
    let ran_on = Arc::new(AtomicU64::new(0));
    let sleeper = {
        let (gate, open, ran_on) = (gate.clone(), open.clone(), ran_on.clone());
        spawn_with("packed-woken", Policy::Pack, Some(0), move || {
            let top = me().stack.top();
            let _ = recurse(top, 900, 0, &mut || {
                gate.wait_until(|| open.load(Ordering::Acquire) != 0);
                ran_on.fetch_add(1, Ordering::Relaxed);
            });
        })?
    };
    all_blocked(core::slice::from_ref(&sleeper))?;
    if packed.is_some() {
        pack_all(core::slice::from_ref(&sleeper), 0)?;
    }
    if corrupt {
        check!(pack::corrupt_buffer(sleeper.stack.slot()), "not packed");
    }
    let (wake_restores, fatal) = (
        pack::WAKE_RESTORES.load(Ordering::Relaxed),
        events(Policy::Pack, Counter::Fatal),
    );
    // 0: not run, 1: packed again, 2: refused.
    let repacked = Arc::new(AtomicU64::new(0));
    let (gate_, open_, repacked_, slot) = (
        gate.clone(),
        open.clone(),
        repacked.clone(),
        sleeper.stack.slot(),
    );
    let waker = spawn_with("pack-waker", Policy::Static, Some(0), move || {
        let _irq = cpu_ops::IrqGuard::new();
        open_.store(1, Ordering::Release);
        gate_.wake_all();
        let again = pack::pack_one(slot);
        repacked_.store(if again.is_ok() { 1 } else { 2 }, Ordering::Relaxed);
    })?;
    sched::join(&waker);
    sched::join(&sleeper);
    let what = match packed {
        Some(true) => "corrupt",
        Some(false) => "intact",
        None => "not packed",
    };
    check_eq!(
        pack::WAKE_RESTORES.load(Ordering::Relaxed) - wake_restores,
        u64::from(packed == Some(false)),
        "{what}: not restored on the wake path"
    );
    check_eq!(
        repacked.load(Ordering::Relaxed),
        2,
        "{what}: a thread woken on the wake path was packed (again) before it ran (1: packed)"
    );
    if corrupt {
        check!(sleeper.was_killed(), "corrupt: the thread was not stopped");
        check_eq!(ran_on.load(Ordering::Relaxed), 0, "corrupt: it ran");
    } else {
        check_eq!(
            ran_on.load(Ordering::Relaxed),
            1,
            "{what}: it did not resume"
        );
    }
    check_eq!(
        events(Policy::Pack, Counter::Fatal),
        fatal,
        "{what}: fatal faults"
    );
    Ok(())
}

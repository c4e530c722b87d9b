//! The stack-reclaim thread (DESIGN §4): the fallback of `guaranteed` admission, and the
//! trims of `reclaim`.
//!
//! When a CPU cannot admit a thread (its magazine cannot cover the thread's need because
//! atomic allocations fail), the scheduler wakes this thread and runs something else. It has
//! a static stack and may block: it trims the dead pages of every sleeping `reclaim` stack
//! (`stacks::trim`, cause "pressure"), frees the per-CPU stack
//! caches and purges the quarantine (one TLB flush of every CPU, waited for), which gives
//! frames back to the allocator, then sleeps a tick so that the refused CPUs retry their
//! atomic refills, and goes on while admissions keep failing.
//!
//! Without pressure, the boot CPU's timer tick wakes it every
//! [`trim::LONG_SLEEP_ROUND_MS`](stacks::trim::LONG_SLEEP_ROUND_MS) while some `reclaim`
//! stack sleeps with dead pages: it trims those asleep for at least
//! [`trim::LONG_SLEEP_MS`](stacks::trim::LONG_SLEEP_MS), at most
//! [`trim::LONG_SLEEP_PAGES_PER_ROUND`](stacks::trim::LONG_SLEEP_PAGES_PER_ROUND) pages a
//! round, requests the round's TLB flush without waiting for it, and frees the frames of
//! earlier rounds whose flush completed.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dks_core::reclaim::TrimCause;

use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions};
use crate::stacks::{self, Policy, trim};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);
/// A long-sleep round is due (set by the tick, taken by the thread).
static ROUND_DUE: AtomicBool = AtomicBool::new(false);
static WAKE: WaitQueue = WaitQueue::new();
static STARTED: AtomicBool = AtomicBool::new(false);
/// Rounds of reclaim under pressure done.
pub static ROUNDS: AtomicU64 = AtomicU64::new(0);
/// Long-sleep rounds done.
pub static LONG_SLEEP_ROUNDS: AtomicU64 = AtomicU64::new(0);

/// Asks the reclaim thread to work (from the scheduler, when admission refused a thread).
pub fn wake() {
    REQUESTS.fetch_add(1, Ordering::AcqRel);
    WAKE.wake_one();
}

/// Called by the boot CPU's timer tick: wakes the thread for a long-sleep round every
/// `LONG_SLEEP_ROUND_MS` when a stack may be trimmed.
pub fn tick() {
    let every = stacks::trim::LONG_SLEEP_ROUND_MS.div_ceil(sched::uptime_resolution_ms());
    let ticks = sched::uptime_ms() / sched::uptime_resolution_ms().max(1);
    if !STARTED.load(Ordering::Relaxed)
        || !ticks.is_multiple_of(every.max(1))
        || !stacks::trim::candidates()
    {
        return;
    }
    if !ROUND_DUE.swap(true, Ordering::AcqRel) {
        WAKE.wake_one();
    }
}

/// Starts the reclaim thread.
pub fn start() {
    let options = SpawnOptions {
        policy: Policy::Static,
        pinned: None,
        urgent: true,
        system: true,
    };
    sched::spawn("stack-reclaim", options, run).expect("memory for the stack-reclaim thread");
    STARTED.store(true, Ordering::Release);
}

fn run() {
    loop {
        WAKE.wait_until(|| {
            REQUESTS.load(Ordering::Acquire) != SERVED.load(Ordering::Acquire)
                || ROUND_DUE.load(Ordering::Acquire)
        });
        if REQUESTS.load(Ordering::Acquire) != SERVED.load(Ordering::Acquire) {
            SERVED.store(REQUESTS.load(Ordering::Acquire), Ordering::Release);
            if trim::pressure_trims() {
                trim::trim_sleeping(TrimCause::Pressure, 0, u32::MAX);
            }
            // Purges the quarantine too, trimmed frames included.
            stacks::drain_caches();
            ROUNDS.fetch_add(1, Ordering::Relaxed);
            sched::sleep_ms(1);
            continue;
        }
        ROUND_DUE.store(false, Ordering::Release);
        trim::remind_flush();
        let round = trim::trim_sleeping(
            TrimCause::LongSleep,
            trim::long_sleep_ms(),
            trim::LONG_SLEEP_PAGES_PER_ROUND,
        );
        if round.left > 0 {
            trim::note_candidates();
        }
        stacks::poll_quarantine();
        LONG_SLEEP_ROUNDS.fetch_add(1, Ordering::Relaxed);
    }
}

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
//! earlier rounds whose flush completed. A round that stopped at that limit is followed by the
//! next as soon as the other threads of its CPU had their turn (a backlog drains at the pace
//! the packs and trims cost, not one limit a tick). Once a second while rounds run it logs
//! what they did (`stack-reclaim:`: rounds, claims, pages, busy time, longest round).

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

/// Long-sleep rounds since the last report (a `Log` line a second while they work).
#[derive(Default)]
struct RoundStats {
    since_ms: u64,
    rounds: u64,
    capped: u64,
    claims: u64,
    pages: u64,
    tsc: u64,
    longest: u64,
}

impl RoundStats {
    fn add(&mut self, round: &trim::TrimRound, tsc: u64) {
        self.rounds += 1;
        self.claims += u64::from(round.claims);
        self.pages += u64::from(round.pages);
        self.capped += u64::from(round.capped);
        self.tsc += tsc;
        self.longest = self.longest.max(tsc);
        let now = sched::uptime_ms();
        if now >= self.since_ms + 1000 {
            let per_us = crate::hw::apic::tsc_per_us();
            crate::report::log(format_args!(
                "stack-reclaim: {} long-sleep rounds in {} ms ({} at their limit): {} claims, {} pages given back, busy {} us, longest {} us; {} slots hinted, {} packed",
                self.rounds,
                now - self.since_ms,
                self.capped,
                self.claims,
                self.pages,
                self.tsc / per_us,
                self.longest / per_us,
                trim::hinted(),
                stacks::policy_totals(Policy::Pack).packed_threads_now,
            ));
            *self = Self {
                since_ms: now,
                ..Self::default()
            };
        }
    }
}

fn run() {
    let mut stats = RoundStats::default();
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
        let began = crate::hw::cpu_ops::rdtsc();
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
        stats.add(&round, crate::hw::cpu_ops::rdtsc().saturating_sub(began));
        if round.capped {
            // A backlog: the next round starts once the other threads of this CPU had their
            // turn, not at the next tick.
            sched::yield_now();
            ROUND_DUE.store(true, Ordering::Release);
        }
    }
}

//! The soak (`bench=soak:N`, and `soak_small` in the test suite): many thread lifetimes in
//! one boot, under every policy the kernel implements, then memory back to its baseline.
//!
//! A driver keeps [`CONCURRENCY`] threads alive, joining the oldest before it starts the next.
//! Lifetime `i` takes policy `i mod 3` and, drawn from `i`, touches its stack at a depth of up
//! to 12 KiB (dynamic stacks fault pages in), and now and then blocks on a shared gate until
//! the driver opens it, yields, sleeps a tick, or is stopped by a guard hit. After a warm-up
//! round (which sizes the queues and caches that stay), the baseline is taken; after the run
//! and the same settling (reaper drained, stack caches and quarantine purged) these must be
//! back: free frames (plus magazines), stack slots in use, populated pages and live threads
//! per policy, and the heap in use within [`HEAP_SLACK_BYTES`]. A `Log` record gives the
//! figures.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{TestResult, check, check_eq};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes;
use crate::mm::frames;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy};
use crate::{report, work};

/// Threads alive at once.
pub const CONCURRENCY: usize = 64;
/// Lifetimes of the warm-up round.
const WARM_UP: u64 = 4 * CONCURRENCY as u64;
/// How far the heap in use may end above its baseline (queues keep the capacity their longest
/// backlog needed).
pub const HEAP_SLACK_BYTES: usize = 64 * 1024;
/// The deepest a lifetime touches its stack.
const MAX_DEPTH_BYTES: u64 = 12 * 1024;

/// What a lifetime does besides touching its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Plain,
    /// Waits until the driver opens the gate.
    Block,
    Yield,
    /// Sleeps a millisecond (a tick or two).
    Sleep,
    /// Stopped by a guard hit.
    Stopped,
}

/// A lifetime's behaviour, drawn from its number.
fn draw(i: u64) -> (Policy, u64, Act) {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    let policy = stacks::IMPLEMENTED[(i % stacks::IMPLEMENTED.len() as u64) as usize];
    let depth = 512 + x % (MAX_DEPTH_BYTES - 512);
    let act = match (x >> 20) % 1024 {
        0 => Act::Stopped,
        1..=4 => Act::Sleep,
        5..=68 => Act::Block,
        69..=100 => Act::Yield,
        _ => Act::Plain,
    };
    (policy, depth, act)
}

/// The gate blocking lifetimes wait at.
#[derive(Debug, Default)]
struct Gate {
    opened: AtomicU64,
    waiters: WaitQueue,
}

impl Gate {
    fn open(&self) {
        self.opened.fetch_add(1, Ordering::AcqRel);
        self.waiters.wake_all();
    }
}

/// What one lifetime runs.
fn lifetime(gate: &Gate, depth: u64, act: Act) {
    let (top, bottom) = {
        let me = sched::current().expect("a soak thread");
        let bottom = me.stack.bottom();
        (me.stack.top(), bottom)
    };
    let target = top - depth.min(top - bottom - PAGE_BYTES / 4);
    // touch_stack wants the byte 512 bytes below its own frame, which is below this one.
    if target + 1024 < probes::stack_pointer() {
        probes::touch_stack(bottom, target);
    }
    match act {
        Act::Plain => {}
        Act::Block => {
            let seen = gate.opened.load(Ordering::Acquire);
            gate.waiters
                .wait_until(|| gate.opened.load(Ordering::Acquire) != seen);
        }
        Act::Yield => {
            for _ in 0..3 {
                sched::yield_now();
            }
        }
        Act::Sleep => sched::sleep_ms(1),
        Act::Stopped => probes::touch_guard(bottom),
    }
}

/// Counts of one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    per_policy: [u64; stacks::IMPLEMENTED.len()],
    blocked: u64,
    slept: u64,
    stopped: u64,
}

/// Runs lifetimes `first..first + count`, `CONCURRENCY` at a time.
fn round(gate: &Arc<Gate>, first: u64, count: u64) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut live: VecDeque<(Arc<Thread>, Act)> = VecDeque::with_capacity(CONCURRENCY);
    let finish = |(thread, act): (Arc<Thread>, Act)| -> TestResult {
        // A blocking lifetime waits for the gate to open after it looked: open it until the
        // lifetime is over.
        if act == Act::Block {
            while !thread.has_exited() {
                gate.open();
                sched::yield_now();
            }
        }
        sched::join(&thread);
        check_eq!(
            thread.was_killed(),
            act == Act::Stopped,
            "lifetime {} ({act:?}) stopped",
            thread.name()
        );
        Ok(())
    };
    for i in first..first + count {
        if live.len() == CONCURRENCY {
            let oldest = live.pop_front().expect("the window is full");
            finish(oldest)?;
        }
        let (policy, depth, act) = draw(i);
        let options = SpawnOptions {
            policy,
            ..SpawnOptions::default()
        };
        let body = {
            let gate = gate.clone();
            move || lifetime(&gate, depth, act)
        };
        let thread = sched::spawn("soak", options, body)
            .map_err(|e| alloc::format!("lifetime {i}: no thread: {e:?}"))?;
        let index = stacks::IMPLEMENTED
            .iter()
            .position(|&p| p == policy)
            .expect("draw picks an implemented policy");
        counts.per_policy[index] += 1;
        match act {
            Act::Block => counts.blocked += 1,
            Act::Sleep => counts.slept += 1,
            Act::Stopped => counts.stopped += 1,
            Act::Plain | Act::Yield => {}
        }
        live.push_back((thread, act));
    }
    while let Some(oldest) = live.pop_front() {
        finish(oldest)?;
    }
    Ok(counts)
}

/// The memory the soak must give back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Footprint {
    /// Free frames plus frames in the magazines.
    frames: u64,
    slots_in_use: u32,
    /// Populated pages and live threads, per policy.
    pages: [i64; stacks::IMPLEMENTED.len()],
    threads: [i64; stacks::IMPLEMENTED.len()],
    heap_bytes: usize,
}

fn settle_and_measure() -> Footprint {
    work::drain();
    stacks::drain_caches();
    let stats = stacks::stats();
    let per_policy = |f: fn(Policy) -> i64| stacks::IMPLEMENTED.map(f);
    Footprint {
        frames: frames::stats().free + stats.magazine_frames,
        slots_in_use: stats.slots_in_use,
        pages: per_policy(|p| stacks::policy_totals(p).pages_now),
        threads: per_policy(|p| stacks::policy_totals(p).threads_live() as i64),
        heap_bytes: crate::hw::heap::usage().0,
    }
}

/// Runs `lifetimes` thread lifetimes after a warm-up and checks that memory came back.
pub fn run(lifetimes: u64) -> TestResult {
    let gate = Arc::new(Gate::default());
    let stale_before = sched::STALE_ENTRIES.load(Ordering::Relaxed);
    let start_ms = sched::uptime_ms();
    round(&gate, 0, WARM_UP)?;
    let before = settle_and_measure();
    let counts = round(&gate, WARM_UP, lifetimes)?;
    let after = settle_and_measure();
    let elapsed_ms = sched::uptime_ms() - start_ms;
    let per_policy: alloc::vec::Vec<alloc::string::String> = stacks::IMPLEMENTED
        .iter()
        .zip(counts.per_policy)
        .map(|(policy, n)| alloc::format!("{} {n}", policy.name()))
        .collect();
    report::log(format_args!(
        "soak: {lifetimes} lifetimes ({}; {} blocked, {} slept, \
         {} stopped) in {elapsed_ms} ms of guest time; frames free+magazines {} -> {}, \
         slots in use {} -> {}, heap bytes {} -> {}",
        per_policy.join(", "),
        counts.blocked,
        counts.slept,
        counts.stopped,
        before.frames,
        after.frames,
        before.slots_in_use,
        after.slots_in_use,
        before.heap_bytes,
        after.heap_bytes,
    ));
    check_eq!(
        sched::STALE_ENTRIES.load(Ordering::Relaxed),
        stale_before,
        "stale run-queue entries the schedulers met"
    );
    check_eq!(after.frames, before.frames, "free frames (plus magazines)");
    check_eq!(
        after.slots_in_use,
        before.slots_in_use,
        "stack slots in use"
    );
    check_eq!(
        after.pages,
        before.pages,
        "populated stack pages per policy"
    );
    check_eq!(after.threads, before.threads, "live threads per policy");
    let growth = after.heap_bytes.saturating_sub(before.heap_bytes);
    check!(
        growth <= HEAP_SLACK_BYTES,
        "the heap grew by {growth} bytes over {lifetimes} lifetimes"
    );
    check!(
        lifetimes < 1024 || counts.stopped > 0,
        "no lifetime was stopped: the soak did not exercise stops"
    );
    Ok(())
}

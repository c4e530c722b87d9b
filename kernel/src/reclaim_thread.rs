//! The stack-reclaim thread (DESIGN §4): the fallback of `guaranteed` admission.
//!
//! When a CPU cannot admit a thread (its magazine cannot cover the thread's need because
//! atomic allocations fail), the scheduler wakes this thread and runs something else. It has
//! a static stack and may block: it frees the per-CPU stack caches and purges the quarantine
//! of released stacks (one TLB shootdown), which gives frames back to the allocator, then
//! sleeps a tick so that the refused CPUs retry their atomic refills, and goes on while
//! admissions keep failing.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions};
use crate::stacks::{self, Policy};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);
static WAKE: WaitQueue = WaitQueue::new();
/// Rounds of reclaim done, and cached stacks freed by them.
pub static ROUNDS: AtomicU64 = AtomicU64::new(0);

/// Asks the reclaim thread to work (from the scheduler, when admission refused a thread).
pub fn wake() {
    REQUESTS.fetch_add(1, Ordering::AcqRel);
    WAKE.wake_one();
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
}

fn run() {
    loop {
        WAKE.wait_until(|| REQUESTS.load(Ordering::Acquire) != SERVED.load(Ordering::Acquire));
        SERVED.store(REQUESTS.load(Ordering::Acquire), Ordering::Release);
        stacks::drain_caches();
        ROUNDS.fetch_add(1, Ordering::Relaxed);
        sched::sleep_ms(1);
    }
}

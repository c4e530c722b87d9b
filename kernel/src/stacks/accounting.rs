//! Per-policy accounting, next to dks-core's per-CPU counters (DESIGN §7).
//!
//! dks-core counts events per CPU for the whole kernel; `dks compare` needs them per policy,
//! because several policies run side by side in one boot. Every place in this module tree
//! that changes a stack's populated pages or sees one of its events adds it here too, under
//! the stack's policy. All fields are relaxed atomics: written by whoever sees the event
//! (including the page-fault handler), read by reports.

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dks_core::Policy;

/// Index of a policy in per-policy tables (the order of `Policy::ALL`).
pub fn index(policy: Policy) -> usize {
    Policy::ALL
        .iter()
        .position(|p| *p == policy)
        .expect("Policy::ALL lists every policy")
}

/// The most pages a stack can have (64 KiB stacks), plus one for the histogram's index 0.
pub const PAGE_BUCKETS: usize = 17;

/// Counts of one policy.
#[derive(Debug)]
pub struct PolicyCounters {
    /// Threads created with it.
    pub threads_created: AtomicU64,
    /// Threads alive (created, not yet released).
    pub threads_live: AtomicI64,
    /// Populated pages of its live stacks.
    pub pages_now: AtomicI64,
    /// The most `pages_now` ever was.
    pub pages_peak: AtomicI64,
    /// Stack faults served.
    pub faults: AtomicU64,
    /// Stack faults that could not be served.
    pub fatal: AtomicU64,
    /// Guard-page hits.
    pub guard_hits: AtomicU64,
    /// Magazine refills made for its threads.
    pub refills: AtomicU64,
    /// Refills that fell short.
    pub refill_failures: AtomicU64,
    /// Switches to its threads refused by admission.
    pub admit_waits: AtomicU64,
    /// Time its threads waited for admission, TSC ticks.
    pub admit_wait_ticks_total: AtomicU64,
    /// Longest wait for admission, TSC ticks.
    pub admit_wait_ticks_max: AtomicU64,
    /// Threads stopped by a fatal fault or a guard hit.
    pub killed: AtomicU64,
    /// Fatal stack faults with interrupts off inside a workload's interrupts-off section:
    /// each would have stopped the kernel (the thread may hold a spin lock). The testbed
    /// counts it, gives the section's lock up and stops the thread instead, so that one boot
    /// can measure every policy (see `workload` and `trap_handlers::stack_failure`).
    pub kernel_stops: AtomicU64,
    /// Pages given back before exit.
    pub reclaimed: AtomicU64,
    /// Sum of the high-water marks of released stacks, bytes.
    pub high_water_total: AtomicU64,
    /// The deepest high-water mark of a released stack, bytes.
    pub high_water_max: AtomicU64,
    /// Stacks released (whose high-water marks are summed).
    pub released: AtomicU64,
    /// Threads by the most pages they had populated at once (index = pages).
    pub peak_pages: [AtomicU64; PAGE_BUCKETS],
}

impl PolicyCounters {
    const fn new() -> Self {
        PolicyCounters {
            threads_created: AtomicU64::new(0),
            threads_live: AtomicI64::new(0),
            pages_now: AtomicI64::new(0),
            pages_peak: AtomicI64::new(0),
            faults: AtomicU64::new(0),
            fatal: AtomicU64::new(0),
            guard_hits: AtomicU64::new(0),
            refills: AtomicU64::new(0),
            refill_failures: AtomicU64::new(0),
            admit_waits: AtomicU64::new(0),
            admit_wait_ticks_total: AtomicU64::new(0),
            admit_wait_ticks_max: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            kernel_stops: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            high_water_total: AtomicU64::new(0),
            high_water_max: AtomicU64::new(0),
            released: AtomicU64::new(0),
            peak_pages: [const { AtomicU64::new(0) }; PAGE_BUCKETS],
        }
    }

    /// Adds `delta` populated pages and keeps the peak.
    pub fn add_pages(&self, delta: i64) {
        let now = self.pages_now.fetch_add(delta, Ordering::Relaxed) + delta;
        self.pages_peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Notes a finished admission wait of `ticks`.
    pub fn add_admit_wait(&self, ticks: u64) {
        self.admit_wait_ticks_total
            .fetch_add(ticks, Ordering::Relaxed);
        self.admit_wait_ticks_max
            .fetch_max(ticks, Ordering::Relaxed);
    }
}

/// The account of the kernel's own threads (workers, reclaim, main): kept apart from the
/// policies, so that a policy's figures are those of the workload's threads alone.
pub const SYSTEM: usize = 5;

static ACCOUNTS: [PolicyCounters; 6] = [const { PolicyCounters::new() }; 6];
const _: () = assert!(Policy::ALL.len() == SYSTEM);

/// The counters of `policy` (its workload threads).
pub fn of(policy: Policy) -> &'static PolicyCounters {
    &ACCOUNTS[index(policy)]
}

/// The counters of account `account` (a policy's index, or [`SYSTEM`]).
pub fn account(account: usize) -> &'static PolicyCounters {
    &ACCOUNTS[account]
}

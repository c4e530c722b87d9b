//! Accounts: who a stack's memory and events are counted for.
//!
//! Several policies run side by side in one boot, and a comparison needs each policy's
//! figures alone, without the kernel's own threads (its workers, its stack-reclaim thread,
//! the thread that runs the tests). So every stack belongs to one [`Account`]: its policy's,
//! or [`Account::System`]. Events are counted per CPU and account ([`CpuCounters`]); what has
//! a level and a peak, or is noted once per thread, is kept here, per account, in the
//! [`Ledger`]: populated pages now and at their peak, threads created and released, the
//! distribution of the pages threads peaked at, their high-water marks, how long they waited
//! for admission, and how many were stopped.
//!
//! Who writes what: the mechanism functions of this crate (creation, release, faults,
//! switches, reclaim) change populated pages and note creations and releases; the kernel
//! notes what only it sees (a stopped thread, a kernel stop, how long admission made a thread
//! wait), through the same ledger. All fields are relaxed atomics, read by reports.
//!
//! [`CpuCounters`]: crate::CpuCounters

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::counters::Counter;
use crate::layout::{MAX_STACK_PAGES_LIMIT, PAGE_SIZE_IN_BYTES};
use crate::policy::Policy;

const KIB_PER_PAGE: i64 = (PAGE_SIZE_IN_BYTES / 1024) as i64;
const _: () = assert!(PAGE_SIZE_IN_BYTES.is_multiple_of(1024));

/// Who a stack is counted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Account {
    /// A thread of a workload, counted under its policy.
    Policy(Policy),
    /// One of the kernel's own threads, kept apart from every policy.
    System,
}

impl Account {
    /// The number of accounts: one per policy, and [`Account::System`].
    pub const COUNT: usize = Policy::COUNT + 1;

    /// Every account: the policies in report order, then [`Account::System`].
    pub const ALL: [Self; Self::COUNT] = {
        let mut all = [Self::System; Self::COUNT];
        let mut i = 0;
        while i < Policy::COUNT {
            all[i] = Self::Policy(Policy::ALL[i]);
            i += 1;
        }
        all
    };

    /// Returns the account's position in [`Self::ALL`], its index in per-account tables.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::Policy(policy) => policy.index(),
            Self::System => Policy::COUNT,
        }
    }
}

/// The buckets of the "pages held at the peak" distribution: 0 to the most pages a stack
/// can have.
pub const PEAK_PAGE_BUCKETS: usize = MAX_STACK_PAGES_LIMIT + 1;

/// What one account keeps besides its event counts (see the module docs).
#[derive(Debug)]
struct AccountStats {
    pages_now: AtomicI64,
    pages_peak: AtomicI64,
    packed_threads_now: AtomicI64,
    packed_bytes_now: AtomicI64,
    packed_bytes_peak: AtomicI64,
    threads_created: AtomicU64,
    threads_released: AtomicU64,
    threads_stopped: AtomicU64,
    kernel_stops: AtomicU64,
    high_water_total_bytes: AtomicU64,
    high_water_max_bytes: AtomicU64,
    admit_wait_ticks_total: AtomicU64,
    admit_wait_ticks_max: AtomicU64,
    peak_pages: [AtomicU64; PEAK_PAGE_BUCKETS],
}

impl AccountStats {
    const fn new() -> Self {
        Self {
            pages_now: AtomicI64::new(0),
            pages_peak: AtomicI64::new(0),
            packed_threads_now: AtomicI64::new(0),
            packed_bytes_now: AtomicI64::new(0),
            packed_bytes_peak: AtomicI64::new(0),
            threads_created: AtomicU64::new(0),
            threads_released: AtomicU64::new(0),
            threads_stopped: AtomicU64::new(0),
            kernel_stops: AtomicU64::new(0),
            high_water_total_bytes: AtomicU64::new(0),
            high_water_max_bytes: AtomicU64::new(0),
            admit_wait_ticks_total: AtomicU64::new(0),
            admit_wait_ticks_max: AtomicU64::new(0),
            peak_pages: [const { AtomicU64::new(0) }; PEAK_PAGE_BUCKETS],
        }
    }
}

/// What every account keeps besides its event counts, shared by all CPUs.
#[derive(Debug)]
pub struct Ledger {
    accounts: [AccountStats; Account::COUNT],
}

impl Ledger {
    /// Returns an empty ledger.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            accounts: [const { AccountStats::new() }; Account::COUNT],
        }
    }

    fn of(&self, account: Account) -> &AccountStats {
        &self.accounts[account.index()]
    }

    /// Adds `delta` populated pages of live stacks to `account` (negative when given back)
    /// and keeps its peak.
    pub fn add_pages(&self, account: Account, delta: i64) {
        let stats = self.of(account);
        let now = stats.pages_now.fetch_add(delta, Ordering::Relaxed) + delta;
        stats.pages_peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Adds `threads` packed stacks holding `bytes` of buffers to `account` (negative when
    /// restored or released) and keeps the peak of the bytes.
    pub(crate) fn add_packed(&self, account: Account, threads: i64, bytes: i64) {
        let stats = self.of(account);
        stats
            .packed_threads_now
            .fetch_add(threads, Ordering::Relaxed);
        let now = stats.packed_bytes_now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        stats.packed_bytes_peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Notes a thread of `account` created, with the `pages` its stack has populated.
    pub(crate) fn note_created(&self, account: Account, pages: i64) {
        let stats = self.of(account);
        stats.threads_created.fetch_add(1, Ordering::Relaxed);
        let now = stats.pages_now.fetch_add(pages, Ordering::Relaxed) + pages;
        stats.pages_peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Notes a thread of `account` released, with the most pages it ever had populated and
    /// its high-water mark.
    pub(crate) fn note_released(&self, account: Account, peak_pages: u8, high_water_bytes: u64) {
        let stats = self.of(account);
        stats.threads_released.fetch_add(1, Ordering::Relaxed);
        let bucket = usize::from(peak_pages).min(PEAK_PAGE_BUCKETS - 1);
        stats.peak_pages[bucket].fetch_add(1, Ordering::Relaxed);
        stats
            .high_water_total_bytes
            .fetch_add(high_water_bytes, Ordering::Relaxed);
        stats
            .high_water_max_bytes
            .fetch_max(high_water_bytes, Ordering::Relaxed);
    }

    /// Notes a thread of `account` stopped by a fatal stack fault or a guard hit.
    pub fn note_stopped(&self, account: Account) {
        self.of(account)
            .threads_stopped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a fatal stack fault of `account` with interrupts off that would have stopped a
    /// real kernel (the thread may hold a spin lock); the testbed stops only the thread.
    pub fn note_kernel_stop(&self, account: Account) {
        self.of(account)
            .kernel_stops
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Notes that a thread of `account` waited `ticks` (of the kernel's clock) between its
    /// first refused admission and the one that let it run.
    pub fn note_admit_wait(&self, account: Account, ticks: u64) {
        let stats = self.of(account);
        stats
            .admit_wait_ticks_total
            .fetch_add(ticks, Ordering::Relaxed);
        stats
            .admit_wait_ticks_max
            .fetch_max(ticks, Ordering::Relaxed);
    }

    /// Writes the figures of `account` into `snapshot`, leaving its events as they are (the
    /// caller sums them over CPUs).
    pub(crate) fn snapshot_into(&self, account: Account, snapshot: &mut AccountSnapshot) {
        let stats = self.of(account);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        snapshot.pages_now = stats.pages_now.load(Ordering::Relaxed);
        snapshot.pages_peak = stats.pages_peak.load(Ordering::Relaxed);
        snapshot.packed_threads_now = stats.packed_threads_now.load(Ordering::Relaxed);
        snapshot.packed_bytes_now = stats.packed_bytes_now.load(Ordering::Relaxed);
        snapshot.packed_bytes_peak = stats.packed_bytes_peak.load(Ordering::Relaxed);
        snapshot.threads_created = load(&stats.threads_created);
        snapshot.threads_released = load(&stats.threads_released);
        snapshot.threads_stopped = load(&stats.threads_stopped);
        snapshot.kernel_stops = load(&stats.kernel_stops);
        snapshot.high_water_total_bytes = load(&stats.high_water_total_bytes);
        snapshot.high_water_max_bytes = load(&stats.high_water_max_bytes);
        snapshot.admit_wait_ticks_total = load(&stats.admit_wait_ticks_total);
        snapshot.admit_wait_ticks_max = load(&stats.admit_wait_ticks_max);
        for (into, from) in snapshot.peak_pages.iter_mut().zip(&stats.peak_pages) {
            *into = load(from);
        }
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// The figures of one account at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountSnapshot {
    events: [u64; Counter::COUNT],
    /// Populated pages of its live stacks now.
    pub pages_now: i64,
    /// The most `pages_now` ever was.
    pub pages_peak: i64,
    /// Its stacks packed now (`pack`).
    pub packed_threads_now: i64,
    /// Bytes of the buffers of its packed stacks now.
    pub packed_bytes_now: i64,
    /// The most `packed_bytes_now` ever was.
    pub packed_bytes_peak: i64,
    /// Threads created.
    pub threads_created: u64,
    /// Threads whose stacks were released (after they exited).
    pub threads_released: u64,
    /// Threads stopped by a fatal stack fault or a guard hit.
    pub threads_stopped: u64,
    /// Fatal stack faults with interrupts off that would have stopped a real kernel.
    pub kernel_stops: u64,
    /// Sum of the high-water marks of released stacks, bytes.
    pub high_water_total_bytes: u64,
    /// The deepest high-water mark of a released stack, bytes.
    pub high_water_max_bytes: u64,
    /// Time its threads waited for admission, in the kernel's clock ticks.
    pub admit_wait_ticks_total: u64,
    /// The longest single wait for admission, in the kernel's clock ticks.
    pub admit_wait_ticks_max: u64,
    /// Released threads by the most pages they had populated at once (index = pages).
    pub peak_pages: [u64; PEAK_PAGE_BUCKETS],
}

impl AccountSnapshot {
    /// Figures that are all zero.
    pub(crate) const ZERO: Self = Self {
        events: [0; Counter::COUNT],
        pages_now: 0,
        pages_peak: 0,
        packed_threads_now: 0,
        packed_bytes_now: 0,
        packed_bytes_peak: 0,
        threads_created: 0,
        threads_released: 0,
        threads_stopped: 0,
        kernel_stops: 0,
        high_water_total_bytes: 0,
        high_water_max_bytes: 0,
        admit_wait_ticks_total: 0,
        admit_wait_ticks_max: 0,
        peak_pages: [0; PEAK_PAGE_BUCKETS],
    };

    /// Adds `n` to the count of `event`.
    pub(crate) fn add_events(&mut self, event: Counter, n: u64) {
        self.events[event.index()] += n;
    }
    /// Returns the value of `counter` for this account (`nr_kernel_stack_kb` from its
    /// populated pages and pack buffers, [`Self::stack_kib_now`]; event counts saturate at
    /// `i64::MAX`).
    #[must_use]
    pub fn get(&self, counter: Counter) -> i64 {
        match counter {
            Counter::NrKernelStackKb => self.stack_kib_now(),
            Counter::NrPackedThreads => self.packed_threads_now,
            Counter::NrPackedBytes => self.packed_bytes_now,
            event => i64::try_from(self.events[event.index()]).unwrap_or(i64::MAX),
        }
    }

    /// Returns the stack memory of its live stacks now, in KiB: populated pages, and the
    /// bytes of pack buffers rounded up to whole KiB.
    #[must_use]
    pub const fn stack_kib_now(&self) -> i64 {
        self.pages_now
            .saturating_mul(KIB_PER_PAGE)
            .saturating_add(self.packed_bytes_now.saturating_add(1023) / 1024)
    }

    /// Returns the count of `event` as an unsigned number.
    ///
    /// # Panics
    ///
    /// If `event` is not an event (`nr_kernel_stack_kb`).
    #[must_use]
    pub fn events(&self, event: Counter) -> u64 {
        assert!(event.is_event(), "{} is not an event", event.name());
        self.events[event.index()]
    }

    /// Threads alive (created, not yet released).
    #[must_use]
    pub const fn threads_live(&self) -> u64 {
        self.threads_created.saturating_sub(self.threads_released)
    }
}

#[cfg(test)]
mod tests;

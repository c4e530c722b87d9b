//! The counters of DESIGN §7, per CPU and summed on read.
//!
//! Each CPU owns a [`CpuCounters`]. Code running on that CPU writes it (the
//! fault path, its context switches, the work it does for exits), with relaxed
//! atomic adds: a load and a store would lose an update when a page fault
//! interrupts the CPU between them and its handler counts too. Any CPU may
//! read it. A
//! reader sums all CPUs with [`sum`]. The populated-stack counter of one CPU
//! may go negative (a stack populated on one CPU and freed on another); only
//! the sum means something.
//!
//! What each counter counts:
//!
//! | name                 | counts                                                        |
//! |----------------------|---------------------------------------------------------------|
//! | `nr_kernel_stack_kb` | populated memory of live stacks (not cached, not magazines)   |
//! | `dks_faults`         | stack faults served                                           |
//! | `dks_refills`        | magazine refills that had to allocate                         |
//! | `dks_refill_fail`    | refills that stopped short because an allocation failed       |
//! | `dks_fatal`          | stack faults that could not be served                         |
//! | `dks_reclaimed`      | stack pages given back before their thread exited            |
//! | `dks_admit_wait`     | switches refused because the magazine did not cover the need  |
//! | `dks_guard_hits`     | faults on a guard page (stack overflows)                      |

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::layout::PAGE_SIZE_IN_BYTES;

const KIB_PER_PAGE: i64 = (PAGE_SIZE_IN_BYTES / 1024) as i64;
const _: () = assert!(PAGE_SIZE_IN_BYTES.is_multiple_of(1024));

/// One of the counters, by its Linux-style name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `nr_kernel_stack_kb`: populated memory of live stacks, in KiB.
    NrKernelStackKb,
    /// `dks_faults`: stack faults served.
    Faults,
    /// `dks_refills`: magazine refills that had to allocate.
    Refills,
    /// `dks_refill_fail`: refills that fell short.
    RefillFail,
    /// `dks_fatal`: stack faults that could not be served.
    Fatal,
    /// `dks_reclaimed`: stack pages given back before their thread exited.
    Reclaimed,
    /// `dks_admit_wait`: switches refused by admission.
    AdmitWait,
    /// `dks_guard_hits`: stack overflows into a guard page.
    GuardHits,
}

impl Counter {
    /// Every counter, in the order records print them.
    pub const ALL: [Self; 8] = [
        Self::NrKernelStackKb,
        Self::Faults,
        Self::Refills,
        Self::RefillFail,
        Self::Fatal,
        Self::Reclaimed,
        Self::AdmitWait,
        Self::GuardHits,
    ];

    /// Returns the counter's name as records print it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NrKernelStackKb => "nr_kernel_stack_kb",
            Self::Faults => "dks_faults",
            Self::Refills => "dks_refills",
            Self::RefillFail => "dks_refill_fail",
            Self::Fatal => "dks_fatal",
            Self::Reclaimed => "dks_reclaimed",
            Self::AdmitWait => "dks_admit_wait",
            Self::GuardHits => "dks_guard_hits",
        }
    }
}

/// The counters of one CPU: written with atomic adds (by that CPU, and by its page-fault
/// handler, which may interrupt it mid-update), readable by all.
#[derive(Debug, Default)]
pub struct CpuCounters {
    stack_pages: AtomicI64,
    events: [AtomicU64; 7],
}

/// An event counter (every counter but `nr_kernel_stack_kb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Faults,
    Refills,
    RefillFail,
    Fatal,
    Reclaimed,
    AdmitWait,
    GuardHits,
}

impl CpuCounters {
    /// Returns counters that are all zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            stack_pages: AtomicI64::new(0),
            events: [const { AtomicU64::new(0) }; 7],
        }
    }

    /// Adds `delta` populated pages of live stacks (negative when freed).
    ///
    /// An atomic add, not a load and a store: on a real CPU a page fault can interrupt the
    /// owning CPU between the two (a stack that grows while its thread creates another
    /// thread), and the fault handler counts into the same counters.
    pub(crate) fn add_stack_pages(&self, delta: i64) {
        self.stack_pages.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts `n` more `event`s (an atomic add, as in `add_stack_pages`).
    pub(crate) fn count(&self, event: Event, n: u64) {
        self.events[event as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Returns the counters of this CPU alone.
    #[must_use]
    pub fn snapshot(&self) -> CounterSnapshot {
        sum([self])
    }
}

/// The counters at one moment, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Populated memory of live stacks, in KiB.
    pub nr_kernel_stack_kb: i64,
    /// Stack faults served.
    pub dks_faults: u64,
    /// Magazine refills that had to allocate.
    pub dks_refills: u64,
    /// Refills that stopped short because an allocation failed.
    pub dks_refill_fail: u64,
    /// Stack faults that could not be served.
    pub dks_fatal: u64,
    /// Stack pages given back before their thread exited.
    pub dks_reclaimed: u64,
    /// Switches refused because the magazine did not cover the need.
    pub dks_admit_wait: u64,
    /// Faults on a guard page.
    pub dks_guard_hits: u64,
}

impl CounterSnapshot {
    /// Returns the value of `counter` (event counts saturate at `i64::MAX`).
    #[must_use]
    pub fn get(&self, counter: Counter) -> i64 {
        let event = match counter {
            Counter::NrKernelStackKb => return self.nr_kernel_stack_kb,
            Counter::Faults => self.dks_faults,
            Counter::Refills => self.dks_refills,
            Counter::RefillFail => self.dks_refill_fail,
            Counter::Fatal => self.dks_fatal,
            Counter::Reclaimed => self.dks_reclaimed,
            Counter::AdmitWait => self.dks_admit_wait,
            Counter::GuardHits => self.dks_guard_hits,
        };
        i64::try_from(event).unwrap_or(i64::MAX)
    }
}

/// Returns the counters of `cpus`, summed.
pub fn sum<'a>(cpus: impl IntoIterator<Item = &'a CpuCounters>) -> CounterSnapshot {
    let mut total = CounterSnapshot::default();
    for cpu in cpus {
        let event = |event: Event| cpu.events[event as usize].load(Ordering::Relaxed);
        total.nr_kernel_stack_kb = total
            .nr_kernel_stack_kb
            .wrapping_add(cpu.stack_pages.load(Ordering::Relaxed) * KIB_PER_PAGE);
        total.dks_faults += event(Event::Faults);
        total.dks_refills += event(Event::Refills);
        total.dks_refill_fail += event(Event::RefillFail);
        total.dks_fatal += event(Event::Fatal);
        total.dks_reclaimed += event(Event::Reclaimed);
        total.dks_admit_wait += event(Event::AdmitWait);
        total.dks_guard_hits += event(Event::GuardHits);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_counters_sum_on_read() {
        let cpus = [CpuCounters::new(), CpuCounters::new()];
        cpus[0].add_stack_pages(3);
        cpus[1].add_stack_pages(-1);
        cpus[0].count(Event::Faults, 2);
        cpus[1].count(Event::Faults, 1);
        for (n, event) in [
            Event::Refills,
            Event::RefillFail,
            Event::Fatal,
            Event::Reclaimed,
            Event::AdmitWait,
            Event::GuardHits,
        ]
        .into_iter()
        .enumerate()
        {
            cpus[1].count(event, n as u64 + 1);
        }
        let total = sum(&cpus);
        assert_eq!(
            total,
            CounterSnapshot {
                nr_kernel_stack_kb: 8,
                dks_faults: 3,
                dks_refills: 1,
                dks_refill_fail: 2,
                dks_fatal: 3,
                dks_reclaimed: 4,
                dks_admit_wait: 5,
                dks_guard_hits: 6,
            }
        );
        assert_eq!(cpus[1].snapshot().nr_kernel_stack_kb, -4);
        let values: Vec<i64> = Counter::ALL.iter().map(|&c| total.get(c)).collect();
        assert_eq!(values, [8, 3, 1, 2, 3, 4, 5, 6]);
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names[0], "nr_kernel_stack_kb");
        assert_eq!(names[7], "dks_guard_hits");
    }
}

//! The counters of DESIGN §7: events counted per CPU and account, summed on read.
//!
//! Every event is counted once, where it happens, by the mechanism function that sees it
//! ([`fault::handle`](crate::fault::handle) counts a served fault, [`switch::refill`]
//! (crate::switch::refill) a refill, ...), into the [`CpuCounters`] of the CPU it happens on,
//! under the [`Account`] of the stack it concerns. That one atomic add is the only record of
//! the event: the kernel-wide `vmstat` figures are the sum over CPUs and accounts, a policy's
//! figures the sum over CPUs of its account. Populated pages, which go up and down and have
//! a peak, are kept per account in the [`Ledger`] instead (see [`account`](crate::account)).
//!
//! Adds are atomic adds, not a load and a store: a page fault can interrupt its CPU between
//! the two (a stack that grows while its thread creates another thread), and the fault
//! handler counts into the same counters. Any CPU may read them.
//!
//! # One list
//!
//! The counters and their names are written once, in [`counter_list!`]: the [`Counter`] enum
//! here and the `vmstat` record of `dks-protocol` are both made from it.
//!
//! | name                 | counts                                                        |
//! |----------------------|---------------------------------------------------------------|
//! | `nr_kernel_stack_kb` | populated memory of live stacks (not cached, not magazines)   |
//! | `dks_faults`         | stack faults served                                           |
//! | `dks_refills`        | magazine refills that had to allocate                         |
//! | `dks_refill_fail`    | refills that stopped short because an allocation failed       |
//! | `dks_fatal`          | stack faults that could not be served                         |
//! | `dks_reclaimed`      | stack pages given back before their thread exited            |
//! | `dks_reclaimed_dead_pressure` | of `dks_reclaimed`: dead below a sleeper's saved stack pointer, trimmed under memory pressure |
//! | `dks_reclaimed_dead_asleep`   | of `dks_reclaimed`: the same, trimmed because the thread had slept long |
//! | `dks_admit_wait`     | switches refused because the magazine did not cover the need  |
//! | `dks_guard_hits`     | faults on a guard page (stack overflows)                      |
//! | `dks_reclaimed_accessed_clear` | of those, pages given back at switch-out with the Accessed bit clear (`switch`) |
//! | `dks_flushes_avoided` | switch-outs that gave pages back with no TLB shootdown (`switch`) |
//! | `dks_switch_faults`  | stack faults of `switch` threads (a bug: they map every page while running) |
//! | `dks_packs`          | stacks packed into a buffer (`pack`)                          |
//! | `dks_restores`       | packed stacks restored into a page                            |
//! | `dks_restore_wait`   | restores refused because the magazine had no page             |
//! | `dks_pack_csum_fail` | restores whose bytes did not match the checksum of the pack   |
//! | `dks_pack_guard_catches` | faults on a packed stack kept in guard mode               |
//! | `nr_packed_threads`  | stacks packed now                                             |
//! | `nr_packed_bytes`    | bytes of pack buffers now (also in `nr_kernel_stack_kb`)      |
//!
//! `nr_kernel_stack_kb`, `nr_packed_threads` and `nr_packed_bytes` are levels, kept in the
//! [`Ledger`]; every other counter is an event.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::account::{Account, AccountSnapshot, Ledger};
use crate::group::GroupCharge;

/// Calls the macro `$then` with the list of counters, in the order records print them: for
/// each, its doc comment, its [`Counter`] variant, its Linux-style name and the type records
/// carry it in. The one place the counters are named; everything else is made from it.
#[macro_export]
macro_rules! counter_list {
    ($then:ident) => {
        $then! {
            /// `nr_kernel_stack_kb`: populated memory of live stacks, in KiB.
            NrKernelStackKb nr_kernel_stack_kb: i64,
            /// `dks_faults`: stack faults served.
            Faults dks_faults: u64,
            /// `dks_refills`: magazine refills that had to allocate.
            Refills dks_refills: u64,
            /// `dks_refill_fail`: refills that stopped short because an allocation failed.
            RefillFail dks_refill_fail: u64,
            /// `dks_fatal`: stack faults that could not be served.
            Fatal dks_fatal: u64,
            /// `dks_reclaimed`: stack pages given back before their thread exited.
            Reclaimed dks_reclaimed: u64,
            /// `dks_reclaimed_dead_pressure`: of `dks_reclaimed`, pages dead below a sleeping
            /// thread's saved stack pointer, trimmed under memory pressure.
            ReclaimedDeadPressure dks_reclaimed_dead_pressure: u64,
            /// `dks_reclaimed_dead_asleep`: of `dks_reclaimed`, pages dead below the saved stack
            /// pointer of a thread that had slept long, trimmed at the reclaim thread's pace.
            ReclaimedDeadAsleep dks_reclaimed_dead_asleep: u64,
            /// `dks_admit_wait`: switches refused because the magazine did not cover the need.
            AdmitWait dks_admit_wait: u64,
            /// `dks_guard_hits`: faults on a guard page (stack overflows).
            GuardHits dks_guard_hits: u64,
            /// `dks_reclaimed_accessed_clear`: of `dks_reclaimed`, pages given back at switch-out
            /// because their Accessed bit was clear (`switch`): never cached, so no flush.
            ReclaimedAccessedClear dks_reclaimed_accessed_clear: u64,
            /// `dks_flushes_avoided`: TLB shootdowns not needed: switch-outs that gave pages
            /// back without one because every page's Accessed bit was clear.
            FlushesAvoided dks_flushes_avoided: u64,
            /// `dks_switch_faults`: stack faults of threads whose policy maps every page while
            /// they run (`switch`): each one is a bug (served, and counted here too).
            SwitchFaults dks_switch_faults: u64,
            /// `dks_packs`: stacks packed into a buffer.
            Packs dks_packs: u64,
            /// `dks_restores`: packed stacks restored into a page.
            Restores dks_restores: u64,
            /// `dks_restore_wait`: restores refused because the magazine had no page.
            RestoreWait dks_restore_wait: u64,
            /// `dks_pack_csum_fail`: restores whose bytes did not match the pack's checksum.
            PackChecksumFail dks_pack_csum_fail: u64,
            /// `dks_pack_guard_catches`: faults on a packed stack kept in guard mode.
            PackGuardCatches dks_pack_guard_catches: u64,
            /// `nr_packed_threads`: stacks packed now.
            NrPackedThreads nr_packed_threads: i64,
            /// `nr_packed_bytes`: bytes of pack buffers now (counted in `nr_kernel_stack_kb`).
            NrPackedBytes nr_packed_bytes: i64,
        }
    };
}

macro_rules! define_counters {
    ($($(#[$doc:meta])* $variant:ident $name:ident: $ty:ty,)*) => {
        /// One of the counters, by its Linux-style name ([`counter_list!`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, in the order records print them.
            pub const ALL: [Self; [$(Self::$variant),*].len()] = [$(Self::$variant),*];

            /// Returns the counter's name as records print it.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($name),)*
                }
            }
        }
    };
}

counter_list!(define_counters);

impl Counter {
    /// The number of counters.
    pub const COUNT: usize = Self::ALL.len();

    /// Returns whether the counter counts events (every counter but the levels
    /// `nr_kernel_stack_kb`, `nr_packed_threads` and `nr_packed_bytes`).
    #[must_use]
    pub const fn is_event(self) -> bool {
        !matches!(
            self,
            Self::NrKernelStackKb | Self::NrPackedThreads | Self::NrPackedBytes
        )
    }

    /// Returns the counter's position in [`Self::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

const _: () = assert!(Counter::ALL[0].index() == 0 && !Counter::ALL[0].is_event());

/// The events of one CPU, per account: written with atomic adds (by that CPU, and by its
/// page-fault handler, which may interrupt it mid-update), readable by all.
#[derive(Debug)]
pub struct CpuCounters {
    events: [[AtomicU64; Counter::COUNT]; Account::COUNT],
}

impl CpuCounters {
    /// Returns counters that are all zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            events: [const { [const { AtomicU64::new(0) }; Counter::COUNT] }; Account::COUNT],
        }
    }

    /// Counts `n` more `event`s of `account` on this CPU.
    ///
    /// # Panics
    ///
    /// In debug builds, if `event` is a level (levels go to the [`Ledger`]).
    pub fn count(&self, account: Account, event: Counter, n: u64) {
        debug_assert!(event.is_event(), "{} is not an event", event.name());
        self.events[account.index()][event.index()].fetch_add(n, Ordering::Relaxed);
    }

    fn load(&self, account: Account, event: Counter) -> u64 {
        self.events[account.index()][event.index()].load(Ordering::Relaxed)
    }
}

impl Default for CpuCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the mechanism counts: the counters of the CPU it runs on and the shared [`Ledger`].
/// Every function that sees an event takes one and counts the event in it, once.
#[derive(Clone, Copy, Debug)]
pub struct Tally<'a> {
    cpu: &'a CpuCounters,
    ledger: &'a Ledger,
}

impl<'a> Tally<'a> {
    /// Returns the tally of the CPU whose counters are `cpu`.
    #[must_use]
    pub const fn new(cpu: &'a CpuCounters, ledger: &'a Ledger) -> Self {
        Self { cpu, ledger }
    }

    /// Counts `n` more `event`s of `account`.
    pub fn count(&self, account: Account, event: Counter, n: u64) {
        self.cpu.count(account, event, n);
    }

    /// Accounts for one stack page faulted in for `account`, charged to `group`: the fault
    /// event on this CPU, the page in the ledger (with its peak), the page forced onto the
    /// group's charge. The stack-fault path's one accounting update: everything a served
    /// fault changes in the books happens here, in this order.
    #[inline]
    pub fn stack_page_faulted_in(&self, account: Account, group: &GroupCharge) {
        self.cpu.count(account, Counter::Faults, 1);
        self.ledger.add_pages(account, 1);
        group.force_charge(1);
    }

    /// Returns the ledger, for what is kept per account rather than per CPU.
    #[must_use]
    pub const fn ledger(&self) -> &'a Ledger {
        self.ledger
    }
}

/// The counters at one moment, summed over CPUs, per account and in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    accounts: [AccountSnapshot; Account::COUNT],
}

impl Totals {
    /// Returns the value of `counter` over every account (event counts saturate at
    /// `i64::MAX`).
    #[must_use]
    pub fn get(&self, counter: Counter) -> i64 {
        self.accounts.iter().fold(0i64, |sum, account| {
            sum.saturating_add(account.get(counter))
        })
    }

    /// Returns the figures of one account.
    #[must_use]
    pub const fn account(&self, account: Account) -> &AccountSnapshot {
        &self.accounts[account.index()]
    }
}

/// Returns the counters of `cpus` and `ledger`, summed.
///
/// The figures are written in place into the returned value: a [`Totals`] is a few KiB, and
/// the kernel reads it on threads whose stacks are not large (no temporary copy per account).
pub fn sum<'a>(cpus: impl IntoIterator<Item = &'a CpuCounters> + Clone, ledger: &Ledger) -> Totals {
    let mut totals = Totals {
        accounts: [AccountSnapshot::ZERO; Account::COUNT],
    };
    for (account, snapshot) in Account::ALL.into_iter().zip(totals.accounts.iter_mut()) {
        ledger.snapshot_into(account, snapshot);
        for cpu in cpus.clone() {
            for counter in Counter::ALL.into_iter().filter(|c| c.is_event()) {
                snapshot.add_events(counter, cpu.load(account, counter));
            }
        }
    }
    totals
}

/// Returns the figures of one `account` of `cpus` and `ledger`, summed: what [`sum`] gives
/// for it, without the few KiB of every other account (for callers on small stacks).
pub fn sum_account<'a>(
    cpus: impl IntoIterator<Item = &'a CpuCounters>,
    ledger: &Ledger,
    account: Account,
) -> AccountSnapshot {
    let mut snapshot = AccountSnapshot::ZERO;
    ledger.snapshot_into(account, &mut snapshot);
    for cpu in cpus {
        for counter in Counter::ALL.into_iter().filter(|c| c.is_event()) {
            snapshot.add_events(counter, cpu.load(account, counter));
        }
    }
    snapshot
}

#[cfg(test)]
mod tests;

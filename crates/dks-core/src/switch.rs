//! What the scheduler asks dks at every context switch.
//!
//! A switch from `prev` to `next` on one CPU calls, in this order:
//!
//! 1. [`prepare`], before the switch, on `prev`'s stack, interrupts off:
//!    a packed stack (`pack`) is restored first, with a page from the
//!    magazine ([`pack::restore`](crate::pack::restore)); then, for a policy with admission (`guaranteed`, `reclaim`, `switch`) it
//!    refills the magazine with atomic allocations if it does not cover
//!    `need(next)`, and admits `next` only if it then does. On
//!    [`Admission::Wait`] the scheduler must pick another task (or idle) and
//!    wake the stack-reclaim thread. Under `switch`, admission then maps
//!    every page of `next` from the magazine, so it never faults.
//! 2. the switch itself (the kernel's assembly): saves `prev`'s stack
//!    pointer, loads `next`'s, whose live pages are populated by
//!    construction.
//! 3. [`finish`], on `next`'s stack: `next` runs now; under `fault` the
//!    magazine is refilled here, as in the RFC, and that refill may fail.
//! 4. [`switch_out`] for `prev`, with its saved stack pointer: records it
//!    (and whether `prev` went to sleep) for [`reclaim`],
//!    and under `switch` unmaps `prev`'s dead pages whose Accessed bit is
//!    clear, with no flush.
//!
//! # Why `guaranteed` can never fault fatally
//!
//! Between an admission and the next switch on that CPU only the admitted
//! task takes frames from the magazine, one per fault, and every fault lowers
//! its need by one. The magazine held at least `need(T)` at admission, so it
//! holds at least the remaining need at every fault. Nothing in this module
//! waits: admission only uses non-blocking allocations and answers at once.

use crate::account::Account;
use crate::addr::VirtAddr;
use crate::counters::{Counter, Tally};
use crate::frame::Urgency;
use crate::group::GroupCharge;
use crate::layout::{LayoutError, PAGE_SIZE_IN_BYTES, StackLayout};
use crate::magazine::{Magazine, Refill};
use crate::pack::{self, Restore};
use crate::pack_buffer::Checksum;
use crate::platform::{FlushBatch, Platform};
use crate::policy::Policy;
use crate::reclaim;
use crate::stack::Stack;

/// Whether a CPU may switch to a task now.
#[must_use = "a task that was not admitted must not run"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Switch to it: every stack fault it takes can be served.
    Admitted,
    /// Do not switch to it now: the magazine cannot cover its need.
    Wait {
        /// Pages the task may still fault in.
        need: u8,
        /// Frames the magazine holds.
        have: u8,
    },
    /// Do not switch to it now: its stack is packed and the magazine has no page to restore
    /// it into (counted as `dks_restore_wait`).
    WaitRestore,
    /// Never switch to it: its stack was restored but its bytes do not match the checksum
    /// taken at pack (counted as `dks_pack_csum_fail`); stop the thread.
    Corrupt {
        /// The checksum taken at pack.
        expected: Checksum,
        /// The checksum of what was restored.
        found: Checksum,
    },
}

/// How a task left the CPU: where its stack pointer was, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchOut {
    /// The stack pointer saved by the switch.
    pub saved_sp: VirtAddr,
    /// Why it was switched out.
    pub reason: SwitchOutReason,
}

/// Why a task was switched out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchOutReason {
    /// Preempted or yielded: it stays runnable.
    Preempted,
    /// Went to sleep (a wait queue): its dead pages may be reclaimed.
    Asleep,
}

/// Decides, before switching to `next` on this CPU, whether it may run, and
/// prepares its stack: see the module docs. `group` is the charge of
/// `next`'s group. Refills and refused admissions are counted under `next`'s
/// account.
pub fn prepare<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    next: &mut Stack,
) -> Admission {
    if next.is_packed() {
        if magazine.is_empty() {
            let _ = refill(platform, magazine, tally, next.account());
        }
        match pack::restore(platform, layout, magazine, tally, group, next) {
            Restore::Restored | Restore::NotPacked => {}
            Restore::Wait => return Admission::WaitRestore,
            Restore::ChecksumMismatch { expected, found } => {
                return Admission::Corrupt { expected, found };
            }
        }
    }
    if !next.policy().needs_admission() {
        return Admission::Admitted;
    }
    let need = next.need(layout);
    if magazine.len() < need {
        let _ = refill(platform, magazine, tally, next.account());
    }
    if magazine.len() < need {
        tally.count(next.account(), Counter::AdmitWait, 1);
        return Admission::Wait {
            need,
            have: magazine.len(),
        };
    }
    if next.policy().maps_all_while_running() {
        // Per page only what is inherent: a frame from the magazine and its entry written.
        // The stack's page set, its count and peak, the ledger and the group are brought up
        // to date once for all the pages (`need` of them: admission covered every one).
        let missing = layout.all_pages().difference(next.populated());
        let top = layout.stack_top(next.slot()).as_u64();
        let mut flushes = FlushBatch::new();
        for page in missing.iter() {
            // Admission just checked that the magazine covers every page.
            let Some(frame) = magazine.take() else {
                unreachable!("admission covered the need")
            };
            let addr = VirtAddr::new(top - (u64::from(page.index()) + 1) * PAGE_SIZE_IN_BYTES);
            debug_assert_eq!(addr, layout.page_addr(next.slot(), page));
            flushes.add(platform.map_stack_page(addr, frame));
        }
        platform.flush(flushes);
        next.note_all_populated(layout);
        tally.ledger().add_pages(next.account(), i64::from(need));
        group.force_charge(u64::from(need));
    }
    Admission::Admitted
}

/// Notes, on `next`'s stack right after the switch, that `next` runs; under
/// `fault` refills the magazine (counted under `next`'s account) and returns
/// how far the refill got.
pub fn finish<P: Platform>(
    platform: &mut P,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    next: &mut Stack,
) -> Option<Refill> {
    next.note_switched_in();
    if next.policy().refills_after_switch() {
        Some(refill(platform, magazine, tally, next.account()))
    } else {
        None
    }
}

/// Records how `prev` was switched out, and under `switch` gives back its
/// dead pages that need no flush. Returns the number of pages given back, or
/// an error (and changes nothing) if the saved stack pointer is not inside
/// `prev`'s stack. `group` is the charge of `prev`'s group.
pub fn switch_out<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    prev: &mut Stack,
    how: SwitchOut,
) -> Result<u8, LayoutError> {
    let asleep = how.reason == SwitchOutReason::Asleep;
    if !prev.policy().maps_all_while_running() {
        // Only check the pointer: no other policy gives pages back here.
        layout.live_pages(prev.slot(), how.saved_sp)?;
        prev.note_switched_out(how.saved_sp, asleep);
        return Ok(0);
    }
    let plan = reclaim::switch_out_plan(platform, layout, prev, how.saved_sp)?;
    prev.note_switched_out(how.saved_sp, asleep);
    if plan.unmap_without_flush.is_empty() {
        return Ok(0);
    }
    let given_back = reclaim::give_back(
        platform,
        layout,
        magazine,
        tally,
        group,
        prev,
        plan.unmap_without_flush,
    );
    // Every page went back without a flush: the shootdown that unmapping pages a TLB may
    // hold would take (one batch) was not needed.
    tally.count(
        prev.account(),
        Counter::ReclaimedAccessedClear,
        u64::from(given_back),
    );
    tally.count(prev.account(), Counter::FlushesAvoided, 1);
    Ok(given_back)
}

/// Refills the magazine with atomic allocations if it is not full, counting
/// the refill and its failure under `account` (the thread it is made for).
pub fn refill<P: Platform>(
    platform: &mut P,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    account: Account,
) -> Refill {
    let refill = magazine.refill(platform, Urgency::Atomic);
    if refill.added > 0 || !refill.is_complete() {
        tally.count(account, Counter::Refills, 1);
    }
    if !refill.is_complete() {
        tally.count(account, Counter::RefillFail, 1);
    }
    refill
}

/// Returns whether a switch to a stack of `policy` needs the mechanism at all, given what a
/// scheduler can read without a lock: how many pages the stack may still fault in (`need`) and
/// how many frames this CPU's magazine holds (`magazine_len` of `magazine_capacity`).
///
/// For a policy that reclaims while asleep the answer holds only for a stack no trim touched
/// since its switch-out and none can touch before it runs: the caller must first have found
/// the slot's trim claim `Idle` or taken it back ([`TrimClaim::admit`](crate::TrimClaim::admit)
/// said [`Claim::Untouched`](crate::Claim::Untouched); see [`trim_claim`](crate::trim_claim)).
///
/// `false` means that [`prepare`] would admit the stack without touching the magazine, the
/// group or a counter, and [`finish`] would change nothing but the stack's switch record,
/// which only a trim reads, and only after claiming the stack: the scheduler may skip both, so
/// that `static` switches as a kernel without dynamic stacks does, and `fault`, `guaranteed`
/// and `reclaim` add a few comparisons while their magazine is full or covers the need.
#[inline]
#[must_use]
pub const fn switch_in_needs_mechanism(
    policy: Policy,
    need: u8,
    magazine_len: u8,
    magazine_capacity: u8,
) -> bool {
    (policy.needs_admission() && magazine_len < need)
        || policy.maps_all_while_running()
        || (policy.refills_after_switch() && magazine_len < magazine_capacity)
}

/// Returns whether a switch away from a stack of `policy` for `reason` needs the mechanism:
/// only a policy that maps every page while running gives pages back at the switch, and only
/// one that reclaims while asleep reads the saved stack pointer [`switch_out`] records, and
/// only when the thread went to sleep (a preempted thread is no candidate for a trim). For
/// every other switch-out the scheduler may skip [`switch_out`] (its own check that the saved
/// stack pointer lies in the thread's stack stays).
#[inline]
#[must_use]
pub const fn switch_out_needs_mechanism(policy: Policy, reason: SwitchOutReason) -> bool {
    policy.maps_all_while_running()
        || (policy.reclaims_while_asleep() && matches!(reason, SwitchOutReason::Asleep))
}

#[cfg(test)]
mod tests;

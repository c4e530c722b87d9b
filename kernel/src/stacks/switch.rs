//! The scheduler's side of the mechanism: admission before a switch, bookkeeping after one.
//!
//! These run in a CPU's scheduler loop, on its static stack with interrupts off, for threads
//! that are off every CPU: the only context that may hold the CPU's magazine lock for longer
//! than a fault (see the module docs of `stacks`).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use dks_core::switch::{self, Admission, SwitchOut, SwitchOutReason};
use dks_core::{Claim, Magazine, SlotIndex, TrimClaim, TrimState, VirtAddr};

use super::platform::X86Platform;
use super::{GROUPS, Slot, region, tally};
use crate::hw::cpu_ops::{self, MAX_CPUS};

/// Frames in each CPU's magazine, mirrored for readers on other CPUs (who must never take
/// another CPU's magazine lock: its fault handler would find it busy).
static MAGAZINE_LEN: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// Pages the admission of the thread running on each CPU mapped beyond what its stack held
/// switched out (only `switch` maps any): what running threads hold beyond sleeping ones.
static RUNNING_EXTRA: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// [`RUNNING_EXTRA`] summed over all CPUs, kept up to date with each change (so that a note
/// does not sum every CPU's entry).
static RUNNING_EXTRA_NOW: AtomicU64 = AtomicU64::new(0);

/// The most [`RUNNING_EXTRA`] ever summed to over all CPUs, in pages.
static RUNNING_EXTRA_PEAK: AtomicU64 = AtomicU64::new(0);

/// The most pages running threads ever held at once beyond what the same threads held
/// switched out (the pages `switch`'s admissions mapped for the threads running at that
/// moment; at most `max_pages - 1` per CPU). Hansen's doubt about memory, measured.
pub fn running_extra_peak_pages() -> u64 {
    RUNNING_EXTRA_PEAK.load(Ordering::Relaxed)
}

/// Notes that CPU `cpu` now runs a thread whose admission mapped `mapped` pages. Only `switch`
/// admissions and switch-outs come here.
fn note_running_extra(cpu: usize, mapped: u8) {
    let old = RUNNING_EXTRA[cpu].swap(mapped, Ordering::Relaxed);
    if old == mapped {
        return;
    }
    // Only this CPU changes its entry, so the sum moves by exactly the difference.
    let now = if mapped > old {
        RUNNING_EXTRA_NOW.fetch_add(u64::from(mapped - old), Ordering::Relaxed)
            + u64::from(mapped - old)
    } else {
        RUNNING_EXTRA_NOW.fetch_sub(u64::from(old - mapped), Ordering::Relaxed)
            - u64::from(old - mapped)
    };
    RUNNING_EXTRA_PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Updates this CPU's mirror of its magazine length.
pub(super) fn note_magazine(cpu: usize, len: u8) {
    MAGAZINE_LEN[cpu].store(len, Ordering::Relaxed);
}

/// Frames in all magazines (from the mirrors).
pub fn magazine_frames() -> u64 {
    MAGAZINE_LEN
        .iter()
        .map(|l| u64::from(l.load(Ordering::Relaxed)))
        .sum()
}

/// Admissions that took a sleeping `reclaim` stack's trim claim back from a candidate (no trim
/// had it) and so woke it without the stack's lock, and those that found the claim touched by
/// a trim and took the lock: both ways of the race, for the tests that race trims against
/// wake-ups.
static CLAIMS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// How many admissions took a candidate's trim claim back, and how many found a trim's
/// (`[untouched, touched]`, since boot).
pub fn trim_claims_seen() -> [u64; 2] {
    CLAIMS.each_ref().map(|n| n.load(Ordering::Relaxed))
}

/// What admission decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// The CPU may switch to the thread.
    Admitted,
    /// Not now: the magazine cannot cover the thread's need.
    Wait,
    /// Never: the slot holds no live stack (it was released), so there is no context to
    /// switch to.
    Released,
    /// Not yet: pages of its stack were trimmed while it slept and some TLB may still
    /// translate them; it runs once the flush requested for them completed everywhere
    /// (`stacks::trim`). No memory is missing: the reclaim thread need not be woken.
    Flushing,
    /// Never as it is: its packed stack was restored, but the bytes do not match the pack's
    /// checksum (`dks_core::switch::Admission::Corrupt`, or a wake-path restore that found
    /// so). The scheduler stops the thread without running it on those bytes.
    Corrupt,
}

/// The pages the stack in `slot` may still need and the pages in CPU `cpu`'s magazine (the
/// last length that CPU noted), for a report of a thread admission keeps waiting; `(0, 0)`
/// for a slot without a live stack.
pub fn admission_shortfall(slot: SlotIndex, cpu: u32) -> (u8, u8) {
    let region = region();
    let live = region.slots[slot.as_usize()].stack.lock();
    let need = live.as_ref().map_or(0, |stack| stack.need(&region.layout));
    let magazine = MAGAZINE_LEN
        .get(cpu as usize)
        .map_or(0, |len| len.load(Ordering::Relaxed));
    (need, magazine)
}

/// Decides whether this CPU may switch to the thread whose stack is in `slot` now (DESIGN §4):
/// refills the magazine with atomic allocations and admits it only if the magazine covers its
/// need (`guaranteed`), refills after admitting (`fault`, as the RFC does at the switch);
/// dks-core counts refills, their failures and refused admissions under the thread's account.
/// A slot without a live stack is refused for good.
///
/// First, from the slot's mirrors and this CPU's magazine length alone, without a lock:
/// whether the switch needs the mechanism at all (`dks_core::switch::switch_in_needs_mechanism`:
/// never for `static`, for `fault` only when its magazine is not full, for `guaranteed` only
/// when the magazine does not cover the need, for `reclaim` that and when a trim touched the
/// stack since its switch-out). The mirrors are exact here: the thread is off every CPU, so its
/// stack's pages do not change, and only this CPU changes its magazine. For `reclaim` the slot's
/// trim claim is taken first (`dks_core::TrimClaim::admit`): once it says untouched, no trim
/// will act on the stack before the thread sleeps again (docs/reclaim.md, "The switch without
/// a lock"), so the mirrors stay exact until it runs.
///
/// The checks are inlined into the scheduler; the work is out of line, so that an admission
/// that needs none does not pay for the registers the work saves.
#[inline]
pub fn admit(irq: &cpu_ops::IrqGuard, slot: SlotIndex) -> Admit {
    let region = region();
    let cpu = cpu_ops::current_id(irq) as usize;
    let cell = &region.slots[slot.as_usize()];
    // One load: the policy and the trim claim.
    let Some(policy) = Slot::unclaimed_policy_of(cell.policy.load()) else {
        // Released, or claimed (asleep as a trim's candidate, or touched by a trim).
        return admit_with_mechanism(irq, slot);
    };
    let need = region.layout.stack_pages() - cell.populated.load(Ordering::Relaxed);
    let capacity = Magazine::capacity_for(&region.layout);
    let magazine_len = MAGAZINE_LEN[cpu].load(Ordering::Relaxed);
    if !switch::switch_in_needs_mechanism(policy, need, magazine_len, capacity) {
        return Admit::Admitted;
    }
    admit_with_mechanism(irq, slot)
}

/// [`admit`] for a switch that needs the mechanism, or whose slot is released or has a trim
/// claim that is not `Idle`.
#[inline(never)]
fn admit_with_mechanism(irq: &cpu_ops::IrqGuard, slot: SlotIndex) -> Admit {
    let region = region();
    let cpu = cpu_ops::current_id(irq) as usize;
    let cell = &region.slots[slot.as_usize()];
    let Some(policy) = cell.policy() else {
        return Admit::Released;
    };
    if TrimClaim::state_of(cell.policy.load()) != TrimState::Idle {
        // Asleep as a trim's candidate, or touched by a trim: race the trims for the claim.
        let claim = cell.policy.admit();
        CLAIMS[usize::from(claim == Claim::Touched)].fetch_add(1, Ordering::Relaxed);
        if claim == Claim::Untouched {
            // No trim touched it since its switch-out, and none will act on it before it
            // sleeps again. If its need is covered it runs without the locks, as a thread
            // that never slept.
            let need = region.layout.stack_pages() - cell.populated.load(Ordering::Relaxed);
            let magazine_len = MAGAZINE_LEN[cpu].load(Ordering::Relaxed);
            let capacity = Magazine::capacity_for(&region.layout);
            if !switch::switch_in_needs_mechanism(policy, need, magazine_len, capacity) {
                return Admit::Admitted;
            }
        }
    }
    let mut magazine = region.magazines[cpu].lock();
    let mut live = cell.stack.lock();
    let Some(stack) = live.as_mut() else {
        return Admit::Released;
    };
    // With the lock, any trim of this stack is over (it holds the lock while it works).
    if stack.is_asleep() {
        stack.wake();
    }
    if super::trim::flush_pending(irq, cell) {
        return Admit::Flushing;
    }
    if policy == dks_core::Policy::Pack && cell.corrupt.swap(false, Ordering::Relaxed) {
        return Admit::Corrupt;
    }
    // Woken, no flush pending: no trim may take the stack now, and what one did is dealt with
    // (its larger need is checked below, a packed stack is restored first). With the lock held
    // no trim is at work, so the claim is `Idle`, a `Candidate` the fast path did not ask
    // about, or `Trimmed`.
    cell.policy.settle();
    let group = &GROUPS[stack.group().as_usize()];
    let mut platform = X86Platform::live();
    let held = stack.populated_pages();
    let admission = switch::prepare(
        &mut platform,
        &region.layout,
        &mut magazine,
        tally(cpu),
        group,
        stack,
    );
    let admitted = admission == Admission::Admitted;
    if admitted {
        let _ = switch::finish(&mut platform, &mut magazine, tally(cpu), stack);
        if stack.policy().maps_all_while_running() {
            note_running_extra(cpu, stack.populated_pages() - held);
        }
    }
    cell.mirror(stack);
    note_magazine(cpu, magazine.len());
    match admission {
        Admission::Admitted => Admit::Admitted,
        // Restored, but not what was packed: the thread is stopped, never run.
        Admission::Corrupt { .. } => Admit::Corrupt,
        // `WaitRestore` (a packed stack without a page) waits like `Wait`: the reclaim
        // thread is woken and admission tried again.
        Admission::Wait { .. } | Admission::WaitRestore => Admit::Wait,
    }
}

/// Records that the thread of `slot` left this CPU with stack pointer `saved_sp`, asleep or
/// still runnable (and lets the policy give pages back). A stack pointer outside the thread's
/// stack is a kernel bug: it panics. Nothing at all for a policy that neither gives pages back
/// at the switch nor reads the record, nor for a `reclaim` thread that was preempted (only a
/// sleeping one may become a trim's candidate; `dks_core::switch::switch_out_needs_mechanism`):
/// the scheduler checks the stack pointer itself.
///
/// The checks are inlined into the scheduler; the work is out of line, so that a switch-out
/// that needs none does not pay for the registers the work saves.
#[inline]
pub fn switched_out(irq: &cpu_ops::IrqGuard, slot: SlotIndex, saved_sp: u64, asleep: bool) {
    let reason = if asleep {
        SwitchOutReason::Asleep
    } else {
        SwitchOutReason::Preempted
    };
    if !region().slots[slot.as_usize()].switch_out_needs_mechanism(reason) {
        return;
    }
    switch_out_with_mechanism(irq, slot, saved_sp, reason);
}

/// [`switched_out`] for a switch-out that needs the mechanism.
#[inline(never)]
fn switch_out_with_mechanism(
    irq: &cpu_ops::IrqGuard,
    slot: SlotIndex,
    saved_sp: u64,
    reason: SwitchOutReason,
) {
    let region = region();
    let cpu = cpu_ops::current_id(irq) as usize;
    let mut magazine = region.magazines[cpu].lock();
    let cell = &region.slots[slot.as_usize()];
    let mut live = cell.stack.lock();
    let Some(stack) = live.as_mut() else {
        return;
    };
    let group = &GROUPS[stack.group().as_usize()];
    if stack.policy().maps_all_while_running() {
        // The pages it touched stay its own, switched out; the others go back below.
        note_running_extra(cpu, 0);
    }
    let how = SwitchOut {
        saved_sp: VirtAddr::new(saved_sp),
        reason,
    };
    let _given_back = switch::switch_out(
        &mut X86Platform::live(),
        &region.layout,
        &mut magazine,
        tally(cpu),
        group,
        stack,
        how,
    )
    .unwrap_or_else(|e| panic!("saved stack pointer {saved_sp:#x} outside slot {slot:?}: {e:?}"));
    super::trim::note_switched_out(slot.as_usize(), stack, reason == SwitchOutReason::Asleep);
    cell.mirror(stack);
    note_magazine(cpu, magazine.len());
}

/// Gives this CPU's magazine back to the frame allocator; returns how many frames it held.
/// Must run where this CPU's fault handler cannot interrupt (interrupts off, static stack).
pub fn drain_magazine_here(irq: &cpu_ops::IrqGuard) -> u8 {
    let region = region();
    let cpu = cpu_ops::current_id(irq) as usize;
    let mut magazine = region.magazines[cpu].lock();
    let drained = magazine.drain(&mut X86Platform::live());
    note_magazine(cpu, 0);
    drained
}

/// Fills this CPU's magazine with normal allocations (tests that fault pages in from outside
/// the scheduler); returns its length.
pub fn refill_magazine_here(irq: &cpu_ops::IrqGuard) -> u8 {
    let region = region();
    let cpu = cpu_ops::current_id(irq) as usize;
    let mut magazine = region.magazines[cpu].lock();
    let refill = magazine.refill(&mut X86Platform::live(), dks_core::Urgency::Normal);
    note_magazine(cpu, magazine.len());
    refill.len
}

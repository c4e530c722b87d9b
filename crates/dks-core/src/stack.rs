//! Per-stack state, and a stack's life: creation, exit, release.
//!
//! A [`Stack`] is what dks knows about one thread's stack: its slot, policy
//! and group, which pages are populated, their peak, and the saved stack
//! pointer while the thread is switched out. The kernel keeps it with the
//! thread; whoever holds the thread may touch it (its CPU while it runs or
//! faults, the scheduler while it is switched out).
//!
//! # Life of a stack
//!
//! 1. [`create`] takes a slot, fresh or from the CPU's [`StackCache`], and
//!    populates the pages the policy asks for with `Normal` allocations.
//!    A fresh slot's other stack pages get unpopulated entries naming the
//!    slot. On any failure (group limit, memory) it gives back everything:
//!    frames are freed, the charge is dropped, and the slot or cached stack
//!    is returned in the [`CreateError`].
//! 2. While the thread lives, [`fault`](crate::fault),
//!    [`switch`](crate::switch) and [`reclaim`](crate::reclaim) move pages
//!    between populated and unpopulated.
//! 3. [`exit`] turns it into an [`ExitedStack`] that nobody can grow: the
//!    exiting thread still runs on it, so it goes to a
//!    [`DeferredFree`](crate::DeferredFree) queue.
//! 4. [`release`], called from another stack, puts it in the stack cache or
//!    frees it: every populated page is unmapped, the TLBs are flushed, and
//!    only then the frames are freed; all entries of the slot become empty.
//!
//! # Invariants
//!
//! - `populated` is exactly the set of the slot's stack pages whose entry is
//!   present; every other stack page of the slot is unpopulated with the
//!   slot as owner; guard pages are empty.
//! - The top page is populated, except while the stack is packed
//!   ([`pack`](crate::pack)): creation populates it, reclaim never takes it
//!   (it is always live), a pack takes it and a restore gives it back.
//! - A packed stack has no populated page; it owns its pack buffer (and, in
//!   guard mode, the unmapped frame of its top page) until a restore or its
//!   release.
//! - The populated pages (and a kept guard-mode frame) are counted under the
//!   stack's account (in `nr_kernel_stack_kb`) and charged to the group from
//!   creation until release; a pack buffer is counted in bytes.

use crate::account::Account;
use crate::addr::VirtAddr;
use crate::cache::{CachedStack, StackCache};
use crate::counters::Tally;
use crate::frame::{NO_STACK_FRAMES, Urgency};
use crate::group::{ChargeError, GroupCharge, GroupId};
use crate::layout::{SlotIndex, StackLayout, StackPage};
use crate::pack::{Packed, PackedBox};
use crate::page_set::PageSet;
use crate::platform::{FlushBatch, Platform};
use crate::policy::Policy;
use crate::pte::{AbsentPte, PageState};

/// What a new stack is for: its policy, group and account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSpec {
    /// How the stack is populated and given back.
    pub policy: Policy,
    /// The group charged for it.
    pub group: GroupId,
    /// Who its memory and events are counted for: its policy, or the kernel's own threads.
    pub account: Account,
}

impl StackSpec {
    /// Returns the spec of a workload thread's stack: counted under its policy.
    #[must_use]
    pub const fn new(policy: Policy, group: GroupId) -> Self {
        Self {
            policy,
            group,
            account: Account::Policy(policy),
        }
    }

    /// Returns the spec of a stack of one of the kernel's own threads: counted apart from
    /// every policy.
    #[must_use]
    pub const fn system(policy: Policy, group: GroupId) -> Self {
        Self {
            policy,
            group,
            account: Account::System,
        }
    }
}

/// The state of one live stack.
#[derive(Debug, PartialEq, Eq)]
pub struct Stack {
    slot: SlotIndex,
    policy: Policy,
    group: GroupId,
    account: Account,
    populated: PageSet,
    /// `populated.len()`, kept so that the fault and switch paths read a count instead of
    /// counting bits (x86_64 without `popcnt` spends 16 instructions per count).
    populated_pages: u8,
    faults: u32,
    peak_populated_pages: u8,
    saved_sp: Option<VirtAddr>,
    asleep: bool,
    /// Out of line: a stack that is not packed pays one pointer for it.
    packed: Option<PackedBox>,
}

impl Stack {
    /// Returns the slot of the stack, also the owner id in its entries.
    #[must_use]
    pub const fn slot(&self) -> SlotIndex {
        self.slot
    }

    /// Returns the stack's policy.
    #[must_use]
    pub const fn policy(&self) -> Policy {
        self.policy
    }

    /// Returns the group charged for the stack.
    #[must_use]
    pub const fn group(&self) -> GroupId {
        self.group
    }

    /// Returns who the stack is counted for.
    #[must_use]
    pub const fn account(&self) -> Account {
        self.account
    }

    /// Returns the populated pages.
    #[must_use]
    pub const fn populated(&self) -> PageSet {
        self.populated
    }

    /// Returns the stack faults served for this stack.
    #[must_use]
    pub const fn faults(&self) -> u32 {
        self.faults
    }

    /// Returns the number of populated pages.
    #[must_use]
    pub const fn populated_pages(&self) -> u8 {
        self.populated_pages
    }

    /// Returns the most pages the stack ever had populated at once (its
    /// high-water mark at page granularity; the kernel can refine it to the
    /// deepest touched byte by scanning the populated pages).
    #[must_use]
    pub const fn peak_populated_pages(&self) -> u8 {
        self.peak_populated_pages
    }

    /// Returns the pages the stack holds: its populated pages, and the kept
    /// frame of a stack packed in guard mode.
    #[must_use]
    pub const fn held_pages(&self) -> u8 {
        let kept = match &self.packed {
            Some(packed) if packed.get().kept_frame().is_some() => 1,
            _ => 0,
        };
        self.populated.len() + kept
    }

    /// Returns the pack of the stack, if it is packed.
    #[must_use]
    pub const fn packed(&self) -> Option<&Packed> {
        match &self.packed {
            Some(packed) => Some(packed.get()),
            None => None,
        }
    }

    /// Returns whether the stack is packed: it must be restored before its
    /// thread runs.
    #[must_use]
    pub const fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// Returns `need(T)`: how many pages the stack may still fault in.
    #[must_use]
    pub const fn need(&self, layout: &StackLayout) -> u8 {
        layout.stack_pages() - self.populated_pages
    }

    /// Returns the stack pointer saved at the last switch-out, if the thread
    /// is switched out.
    #[must_use]
    pub const fn saved_sp(&self) -> Option<VirtAddr> {
        self.saved_sp
    }

    /// Returns whether the thread is asleep (switched out to wait).
    #[must_use]
    pub const fn is_asleep(&self) -> bool {
        self.asleep
    }

    /// Notes that the thread was woken: it is runnable again, and its pages
    /// are no longer up for reclaim.
    pub fn wake(&mut self) {
        self.asleep = false;
    }

    /// Returns the state of `page` as this stack's state says it should be.
    #[must_use]
    pub const fn page_state(&self, page: StackPage) -> PageState {
        if self.populated.contains(page) {
            PageState::Populated
        } else {
            PageState::Unpopulated { owner: self.slot }
        }
    }

    pub(crate) fn note_faulted_in(&mut self, page: StackPage) {
        self.faults = self.faults.saturating_add(1);
        self.note_populated(page);
    }

    pub(crate) fn note_populated(&mut self, page: StackPage) {
        if !self.populated.contains(page) {
            self.populated.insert(page);
            self.populated_pages += 1;
        }
        debug_assert_eq!(self.populated_pages, self.populated.len());
        self.peak_populated_pages = self.peak_populated_pages.max(self.populated_pages);
    }

    /// Notes that every page of the stack is populated now (`switch`'s admission mapped the
    /// missing ones): one update instead of one per page.
    pub(crate) fn note_all_populated(&mut self, layout: &StackLayout) {
        self.populated = layout.all_pages();
        self.populated_pages = layout.stack_pages();
        debug_assert_eq!(self.populated_pages, self.populated.len());
        self.peak_populated_pages = self.populated_pages;
    }

    /// Notes that `pages`, `count` of them and all populated, are unpopulated now: one update
    /// instead of one per page.
    pub(crate) fn note_unpopulated_set(&mut self, pages: PageSet, count: u8) {
        debug_assert!(
            !pages.contains(StackPage::TOP),
            "the top page is always populated"
        );
        debug_assert!(pages.is_subset(self.populated));
        debug_assert_eq!(pages.len(), count);
        self.populated = self.populated.difference(pages);
        self.populated_pages -= count;
        debug_assert_eq!(self.populated_pages, self.populated.len());
    }

    pub(crate) fn note_switched_out(&mut self, saved_sp: VirtAddr, asleep: bool) {
        self.saved_sp = Some(saved_sp);
        self.asleep = asleep;
    }

    pub(crate) fn note_switched_in(&mut self) {
        debug_assert!(self.packed.is_none(), "a packed stack switched in");
        self.saved_sp = None;
        self.asleep = false;
    }

    /// Notes the stack packed into `packed`: none of its pages is populated.
    pub(crate) fn note_packed(&mut self, packed: PackedBox) {
        debug_assert!(self.packed.is_none(), "packed twice");
        self.populated = PageSet::EMPTY;
        self.populated_pages = 0;
        self.packed = Some(packed);
    }

    /// Takes the pack of the stack: after a restore its top page is populated
    /// again (`restored`), at release nothing is.
    pub(crate) fn take_packed(&mut self, restored: bool) -> Option<Packed> {
        let packed = self.packed.take()?.into_inner();
        if restored {
            self.note_populated(StackPage::TOP);
        }
        Some(packed)
    }
}

/// Where a new stack's slot comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum StackSource {
    /// A slot not in use: all its entries are empty.
    Fresh(SlotIndex),
    /// A stack from the CPU's cache, partially populated.
    Cached(CachedStack),
}

impl StackSource {
    /// Returns the slot.
    #[must_use]
    pub const fn slot(&self) -> SlotIndex {
        match self {
            Self::Fresh(slot) => *slot,
            Self::Cached(cached) => cached.slot(),
        }
    }
}

/// A new stack.
#[must_use = "a created stack holds memory until it is released"]
#[derive(Debug)]
pub struct Created {
    /// Its state.
    pub stack: Stack,
    /// Pages that still hold an old thread's data and must be zeroed before
    /// the thread runs: the populated pages of a cached stack (fresh frames
    /// come zeroed).
    pub pages_to_zero: PageSet,
}

/// Why a stack could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateFailure {
    /// The group has no room for the initial pages.
    GroupLimit(ChargeError),
    /// An allocation failed after `allocated` of `needed` frames.
    OutOfMemory {
        /// Frames the policy needed.
        needed: u8,
        /// Frames allocated (and given back) before the failure.
        allocated: u8,
    },
}

/// A failed creation: why, and the slot or cached stack, given back intact.
#[derive(Debug, PartialEq, Eq)]
pub struct CreateError {
    /// Why it failed.
    pub failure: CreateFailure,
    /// What the caller passed in, unchanged.
    pub source: StackSource,
}

/// Creates the stack of a new thread in `source`, populated as `spec`'s
/// policy asks (fresh frames with [`Urgency::Normal`]: the caller may sleep),
/// charged to `group` (the charge of `spec.group`), counted under
/// `spec.account`.
///
/// A `Fresh` slot must not be in use (all entries empty). On failure nothing
/// is left behind: see [`CreateError`].
pub fn create<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    tally: Tally<'_>,
    group: &GroupCharge,
    spec: StackSpec,
    source: StackSource,
) -> Result<Created, CreateError> {
    let (slot, inherited) = match &source {
        StackSource::Fresh(slot) => (*slot, PageSet::EMPTY),
        StackSource::Cached(cached) => (cached.slot(), cached.populated()),
    };
    let populated = spec.policy.initial_pages(layout).union(inherited);
    let missing = populated.difference(inherited);
    if let Err(error) = group.try_charge(u64::from(populated.len())) {
        return Err(CreateError {
            failure: CreateFailure::GroupLimit(error),
            source,
        });
    }
    let mut frames = NO_STACK_FRAMES;
    for (allocated, slot_frame) in (0..missing.len()).zip(frames.iter_mut()) {
        if let Some(frame) = platform.alloc_frame(Urgency::Normal) {
            *slot_frame = Some(frame);
            continue;
        }
        for frame in frames.into_iter().flatten() {
            platform.free_frame(frame);
        }
        group.uncharge(u64::from(populated.len()));
        return Err(CreateError {
            failure: CreateFailure::OutOfMemory {
                needed: missing.len(),
                allocated,
            },
            source,
        });
    }

    // Nothing can fail from here on.
    let mut flushes = FlushBatch::new();
    for (page, frame) in missing.iter().zip(frames.into_iter().flatten()) {
        flushes.add(platform.map_stack_page(layout.page_addr(slot, page), frame));
    }
    if let StackSource::Fresh(_) = source {
        for page in layout.all_pages().difference(populated).iter() {
            platform.write_absent(layout.page_addr(slot, page), AbsentPte::unpopulated(slot));
        }
    }
    platform.flush(flushes);
    tally
        .ledger()
        .note_created(spec.account, i64::from(populated.len()));
    Ok(Created {
        stack: Stack {
            slot,
            policy: spec.policy,
            group: spec.group,
            account: spec.account,
            populated,
            populated_pages: populated.len(),
            faults: 0,
            peak_populated_pages: populated.len(),
            saved_sp: None,
            asleep: false,
            packed: None,
        },
        pages_to_zero: inherited,
    })
}

/// The stack of a thread that exited, waiting to be released from another
/// stack.
#[derive(Debug, PartialEq, Eq)]
pub struct ExitedStack(Stack);

impl ExitedStack {
    /// Returns the slot of the stack.
    #[must_use]
    pub const fn slot(&self) -> SlotIndex {
        self.0.slot
    }

    /// Returns the group charged for the stack.
    #[must_use]
    pub const fn group(&self) -> GroupId {
        self.0.group
    }

    /// Returns who the stack is counted for.
    #[must_use]
    pub const fn account(&self) -> Account {
        self.0.account
    }

    /// Returns the populated pages.
    #[must_use]
    pub const fn populated(&self) -> PageSet {
        self.0.populated
    }

    /// Returns the pack of the stack, if its thread exited packed (stopped while asleep).
    #[must_use]
    pub const fn packed(&self) -> Option<&Packed> {
        self.0.packed()
    }

    /// Returns the pages the stack holds ([`Stack::held_pages`]).
    #[must_use]
    pub const fn held_pages(&self) -> u8 {
        self.0.held_pages()
    }
}

/// Marks the stack of a thread that is exiting. The thread still runs on it,
/// so nothing is freed yet: queue it and [`release`] it later.
pub fn exit(stack: Stack) -> ExitedStack {
    ExitedStack(stack)
}

/// What became of a released stack.
#[must_use = "a freed slot goes back to the slot allocator"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Kept, partially populated, in the CPU's stack cache.
    Cached,
    /// Freed: every page unmapped and its frame freed; the slot is unused.
    Freed(SlotIndex),
}

/// Releases an exited stack, from another stack: uncharges it from `group`
/// (the charge of its group) and its account, notes its peak pages and its
/// `high_water_bytes` (the deepest byte its thread wrote, as the kernel found
/// it), and keeps it in `cache` if there is room and it holds no more pages
/// than its policy populates at creation, else frees it.
pub fn release<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    cache: &mut StackCache,
    tally: Tally<'_>,
    group: &GroupCharge,
    exited: ExitedStack,
    high_water_bytes: u64,
) -> Released {
    let ExitedStack(mut stack) = exited;
    let ledger = tally.ledger();
    ledger.add_pages(stack.account, -i64::from(stack.held_pages()));
    ledger.note_released(stack.account, stack.peak_populated_pages, high_water_bytes);
    group.uncharge(u64::from(stack.held_pages()));
    if let Some(packed) = stack.take_packed(false) {
        // The thread is gone: nothing can restore the buffer any more. Its pages become
        // plain unpopulated ones, as a cached stack's are.
        crate::pack::discard(platform, tally, stack.account, packed);
        crate::pack::mark_pages(
            platform,
            layout,
            stack.slot,
            PageSet::EMPTY,
            AbsentPte::unpopulated(stack.slot),
        );
    }
    // A stack that grew beyond what its policy populates at creation is not cached: the next
    // thread would inherit its pages and keep them for life (stacks never shrink under `fault`
    // and `guaranteed`), and passed from thread to thread the pages of a few deep threads
    // would end up held by many shallow ones.
    let lean = stack
        .populated
        .is_subset(stack.policy.initial_pages(layout));
    let kept = if lean {
        cache.put(CachedStack::new(stack.slot, stack.populated))
    } else {
        Err(CachedStack::new(stack.slot, stack.populated))
    };
    match kept {
        Ok(()) => Released::Cached,
        Err(cached) => {
            teardown(platform, layout, cached.slot(), cached.populated());
            Released::Freed(cached.slot())
        }
    }
}

/// Empties every entry of `slot` and frees the frames of its `populated`
/// pages, after flushing every TLB that may cache them.
pub(crate) fn teardown<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    slot: SlotIndex,
    populated: PageSet,
) {
    let mut frames = NO_STACK_FRAMES;
    let mut flushes = FlushBatch::new();
    for (page, slot_frame) in layout.all_pages().iter().zip(frames.iter_mut()) {
        let addr = layout.page_addr(slot, page);
        if populated.contains(page) {
            let (frame, flush) = platform.unmap_stack_page(addr, AbsentPte::EMPTY);
            flushes.add(flush);
            *slot_frame = Some(frame);
        } else {
            platform.write_absent(addr, AbsentPte::EMPTY);
        }
    }
    platform.flush(flushes);
    for frame in frames.into_iter().flatten() {
        platform.free_frame(frame);
    }
}

#[cfg(test)]
mod tests;

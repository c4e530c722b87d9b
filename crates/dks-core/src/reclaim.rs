//! Which stack pages hold no live data, and giving them back.
//!
//! A switched-out thread's live data is everything from its saved stack
//! pointer up to the stack top, plus the red zone below the stack pointer
//! ([`StackLayout::live_pages`]). Populated pages wholly below that are
//! *dead* ([`dead_pages`]): nothing reads them before the thread writes them
//! again, so they can be unmapped; a later fault (or the next switch-in
//! under `switch`) brings a zeroed page back.
//!
//! Unmapping a page is only finished when no TLB can still translate it. The
//! Accessed bit tells ([`platform`](crate::platform)): a page whose bit is
//! clear was never cached and was never written, so it can be unmapped with
//! no flush and its frame, still zero, goes straight back to the magazine; a
//! page whose bit is set needs a shootdown before its frame is freed.
//! [`switch_out_plan`] sorts dead pages into those two kinds.
//!
//! - `switch` unmaps, at every switch-out, the dead pages that need no flush
//!   ([`switch::switch_out`](crate::switch::switch_out)).
//! - `reclaim` and `switch` give back all dead pages of a sleeping thread
//!   under memory pressure, with one batched shootdown ([`reclaim_asleep`]).
//!
//! # Invariants
//!
//! - Live pages (the top page included) are never unmapped.
//! - A frame is freed or reused only after the flush its unmapping needed.
//! - Unmapped pages are left unpopulated with their owner, so the thread can
//!   fault them back.

use crate::addr::VirtAddr;
use crate::counters::{Counter, Tally};
use crate::frame::{NO_STACK_FRAMES, StackFrames};
use crate::group::GroupCharge;
use crate::layout::{LayoutError, PAGE_SIZE_IN_BYTES, StackLayout, StackPage};
use crate::magazine::Magazine;
use crate::page_set::PageSet;
use crate::platform::{FlushBatch, FlushNeed, Platform};
use crate::pte::{self, AbsentPte, EntryKind};
use crate::stack::Stack;

/// The address of stack page `page` of the stack whose top is `top`
/// ([`StackLayout::page_addr`] with the top computed once for a loop over pages).
#[inline]
fn page_below(top: u64, page: StackPage) -> VirtAddr {
    VirtAddr::new(top - (u64::from(page.index()) + 1) * PAGE_SIZE_IN_BYTES)
}

/// Returns the populated pages of `stack` that hold no live data when its
/// stack pointer is `saved_sp`.
pub fn dead_pages(
    layout: &StackLayout,
    stack: &Stack,
    saved_sp: VirtAddr,
) -> Result<PageSet, LayoutError> {
    let live = layout.live_pages(stack.slot(), saved_sp)?;
    Ok(stack.populated().difference(live))
}

/// What may be given back of a switched-out stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchOutPlan {
    /// Dead pages with the Accessed bit clear: never cached, never written;
    /// unmap them with no flush.
    pub unmap_without_flush: PageSet,
    /// Dead pages with the Accessed bit set: unmapping them needs a shootdown.
    pub unmap_with_shootdown: PageSet,
    /// Populated pages that may hold live data.
    pub keep: PageSet,
}

/// Sorts the populated pages of `stack`, switched out at `saved_sp`, by what
/// giving them back would take.
pub fn switch_out_plan<P: Platform>(
    platform: &P,
    layout: &StackLayout,
    stack: &Stack,
    saved_sp: VirtAddr,
) -> Result<SwitchOutPlan, LayoutError> {
    let dead = dead_pages(layout, stack, saved_sp)?;
    let mut plan = SwitchOutPlan {
        unmap_without_flush: PageSet::EMPTY,
        unmap_with_shootdown: PageSet::EMPTY,
        keep: stack.populated().difference(dead),
    };
    let top = layout.stack_top(stack.slot()).as_u64();
    for page in dead.iter() {
        let entry = platform.read_entry(page_below(top, page));
        debug_assert_eq!(page_below(top, page), layout.page_addr(stack.slot(), page));
        match pte::decode(entry) {
            EntryKind::Present {
                accessed: false, ..
            } => plan.unmap_without_flush.insert(page),
            // Accessed, or (impossibly) not present: never skip a flush on doubt.
            _ => plan.unmap_with_shootdown.insert(page),
        }
    }
    Ok(plan)
}

/// Gives back every dead page of a sleeping `stack` whose policy reclaims
/// while asleep, and returns how many pages it gave back. Clean frames refill
/// `magazine` first; the others are freed after one batched flush.
pub fn reclaim_asleep<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    stack: &mut Stack,
) -> u8 {
    if !stack.is_asleep() || !stack.policy().reclaims_while_asleep() {
        return 0;
    }
    let Some(saved_sp) = stack.saved_sp() else {
        return 0;
    };
    // The saved pointer was checked when it was recorded.
    let Ok(dead) = dead_pages(layout, stack, saved_sp) else {
        return 0;
    };
    give_back(platform, layout, magazine, tally, group, stack, dead)
}

/// Why the dead pages of a sleeping stack were trimmed, for the per-cause counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimCause {
    /// The reclaim thread ran because admission was refused or a refill failed.
    Pressure,
    /// The thread had slept long; trimmed at the reclaim thread's own pace.
    LongSleep,
}

impl TrimCause {
    /// The counter that counts pages trimmed for this cause.
    #[must_use]
    pub const fn counter(self) -> Counter {
        match self {
            Self::Pressure => Counter::ReclaimedDeadPressure,
            Self::LongSleep => Counter::ReclaimedDeadAsleep,
        }
    }
}

/// [`reclaim_asleep`], counting the pages given back under `cause` as well as under
/// `dks_reclaimed`: the trim of one sleeping stack by the kernel's reclaim thread.
pub fn trim_asleep<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    stack: &mut Stack,
    cause: TrimCause,
) -> u8 {
    let trimmed = reclaim_asleep(platform, layout, magazine, tally, group, stack);
    if trimmed > 0 {
        tally.count(stack.account(), cause.counter(), u64::from(trimmed));
    }
    trimmed
}

/// Unmaps `pages` of `stack` (leaving them unpopulated), flushes what needs
/// it, puts clean frames into `magazine` and frees the rest, and accounts for
/// it under the stack's account. Returns the number of pages given back.
pub(crate) fn give_back<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    stack: &mut Stack,
    pages: PageSet,
) -> u8 {
    let owner = AbsentPte::unpopulated(stack.slot());
    // Frames that wait for the flush, in place: the array is made only for the first such
    // frame (a switch-out gives back none), and neither moved nor scanned past its `waiting`
    // first entries (moving it cost a 256-byte copy per switch-out).
    let mut after_flush: Option<StackFrames> = None;
    let mut waiting = 0;
    let mut given_back: u8 = 0;
    let mut flushes = FlushBatch::new();
    let top = layout.stack_top(stack.slot()).as_u64();
    for page in pages.iter() {
        let addr = page_below(top, page);
        debug_assert_eq!(addr, layout.page_addr(stack.slot(), page));
        let (frame, flush) = platform.unmap_stack_page(addr, owner);
        given_back += 1;
        if flush.need() == FlushNeed::NotCached {
            // Never accessed, so never written: still zero.
            if let Err(frame) = magazine.put(frame) {
                platform.free_frame(frame);
            }
        } else {
            after_flush.get_or_insert(NO_STACK_FRAMES)[waiting] = Some(frame);
            waiting += 1;
        }
        flushes.add(flush);
    }
    stack.note_unpopulated_set(pages, given_back);
    platform.flush(flushes);
    if let Some(after_flush) = after_flush.as_mut() {
        for frame in after_flush[..waiting].iter_mut().filter_map(Option::take) {
            platform.free_frame(frame);
        }
    }
    tally.count(stack.account(), Counter::Reclaimed, u64::from(given_back));
    tally
        .ledger()
        .add_pages(stack.account(), -i64::from(given_back));
    group.uncharge(u64::from(given_back));
    given_back
}

#[cfg(test)]
mod tests;

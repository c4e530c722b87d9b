//! The stack fault: serving a page fault on an unpopulated stack page.
//!
//! The kernel's #PF handler runs on its own IST stack with interrupts off. It
//! calls [`handle`] with the faulting address, this CPU's magazine and
//! counters, and a lookup from owner to stack. [`handle`]:
//!
//! 1. locates the address in the stack region: outside it, the fault is not
//!    ours ([`FaultOutcome::NotAStackPage`]); on a guard page it is an
//!    overflow, always reported ([`FaultOutcome::GuardHit`]);
//! 2. reads the page-table entry: only an unpopulated entry is a stack fault,
//!    and its owner comes from the entry, never from `current`; the owner
//!    must be the slot the address lies in;
//! 3. takes one frame from the magazine and maps it. An empty magazine is
//!    fatal for the thread ([`FatalReason::MagazineEmpty`]); the `guaranteed`
//!    admission rule exists so that this cannot happen.
//!
//! # What the fault path touches
//!
//! Exactly: this CPU's magazine (`&mut`), this CPU's counters (atomic-add
//! atomics), the faulting stack's own state (`&mut`, found by the owner), its
//! group's charge (one lock-free atomic add) and the one page-table entry.
//! It allocates nothing, takes no lock and does not panic on anything it can
//! report: every such condition is a [`FaultOutcome`].

use crate::addr::VirtAddr;
use crate::counters::{CpuCounters, Event};
use crate::cpu::CpuId;
use crate::group::GroupCharge;
use crate::layout::{SlotIndex, SlotPart, StackLayout, StackPage};
use crate::magazine::Magazine;
use crate::platform::{FlushBatch, Platform};
use crate::pte::{self, EntryKind};
use crate::stack::Stack;

/// What became of a page fault.
#[must_use = "a fatal fault or a guard hit must stop the thread"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The page is mapped now; return and restart the faulting instruction.
    Served {
        /// The owning slot.
        slot: SlotIndex,
        /// The page mapped.
        page: StackPage,
    },
    /// A stack fault that cannot be served: stop the thread (or the kernel).
    Fatal {
        /// The slot the address lies in.
        slot: SlotIndex,
        /// The faulting address.
        addr: VirtAddr,
        /// How deep the address is below the stack top, in bytes.
        depth_in_bytes: u64,
        /// Why it cannot be served.
        reason: FatalReason,
    },
    /// A stack overflow into the guard page of `slot`.
    GuardHit {
        /// The slot whose guard page was hit.
        slot: SlotIndex,
        /// The faulting address.
        addr: VirtAddr,
        /// How deep the address is below the stack top, in bytes.
        depth_in_bytes: u64,
    },
    /// Not a stack fault: the kernel's ordinary page-fault path handles it.
    NotAStackPage,
}

/// Why a stack fault cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalReason {
    /// The magazine had no frame (the RFC's failure).
    MagazineEmpty,
    /// The entry names an owner other than the slot the address is in.
    OwnerMismatch {
        /// The owner the entry names.
        owner: SlotIndex,
    },
    /// No live stack belongs to the owner the entry names.
    NoSuchStack {
        /// The owner the entry names.
        owner: SlotIndex,
    },
    /// The stack's state says the page is populated already.
    AlreadyPopulated,
    /// The entry of a stack page is neither present, unpopulated nor empty.
    ForeignEntry {
        /// The raw entry.
        entry: u64,
    },
    /// The magazine passed in belongs to another CPU.
    WrongCpu {
        /// The magazine's CPU.
        magazine: CpuId,
        /// The CPU that faulted.
        current: CpuId,
    },
}

/// Handles a page fault at `addr` on this CPU: see the module docs.
/// `lookup` returns the live stack of an owner and its group's charge.
pub fn handle<'s, P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    counters: &CpuCounters,
    addr: VirtAddr,
    lookup: impl FnOnce(SlotIndex) -> Option<(&'s mut Stack, &'s GroupCharge)>,
) -> FaultOutcome {
    let Some(location) = layout.locate(addr) else {
        return FaultOutcome::NotAStackPage;
    };
    let slot = location.slot;
    let depth_in_bytes = layout.depth_in_bytes(slot, addr);
    let page = match location.part {
        SlotPart::Guard => {
            counters.count(Event::GuardHits, 1);
            return FaultOutcome::GuardHit {
                slot,
                addr,
                depth_in_bytes,
            };
        }
        SlotPart::Stack(page) => page,
    };
    let entry = platform.read_entry(addr.page_base());
    let result = match pte::decode(entry) {
        EntryKind::Present { .. } | EntryKind::Empty => return FaultOutcome::NotAStackPage,
        EntryKind::Foreign => Err(FatalReason::ForeignEntry { entry }),
        EntryKind::Unpopulated { owner } if owner != slot => {
            Err(FatalReason::OwnerMismatch { owner })
        }
        EntryKind::Unpopulated { owner } => {
            let current = platform.current_cpu();
            if current != magazine.cpu() {
                Err(FatalReason::WrongCpu {
                    magazine: magazine.cpu(),
                    current,
                })
            } else {
                match lookup(owner) {
                    Some((stack, group)) if stack.slot() == owner => {
                        serve(platform, layout, magazine, counters, stack, group, page)
                    }
                    _ => Err(FatalReason::NoSuchStack { owner }),
                }
            }
        }
    };
    match result {
        Ok(()) => FaultOutcome::Served { slot, page },
        Err(reason) => {
            counters.count(Event::Fatal, 1);
            FaultOutcome::Fatal {
                slot,
                addr,
                depth_in_bytes,
                reason,
            }
        }
    }
}

/// Populates every page of `stack` from its top down to the page holding
/// `lowest`, from the magazine, and returns how many pages it mapped.
///
/// For the kernel's fault entry: before it moves an exception frame from the
/// IST stack to the interrupted stack (below the interrupted stack pointer
/// and its red zone), that area must be populated so the move cannot fault.
/// Stops at the first page it cannot serve.
pub fn populate_down_to<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    counters: &CpuCounters,
    stack: &mut Stack,
    group: &GroupCharge,
    lowest: VirtAddr,
) -> Result<u8, FatalReason> {
    let slot = stack.slot();
    let depth = layout.depth_in_bytes(slot, lowest);
    let wanted = layout.pages_to_depth(depth);
    let mut mapped = 0;
    for page in wanted.difference(stack.populated()).iter() {
        if let Err(reason) = serve(platform, layout, magazine, counters, stack, group, page) {
            counters.count(Event::Fatal, 1);
            return Err(reason);
        }
        mapped += 1;
    }
    Ok(mapped)
}

/// Maps `page` of `stack` with a frame from the magazine, and accounts for it.
fn serve<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    counters: &CpuCounters,
    stack: &mut Stack,
    group: &GroupCharge,
    page: StackPage,
) -> Result<(), FatalReason> {
    if stack.populated().contains(page) {
        return Err(FatalReason::AlreadyPopulated);
    }
    let frame = magazine.take().ok_or(FatalReason::MagazineEmpty)?;
    let mut flushes = FlushBatch::new();
    flushes.add(platform.map_stack_page(layout.page_addr(stack.slot(), page), frame));
    platform.flush(flushes);
    stack.note_populated(page);
    counters.count(Event::Faults, 1);
    counters.add_stack_pages(1);
    group.force_charge(1);
    Ok(())
}

#[cfg(test)]
mod tests;

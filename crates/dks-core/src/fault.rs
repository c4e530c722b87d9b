//! The stack fault: serving a page fault on an unpopulated stack page.
//!
//! The kernel's #PF handler runs on its own IST stack with interrupts off. It
//! calls [`handle`] once per fault, with the faulting address, this CPU's
//! [`Tally`] and its table of stacks ([`StackTable`]). [`handle`]:
//!
//! 1. locates the address in the stack region: outside it, the fault is not
//!    ours ([`FaultOutcome::NotAStackPage`]); on a guard page it is an
//!    overflow, always reported ([`FaultOutcome::GuardHit`]);
//! 2. reads the page-table entry: only an unpopulated entry is a stack fault,
//!    and its owner comes from the entry, never from `current`; the owner
//!    must be the slot the address lies in;
//! 3. takes this CPU's magazine and the owner's stack from the table, without
//!    waiting (a busy one is fatal, never waited for), then one frame from the
//!    magazine, and maps it. An empty magazine is fatal for the thread
//!    ([`FatalReason::MagazineEmpty`]); the `guaranteed` admission rule exists
//!    so that this cannot happen.
//!
//! Every outcome is counted here, once, under the account of the slot the
//! address lies in: a served fault, a guard hit, a fatal fault.
//!
//! Before the kernel moves a trap frame onto an interrupted stack it calls
//! [`populate_span`], which serves every page of the span that is not present
//! exactly as a fault on it would be served.
//!
//! # What the fault path touches
//!
//! Exactly: this CPU's magazine (`&mut`), this CPU's counters and its
//! account's page count (atomic adds), the faulting stack's own state (`&mut`,
//! found by the owner), its group's charge (one lock-free atomic add) and the
//! one page-table entry.
//! It allocates nothing, takes no lock and does not panic on anything it can
//! report: every such condition is a [`FaultOutcome`].

use crate::account::Account;
use crate::addr::VirtAddr;
use crate::counters::{Counter, Tally};
use crate::cpu::CpuId;
use crate::group::GroupCharge;
use crate::layout::{PAGE_SIZE_IN_BYTES, SlotIndex, SlotPart, StackLayout, StackPage};
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

/// What the fault path found busy: it never waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// This CPU's magazine.
    Magazine,
    /// The faulting slot's stack.
    Stack,
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
    /// The magazine or the stack was held by someone else (see [`StackTable`]).
    Busy(Busy),
    /// The stack is packed ([`pack`](crate::pack)): whoever touched it read or wrote a
    /// sleeping thread's stack, a bug in the toucher. Only a restore maps it back.
    PackedStack {
        /// Whether the stack was packed in guard mode (counted as a guard-mode catch).
        guard: bool,
    },
}

impl FatalReason {
    /// Returns the reason's name as records spell it (`magazine_empty`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::MagazineEmpty => "magazine_empty",
            Self::OwnerMismatch { .. } => "owner_mismatch",
            Self::NoSuchStack { .. } => "no_such_stack",
            Self::AlreadyPopulated => "already_populated",
            Self::ForeignEntry { .. } => "foreign_entry",
            Self::WrongCpu { .. } => "wrong_cpu",
            Self::Busy(Busy::Magazine) => "magazine_busy",
            Self::Busy(Busy::Stack) => "stack_busy",
            Self::PackedStack { .. } => "packed_stack",
        }
    }
}

/// What the fault path needs of the kernel's table of stacks.
pub trait StackTable {
    /// Returns who the stack in `slot` is counted for, without waiting: a guard hit or a
    /// fatal fault is counted there. (For a slot with no live stack any account will do:
    /// a fault there is a kernel bug either way.)
    fn account(&self, slot: SlotIndex) -> Account;

    /// Runs `serve` with this CPU's magazine and the live stack of slot `owner`, if there is
    /// one, with its group's charge. Both are taken without waiting: `Err` names the one that
    /// was busy, and `serve` does not run.
    fn with_stack<R>(
        &mut self,
        owner: SlotIndex,
        serve: impl FnOnce(&mut Magazine, Option<(&mut Stack, &GroupCharge)>) -> R,
    ) -> Result<R, Busy>;
}

/// Handles a page fault at `addr` on this CPU: see the module docs.
pub fn handle<P: Platform, T: StackTable>(
    platform: &mut P,
    layout: &StackLayout,
    tally: Tally<'_>,
    table: &mut T,
    addr: VirtAddr,
) -> FaultOutcome {
    let Some(location) = layout.locate(addr) else {
        return FaultOutcome::NotAStackPage;
    };
    let slot = location.slot;
    let page = match location.part {
        SlotPart::Guard => {
            tally.count(table.account(slot), Counter::GuardHits, 1);
            return FaultOutcome::GuardHit {
                slot,
                addr,
                depth_in_bytes: layout.depth_in_bytes(slot, addr),
            };
        }
        SlotPart::Stack(page) => page,
    };
    // The page holding `addr` is `page` of `slot`: its address is `addr`'s page base, not a
    // second computation from the slot.
    let page_base = addr.page_base();
    debug_assert_eq!(page_base, layout.page_addr(slot, page));
    let entry = platform.read_entry(page_base);
    let result = match pte::decode(entry) {
        EntryKind::Present { .. } | EntryKind::Empty => return FaultOutcome::NotAStackPage,
        // A page of a packed stack among them: told apart below, in the refusal branch, so
        // a fault that is served never looks for a pack.
        EntryKind::Foreign => Err(FatalReason::ForeignEntry { entry }),
        EntryKind::Unpopulated { owner } if owner != slot => {
            Err(FatalReason::OwnerMismatch { owner })
        }
        EntryKind::Unpopulated { owner } => table
            .with_stack(owner, |magazine, live| {
                let current = platform.current_cpu();
                if current != magazine.cpu() {
                    return Err(FatalReason::WrongCpu {
                        magazine: magazine.cpu(),
                        current,
                    });
                }
                match live {
                    Some((stack, group)) if stack.slot() == owner => {
                        serve(platform, magazine, tally, stack, group, page, page_base)
                    }
                    _ => Err(FatalReason::NoSuchStack { owner }),
                }
            })
            .unwrap_or_else(|busy| Err(FatalReason::Busy(busy))),
    };
    match result {
        Ok(()) => FaultOutcome::Served { slot, page },
        Err(reason) => {
            let reason = match reason {
                FatalReason::ForeignEntry { entry } => refuse_foreign(table, tally, slot, entry),
                other => other,
            };
            tally.count(table.account(slot), Counter::Fatal, 1);
            FaultOutcome::Fatal {
                slot,
                addr,
                depth_in_bytes: layout.depth_in_bytes(slot, addr),
                reason,
            }
        }
    }
}

/// Makes every page of `[lowest, top)` present, from the page holding the highest byte down
/// to the one holding `lowest`: each page that is not present is served exactly as a fault on
/// it would be ([`handle`], which also counts it). Pages outside the stack region, and pages
/// already present, are left as they are.
///
/// For the kernel's trap entry: before it moves a trap frame from the IST stack to the
/// interrupted stack, every page the move writes must be present, or the copy would fault
/// with interrupts off. Checking only the lowest page would not do: a stack can have gaps (a
/// thread that touched a deep byte without the pages above it). Stops at the first page that
/// is a guard page or cannot be served, and returns that outcome (its address is the page's
/// lowest byte in the span).
pub fn populate_span<P: Platform, T: StackTable>(
    platform: &mut P,
    layout: &StackLayout,
    tally: Tally<'_>,
    table: &mut T,
    lowest: VirtAddr,
    top: VirtAddr,
) -> Result<(), FaultOutcome> {
    debug_assert!(lowest < top, "empty span {lowest}..{top}");
    let mut page = VirtAddr::new(top.as_u64() - 1).page_base();
    loop {
        let present = matches!(
            pte::decode(platform.read_entry(page)),
            EntryKind::Present { .. }
        );
        if !present {
            let addr = page.max(lowest);
            match handle(platform, layout, tally, table, addr) {
                FaultOutcome::Served { .. } | FaultOutcome::NotAStackPage => {}
                failure => return Err(failure),
            }
        }
        if page <= lowest {
            return Ok(());
        }
        page = VirtAddr::new(page.as_u64() - PAGE_SIZE_IN_BYTES);
    }
}

/// The refusal of a fault on a foreign entry of `slot`: a touch of a packed stack if the
/// entry is one of its pages ([`pte::packed_owner`]), else a foreign entry. Out of line and
/// cold, like every refusal.
#[cold]
#[inline(never)]
fn refuse_foreign<T: StackTable>(
    table: &mut T,
    tally: Tally<'_>,
    slot: SlotIndex,
    entry: u64,
) -> FatalReason {
    if pte::packed_owner(entry) != Some(slot) {
        return FatalReason::ForeignEntry { entry };
    }
    table
        .with_stack(slot, |_, live| match live {
            Some((stack, _)) if stack.slot() == slot && stack.is_packed() => {
                refuse_packed(tally, stack)
            }
            _ => FatalReason::ForeignEntry { entry },
        })
        // Its lock is held elsewhere (a pack, a restore or an admission under way): the
        // entry alone says the page is a packed stack's, and the toucher is at fault all the
        // same. Whether it was packed in guard mode is not known without the lock: not
        // counted as a catch.
        .unwrap_or(FatalReason::PackedStack { guard: false })
}

/// The refusal of a touch of a packed stack, counted as a guard-mode catch if it was packed
/// in guard mode. Out of line and cold: only the refusal branch comes here.
#[cold]
#[inline(never)]
fn refuse_packed(tally: Tally<'_>, stack: &Stack) -> FatalReason {
    let guard = stack
        .packed()
        .is_some_and(|packed| packed.kept_frame().is_some());
    if guard {
        tally.count(stack.account(), Counter::PackGuardCatches, 1);
    }
    FatalReason::PackedStack { guard }
}

/// Maps `page` of `stack` (at `page_base`) with a frame from the magazine, and accounts for it
/// ([`Tally::stack_page_faulted_in`], the fault path's one accounting update).
fn serve<P: Platform>(
    platform: &mut P,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    stack: &mut Stack,
    group: &GroupCharge,
    page: StackPage,
    page_base: VirtAddr,
) -> Result<(), FatalReason> {
    // Every page of a packed stack carries `AbsentPte::packed`: its faults never come here.
    debug_assert!(!stack.is_packed(), "serving a fault on a packed stack");
    if stack.populated().contains(page) {
        return Err(FatalReason::AlreadyPopulated);
    }
    let frame = magazine.take().ok_or(FatalReason::MagazineEmpty)?;
    let mut flushes = FlushBatch::new();
    flushes.add(platform.map_stack_page(page_base, frame));
    platform.flush(flushes);
    stack.note_faulted_in(page);
    tally.stack_page_faulted_in(stack.account(), group);
    if stack.policy().maps_all_while_running() {
        // Its every page was mapped when it was admitted: a fault means a page went missing
        // while it ran. Served, so the thread lives on, and counted as the bug it is.
        tally.count(stack.account(), Counter::SwitchFaults, 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

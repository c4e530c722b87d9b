//! The stack-fault path: runs on the #PF IST stack with interrupts off.
//!
//! It takes this CPU's magazine and the faulting slot's stack with `try_lock` only (see the
//! module docs of `stacks` for why both are always free here), calls `dks_core::fault`, and
//! accounts the result. It allocates nothing and never waits.

use core::sync::atomic::Ordering;

use dks_core::fault::{self, FatalReason, FaultOutcome};
use dks_core::{SlotIndex, SlotPart, VirtAddr};

use super::platform::X86Platform;
use super::{COUNTERS, GROUPS, REGION, Region, accounting, slot_counters};
use crate::hw::cpu_ops;
use crate::hw::paging;

/// What became of a fault in the stack region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultResult {
    /// The page is mapped now; restart the instruction.
    Served,
    /// Not a stack page: the ordinary page-fault path decides.
    NotStack,
    /// A stack overflow into the guard page of `slot`.
    Guard {
        /// The slot.
        slot: SlotIndex,
        /// Bytes from the stack top to the faulting address.
        depth: u64,
    },
    /// A stack fault that cannot be served.
    Fatal {
        /// The slot.
        slot: SlotIndex,
        /// Bytes from the stack top to the faulting address.
        depth: u64,
        /// Why, in the words of records (`magazine_empty`, ...).
        reason: &'static str,
    },
}

fn reason_name(reason: FatalReason) -> &'static str {
    match reason {
        FatalReason::MagazineEmpty => "magazine_empty",
        FatalReason::OwnerMismatch { .. } => "owner_mismatch",
        FatalReason::NoSuchStack { .. } => "no_such_stack",
        FatalReason::AlreadyPopulated => "already_populated",
        FatalReason::ForeignEntry { .. } => "foreign_entry",
        FatalReason::WrongCpu { .. } => "wrong_cpu",
    }
}

/// Handles a page fault at `address` if it is in the stack region.
pub fn handle_fault(address: u64) -> FaultResult {
    let Some(region) = REGION.get() else {
        return FaultResult::NotStack;
    };
    let addr = VirtAddr::new(address);
    let Some(location) = region.layout.locate(addr) else {
        return FaultResult::NotStack;
    };
    let slot = location.slot;
    let depth = region.layout.depth_in_bytes(slot, addr);
    let counts = slot_counters(slot);
    // Trap context: interrupts are off already; the guard only proves it.
    let irq = cpu_ops::IrqGuard::new();
    if location.part == SlotPart::Guard {
        let cpu = cpu_ops::current_id(&irq) as usize;
        let outcome = with_locks(region, cpu, slot, |platform, magazine, stack| {
            fault::handle(
                platform,
                &region.layout,
                magazine,
                &COUNTERS[cpu],
                addr,
                |_| stack,
            )
        });
        debug_assert!(matches!(outcome, Ok(FaultOutcome::GuardHit { .. })));
        counts.guard_hits.fetch_add(1, Ordering::Relaxed);
        return FaultResult::Guard { slot, depth };
    }
    let cpu = cpu_ops::current_id(&irq) as usize;
    let outcome = with_locks(region, cpu, slot, |platform, magazine, stack| {
        fault::handle(
            platform,
            &region.layout,
            magazine,
            &COUNTERS[cpu],
            addr,
            |_| stack,
        )
    });
    match outcome {
        Ok(FaultOutcome::Served { .. }) => {
            note_populated(region, slot, counts, 1);
            FaultResult::Served
        }
        Ok(FaultOutcome::NotAStackPage) => FaultResult::NotStack,
        Ok(FaultOutcome::GuardHit { depth_in_bytes, .. }) => FaultResult::Guard {
            slot,
            depth: depth_in_bytes,
        },
        Ok(FaultOutcome::Fatal { reason, .. }) => fatal(counts, slot, depth, reason_name(reason)),
        Err(busy) => fatal(counts, slot, depth, busy),
    }
}

fn fatal(
    counts: &accounting::PolicyCounters,
    slot: SlotIndex,
    depth: u64,
    reason: &'static str,
) -> FaultResult {
    counts.fatal.fetch_add(1, Ordering::Relaxed);
    FaultResult::Fatal {
        slot,
        depth,
        reason,
    }
}

fn note_populated(
    region: &Region,
    slot: SlotIndex,
    counts: &accounting::PolicyCounters,
    pages: u8,
) {
    let cell = &region.slots[slot.as_usize()];
    cell.populated.fetch_add(pages, Ordering::Relaxed);
    cell.faults.fetch_add(u32::from(pages), Ordering::Relaxed);
    counts.faults.fetch_add(u64::from(pages), Ordering::Relaxed);
    counts.add_pages(i64::from(pages));
}

/// Runs `f` with this CPU's magazine and the slot's live stack (and its group), taken without
/// waiting. `Err` names what was busy or missing.
fn with_locks<T>(
    region: &Region,
    cpu: usize,
    slot: SlotIndex,
    f: impl FnOnce(
        &mut X86Platform,
        &mut dks_core::Magazine,
        Option<(&mut dks_core::Stack, &dks_core::GroupCharge)>,
    ) -> T,
) -> Result<T, &'static str> {
    let mut magazine = region.magazines[cpu].try_lock().ok_or("magazine_busy")?;
    let mut stack = region.slots[slot.as_usize()]
        .stack
        .try_lock()
        .ok_or("stack_busy")?;
    let live = stack.as_mut().map(|s| {
        let group = &GROUPS[s.group().as_usize()];
        (s, group)
    });
    let result = f(&mut X86Platform::live(), &mut magazine, live);
    super::switch::note_magazine(cpu, magazine.len());
    Ok(result)
}

/// Before a trap frame is moved onto an interrupted stack, makes sure every page of
/// `[lowest, top)` is populated: each page that is not is served exactly as a stack fault on
/// it would be, from this CPU's magazine. Checking only the lowest byte would not do: a stack
/// can have gaps (a thread that touched a deep byte without the pages above it), and the copy
/// would fault on a higher page with interrupts off. `Ok` also for pages outside the stack
/// region. A guard page in the span means the stack overflowed; a page that cannot be served
/// is fatal (the first one found, from the top). `Err` carries the address of the page that
/// failed (or `lowest`, in the lowest page) with the failure.
pub fn prepare_bounce(lowest: u64, top: u64) -> Result<(), (u64, FaultResult)> {
    debug_assert!(lowest < top, "empty span {lowest:#x}..{top:#x}");
    let page_bytes = dks_core::layout::PAGE_SIZE_IN_BYTES;
    let mut page = (top - 1) & !(page_bytes - 1);
    loop {
        let address = page.max(lowest);
        if paging::translate(page).is_none() {
            match handle_fault(address) {
                FaultResult::Served | FaultResult::NotStack => {}
                failure => return Err((address, failure)),
            }
        }
        if page <= lowest {
            return Ok(());
        }
        page -= page_bytes;
    }
}

//! The stack-fault path: runs on the #PF IST stack with interrupts off.
//!
//! Each fault goes to `dks_core::fault::handle` once, with this CPU's tally and the kernel's
//! table of slots ([`Slots`]): the core locates the address, tells a guard hit from a stack
//! fault, reads the owner from the entry, serves the page and counts what happened. The table
//! takes this CPU's magazine and the owner's stack with `try_lock` only (see the module docs
//! of `stacks` for why both are always free here) and keeps the slot's mirrors up to date. It
//! allocates nothing and never waits.

use dks_core::fault::{self, Busy, FatalReason, FaultOutcome, StackTable};
use dks_core::{Account, GroupCharge, Magazine, SlotIndex, Stack, StackLayout, Tally, VirtAddr};

use super::platform::X86Platform;
use super::{GROUPS, REGION, Region, tally};
use crate::hw::cpu_ops;

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

impl FaultResult {
    /// The `reason` of a [`FaultResult::Fatal`] touch of a packed stack.
    pub const PACKED_STACK: &'static str = FatalReason::PackedStack { guard: false }.name();
}

impl From<FaultOutcome> for FaultResult {
    fn from(outcome: FaultOutcome) -> Self {
        match outcome {
            FaultOutcome::Served { .. } => FaultResult::Served,
            FaultOutcome::NotAStackPage => FaultResult::NotStack,
            FaultOutcome::GuardHit {
                slot,
                depth_in_bytes,
                ..
            } => FaultResult::Guard {
                slot,
                depth: depth_in_bytes,
            },
            FaultOutcome::Fatal {
                slot,
                depth_in_bytes,
                reason,
                ..
            } => FaultResult::Fatal {
                slot,
                depth: depth_in_bytes,
                reason: reason.name(),
            },
        }
    }
}

/// The slots of the stack region as the fault path of CPU `cpu` sees them, with interrupts
/// off (`irq`).
struct Slots<'a> {
    region: &'a Region,
    cpu: usize,
    irq: &'a cpu_ops::IrqGuard,
}

impl StackTable for Slots<'_> {
    fn account(&self, slot: SlotIndex) -> Account {
        super::account(slot)
    }

    fn with_stack<R>(
        &mut self,
        owner: SlotIndex,
        serve: impl FnOnce(&mut Magazine, Option<(&mut Stack, &GroupCharge)>) -> R,
    ) -> Result<R, Busy> {
        let mut magazine = self.region.magazines[self.cpu]
            .try_lock_irqs_off(self.irq)
            .ok_or(Busy::Magazine)?;
        let cell = &self.region.slots[owner.as_usize()];
        let mut stack = cell.stack.try_lock_irqs_off(self.irq).ok_or(Busy::Stack)?;
        let live = stack.as_mut().map(|stack| {
            let group = &GROUPS[stack.group().as_usize()];
            (stack, group)
        });
        let result = serve(&mut magazine, live);
        if let Some(stack) = stack.as_ref() {
            cell.mirror_pages(stack);
        }
        super::switch::note_magazine(self.cpu, magazine.len());
        Ok(result)
    }
}

/// Runs `f` with what dks-core's fault path takes on this CPU: the platform, the layout, this
/// CPU's tally and the table of slots. `None`, without reading anything of this CPU's, when
/// `[lowest, top)` lies outside the stack region (or before it exists): the fault path of
/// every other page fault pays no more than this comparison.
fn on_this_cpu<R>(
    lowest: VirtAddr,
    top: VirtAddr,
    f: impl FnOnce(&mut X86Platform, &StackLayout, Tally<'static>, &mut Slots<'_>) -> R,
) -> Option<R> {
    let region = REGION.get()?;
    let end = region.layout.region_end();
    if top <= region.layout.base() || (end.as_u64() != 0 && lowest >= end) {
        return None;
    }
    // Trap context: interrupts are off already; the guard only proves it.
    let irq = cpu_ops::IrqGuard::new();
    let cpu = cpu_ops::current_id(&irq) as usize;
    Some(f(
        &mut X86Platform::live(),
        &region.layout,
        tally(cpu),
        &mut Slots {
            region,
            cpu,
            irq: &irq,
        },
    ))
}

/// Handles a page fault at `address`: served if it is a stack fault, else what it is.
pub fn handle_fault(address: u64) -> FaultResult {
    let addr = VirtAddr::new(address);
    on_this_cpu(
        addr,
        VirtAddr::new(address + 1),
        |platform, layout, tally, slots| fault::handle(platform, layout, tally, slots, addr).into(),
    )
    .unwrap_or(FaultResult::NotStack)
}

/// Before a trap frame is moved onto an interrupted stack, makes sure every page of
/// `[lowest, top)` is present (`dks_core::fault::populate_span`: each missing stack page is
/// served as a stack fault on it would be, from this CPU's magazine; pages outside the stack
/// region are left alone). A guard page in the span means the stack overflowed; a page that
/// cannot be served is fatal (the first one found, from the top). `Err` carries the address
/// of the page that failed (or `lowest`, in the lowest page) with the failure.
pub fn prepare_bounce(lowest: u64, top: u64) -> Result<(), (u64, FaultResult)> {
    let (low, high) = (VirtAddr::new(lowest), VirtAddr::new(top));
    let span = on_this_cpu(low, high, |platform, layout, tally, slots| {
        fault::populate_span(platform, layout, tally, slots, low, high)
    });
    span.unwrap_or(Ok(())).map_err(|failure| {
        let address = match failure {
            FaultOutcome::GuardHit { addr, .. } | FaultOutcome::Fatal { addr, .. } => addr,
            FaultOutcome::Served { .. } | FaultOutcome::NotAStackPage => VirtAddr::new(lowest),
        };
        (address.as_u64(), FaultResult::from(failure))
    })
}

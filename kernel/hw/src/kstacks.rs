//! Kernel stacks that are always fully populated: IST stacks and idle stacks.
//!
//! They live in the kernel-stacks region, laid out by `dks-core`'s `StackLayout` like the
//! thread stacks ([`KERNEL_STACKS`]): each stack occupies one slot, a guard page (never mapped)
//! and then `KERNEL_STACK_BYTES` of mapped memory, so an overflow faults on the guard page
//! instead of running into the next stack. Every address below comes from that layout. Slots
//! are handed out once and never freed (there is a fixed number per CPU).

use core::sync::atomic::{AtomicU64, Ordering};

use dks_core::VirtAddr;
use dks_core::layout::{SlotIndex, SlotPart};

use crate::frame;
use crate::layout::KERNEL_STACKS;
use crate::paging::{self, flags};

static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);

/// A mapped kernel stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelStack {
    slot: SlotIndex,
}

impl KernelStack {
    /// The address just above the stack (the initial stack pointer).
    #[inline]
    pub fn top(&self) -> u64 {
        KERNEL_STACKS.stack_top(self.slot).as_u64()
    }

    /// The lowest mapped address.
    #[inline]
    pub fn bottom(&self) -> u64 {
        KERNEL_STACKS.stack_bottom(self.slot).as_u64()
    }
}

/// Returns the slot of the kernel-stacks region `address` lies in and which part of it, if
/// that slot was handed out.
#[inline]
fn locate(address: u64) -> Option<(KernelStack, SlotPart)> {
    let location = KERNEL_STACKS.locate(VirtAddr::new(address))?;
    let used = NEXT_SLOT.load(Ordering::Acquire);
    (u64::from(location.slot.as_u32()) < used).then_some((
        KernelStack {
            slot: location.slot,
        },
        location.part,
    ))
}

/// Returns the kernel stack whose guard page contains `address`, or `None` when `address` is
/// not in a kernel stack's guard page.
#[inline]
pub fn guard_containing(address: u64) -> Option<KernelStack> {
    match locate(address)? {
        (stack, SlotPart::Guard) => Some(stack),
        (_, SlotPart::Stack(_)) => None,
    }
}

/// Returns the kernel stack (`[bottom, top]`, the top included: an empty stack's pointer)
/// that `address` lies on, or `None` when it is not on one handed out.
#[inline]
pub fn containing(address: u64) -> Option<KernelStack> {
    match locate(address) {
        Some((stack, SlotPart::Stack(_))) => Some(stack),
        // The top of a stack is the start of the next slot: count it with the slot below.
        _ => locate(address.checked_sub(1)?).and_then(|(stack, part)| {
            (matches!(part, SlotPart::Stack(_)) && stack.top() == address).then_some(stack)
        }),
    }
}

/// Maps a new kernel stack. `None` when memory runs out (frames taken so far are returned) or
/// every slot of the region was handed out.
pub fn alloc() -> Option<KernelStack> {
    let index = NEXT_SLOT.fetch_add(1, Ordering::AcqRel);
    let slot = KERNEL_STACKS.slot(u32::try_from(index).ok()?)?;
    let frames = frame::source();
    for page in KERNEL_STACKS.all_pages().iter() {
        let virt = KERNEL_STACKS.page_addr(slot, page).as_u64();
        let mapped = frames.alloc_zeroed().and_then(|new| {
            paging::map(virt, new, flags::DATA)
                .map_err(|(back, _)| frames.free(back))
                .ok()
        });
        match mapped {
            // A page that was not present cannot be in any TLB.
            Some(flush) => flush.ignore(),
            None => {
                for done in KERNEL_STACKS.all_pages().iter() {
                    if let Some((taken, flush)) =
                        paging::unmap(KERNEL_STACKS.page_addr(slot, done).as_u64())
                    {
                        flush.flush();
                        frames.free(taken);
                    }
                }
                return None;
            }
        }
    }
    Some(KernelStack { slot })
}

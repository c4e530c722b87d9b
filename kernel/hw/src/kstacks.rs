//! Kernel stacks that are always fully populated: IST stacks and idle stacks.
//!
//! Each stack occupies one slot of the kernel-stacks region: `KERNEL_STACK_GUARD_PAGES` guard
//! pages (never mapped) and then `KERNEL_STACK_BYTES` of mapped memory. An overflow therefore
//! faults on the guard page instead of running into the next stack. Slots are handed out once
//! and never freed (there is a fixed number per CPU).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::frame;
use crate::layout::{
    KERNEL_STACK_BYTES, KERNEL_STACK_GUARD_PAGES, KERNEL_STACK_SLOT_BYTES, KERNEL_STACKS_BASE,
    PAGE_BYTES,
};
use crate::paging::{self, flags};

static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);

/// A mapped kernel stack.
#[derive(Clone, Copy, Debug)]
pub struct KernelStack {
    bottom: u64,
}

impl KernelStack {
    /// The address just above the stack (the initial stack pointer).
    #[inline]
    pub fn top(&self) -> u64 {
        self.bottom + KERNEL_STACK_BYTES
    }

    /// The lowest mapped address.
    #[inline]
    pub fn bottom(&self) -> u64 {
        self.bottom
    }
}

/// Returns the guard range `[start, end)` of the kernel stack whose guard contains `address`,
/// or `None` when `address` is not in a kernel stack's guard pages.
#[inline]
pub fn guard_containing(address: u64) -> Option<(u64, u64)> {
    let used = NEXT_SLOT.load(Ordering::Acquire);
    let offset = address.checked_sub(KERNEL_STACKS_BASE)?;
    let slot = offset / KERNEL_STACK_SLOT_BYTES;
    if slot >= used {
        return None;
    }
    let start = KERNEL_STACKS_BASE + slot * KERNEL_STACK_SLOT_BYTES;
    let end = start + KERNEL_STACK_GUARD_PAGES * PAGE_BYTES;
    (address < end).then_some((start, end))
}

/// Returns the kernel stack (`[bottom, top]`, the top included: an empty stack's pointer)
/// that `address` lies on, or `None` when it is not on one handed out.
#[inline]
pub fn containing(address: u64) -> Option<KernelStack> {
    let used = NEXT_SLOT.load(Ordering::Acquire);
    // The top of a stack is the end of its slot: count it with the slot below.
    let offset = address.checked_sub(KERNEL_STACKS_BASE + 1)?;
    let slot = offset / KERNEL_STACK_SLOT_BYTES;
    if slot >= used {
        return None;
    }
    let bottom =
        KERNEL_STACKS_BASE + slot * KERNEL_STACK_SLOT_BYTES + KERNEL_STACK_GUARD_PAGES * PAGE_BYTES;
    (address >= bottom).then_some(KernelStack { bottom })
}

/// Maps a new kernel stack. `None` when memory runs out (frames taken so far are returned).
pub fn alloc() -> Option<KernelStack> {
    let slot = NEXT_SLOT.fetch_add(1, Ordering::AcqRel);
    let bottom =
        KERNEL_STACKS_BASE + slot * KERNEL_STACK_SLOT_BYTES + KERNEL_STACK_GUARD_PAGES * PAGE_BYTES;
    let pages = KERNEL_STACK_BYTES / PAGE_BYTES;
    let frames = frame::source();
    for page in 0..pages {
        let virt = bottom + page * PAGE_BYTES;
        let mapped = frames.alloc_zeroed().and_then(|new| {
            paging::map(virt, new, flags::DATA)
                .map_err(|(back, _)| frames.free(back))
                .ok()
        });
        match mapped {
            // A page that was not present cannot be in any TLB.
            Some(flush) => flush.ignore(),
            None => {
                for done in 0..page {
                    if let Some((taken, flush)) = paging::unmap(bottom + done * PAGE_BYTES) {
                        flush.flush();
                        frames.free(taken);
                    }
                }
                return None;
            }
        }
    }
    Some(KernelStack { bottom })
}

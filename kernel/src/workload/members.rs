//! What the sampler knows of the workload thread in each stack slot: one word per slot.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, Ordering};

use dks_core::SlotIndex;

use crate::stacks::{self, Policy};

/// What the sampler needs to know of the workload thread in each stack slot, one word per slot
/// (a million threads keep no record of their own for it): 0 while no workload thread lives
/// there, else its policy's index + 1 in the high byte and, below, the bytes under the stack
/// top that its live stack reaches now (where it is, or sleeps).
pub(super) struct Members {
    slots: Box<[AtomicU32]>,
}

/// The bits of a [`Members`] word that hold the depth.
const DEPTH_BITS: u32 = 24;

impl Members {
    pub(super) fn new(slots: u32) -> Members {
        // 4 bytes per slot, 4 MiB for a million: grow the heap for it first (see `mm::heap`),
        // so that the allocation does not eat the margin thread creation relies on.
        let bytes = u64::from(slots) * core::mem::size_of::<AtomicU32>() as u64;
        let _ = crate::mm::heap::ensure_free(bytes);
        Members {
            slots: (0..slots).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Notes that the thread of `policy` in `slot` lives and its live stack reaches `depth`
    /// bytes below the top now.
    pub(super) fn note_depth(&self, slot: SlotIndex, policy: Policy, depth: u64) {
        // Depths never exceed the largest stack (the plan's check), far below 2^24 bytes.
        let depth = u32::try_from(depth).map_or(0, |d| d.min((1 << DEPTH_BITS) - 1));
        let word = ((policy.index() as u32 + 1) << DEPTH_BITS) | depth;
        self.slots[slot.as_usize()].store(word, Ordering::Relaxed);
    }

    /// Notes that no workload thread lives in `slot` any more.
    pub(super) fn leave(&self, slot: SlotIndex) {
        self.slots[slot.as_usize()].store(0, Ordering::Release);
    }

    /// Per policy (by `Policy::index()`): its live threads and the pages their live stacks
    /// reach.
    pub(super) fn census(&self) -> [(u64, u64); Policy::COUNT] {
        let layout = stacks::layout();
        let mut per_policy = [(0u64, 0u64); Policy::COUNT];
        for word in self.slots.iter().map(|w| w.load(Ordering::Acquire)) {
            let Some(index) = (word >> DEPTH_BITS).checked_sub(1) else {
                continue;
            };
            let depth = u64::from(word & ((1 << DEPTH_BITS) - 1));
            let entry = &mut per_policy[index as usize];
            entry.0 += 1;
            entry.1 += u64::from(layout.pages_to_depth(depth).len());
        }
        per_policy
    }
}

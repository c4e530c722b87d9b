//! The per-CPU magazine: frames set aside for stack faults.
//!
//! A stack fault cannot allocate (it runs on the #PF IST stack with
//! interrupts off), so each CPU keeps a few zeroed frames ready. The fault
//! handler [`take`](Magazine::take)s one; the context-switch path
//! [`refill`](Magazine::refill)s it with atomic allocations, which may fail.
//!
//! # Invariants
//!
//! - Capacity is `max_pages - 1` ([`Magazine::capacity`]): the most one
//!   task can ever fault in, since its top page is always populated. That is
//!   exactly what the `guaranteed` admission rule may ask for.
//! - Every frame in a magazine is zeroed: it came from the platform's
//!   allocator, or it was mapped and never accessed (Accessed bit clear) and
//!   so never written.
//! - Only the owning CPU touches its magazine, with interrupts off; nothing
//!   here allocates memory of its own or takes a lock.

use crate::cpu::CpuId;
use crate::frame::{Frame, Urgency};
use crate::layout::{MAX_STACK_PAGES_LIMIT, StackLayout};
use crate::platform::Platform;

/// The largest capacity any magazine can have (64 KiB stacks).
pub const MAGAZINE_CAPACITY_LIMIT: usize = MAX_STACK_PAGES_LIMIT - 1;

const _: () = assert!(MAGAZINE_CAPACITY_LIMIT < u8::MAX as usize);

/// A CPU's supply of zeroed frames for stack faults.
#[derive(Debug)]
pub struct Magazine {
    cpu: CpuId,
    frames: [Option<Frame>; MAGAZINE_CAPACITY_LIMIT],
    len: u8,
    capacity: u8,
}

/// How far a refill got.
#[must_use = "a refill that fell short means faults may not be served"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refill {
    /// Frames allocated by this refill.
    pub added: u8,
    /// Frames in the magazine afterwards.
    pub len: u8,
    /// The magazine's capacity.
    pub capacity: u8,
}

impl Refill {
    /// Returns whether the magazine is full.
    #[must_use]
    pub const fn is_complete(&self) -> bool {
        self.len == self.capacity
    }
}

impl Magazine {
    /// Returns the empty magazine of CPU `cpu`, sized for stacks of `layout`.
    #[must_use]
    pub fn new(cpu: CpuId, layout: &StackLayout) -> Self {
        Self {
            cpu,
            frames: [const { None }; MAGAZINE_CAPACITY_LIMIT],
            len: 0,
            capacity: Self::capacity_for(layout),
        }
    }

    /// Returns the capacity of a magazine for stacks of `layout`: one stack's pages but the
    /// top one, which creation populates.
    #[must_use]
    pub const fn capacity_for(layout: &StackLayout) -> u8 {
        layout.stack_pages() - 1
    }

    /// Returns the CPU the magazine belongs to.
    #[must_use]
    pub const fn cpu(&self) -> CpuId {
        self.cpu
    }

    /// Returns the number of frames in the magazine.
    #[must_use]
    pub const fn len(&self) -> u8 {
        self.len
    }

    /// Returns whether the magazine holds no frame.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the most frames the magazine holds: `max_pages - 1`.
    #[must_use]
    pub const fn capacity(&self) -> u8 {
        self.capacity
    }

    /// Returns whether the magazine is full.
    #[must_use]
    pub const fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Returns the frames in the magazine.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames[..usize::from(self.len)].iter().flatten()
    }

    /// Returns a frame, or `None` if the magazine is empty. Never allocates.
    pub fn take(&mut self) -> Option<Frame> {
        let top = self.len.checked_sub(1)?;
        self.len = top;
        self.frames[usize::from(top)].take()
    }

    /// Puts a zeroed frame into the magazine, or gives it back if the
    /// magazine is full.
    pub fn put(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.is_full() {
            return Err(frame);
        }
        self.frames[usize::from(self.len)] = Some(frame);
        self.len += 1;
        Ok(())
    }

    /// Fills the magazine with frames allocated with `urgency`, stopping at
    /// the first failure, and returns how far it got.
    pub fn refill<P: Platform>(&mut self, platform: &mut P, urgency: Urgency) -> Refill {
        let mut added = 0;
        while !self.is_full() {
            let Some(frame) = platform.alloc_frame(urgency) else {
                break;
            };
            // Not full, so the frame fits.
            let _ = self.put(frame);
            added += 1;
        }
        Refill {
            added,
            len: self.len,
            capacity: self.capacity,
        }
    }

    /// Gives every frame back to the platform and returns how many.
    pub fn drain<P: Platform>(&mut self, platform: &mut P) -> u8 {
        let mut freed = 0;
        while let Some(frame) = self.take() {
            platform.free_frame(frame);
            freed += 1;
        }
        freed
    }
}

#[cfg(test)]
mod tests;

//! Physical frames and how urgently one is wanted.
//!
//! A [`Frame`] is one 4 KiB page of physical memory that dks holds. It is
//! deliberately neither `Copy` nor `Clone`: the only way to put a frame
//! somewhere (a magazine, a stack page, back to the allocator) is to move it
//! there, so the type system keeps "every frame is in exactly one place" for
//! all code in this crate. Only the platform makes frames
//! ([`Frame::from_phys_addr`]) and takes them back.

use core::fmt;

use crate::layout::{MAX_STACK_PAGES_LIMIT, PAGE_SIZE_IN_BYTES};

/// Room for one frame per page of a stack, for frames in flight (allocated
/// but not mapped yet, or unmapped but not flushed yet).
pub(crate) type StackFrames = [Option<Frame>; MAX_STACK_PAGES_LIMIT];

/// An empty [`StackFrames`].
pub(crate) const NO_STACK_FRAMES: StackFrames = [const { None }; MAX_STACK_PAGES_LIMIT];

/// One physical frame held by dks.
#[derive(PartialEq, Eq)]
pub struct Frame(u64);

impl Frame {
    /// Returns the frame at physical address `phys_addr`. For platforms: a
    /// frame made here must be one the platform's allocator handed out.
    ///
    /// # Panics
    ///
    /// If `phys_addr` is not page aligned.
    #[must_use]
    pub const fn from_phys_addr(phys_addr: u64) -> Self {
        assert!(
            phys_addr.is_multiple_of(PAGE_SIZE_IN_BYTES),
            "frame address not page aligned"
        );
        Self(phys_addr)
    }

    /// Returns the frame's physical address.
    #[must_use]
    pub const fn phys_addr(&self) -> u64 {
        self.0
    }

    /// Returns the frame's number (its physical address in pages).
    #[must_use]
    pub const fn number(&self) -> u64 {
        self.0 / PAGE_SIZE_IN_BYTES
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:#x})", self.0)
    }
}

/// How an allocation may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Urgency {
    /// The caller may sleep and wait for memory (thread creation, the stack
    /// reclaim thread).
    Normal,
    /// The caller cannot sleep (context switch, interrupts off); the platform
    /// may dip into its atomic reserve, and may fail.
    Atomic,
}

#[cfg(test)]
mod tests;

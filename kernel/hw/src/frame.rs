//! Physical frames as the page tables see them: an owned frame, and where new ones come from.
//!
//! The frame allocator belongs to the kernel (safe code, `mm::frames`). This crate needs frames
//! for its own page tables, for the kernel stacks it maps and for the heap, so the kernel
//! registers its allocator once at boot, before the page tables are built, as a
//! [`FrameSource`] ([`register`]). Frames that hold page tables are never given back.
//!
//! A [`Frame`] is neither `Copy` nor `Clone`: whoever holds it owns the 4 KiB of memory, and
//! mapping it (`paging`) consumes it. The wall does not check where a `Frame` came from: the
//! allocator creates them from its bitmap and whoever removes the last page-table entry naming
//! a frame takes it back ([`Frame::from_address`]); see `docs/architecture.md`.

use core::fmt;

use spin::Once;

use crate::layout::PAGE_BYTES;

/// One physical page frame, owned by whoever holds this value.
#[derive(PartialEq, Eq)]
pub struct Frame {
    address: u64,
}

impl Frame {
    /// Takes ownership of the frame at `address`: the frame allocator hands out frames this
    /// way, and so does whoever removed the page-table entry that named the frame (nobody else
    /// refers to it any more).
    ///
    /// # Panics
    /// If `address` is not page aligned.
    #[inline]
    pub fn from_address(address: u64) -> Frame {
        assert!(
            address.is_multiple_of(PAGE_BYTES),
            "frame address {address:#x} not page aligned"
        );
        Frame { address }
    }

    /// The frame's physical address.
    #[inline]
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Gives up the value without freeing the frame: the memory now belongs to a page-table
    /// entry (or another owner that will call [`Frame::from_address`]).
    #[inline]
    pub fn into_mapped(self) -> u64 {
        self.address
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:#x})", self.address)
    }
}

/// Where this crate gets physical memory: the kernel's frame allocator.
pub trait FrameSource: Sync {
    /// Allocates one zeroed frame without dipping into the atomic reserve, or `None`.
    fn alloc_zeroed(&self) -> Option<Frame>;
    /// Gives a frame back.
    fn free(&self, frame: Frame);
    /// Takes `count` physically contiguous frames for good and returns the first one's
    /// physical address, or `None` if no such run is free.
    fn alloc_contiguous(&self, count: u64) -> Option<u64>;
}

static SOURCE: Once<&'static dyn FrameSource> = Once::new();

/// Registers the kernel's frame allocator. Called once, at boot, before `paging::init`.
///
/// # Panics
/// If called twice.
pub fn register(source: &'static dyn FrameSource) {
    assert!(!SOURCE.is_completed(), "frame source registered twice");
    SOURCE.call_once(|| source);
}

/// The registered frame source.
///
/// # Panics
/// If none is registered yet.
pub(crate) fn source() -> &'static dyn FrameSource {
    *SOURCE
        .get()
        .expect("frame::register runs before memory is mapped")
}

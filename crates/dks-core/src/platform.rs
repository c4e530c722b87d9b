//! What the mechanism needs from a machine.
//!
//! [`Platform`] is the whole interface between dks and a CPU: allocate and
//! free a frame, map and unmap one stack page, write a not-present entry,
//! read an entry (which gives the Accessed bit), flush TLBs, and say which
//! CPU runs. The kernel implements it on x86_64 page tables,
//! the `emulated` module in software.
//!
//! The `pack` policy needs a little more: small buffers ([`Platform::alloc_buffer`]) and the
//! bytes of stacks and buffers (copy and checksum). Those methods have defaults that hand out
//! no buffer, so a platform that does not implement them never packs a stack
//! ([`pack`](crate::pack)).
//!
//! # TLB flushes
//!
//! Changing an entry that a TLB may cache is not finished until that TLB is
//! flushed, and a frame must not be reused before. Every mapping change
//! therefore returns a `#[must_use]` [`Flush`], which says whether the old
//! translation may be cached anywhere ([`FlushNeed`]):
//!
//! - mapping a page that was not present needs nothing: x86 never caches a
//!   not-present translation;
//! - unmapping a page whose Accessed bit is clear needs nothing either: the
//!   CPU sets the Accessed bit before it caches a translation (Intel SDM
//!   Vol. 3, "Accessed and Dirty Flags" and "Translation Lookaside
//!   Buffers"), so no TLB holds it;
//! - unmapping a page whose Accessed bit is set needs a shootdown: any CPU
//!   that ran the owner may still hold it.
//!
//! Flushes are collected in a [`FlushBatch`] and handed to
//! [`Platform::flush`] before any frame they concern is freed.
//!
//! There is no "clear the Accessed bit" operation on purpose: clearing it on
//! a page that may be cached would let a CPU keep using the cached
//! translation without setting the bit again, and a later "Accessed clear,
//! no flush needed" decision would be wrong. dks only reads the bit of
//! entries it mapped itself, which start with it clear.

use crate::addr::VirtAddr;
use crate::cpu::CpuId;
use crate::frame::{Frame, Urgency};
use crate::pack_buffer::{Checksum, PackBuffer, SizeClass};
use crate::pte::AbsentPte;

/// Whether a changed translation may still be cached in some TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlushNeed {
    /// No TLB can hold the old translation: nothing to do.
    NotCached,
    /// Some CPU's TLB may hold the old translation: flush it on every CPU.
    Shootdown,
}

/// The TLB work one mapping change leaves behind.
#[must_use = "a changed page-table entry is not safe to rely on until its flush is done"]
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    addr: VirtAddr,
    need: FlushNeed,
}

impl Flush {
    /// Returns the flush that changing the entry of `addr` requires.
    pub const fn new(addr: VirtAddr, need: FlushNeed) -> Self {
        Self { addr, need }
    }

    /// Returns the page whose entry changed.
    #[must_use]
    pub const fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// Returns what has to be flushed.
    #[must_use]
    pub const fn need(&self) -> FlushNeed {
        self.need
    }
}

/// The TLB work of several mapping changes: the pages that need a shootdown.
#[must_use = "frames may only be reused after their flush is done"]
#[derive(Debug, PartialEq, Eq)]
pub struct FlushBatch {
    start: u64,
    end: u64,
    pages: u32,
}

impl FlushBatch {
    /// Returns an empty batch.
    pub const fn new() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            pages: 0,
        }
    }

    /// Adds the work of `flush` to the batch.
    pub fn add(&mut self, flush: Flush) {
        if flush.need == FlushNeed::Shootdown {
            let page = flush.addr.page_base().as_u64();
            self.start = self.start.min(page);
            self.end = self.end.max(page + crate::layout::PAGE_SIZE_IN_BYTES);
            self.pages += 1;
        }
    }

    /// Returns what has to be flushed.
    #[must_use]
    pub const fn need(&self) -> FlushNeed {
        if self.pages == 0 {
            FlushNeed::NotCached
        } else {
            FlushNeed::Shootdown
        }
    }

    /// Returns the address range that covers every page needing a shootdown
    /// (start inclusive, end exclusive), or `None` if none does.
    #[must_use]
    pub const fn range(&self) -> Option<(VirtAddr, VirtAddr)> {
        if self.pages == 0 {
            None
        } else {
            Some((VirtAddr::new(self.start), VirtAddr::new(self.end)))
        }
    }

    /// Returns the number of pages that need a shootdown.
    #[must_use]
    pub const fn pages(&self) -> u32 {
        self.pages
    }
}

impl Default for FlushBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// What dks needs from a machine. Implementations must keep the contracts
/// stated on each method; dks keeps the ones stated on the caller's side.
pub trait Platform {
    /// Returns the CPU that runs the caller.
    fn current_cpu(&self) -> CpuId;

    /// Returns a zeroed frame, or `None` if none can be had with `urgency`.
    /// With [`Urgency::Atomic`] it must not sleep and may use a reserve.
    fn alloc_frame(&mut self, urgency: Urgency) -> Option<Frame>;

    /// Takes back a frame that [`Self::alloc_frame`] handed out. dks calls it
    /// only after every flush concerning the frame is done.
    fn free_frame(&mut self, frame: Frame);

    /// Makes the not-present stack page at `addr` present, writable and not
    /// executable, backed by `frame`, with the Accessed bit clear.
    fn map_stack_page(&mut self, addr: VirtAddr, frame: Frame) -> Flush;

    /// Replaces the present stack page at `addr` by the not-present entry
    /// `leave`, and returns its frame and whether its translation may be
    /// cached (Accessed bit set).
    fn unmap_stack_page(&mut self, addr: VirtAddr, leave: AbsentPte) -> (Frame, Flush);

    /// Writes `entry` for the page at `addr`, which is not present.
    fn write_absent(&mut self, addr: VirtAddr, entry: AbsentPte);

    /// Returns the raw page-table entry of the page at `addr` (zero if none
    /// exists); decode it with [`pte::decode`](crate::pte::decode).
    fn read_entry(&self, addr: VirtAddr) -> u64;

    /// Does the TLB work of `batch` on every CPU that needs it.
    fn flush(&mut self, batch: FlushBatch);

    /// Returns a buffer of `class` for a packed stack, or `None` if none can be had with
    /// `urgency`. The default hands out none: the platform cannot pack.
    fn alloc_buffer(&mut self, class: SizeClass, urgency: Urgency) -> Option<PackBuffer> {
        let _ = (class, urgency);
        None
    }

    /// Takes back a buffer that [`Self::alloc_buffer`] handed out.
    ///
    /// # Panics
    ///
    /// The default panics: a platform that hands out no buffer gets none back.
    fn free_buffer(&mut self, buffer: PackBuffer) {
        panic!("{buffer:?} was not handed out by this platform");
    }

    /// Copies the `len` bytes at `from`, in present stack pages, to the start of `buffer`
    /// (`len` is at most the buffer's class).
    ///
    /// # Panics
    ///
    /// The default panics: a platform that hands out no buffer is never asked.
    fn copy_to_buffer(&mut self, from: VirtAddr, buffer: &mut PackBuffer, len: u64) {
        panic!("copying {len} bytes at {from} into {buffer:?}, which this platform never made");
    }

    /// Copies the first `len` bytes of `buffer` to `to`, in present stack pages.
    ///
    /// # Panics
    ///
    /// The default panics: a platform that hands out no buffer is never asked.
    fn copy_from_buffer(&mut self, buffer: &PackBuffer, to: VirtAddr, len: u64) {
        panic!("copying {len} bytes of {buffer:?}, which this platform never made, to {to}");
    }

    /// Returns the [`Checksum::of`] the `len` bytes at `from`, in present stack pages.
    ///
    /// # Panics
    ///
    /// The default panics: a platform that hands out no buffer is never asked.
    fn stack_checksum(&self, from: VirtAddr, len: u64) -> Checksum {
        panic!("checksum of {len} bytes at {from} on a platform that cannot pack");
    }
}

#[cfg(test)]
mod tests;

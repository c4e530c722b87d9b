//! What a packed stack is kept in: size classes, buffers and checksums.
//!
//! A packed stack's live bytes (from its saved stack pointer, less the red zone, up to the
//! stack top) go into a [`PackBuffer`] of the smallest [`SizeClass`] that holds them. The
//! classes are steps of [`SIZE_CLASS_STEP_IN_BYTES`] (256 B) up to one page: a thread asleep
//! with `n` live bytes holds at most 255 bytes more than it needs, against up to 4 KiB - `n`
//! for a page. A stack whose live bytes do not fit in one page is not packed (it keeps its
//! pages, as under `reclaim`).
//!
//! A buffer is memory the platform hands out ([`Platform::alloc_buffer`]): the kernel's heap,
//! the emulated platform's map. Like a [`Frame`](crate::Frame), a [`PackBuffer`] is neither
//! `Copy` nor `Clone`: the stack that owns it is the only place it can be, so it is freed
//! once, by whoever takes it from the stack (a restore, or the release of an exited thread).
//!
//! [`Platform::alloc_buffer`]: crate::Platform::alloc_buffer

use core::fmt;

use crate::layout::PAGE_SIZE_IN_BYTES;

/// The step between size classes, and the smallest class.
pub const SIZE_CLASS_STEP_IN_BYTES: u64 = 256;

/// The number of size classes: 256 B to one page.
pub const SIZE_CLASS_COUNT: usize = (PAGE_SIZE_IN_BYTES / SIZE_CLASS_STEP_IN_BYTES) as usize;

const _: () = assert!(PAGE_SIZE_IN_BYTES.is_multiple_of(SIZE_CLASS_STEP_IN_BYTES));
const _: () = assert!(SIZE_CLASS_COUNT <= u8::MAX as usize);

/// The size of a pack buffer: a multiple of 256 bytes, from 256 B to one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeClass(u8);

impl SizeClass {
    /// The largest class: one page.
    pub const LARGEST: Self = Self((SIZE_CLASS_COUNT - 1) as u8);

    /// Returns the smallest class that holds `len` bytes, or `None` if `len` is 0 or more
    /// than a page.
    #[must_use]
    pub const fn for_len(len: u64) -> Option<Self> {
        if len == 0 || len > PAGE_SIZE_IN_BYTES {
            return None;
        }
        // At most SIZE_CLASS_COUNT - 1, which fits a u8.
        Some(Self(((len - 1) / SIZE_CLASS_STEP_IN_BYTES) as u8))
    }

    /// Returns the class's position, 0 for the smallest.
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Returns the bytes a buffer of this class holds.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        (self.0 as u64 + 1) * SIZE_CLASS_STEP_IN_BYTES
    }
}

/// A buffer a platform handed out for a packed stack. Only the platform makes them
/// ([`PackBuffer::from_handle`]) and takes them back.
#[derive(PartialEq, Eq)]
pub struct PackBuffer {
    handle: u64,
    class: SizeClass,
}

impl PackBuffer {
    /// Returns the buffer the platform knows as `handle` (its address in the kernel), of
    /// `class`. For platforms: a buffer made here must be one the platform handed out.
    #[must_use]
    pub const fn from_handle(handle: u64, class: SizeClass) -> Self {
        Self { handle, class }
    }

    /// Returns the platform's handle of the buffer.
    #[must_use]
    pub const fn handle(&self) -> u64 {
        self.handle
    }

    /// Returns the buffer's size class.
    #[must_use]
    pub const fn class(&self) -> SizeClass {
        self.class
    }
}

impl fmt::Debug for PackBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PackBuffer({:#x}, {} B)",
            self.handle,
            self.class.bytes()
        )
    }
}

/// The CRC-32 (IEEE) of a packed stack's live bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checksum(u32);

impl Checksum {
    /// Returns the checksum of `bytes`. Platforms compute it with this function only.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(crc32fast::hash(bytes))
    }

    /// Returns the checksum as a number, for records.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests;

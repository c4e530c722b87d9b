//! Virtual addresses.
//!
//! [`VirtAddr`] is a plain 64-bit virtual address. It carries no validity
//! promise of its own: [`StackLayout`](crate::StackLayout) decides whether an
//! address belongs to the stack region and to which slot and page.

use core::fmt;

use crate::layout::PAGE_SIZE_IN_BYTES;

/// A virtual address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtAddr(u64);

impl VirtAddr {
    /// Returns the address `addr`.
    #[must_use]
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }

    /// Returns the address as a number.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Returns the start of the page that holds this address.
    #[must_use]
    pub const fn page_base(self) -> Self {
        Self(self.0 & !(PAGE_SIZE_IN_BYTES - 1))
    }

    /// Returns whether the address is the start of a page.
    #[must_use]
    pub const fn is_page_aligned(self) -> bool {
        self.0.is_multiple_of(PAGE_SIZE_IN_BYTES)
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests;

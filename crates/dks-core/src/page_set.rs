//! Sets of pages of one stack.
//!
//! A stack has at most [`PageSet::CAPACITY`] pages, so a set of them is one
//! 16-bit word: bit `k` stands for [`StackPage`] `k`, counted from the top of
//! the stack (page 0 holds the stack top). Set operations are single
//! instructions, which keeps the fault and switch paths free of loops over
//! page tables where a mask will do.

use core::fmt;

use crate::layout::StackPage;

/// A set of pages of one stack; bit `k` is page `k` from the top.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PageSet(u16);

impl PageSet {
    /// The largest number of pages a set can hold.
    pub const CAPACITY: usize = 16;

    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// Returns the set whose members are the one bits of `bits`.
    #[must_use]
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    /// Returns the set as a bit mask.
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Returns the set of the top `count` pages (pages `0..count`).
    ///
    /// # Panics
    ///
    /// If `count` exceeds [`Self::CAPACITY`].
    #[must_use]
    pub const fn top(count: usize) -> Self {
        assert!(count <= Self::CAPACITY, "a page set holds at most 16 pages");
        if count == Self::CAPACITY {
            Self(u16::MAX)
        } else {
            Self((1u16 << count) - 1)
        }
    }

    /// Returns the set holding only `page`.
    #[must_use]
    pub const fn single(page: StackPage) -> Self {
        Self(1 << page.index())
    }

    /// Returns whether `page` is in the set.
    #[must_use]
    pub const fn contains(self, page: StackPage) -> bool {
        self.0 & (1 << page.index()) != 0
    }

    /// Adds `page` to the set.
    pub fn insert(&mut self, page: StackPage) {
        self.0 |= 1 << page.index();
    }

    /// Removes `page` from the set.
    pub fn remove(&mut self, page: StackPage) {
        self.0 &= !(1 << page.index());
    }

    /// Returns the number of pages in the set.
    #[must_use]
    pub const fn len(self) -> u8 {
        // At most 16, so the narrowing cannot lose anything.
        self.0.count_ones() as u8
    }

    /// Returns whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the pages in `self` or in `other`.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Returns the pages in both `self` and `other`.
    #[must_use]
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Returns the pages in `self` but not in `other`.
    #[must_use]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Returns whether every page of `self` is in `other`.
    #[must_use]
    pub const fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Returns the deepest page of the set (the highest index), if any.
    #[must_use]
    pub const fn deepest(self) -> Option<StackPage> {
        if self.0 == 0 {
            None
        } else {
            // 15 at most, so the narrowing cannot lose anything.
            Some(StackPage::new((15 - self.0.leading_zeros()) as u8))
        }
    }

    /// Returns the pages of the set, from the top of the stack down.
    pub fn iter(self) -> impl Iterator<Item = StackPage> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            // 15 at most, so the narrowing cannot lose anything.
            let index = rest.trailing_zeros() as u8;
            rest &= rest - 1;
            Some(StackPage::new(index))
        })
    }
}

impl fmt::Debug for PageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageSet({:#018b})", self.0)
    }
}

#[cfg(test)]
mod tests;

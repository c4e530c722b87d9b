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
mod tests {
    use super::*;

    fn page(index: u8) -> StackPage {
        StackPage::new(index)
    }

    #[test]
    fn top_sets_hold_the_first_pages() {
        assert_eq!(PageSet::top(0), PageSet::EMPTY);
        assert_eq!(PageSet::top(4).bits(), 0b1111);
        assert_eq!(PageSet::top(16).bits(), u16::MAX);
        assert_eq!(PageSet::top(16).len(), 16);
    }

    #[test]
    #[should_panic(expected = "at most 16 pages")]
    fn top_rejects_more_than_capacity() {
        let _ = PageSet::top(17);
    }

    #[test]
    fn insert_remove_contains_and_set_algebra() {
        let mut set = PageSet::EMPTY;
        assert!(set.is_empty());
        set.insert(page(3));
        set.insert(page(0));
        assert!(set.contains(page(3)) && set.contains(page(0)));
        assert!(!set.contains(page(1)));
        assert_eq!(set.len(), 2);
        assert_eq!(set.deepest(), Some(page(3)));
        set.remove(page(3));
        assert_eq!(set, PageSet::single(page(0)));
        assert_eq!(PageSet::EMPTY.deepest(), None);

        let a = PageSet::from_bits(0b0110);
        let b = PageSet::from_bits(0b0011);
        assert_eq!(a.union(b).bits(), 0b0111);
        assert_eq!(a.intersection(b).bits(), 0b0010);
        assert_eq!(a.difference(b).bits(), 0b0100);
        assert!(PageSet::from_bits(0b0010).is_subset(a));
        assert!(!b.is_subset(a));
    }

    #[test]
    fn iteration_goes_from_the_top_down() {
        let pages: Vec<u8> = PageSet::from_bits(0b1000_0000_0000_0101)
            .iter()
            .map(StackPage::index)
            .collect();
        assert_eq!(pages, [0, 2, 15]);
        assert_eq!(PageSet::EMPTY.iter().count(), 0);
        assert_eq!(
            format!("{:?}", PageSet::from_bits(1)),
            "PageSet(0b0000000000000001)"
        );
    }
}

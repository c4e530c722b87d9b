//! The per-CPU cache of freed stacks.
//!
//! Like Linux, each CPU keeps up to [`STACK_CACHE_ENTRIES`] stacks of exited
//! threads for reuse, so a fork right after an exit needs no mapping work.
//! A cached stack keeps its slot and its populated pages; its unpopulated
//! entries still name the slot as owner, so reusing it writes no entry at
//! all. Only its populated pages hold old data and need zeroing
//! ([`Created::pages_to_zero`](crate::stack::Created::pages_to_zero)).
//! Only *lean* stacks are cached, holding no more pages than their policy
//! populates at creation ([`release`](crate::stack::release) frees the
//! others): a stack never shrinks under `fault` and `guaranteed`, so a cached
//! deep stack would hand its pages to every thread that reused it.
//!
//! # Invariants
//!
//! - A cached stack's frames are neither counted in `nr_kernel_stack_kb` nor
//!   charged to any group: they belong to the cache.
//! - Under memory pressure [`free_all`] empties the cache and gives every
//!   slot back.

use crate::layout::{SlotIndex, StackLayout};
use crate::page_set::PageSet;
use crate::platform::Platform;

/// How many freed stacks each CPU keeps (Linux keeps 2).
pub const STACK_CACHE_ENTRIES: usize = 2;

/// A freed stack kept for reuse: its slot and populated pages.
#[derive(Debug, PartialEq, Eq)]
pub struct CachedStack {
    slot: SlotIndex,
    populated: PageSet,
}

impl CachedStack {
    pub(crate) const fn new(slot: SlotIndex, populated: PageSet) -> Self {
        Self { slot, populated }
    }

    /// Returns the slot of the stack.
    #[must_use]
    pub const fn slot(&self) -> SlotIndex {
        self.slot
    }

    /// Returns the populated pages.
    #[must_use]
    pub const fn populated(&self) -> PageSet {
        self.populated
    }
}

/// One CPU's cache of freed stacks.
#[derive(Debug, Default)]
pub struct StackCache {
    entries: [Option<CachedStack>; STACK_CACHE_ENTRIES],
}

impl StackCache {
    /// Returns an empty cache.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: [const { None }; STACK_CACHE_ENTRIES],
        }
    }

    /// Returns the number of cached stacks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Returns whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the cached stacks.
    pub fn iter(&self) -> impl Iterator<Item = &CachedStack> {
        self.entries.iter().flatten()
    }

    /// Keeps `stack`, or gives it back if the cache is full.
    pub fn put(&mut self, stack: CachedStack) -> Result<(), CachedStack> {
        match self.entries.iter_mut().find(|entry| entry.is_none()) {
            Some(entry) => {
                *entry = Some(stack);
                Ok(())
            }
            None => Err(stack),
        }
    }

    /// Returns the cached stack with the most populated pages, if any.
    pub fn take(&mut self) -> Option<CachedStack> {
        self.entries
            .iter_mut()
            .filter(|entry| entry.is_some())
            .max_by_key(|entry| entry.as_ref().map_or(0, |stack| stack.populated.len()))?
            .take()
    }
}

/// Frees every cached stack (unmapping its pages, flushing, freeing its
/// frames) and returns their slots, which are no longer in use.
#[must_use = "the freed slots go back to the slot allocator"]
pub fn free_all<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    cache: &mut StackCache,
) -> [Option<SlotIndex>; STACK_CACHE_ENTRIES] {
    cache.entries.each_mut().map(|entry| {
        let stack = entry.take()?;
        crate::stack::teardown(platform, layout, stack.slot, stack.populated);
        Some(stack.slot)
    })
}

#[cfg(test)]
mod tests;

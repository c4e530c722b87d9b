//! The deferred-free queue: exited stacks waiting to be released.
//!
//! A thread cannot free the stack it runs on, so at exit its stack goes into
//! a queue and a work item running on another stack [`release`]s it later
//! (the RFC's patch 9). The queue is a fixed ring: it needs no allocation,
//! and a full queue gives the stack back rather than losing it.
//!
//! [`release`]: crate::stack::release

use crate::stack::ExitedStack;

/// A queue of at most `N` exited stacks.
#[derive(Debug)]
pub struct DeferredFree<const N: usize> {
    entries: [Option<ExitedStack>; N],
    head: usize,
    len: usize,
}

impl<const N: usize> DeferredFree<N> {
    /// Returns an empty queue.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: [const { None }; N],
            head: 0,
            len: 0,
        }
    }

    /// Returns the number of queued stacks.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the queue is empty.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the queued stacks, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &ExitedStack> {
        (0..self.len).filter_map(move |i| self.entries[(self.head + i) % N].as_ref())
    }

    /// Queues `stack`, or gives it back if the queue is full.
    pub fn push(&mut self, stack: ExitedStack) -> Result<(), ExitedStack> {
        if self.len == N {
            return Err(stack);
        }
        self.entries[(self.head + self.len) % N] = Some(stack);
        self.len += 1;
        Ok(())
    }

    /// Returns the oldest queued stack, if any.
    pub fn pop(&mut self) -> Option<ExitedStack> {
        if self.len == 0 {
            return None;
        }
        let stack = self.entries[self.head].take();
        self.head = (self.head + 1) % N;
        self.len -= 1;
        stack
    }
}

impl<const N: usize> Default for DeferredFree<N> {
    fn default() -> Self {
        Self::new()
    }
}

//! Wait queues: sleep until a condition holds, wake one or all.
//!
//! A waiter checks its condition and enqueues itself under the queue's lock, and a waker
//! changes the condition before it takes the same lock to wake: so a wake-up between the check
//! and the sleep cannot be lost.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::thread::{State, Thread};
use crate::sync::IrqMutex;

/// Threads waiting for something.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiters: IrqMutex<VecDeque<Arc<Thread>>>,
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> WaitQueue {
        WaitQueue {
            waiters: IrqMutex::new(VecDeque::new()),
        }
    }

    /// Blocks the calling thread until `condition()` holds (it is checked under the queue's
    /// lock, before every sleep).
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        loop {
            let mut waiters = self.waiters.lock();
            if condition() {
                return;
            }
            let me = super::current().expect("wait_until called outside a thread");
            me.set_state(State::Blocked);
            waiters.push_back(me);
            drop(waiters);
            super::block();
        }
    }

    /// Wakes the longest waiter; returns whether there was one.
    pub fn wake_one(&self) -> bool {
        let thread = self.waiters.lock().pop_front();
        match thread {
            Some(thread) => {
                super::wake(thread);
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter; returns how many there were.
    pub fn wake_all(&self) -> usize {
        let waiters = core::mem::take(&mut *self.waiters.lock());
        let count = waiters.len();
        for thread in waiters {
            super::wake(thread);
        }
        count
    }
}

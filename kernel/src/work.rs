//! The work queue: things that must run in a thread but not in the thread that asks.
//!
//! Its first job is freeing the stacks of exited threads: a thread cannot free the stack it
//! runs on, so the scheduler hands every exited thread here, and the worker thread (which has
//! a static stack, as everything that touches the stack mechanism's per-CPU state must) gives
//! the stack back to the per-CPU stack cache or frees it.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy};
use crate::sync::IrqMutex;

enum Work {
    Reap(Arc<Thread>),
}

static QUEUE: IrqMutex<VecDeque<Work>> = IrqMutex::new(VecDeque::new());
static ARRIVED: WaitQueue = WaitQueue::new();
static DONE: WaitQueue = WaitQueue::new();
static SUBMITTED: AtomicU64 = AtomicU64::new(0);
static COMPLETED: AtomicU64 = AtomicU64::new(0);

fn submit(work: Work) {
    SUBMITTED.fetch_add(1, Ordering::AcqRel);
    QUEUE.lock().push_back(work);
    ARRIVED.wake_one();
}

/// Hands an exited thread to the worker, which frees its stack. Called by the scheduler loop.
pub fn reap(thread: Arc<Thread>) {
    submit(Work::Reap(thread));
}

/// Waits until everything submitted so far is done.
pub fn drain() {
    let target = SUBMITTED.load(Ordering::Acquire);
    DONE.wait_until(|| COMPLETED.load(Ordering::Acquire) >= target);
}

/// Starts the worker thread.
pub fn start() {
    let options = SpawnOptions {
        policy: Policy::Static,
        pinned: None,
        urgent: true,
    };
    sched::spawn("worker", options, worker).expect("memory for the worker thread");
}

fn worker() {
    loop {
        ARRIVED.wait_until(|| !QUEUE.lock().is_empty());
        while let Some(work) = QUEUE.lock().pop_front() {
            match work {
                Work::Reap(thread) => stacks::release(&thread.stack),
            }
            COMPLETED.fetch_add(1, Ordering::AcqRel);
            DONE.wake_all();
        }
    }
}

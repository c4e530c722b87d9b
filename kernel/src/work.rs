//! The work queues: things that must run in a thread but not in the thread that asks.
//!
//! Their job is freeing the stacks of exited threads: a thread cannot free the stack it runs
//! on, so the scheduler hands every exited thread to the worker of the CPU it exited on. Each
//! CPU has its own worker thread, pinned there (as Linux has per-CPU kworkers): waking it
//! needs no IPI, the stack goes back to that CPU's stack cache, and reaping scales with the
//! CPUs. Workers have static stacks, as everything that touches the stack mechanism's per-CPU
//! state must, and are urgent: they run before the threads in their CPU's queue.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw::cpu_ops::{self, MAX_CPUS};
use crate::hw::sync::IrqMutex;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy};

struct Queue {
    items: IrqMutex<VecDeque<Arc<Thread>>>,
    arrived: WaitQueue,
}

static QUEUES: [Queue; MAX_CPUS] = [const {
    Queue {
        items: IrqMutex::new(VecDeque::new()),
        arrived: WaitQueue::new(),
    }
}; MAX_CPUS];
static DONE: WaitQueue = WaitQueue::new();
static SUBMITTED: AtomicU64 = AtomicU64::new(0);
static COMPLETED: AtomicU64 = AtomicU64::new(0);

/// Hands an exited thread to this CPU's worker, which frees its stack. Called by the
/// scheduler loop.
pub fn reap(irq: &cpu_ops::IrqGuard, thread: Arc<Thread>) {
    SUBMITTED.fetch_add(1, Ordering::AcqRel);
    let queue = &QUEUES[cpu_ops::current_id(irq) as usize];
    queue.items.lock().push_back(thread);
    queue.arrived.wake_one();
}

/// Waits until every stack handed over so far is freed.
pub fn drain() {
    let target = SUBMITTED.load(Ordering::Acquire);
    DONE.wait_until(|| COMPLETED.load(Ordering::Acquire) >= target);
}

/// Starts one worker on every online CPU.
pub fn start() {
    for cpu in (0..MAX_CPUS as u32).filter(|&c| sched::is_online(c)) {
        let options = SpawnOptions {
            policy: Policy::Static,
            pinned: Some(cpu),
            urgent: true,
            system: true,
        };
        sched::spawn("worker", options, move || worker(cpu)).expect("memory for a worker thread");
    }
}

fn worker(cpu: u32) {
    let queue = &QUEUES[cpu as usize];
    loop {
        queue.arrived.wait_until(|| !queue.items.lock().is_empty());
        while let Some(thread) = queue.items.lock().pop_front() {
            stacks::release(&thread.stack);
            COMPLETED.fetch_add(1, Ordering::AcqRel);
        }
        DONE.wake_all();
    }
}

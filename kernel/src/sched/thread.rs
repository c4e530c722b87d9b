//! A kernel thread: its identity, scheduling state, saved context and stack.
//!
//! Who touches what:
//! - `state` changes by compare-and-swap: the thread itself (running → blocked/exited), the
//!   scheduler of the CPU it runs on (running → ready at a preemption or yield), and wakers
//!   (blocked → ready). Only the party that makes a thread `Ready` puts it in a run queue, so a
//!   thread is in at most one run queue.
//! - `saved_rsp` is written by the context switch when the thread leaves a CPU and read by
//!   the next CPU that resumes it. `on_cpu` stays true from the moment a CPU switches to the
//!   thread until that CPU's scheduler has finished switching away from it; a CPU that wants
//!   to resume the thread first waits for `on_cpu` to clear, so it never loads a half-saved
//!   context.
//! - `stack` belongs to the CPU running the thread (and that CPU's page-fault handler) while
//!   it runs, and to the scheduler while it is switched out.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::wait::WaitQueue;
use crate::hw::trap::FpuArea;
use crate::stacks::ThreadStack;
use crate::sync::IrqMutex;

/// A thread's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// On a CPU.
    Running = 0,
    /// In a run queue.
    Ready = 1,
    /// Waiting in a wait queue or asleep; someone will make it ready.
    Blocked = 2,
    /// Finished; its stack waits to be freed.
    Exited = 3,
}

impl State {
    fn from_u8(value: u8) -> State {
        match value {
            0 => State::Running,
            1 => State::Ready,
            2 => State::Blocked,
            _ => State::Exited,
        }
    }
}

/// The value of `Thread::pinned` for a thread that may run anywhere.
const NOT_PINNED: u32 = u32::MAX;

/// Thread identifiers, unique for the whole boot.
pub type ThreadId = u64;

/// The body of a thread.
pub type Entry = Box<dyn FnOnce() + Send + 'static>;

/// A kernel thread.
pub struct Thread {
    id: ThreadId,
    name: String,
    state: AtomicU8,
    /// The stack pointer of the saved context while the thread is off-CPU.
    pub(super) saved_rsp: AtomicU64,
    /// True while a CPU runs the thread or has not yet finished switching away from it.
    pub(super) on_cpu: AtomicBool,
    /// The CPU the thread last ran on.
    pub(super) last_cpu: AtomicU32,
    /// Bit `n` is set once the thread has run on CPU `n`.
    cpus_ran_on: AtomicU32,
    /// Times the thread was switched in.
    switches: AtomicU64,
    entry: IrqMutex<Option<Entry>>,
    exited: AtomicBool,
    /// Stopped by a fatal stack fault or a guard hit.
    killed: AtomicBool,
    /// TSC when admission first refused the thread, 0 when it is not waiting.
    pub(super) admit_wait_since: AtomicU64,
    /// Threads waiting in `join`.
    pub(super) joiners: WaitQueue,
    /// The CPU the thread must run on (`NOT_PINNED`: any).
    pinned: AtomicU32,
    /// Goes to the front of run queues (see `SpawnOptions::urgent`).
    urgent: bool,
    /// Where its FPU/SSE state waits while it is preempted (see `hw::trap::Disposition`).
    fpu: Arc<FpuArea>,
    /// The thread's stack.
    pub stack: ThreadStack,
}

impl Thread {
    pub(super) fn new(
        id: ThreadId,
        name: String,
        entry: Entry,
        stack: ThreadStack,
        saved_rsp: u64,
        pinned: Option<u32>,
        urgent: bool,
    ) -> Thread {
        Thread {
            id,
            name,
            state: AtomicU8::new(State::Ready as u8),
            saved_rsp: AtomicU64::new(saved_rsp),
            on_cpu: AtomicBool::new(false),
            last_cpu: AtomicU32::new(0),
            cpus_ran_on: AtomicU32::new(0),
            switches: AtomicU64::new(0),
            entry: IrqMutex::new(Some(entry)),
            exited: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            admit_wait_since: AtomicU64::new(0),
            joiners: WaitQueue::new(),
            pinned: AtomicU32::new(pinned.unwrap_or(NOT_PINNED)),
            urgent,
            fpu: Arc::new(FpuArea::new()),
            stack,
        }
    }

    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current scheduling state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the state from `from` to `to`; false if it was not `from`.
    pub(super) fn transition(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(super) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The CPU the thread is pinned to, if any.
    pub fn pinned(&self) -> Option<u32> {
        Some(self.pinned.load(Ordering::Relaxed)).filter(|&cpu| cpu != NOT_PINNED)
    }

    /// The thread's FPU/SSE save area for preemptions.
    pub fn fpu_area(&self) -> Arc<FpuArea> {
        self.fpu.clone()
    }

    /// Whether the thread jumps run queues (kernel housekeeping).
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Pins the thread to `cpu` (or lets it run anywhere); takes effect at its next switch.
    pub(super) fn set_pinned(&self, cpu: Option<u32>) {
        self.pinned
            .store(cpu.unwrap_or(NOT_PINNED), Ordering::Relaxed);
    }

    /// Bit `n` set: the thread has run on CPU `n`.
    pub fn cpus_ran_on(&self) -> u32 {
        self.cpus_ran_on.load(Ordering::Relaxed)
    }

    /// How many times the thread was switched in.
    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub(super) fn note_switched_in(&self, cpu: u32) {
        self.cpus_ran_on.fetch_or(1 << cpu, Ordering::Relaxed);
        self.last_cpu.store(cpu, Ordering::Relaxed);
        self.switches.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn take_entry(&self) -> Option<Entry> {
        self.entry.lock().take()
    }

    /// Whether the thread has finished.
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Whether the thread was stopped by a fatal stack fault or a guard hit.
    pub fn was_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    pub(super) fn mark_killed(&self) {
        self.killed.store(true, Ordering::Release);
    }

    pub(super) fn mark_exited(&self) {
        self.exited.store(true, Ordering::Release);
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

//! A kernel thread: its identity, scheduling state, saved context and stack.
//!
//! Who touches what:
//! - `state` moves only through the state machine of `dks_sched` ([`StateCell::apply`]): the
//!   thread itself (parks, exits), the scheduler of the CPU it runs on (picks it, puts it away
//!   after a switch), wakers (wake it) and the fault path of its CPU (stops it); see the
//!   `sched` module docs for the table and why it makes a stop safe.
//! - `saved_rsp` is written by the context switch when the thread leaves a CPU, before its
//!   scheduler publishes the new state (`Ready` or `Blocked`), and read by the CPU that picks
//!   it, after it saw `Ready`: so nobody resumes a half-saved context.
//! - `stop_point` is the thread's innermost stop point (`hw::stop`), written only by the
//!   thread itself and read by the fault path of the CPU that runs it.
//! - `stack` belongs to the CPU running the thread (and that CPU's page-fault handler) while
//!   it runs, and to the scheduler while it is switched out.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use dks_sched::StateCell;
pub use dks_sched::ThreadState as State;
use spin::Once;

use crate::hw::sync::IrqMutex;
use crate::hw::trap_entry::FpuArea;
use crate::stacks::ThreadStack;

/// The value of `Thread::pinned` for a thread that may run anywhere.
const NOT_PINNED: u32 = u32::MAX;

/// Thread identifiers, unique for the whole boot.
pub type ThreadId = u64;

/// The body of a thread. It is called by reference, so that its captures stay owned by the
/// thread's entry and are dropped there even when the thread is stopped in the middle of it;
/// `Sync`, so that whatever it changes in them it changes through atomics or locks, which a
/// stop cannot leave half done (a stop needs interrupts on, and `IrqMutex` holds them off).
pub type Entry = Box<dyn Fn() + Send + Sync + 'static>;

/// A kernel thread.
pub struct Thread {
    id: ThreadId,
    /// Shared by every thread of a workload group: a thread's name costs no allocation.
    name: Arc<str>,
    /// The scheduling state (see the module docs).
    pub(super) state: StateCell,
    /// The stack pointer of the saved context while the thread is off-CPU.
    pub(super) saved_rsp: AtomicU64,
    /// `saved_rsp` of its last voluntary switch-out (a sleep or a wait), kept when a
    /// preemption later saves another.
    pub(super) blocked_rsp: AtomicU64,
    /// The innermost stop point (`hw::stop`), 0 outside the thread's body.
    pub(super) stop_point: AtomicU64,
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
    /// This wait for admission was reported (`AdmissionStall`); cleared at admission.
    pub(super) admit_stall_reported: AtomicBool,
    /// The CPU that last refused the thread admission.
    pub(super) admit_refused_by: AtomicU32,
    /// The CPU the thread must run on (`NOT_PINNED`: any).
    pinned: AtomicU32,
    /// Goes to the front of run queues (see `SpawnOptions::urgent`).
    urgent: bool,
    /// Where its FPU/SSE state waits while it is preempted (see `hw::trap_entry::Disposition`):
    /// made at the thread's first preemption, so a thread that is never preempted (most of a
    /// large population of sleepers) has none.
    /// With the account (`overhead::account_of`) it is counted in.
    fpu: Once<(Arc<FpuArea>, dks_core::Account)>,
    /// The thread's stack.
    pub stack: ThreadStack,
}

impl Thread {
    pub(super) fn new(
        id: ThreadId,
        name: Arc<str>,
        entry: Entry,
        stack: ThreadStack,
        saved_rsp: u64,
        pinned: Option<u32>,
        urgent: bool,
    ) -> Thread {
        Thread {
            id,
            name,
            state: StateCell::new(State::Ready),
            saved_rsp: AtomicU64::new(saved_rsp),
            blocked_rsp: AtomicU64::new(0),
            stop_point: AtomicU64::new(0),
            last_cpu: AtomicU32::new(0),
            cpus_ran_on: AtomicU32::new(0),
            switches: AtomicU64::new(0),
            entry: IrqMutex::new(Some(entry)),
            exited: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            admit_wait_since: AtomicU64::new(0),
            admit_stall_reported: AtomicBool::new(false),
            admit_refused_by: AtomicU32::new(0),
            pinned: AtomicU32::new(pinned.unwrap_or(NOT_PINNED)),
            urgent,
            fpu: Once::new(),
            stack,
        }
    }

    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// TSC when admission first refused the thread in its current wait, if it is waiting.
    pub fn admission_wait_since(&self) -> Option<u64> {
        Some(self.admit_wait_since.load(Ordering::Relaxed)).filter(|&since| since != 0)
    }

    /// The CPU that last refused the thread admission.
    pub fn admission_refused_by(&self) -> u32 {
        self.admit_refused_by.load(Ordering::Relaxed)
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current scheduling state.
    pub fn state(&self) -> State {
        self.state.load()
    }

    /// The CPU the thread is pinned to, if any.
    pub fn pinned(&self) -> Option<u32> {
        Some(self.pinned.load(Ordering::Relaxed)).filter(|&cpu| cpu != NOT_PINNED)
    }

    /// The thread's FPU/SSE save area for a preemption, made at its first one; `None` when the
    /// heap has no room for it now (the thread is then not preempted this time). Called by the
    /// timer interrupt, so it never grows the heap (`mm::heap::has_room`).
    pub fn fpu_area(&self) -> Option<Arc<FpuArea>> {
        if let Some((area, _)) = self.fpu.get() {
            return Some(area.clone());
        }
        if !crate::mm::heap::has_room(crate::overhead::FPU_AREA_BYTES) {
            return None;
        }
        let (area, _) = self.fpu.call_once(|| {
            let account = crate::overhead::account_of(&self.stack);
            crate::overhead::note_fpu_area(account, 1);
            (Arc::new(FpuArea::new()), account)
        });
        Some(area.clone())
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

    /// The stack pointer saved at its last switch-out (meaningful while it is off-CPU; tests
    /// of the `reclaim` trims compare it with the pages left).
    pub fn saved_stack_pointer(&self) -> u64 {
        self.saved_rsp.load(Ordering::Acquire)
    }

    /// The stack pointer saved at its last voluntary switch-out (a sleep or a wait), whatever
    /// preempted it since, and forgets it: 0 when it has not switched out that way since the
    /// last call (a sleep woken before it switched away). Workloads check their sleep depths
    /// with it.
    pub fn take_blocked_stack_pointer(&self) -> u64 {
        self.blocked_rsp.swap(0, Ordering::Relaxed)
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

    /// Whether the thread was stopped by a fatal stack fault or a guard hit (it stays true
    /// after the stopped thread exits).
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

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(&(_, account)) = self.fpu.get() {
            crate::overhead::note_fpu_area(account, -1);
        }
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

//! Threads and the scheduler.
//!
//! Each CPU runs a *scheduler loop* on its own always-populated stack (the boot stack for the
//! boot CPU, a kernel stack for the others). The loop is also the CPU's idle thread: when no
//! thread is ready it halts until an interrupt. Threads run on their own stacks and enter the
//! loop by switching to it ([`yield_now`], [`block`], [`exit`], or a preemption from the
//! timer); the loop puts the previous thread where it belongs, picks the next one (its own run
//! queue first, then stealing from the other CPUs) and switches to it.
//!
//! Running the scheduling decisions on the scheduler stack, not on the threads' stacks, is
//! deliberate: that code manipulates the per-CPU stack magazines, and a dynamic stack that
//! grows (faults) in the middle of a magazine update would see the magazine half-updated.
//! Nothing that touches the stack mechanism's per-CPU state runs on a dynamic stack.
//!
//! Run queues are per CPU; a thread made ready goes to the least loaded online CPU (idle CPUs
//! are woken with an IPI), and an idle CPU steals from the others, so threads migrate.
//! *Urgent* threads (the kernel's housekeeping: per-CPU stack reapers, stack reclaim) go to the
//! front of the queue of the CPU that woke them and preempt its running thread, so that memory
//! held by dead threads is freed promptly. A preempted thread's FPU/SSE state waits in its own
//! save area (see `hw::trap`), not on its stack.

mod cpu;
pub mod thread;
mod timer;
pub mod wait;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

pub use self::thread::{State, Thread};
use crate::hw::cpu::IrqGuard;
use crate::hw::{context, cpu as hwcpu};
use crate::stacks::{self, Policy, StackError};

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// How a new thread's stack is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnOptions {
    /// The stack policy.
    pub policy: Policy,
    /// Run only on this CPU (tests that must stay put); `None` lets it migrate.
    pub pinned: Option<u32>,
    /// Kernel housekeeping (the worker that frees exited threads' stacks, stack reclaim):
    /// when it becomes ready it goes to the front of a run queue, so that memory held by dead
    /// threads is not kept waiting behind a long queue.
    pub urgent: bool,
    /// One of the kernel's own threads (workers, stack reclaim, the main thread): its stack
    /// is accounted apart from the policies' (`stacks::SYSTEM_GROUP`).
    pub system: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            policy: Policy::Static,
            pinned: None,
            urgent: false,
            system: false,
        }
    }
}

/// Creates a thread that runs `body` and makes it ready.
pub fn spawn(
    name: impl Into<String>,
    options: SpawnOptions,
    body: impl FnOnce() + Send + 'static,
) -> Result<Arc<Thread>, StackError> {
    let group = if options.system {
        stacks::SYSTEM_GROUP
    } else {
        dks_core::GroupId::new(0)
    };
    let stack = stacks::create_in_group(options.policy, group)?;
    let saved_rsp = context::prepare(stack.top(), thread_start);
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    let thread = Arc::new(Thread::new(
        id,
        name.into(),
        Box::new(body),
        stack,
        saved_rsp,
        options.pinned,
        options.urgent,
    ));
    cpu::enqueue(thread.clone(), options.pinned);
    Ok(thread)
}

/// Where every thread starts (through `context::prepare`'s trampoline), with interrupts off.
extern "C" fn thread_start() -> ! {
    cpu::finish_switch();
    hwcpu::enable_interrupts();
    let me = current().expect("thread_start without a current thread");
    let body = me.take_entry().expect("a thread's body runs once");
    drop(me);
    body();
    exit()
}

/// Returns the thread running on this CPU, if any (none in the scheduler loop).
pub fn current() -> Option<Arc<Thread>> {
    cpu::current()
}

/// As [`current`], but never waits (for fault handlers): `None` when the record is busy.
pub fn try_current() -> Option<Arc<Thread>> {
    cpu::try_current()
}

/// Gives the CPU to another ready thread, if there is one.
pub fn yield_now() {
    let irq = IrqGuard::new();
    cpu::switch_to_scheduler(&irq);
}

/// Moves the calling thread to CPU `cpu` now (it keeps any pin it had elsewhere afterwards).
pub fn migrate_to(cpu: u32) {
    let me = current().expect("migrate_to outside a thread");
    let pin = me.pinned();
    me.set_pinned(Some(cpu));
    yield_now();
    me.set_pinned(pin);
}

/// Leaves the CPU after the caller set its state to `Blocked` and registered it where a waker
/// will find it.
pub fn block() {
    let irq = IrqGuard::new();
    cpu::switch_to_scheduler(&irq);
}

/// Ends the calling thread. Its stack is freed later by the worker of the CPU it exits on.
pub fn exit() -> ! {
    let irq = IrqGuard::new();
    let me = current().expect("exit outside a thread");
    me.set_state(State::Exited);
    drop(me);
    cpu::switch_to_scheduler_for_good(&irq)
}

/// Prepares to stop the thread running on this CPU after a fatal fault on its own stack
/// (`slot`): marks it killed and returns the stack pointer and entry to resume it at, on the
/// top of its stack, where it exits. `None` when the CPU runs no thread or another one.
pub fn prepare_kill(slot: dks_core::SlotIndex) -> Option<(u64, u64)> {
    let me = try_current()?;
    if me.stack.slot() != slot {
        return None;
    }
    me.mark_killed();
    // At a function's entry RSP + 8 is 16-byte aligned.
    let entry: extern "C" fn() -> ! = thread_killed;
    Some((me.stack.top() - 8, entry as usize as u64))
}

/// Where a killed thread resumes: on the top of its (abandoned) stack, to exit.
extern "C" fn thread_killed() -> ! {
    exit()
}

/// Makes a blocked thread ready; returns false if it was not blocked.
pub fn wake(thread: Arc<Thread>) -> bool {
    if !thread.transition(State::Blocked, State::Ready) {
        return false;
    }
    let pinned = thread.pinned();
    cpu::enqueue(thread, pinned);
    true
}

/// Waits until `thread` has exited.
pub fn join(thread: &Thread) {
    thread.joiners.wait_until(|| thread.has_exited());
}

/// Sleeps for at least `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    timer::sleep_ms(ms);
}

/// Milliseconds since the scheduler started (timer-tick resolution).
pub fn uptime_ms() -> u64 {
    timer::uptime_ms()
}

/// Called by the timer interrupt on its IST stack, after the EOI: advances time, wakes
/// sleepers, and returns whether the interrupted thread should be preempted (then the trap
/// entry switches it out with the operands of [`preempt_switch`]).
pub fn tick() -> bool {
    if hwcpu::current_id() == 0 {
        timer::tick();
    }
    cpu::preemption_due()
}

/// Called by the reschedule IPI on its IST stack: whether to preempt the interrupted thread
/// (then the trap entry switches it out with the operands of [`preempt_switch`]).
pub fn reschedule_ipi() -> bool {
    cpu::resched_requested()
}

/// The operands of a preemption that [`tick`] or [`reschedule_ipi`] asked for, which the
/// trap entry carries out itself on the thread's stack (`hw::trap`): the address of the
/// running thread's saved-stack-pointer cell and the scheduler loop's stack pointer, the same
/// two a switch from [`yield_now`] uses. `None` when this CPU runs no thread or its record is
/// busy. The entry then switches to the scheduler loop, which finds the thread `Running` and
/// queues it, as after a yield.
pub fn preempt_switch() -> Option<(u64, u64)> {
    cpu::preempt_switch()
}

/// Sets up the scheduler (timer rate) before any CPU runs it.
pub fn init(hz: u32) {
    timer::init(hz);
}

/// Runs the scheduler loop on this CPU, forever. Called once per CPU on its scheduler stack.
pub fn run(cpu_id: u32) -> ! {
    cpu::run(cpu_id)
}

pub use self::cpu::{is_online, online_cpus, send_ipi, set_online};

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
//! save area (see `hw::trap_entry`), not on its stack.
//!
//! # The thread state machine
//!
//! A thread's state moves only through `dks_sched`'s transition function (its crate docs hold
//! the table; `crates/dks-sched/tests/model.rs` model-checks it over every interleaving of
//! picks, wake-ups, blocks, preemptions and stops on several CPUs):
//!
//! - `Ready`: in exactly one run queue, its context saved. Spawn, the scheduler after a yield
//!   or preemption (`SwitchedOut` from `Running`) and a waker that found it `Blocked` make it
//!   `Ready`, each with the duty to queue it. Only the scheduler that pops the entry moves it
//!   on (`Pick`: `Running`), and only if it is still `Ready` ([`dks_sched::queue::take_ready`]).
//! - `Running`: on a CPU. It parks itself (`Park`: `Parking`) under the lock of the wait queue
//!   or sleep list it registers in, and exits itself (`Exit`: `Exited`).
//! - `Parking`: registered, still on its CPU (the window between registering and switching
//!   away, with interrupts on). A waker that takes it there makes it `Running` again and
//!   queues nothing: the thread does not sleep ([`block`] returns at once, or its scheduler
//!   queues it if it already switched away). Its scheduler, after the switch, makes it
//!   `Blocked`. A waker therefore never queues a thread that is still on a CPU.
//! - `Blocked`: off every CPU, registered; a waker makes it `Ready` and queues it.
//! - `Stopped`: see below.
//! - `Exited`: its last switch is done or under way; the scheduler that sees it after that
//!   switch hands the stack to the CPU's worker, once.
//!
//! # Why stopping a thread is safe
//!
//! A guard hit or an unservable stack fault with interrupts on stops the thread that runs on
//! the faulting CPU ([`prepare_kill`], from the trap path): `Stop` from `Running` or `Parking`.
//! At that moment the thread is in no run queue (a thread on a CPU never is), and it may be
//! registered in one wait queue or sleep list (`Parking`), or hold a wake-up it has not used
//! yet (woken, back from [`block`], before it checks its condition again). Then:
//!
//! - nothing can queue, wake or pick it any more: `Stopped` refuses `Park`, `Wake`, `Pick` and
//!   `SwitchedOut`; it is not preempted (`ThreadState::preemptible`), so it runs its exit path
//!   on the CPU where it was stopped, and its next switch is its last;
//! - it leaves the wait structures: the trap resumes it at its innermost *stop point*
//!   (`hw::stop`), and `wait_until` and `sleep_ms` put one around their window, whose cleanup
//!   removes the thread's entry, or, if a waker already took it, passes the wake-up on to the
//!   next waiter. The stop then continues outwards to the thread's entry, which drops the
//!   body (its captures) and exits: nothing the thread owned through its entry is leaked;
//! - a wake-up that meets a stale entry anyway (a waker that popped it between the stop and
//!   the cleanup) is refused by the state and goes to the next waiter
//!   ([`dks_sched::queue::wake_first`]);
//! - admission refuses a slot whose stack was released (`stacks::admit`), and the scheduler
//!   switches only to `Ready` threads, so no CPU ever resumes a context on a dead stack.
//!
//! The one thing a stop can still lose: if the thread faults fatally again during its own
//! cleanup, the stop goes straight to the entry, and a wake-up it had received is lost (its
//! stale entry is still dropped by wakers). Frames of the thread's body are abandoned, so
//! what they own (not what the body's captures own) is leaked: bodies keep ownership in their
//! captures and hold only borrows on their stacks.

mod cpu;
pub mod thread;
mod timer;
pub mod wait;

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use dks_sched::{Duty, Event};

pub use self::thread::{State, Thread};
use self::wait::WaitQueue;
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::{context, cpu_ops as hwcpu, stop};
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

/// Heap a new thread needs beyond its structure, body and name: allocator headers and its
/// entries in run queues and sleeper lists.
const SPAWN_HEAP_SLACK_BYTES: u64 = 256;

/// Creates a thread that runs `body` and makes it ready. Refused with `OutOfMemory` when
/// neither its stack nor its heap structures fit (never a failed allocation).
pub fn spawn(
    name: impl Into<Arc<str>>,
    options: SpawnOptions,
    body: impl Fn() + Send + Sync + 'static,
) -> Result<Arc<Thread>, StackError> {
    let group = if options.system {
        stacks::SYSTEM_GROUP
    } else {
        dks_core::GroupId::new(0)
    };
    let name = name.into();
    // Heap allocations cannot fail cleanly: make sure this thread's fit first (see
    // `mm::heap`), so that running out of memory refuses the thread instead of stopping the
    // kernel.
    let heap_bytes = core::mem::size_of::<Thread>() + core::mem::size_of_val(&body) + name.len();
    if !crate::mm::heap::ensure_free(heap_bytes as u64 + SPAWN_HEAP_SLACK_BYTES) {
        return Err(StackError::OutOfMemory);
    }
    let stack = stacks::create_in_group(options.policy, group)?;
    let saved_rsp = context::prepare(stack.top(), thread_start);
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    let thread = Arc::new(Thread::new(
        id,
        name,
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
/// The body runs under the thread's outermost stop point: if the thread is stopped anywhere
/// in it, it resumes here, and the body's captures are dropped by their owner either way.
extern "C" fn thread_start() -> ! {
    let (me, body) = start();
    let _ = stop::call(&me.stop_point, &mut || body());
    drop(body);
    drop(me);
    exit()
}

/// The start of [`thread_start`]: finishes the switch and takes the thread's body. Never
/// inlined, so that its frame is not under every thread's body for the thread's whole life.
#[inline(never)]
fn start() -> (Arc<Thread>, self::thread::Entry) {
    cpu::finish_switch();
    hwcpu::enable_interrupts();
    let me = current().expect("thread_start without a current thread");
    cpu::check_on_own_stack(&me, "starts");
    let Some(body) = me.take_entry() else {
        started_twice(&me)
    };
    (me, body)
}

#[cold]
#[inline(never)]
fn started_twice(me: &Thread) -> ! {
    panic!(
        "thread {} ({}) started twice: state {:?}, switched in {} times, stopped {}, \
             exited {}, slot {:?}",
        me.id(),
        me.name(),
        me.state(),
        me.switches(),
        me.was_killed(),
        me.has_exited(),
        me.stack.slot()
    )
}

/// Continues the stop of the calling thread outwards, after the cleanup of a stopped
/// `stop::call` (see the module docs).
pub(super) fn continue_stop() -> ! {
    let me = current().expect("continue_stop outside a thread");
    assert_eq!(
        me.state(),
        State::Stopped,
        "{} continues a stop it is not in",
        me.name()
    );
    let point = me.stop_point.load(Ordering::Acquire);
    // Nothing owned may stay in the frames the resumption abandons.
    drop(me);
    stop::resume(point)
}

/// Returns the thread running on this CPU, if any (none in the scheduler loop).
pub fn current() -> Option<Arc<Thread>> {
    cpu::current()
}

/// As [`current`], but never waits (for fault handlers): `None` when the record is busy.
pub fn try_current() -> Option<Arc<Thread>> {
    cpu::try_current()
}

/// Gives the CPU to another ready thread, if there is one. A stopped thread, which finishes
/// where it was stopped, does not give it up.
pub fn yield_now() {
    let mut irq = IrqGuard::new();
    cpu::switch_to_scheduler(&mut irq);
}

/// Moves the calling thread to CPU `cpu` now (it keeps any pin it had elsewhere afterwards).
pub fn migrate_to(cpu: u32) {
    let me = current().expect("migrate_to outside a thread");
    let pin = me.pinned();
    me.set_pinned(Some(cpu));
    yield_now();
    me.set_pinned(pin);
}

/// Pins the calling thread to `cpu` (or lets it run anywhere) from its next switch on: the
/// next yield or preemption moves it there.
pub fn pin_me(cpu: Option<u32>) {
    current().expect("pin_me outside a thread").set_pinned(cpu);
}

/// Leaves the CPU after the caller parked (`Parking`) and registered where a waker will find
/// it; returns at once if a waker already made it `Running` again.
pub fn block() {
    let mut irq = IrqGuard::new();
    let me = current().expect("block outside a thread");
    let state = me.state();
    drop(me);
    match state {
        State::Running => {}
        State::Parking => cpu::switch_to_scheduler(&mut irq),
        other => panic!("block in state {other:?}"),
    }
}

/// Ends the calling thread. Its stack is freed later by the worker of the CPU it exits on.
pub fn exit() -> ! {
    let mut irq = IrqGuard::new();
    let me = current().expect("exit outside a thread");
    cpu::check_on_own_stack(&me, "exits");
    if let Err(refused) = me.state.apply(Event::Exit) {
        panic!("{} cannot exit: {refused}", me.name());
    }
    drop(me);
    cpu::switch_to_scheduler_for_good(&mut irq)
}

/// Prepares to stop the thread running on this CPU after a fatal fault on its own stack
/// (`slot`), from the trap path: moves it to `Stopped` and returns the stack pointer and
/// entry to resume it at: its innermost stop point (`hw::stop`), where it cleans up and
/// exits, or, outside its body, the top of its stack, where it just exits. `None` when the
/// CPU runs no thread or another one, or the thread cannot be stopped (the caller then stops
/// the kernel).
pub fn prepare_kill(slot: dks_core::SlotIndex) -> Option<(u64, u64)> {
    let me = try_current()?;
    if me.stack.slot() != slot {
        return None;
    }
    match me.state.apply(Event::Stop) {
        Ok(_) => me.mark_killed(),
        // A second fatal fault, in its cleanup or exit path: the stop goes on from the next
        // stop point out (the cleanup that faulted is abandoned).
        Err(refused) if refused.state == State::Stopped => {}
        Err(_) => return None,
    }
    let point = me.stop_point.load(Ordering::Acquire);
    if point != 0 {
        return Some((point, stop::landing()));
    }
    // At a function's entry RSP + 8 is 16-byte aligned.
    let entry: extern "C" fn() -> ! = thread_killed;
    Some((me.stack.top() - 8, entry as usize as u64))
}

/// Makes `thread`, picked by this CPU's scheduler after admission found its restored stack
/// corrupt (`stacks::Admit::Corrupt`), resume at a fresh frame at the top of its stack, where
/// it stops itself: none of the bytes of its own frames is used. Cold: never on a switch
/// that runs a thread's own context.
#[cold]
#[inline(never)]
pub(super) fn redirect_to_stop(thread: &Thread) {
    let rsp = context::prepare(thread.stack.top(), corrupt_stack_stop);
    thread.saved_rsp.store(rsp, Ordering::Release);
}

/// Where a thread whose restored stack was corrupt starts again (see [`redirect_to_stop`]):
/// it is stopped, with a record, and exits. Its body's captures are dropped with the thread.
extern "C" fn corrupt_stack_stop() -> ! {
    cpu::finish_switch();
    hwcpu::enable_interrupts();
    let me = current().expect("corrupt_stack_stop without a current thread");
    if let Err(refused) = me.state.apply(Event::Stop) {
        panic!("{} cannot be stopped: {refused}", me.name());
    }
    me.mark_killed();
    stacks::note_killed(me.stack.slot());
    stacks::pack::CORRUPT_STOPS.fetch_add(1, Ordering::Relaxed);
    crate::report::log(format_args!(
        "pack: thread {} ({}) stopped: its restored stack (slot {}) did not match the \
         checksum taken at its pack",
        me.id(),
        me.name(),
        me.stack.slot().as_u32()
    ));
    drop(me);
    exit()
}

/// Where a thread stopped outside its body resumes: on the top of its (abandoned) stack, to
/// exit.
extern "C" fn thread_killed() -> ! {
    exit()
}

/// Applies a wake-up to `thread`, which a waker took from where it was registered, and does
/// the duty it leaves; returns whether the thread accepted it (a stopped or exited thread
/// refuses).
fn deliver_wake(thread: Arc<Thread>) -> bool {
    match thread.state.apply(Event::Wake) {
        Ok(transition) => {
            after_wake(thread, transition);
            true
        }
        Err(_) => false,
    }
}

/// Does what an accepted wake-up leaves to its waker: queue a thread that had left its CPU.
fn after_wake(thread: Arc<Thread>, transition: dks_sched::Transition) {
    if transition.duty == Duty::Enqueue {
        if thread.stack.policy() == stacks::Policy::Pack {
            // Restored before it can be picked, never by a fault (`stacks::pack`); one that
            // is left packed is restored by admission.
            let _ = stacks::pack::restore_on_wake(thread.stack.slot());
        }
        let pinned = thread.pinned();
        cpu::enqueue(thread, pinned);
    }
}

/// Where `join` waits: one queue per bucket of thread ids rather than one per thread, which
/// would cost every thread 40 bytes for the few that are ever joined. A wake-up meant for
/// another thread of the bucket only makes a joiner check `has_exited` again.
static JOINERS: [WaitQueue; JOIN_BUCKETS] = [const { WaitQueue::new() }; JOIN_BUCKETS];
const JOIN_BUCKETS: usize = 64;

/// The queue where joiners of `thread` wait.
fn joiners(thread: &Thread) -> &'static WaitQueue {
    &JOINERS[(thread.id() % JOIN_BUCKETS as u64) as usize]
}

/// Waits until `thread` has exited.
pub fn join(thread: &Thread) {
    joiners(thread).wait_until(|| thread.has_exited());
}

/// Sleeps for at least `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    timer::sleep_ms(ms);
}

/// Ends the sleep ([`sleep_ms`]) of every sleeping thread for which `which` is true, at
/// once; returns how many were woken.
pub fn wake_sleepers(which: impl Fn(&Thread) -> bool) -> usize {
    timer::wake_sleepers(which)
}

/// Milliseconds since the scheduler started (timer-tick resolution).
pub fn uptime_ms() -> u64 {
    timer::uptime_ms()
}

/// The resolution of [`uptime_ms`]: one timer tick, in milliseconds (rounded up).
pub fn uptime_resolution_ms() -> u64 {
    timer::tick_ms()
}

/// Called by the timer interrupt on its IST stack, after the EOI: advances time, wakes
/// sleepers, and returns whether the interrupted thread should be preempted (then the trap
/// entry switches it out with the operands of [`preempt_switch`]).
pub fn tick() -> bool {
    if hwcpu::current_id(&IrqGuard::new()) == 0 {
        timer::tick();
        crate::reclaim_thread::tick();
    }
    cpu::preemption_due()
}

/// Called by the reschedule IPI on its IST stack: whether to preempt the interrupted thread
/// (then the trap entry switches it out with the operands of [`preempt_switch`]).
pub fn reschedule_ipi() -> bool {
    cpu::resched_requested()
}

/// The operands of a preemption that [`tick`] or [`reschedule_ipi`] asked for, which the
/// trap entry carries out itself on the thread's stack (`hw::trap_entry`): the address of the
/// running thread's saved-stack-pointer cell and the scheduler loop's stack pointer, the same
/// two a switch from [`yield_now`] uses. `None` when this CPU runs no thread or its record is
/// busy. The entry then switches to the scheduler loop, which finds the thread `Running` and
/// queues it, as after a yield. [`tick`] and [`reschedule_ipi`] never ask this for a
/// stopped thread.
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

pub use self::cpu::{
    ADMISSION_STALL_REPORT_MS, STALE_ENTRIES, for_each_admission_wait, is_online, online_cpus,
    queued_anywhere, report_admission_stall, send_ipi, set_online,
};

//! Per-CPU scheduler state and the scheduler loop.
//!
//! An idle CPU announces itself (`idle`) before it halts, and an enqueuer that puts a thread
//! in its queue checks that flag to decide whether to send an IPI: the two sides store one
//! flag and load the other's, so both use sequentially consistent accesses (a release store
//! followed by an acquire load may be reordered, and a wake-up would wait for the next tick).

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use dks_sched::{Duty, Event, queue};

use super::thread::{State, Thread};
use crate::hw::apic::{self, vector};
use crate::hw::context;
use crate::hw::cpu_ops::{self as hwcpu, IrqGuard, MAX_CPUS};
use crate::hw::sync::IrqMutex;
use crate::stacks;

/// Timer ticks a thread may run before it is preempted (if others are ready).
const SLICE_TICKS: u32 = 2;

struct CpuSched {
    online: AtomicBool,
    /// Threads ready to run here.
    run_queue: IrqMutex<VecDeque<Arc<Thread>>>,
    /// Length of `run_queue`, readable without the lock (for load balancing).
    queued: AtomicUsize,
    /// The thread this CPU runs (only this CPU writes it).
    current: IrqMutex<Option<Arc<Thread>>>,
    /// The scheduler loop's saved stack pointer while a thread runs.
    scheduler_rsp: AtomicU64,
    /// Ticks the current thread has run since it was switched in.
    slice_used: AtomicU32,
    /// The loop is halted waiting for an interrupt.
    idle: AtomicBool,
    /// An urgent thread was queued here: preempt the running thread at the next chance.
    resched: AtomicBool,
    /// Context switches made by this CPU.
    switches: AtomicU64,
}

static CPUS: [CpuSched; MAX_CPUS] = [const {
    CpuSched {
        online: AtomicBool::new(false),
        run_queue: IrqMutex::new(VecDeque::new()),
        queued: AtomicUsize::new(0),
        current: IrqMutex::new(None),
        scheduler_rsp: AtomicU64::new(0),
        slice_used: AtomicU32::new(0),
        idle: AtomicBool::new(false),
        resched: AtomicBool::new(false),
        switches: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Where an exiting thread's last stack pointer goes (nobody reads it).
static DISCARDED_RSP: AtomicU64 = AtomicU64::new(0);
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// This CPU's scheduler state, for as long as the guard is borrowed. The guard is the proof
/// that the answer stays true: with interrupts on, the calling thread could be preempted right
/// after reading its CPU number and resumed on another CPU, and would then read or change the
/// record of a CPU it no longer runs on (its `current` naming another thread, or none). A
/// context switch takes the guard mutably, so the reference cannot be used across one either.
fn this(irq: &IrqGuard) -> &CpuSched {
    &CPUS[hwcpu::current_id(irq) as usize]
}

/// Marks CPU `cpu` (with local APIC `apic_id`) as running the scheduler.
pub fn set_online(cpu: u32, apic_id: u32) {
    APIC_IDS[cpu as usize].store(apic_id, Ordering::Relaxed);
    CPUS[cpu as usize].online.store(true, Ordering::Release);
}

/// Whether CPU `cpu` runs the scheduler.
pub fn is_online(cpu: u32) -> bool {
    CPUS.get(cpu as usize)
        .is_some_and(|c| c.online.load(Ordering::Acquire))
}

/// Sends interrupt `vector` to CPU `cpu`.
pub fn send_ipi(cpu: u32, vector: u8) {
    apic::send_ipi(APIC_IDS[cpu as usize].load(Ordering::Relaxed), vector);
}

/// The number of CPUs that run the scheduler.
pub fn online_cpus() -> u32 {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Acquire))
        .count() as u32
}

/// Returns the running thread of this CPU: the calling thread, when a thread calls it.
pub fn current() -> Option<Arc<Thread>> {
    let irq = IrqGuard::new();
    this(&irq).current.lock().clone()
}

/// Returns the running thread of this CPU without waiting: `None` if there is none or its
/// record is being changed right now. For fault handlers, which must not wait for a lock.
pub fn try_current() -> Option<Arc<Thread>> {
    let irq = IrqGuard::new();
    this(&irq).current.try_lock().and_then(|c| c.clone())
}

/// Puts a ready thread in a run queue: its pinned CPU, or the least loaded online CPU
/// (ties broken round-robin). Wakes that CPU if it idles.
pub fn enqueue(thread: Arc<Thread>, pinned: Option<u32>) {
    let urgent = thread.is_urgent();
    // `here` must stay this CPU until the IPI decision below.
    let irq = IrqGuard::new();
    // An urgent thread runs where it is woken, at the front: no IPI to wait for (an IPI to a
    // busy CPU takes milliseconds under TCG). The scheduler loop that woke it (it reaps exited
    // threads) picks it next.
    let here = hwcpu::current_id(&irq);
    let target = pinned.unwrap_or_else(|| {
        if urgent && is_online(here) {
            here
        } else {
            least_loaded()
        }
    }) as usize;
    let cpu = &CPUS[target];
    {
        let mut queue = cpu.run_queue.lock();
        if urgent {
            queue.push_front(thread);
        } else {
            queue.push_back(thread);
        }
        cpu.queued.store(queue.len(), Ordering::SeqCst);
    }
    if urgent {
        cpu.resched.store(true, Ordering::Release);
    }
    let remote = target as u32 != here;
    if remote && (urgent || cpu.idle.load(Ordering::SeqCst)) {
        send_ipi(target as u32, vector::RESCHEDULE);
    }
}

fn least_loaded() -> u32 {
    let start = ROUND_ROBIN.fetch_add(1, Ordering::Relaxed);
    let mut best: Option<(usize, usize)> = None;
    for offset in 0..MAX_CPUS {
        let index = (start + offset) % MAX_CPUS;
        let cpu = &CPUS[index];
        if !cpu.online.load(Ordering::Acquire) {
            continue;
        }
        let load =
            cpu.queued.load(Ordering::Relaxed) + usize::from(!cpu.idle.load(Ordering::Relaxed));
        if best.is_none_or(|(_, l)| load < l) {
            best = Some((index, load));
        }
    }
    best.map_or(0, |(index, _)| index as u32)
}

/// Whether the current thread may be preempted at all (a stopped one finishes in place).
fn current_preemptible(cpu: &CpuSched) -> bool {
    cpu.current
        .lock()
        .as_ref()
        .is_some_and(|t| t.state().preemptible())
}

/// Whether the timer should preempt the current thread now (from its handler).
pub fn preemption_due() -> bool {
    let irq = IrqGuard::new();
    let cpu = this(&irq);
    if !current_preemptible(cpu) {
        return false;
    }
    let used = cpu.slice_used.fetch_add(1, Ordering::Relaxed) + 1;
    cpu.resched.swap(false, Ordering::AcqRel) || (used >= SLICE_TICKS && any_ready(cpu))
}

/// Whether a reschedule IPI asked this CPU to preempt its thread now (an urgent thread is
/// waiting in its queue).
pub fn resched_requested() -> bool {
    let irq = IrqGuard::new();
    let cpu = this(&irq);
    current_preemptible(cpu) && cpu.resched.swap(false, Ordering::AcqRel)
}

fn any_ready(cpu: &CpuSched) -> bool {
    cpu.queued.load(Ordering::Relaxed) > 0
        || CPUS.iter().any(|c| c.queued.load(Ordering::Relaxed) > 1)
}

/// Switches from the current thread to this CPU's scheduler loop; returns when the thread is
/// resumed (possibly on another CPU), or at once for a stopped thread, which finishes where it
/// was stopped (its only switch is its last, `switch_to_scheduler_for_good`).
pub fn switch_to_scheduler(irq: &mut IrqGuard) {
    let cpu = this(irq);
    let me = cpu
        .current
        .lock()
        .clone()
        .expect("switch_to_scheduler outside a thread");
    if me.state() == State::Stopped {
        return;
    }
    check_on_own_stack(&me, "switches away");
    let scheduler_rsp = cpu.scheduler_rsp.load(Ordering::Relaxed);
    context::switch(irq, &me.saved_rsp, scheduler_rsp);
    // Back, with interrupts still off: `saved_rsp` is still the one this switch saved.
    me.blocked_rsp
        .store(me.saved_rsp.load(Ordering::Relaxed), Ordering::Relaxed);
    drop(me);
    finish_switch();
}

/// See `sched::preempt_switch`. The thread stays alive meanwhile: `current` holds it until
/// the scheduler loop takes it after the switch.
pub fn preempt_switch() -> Option<(u64, u64)> {
    let irq = IrqGuard::new();
    let cpu = this(&irq);
    let current = cpu.current.try_lock()?;
    let me = current.as_ref()?;
    Some((
        me.saved_rsp.as_ptr() as u64,
        cpu.scheduler_rsp.load(Ordering::Relaxed),
    ))
}

/// Panics unless the stack pointer lies in `thread`'s own stack: this CPU's record of its
/// current thread must name the thread that runs (a mismatch would make the next switch save
/// one thread's context as another's). A few instructions; the message is built out of line.
#[inline]
pub fn check_on_own_stack(thread: &Thread, doing: &str) {
    let sp = crate::hw::probes::stack_pointer();
    if !thread.stack.contains(sp) {
        not_on_own_stack(thread, doing, sp);
    }
}

#[cold]
#[inline(never)]
fn not_on_own_stack(thread: &Thread, doing: &str, sp: u64) -> ! {
    panic!(
        "cpu{} {doing} as thread {} ({}, slot {:?}) on another stack (sp {sp:#x})",
        hwcpu::id_hint(),
        thread.id(),
        thread.name(),
        thread.stack.slot()
    )
}

/// Switches to the scheduler loop from a thread that will never run again.
pub fn switch_to_scheduler_for_good(irq: &mut IrqGuard) -> ! {
    let cpu = this(irq);
    let scheduler_rsp = cpu.scheduler_rsp.load(Ordering::Relaxed);
    // Nobody reads it: any cell will do, and this one is not borrowed from the guard.
    context::switch(irq, &DISCARDED_RSP, scheduler_rsp);
    unreachable!("an exited thread was resumed")
}

/// The first thing a thread does after it is switched in (from `thread_start` or from
/// `switch_to_scheduler`): nothing yet; the hook where the dynamic policies finish a switch.
pub fn finish_switch() {}

/// Stale run-queue entries dropped by the scheduler (entries whose thread was not `Ready`):
/// the state machine makes them impossible, and tests check that this stays 0.
pub static STALE_ENTRIES: AtomicU64 = AtomicU64::new(0);

/// Takes the next thread for this CPU: its own queue first, then one stolen from the back of
/// another CPU's queue (pinned threads are never stolen). Only a `Ready` thread is taken.
fn pick(cpu_id: usize) -> Option<Arc<Thread>> {
    if let Some(thread) = pop(&CPUS[cpu_id], |queue| queue.pop_front()) {
        return Some(thread);
    }
    for offset in 1..MAX_CPUS {
        let victim = &CPUS[(cpu_id + offset) % MAX_CPUS];
        if victim.queued.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let stolen = pop(victim, |queue| {
            let position = queue.iter().rposition(|t| t.pinned().is_none())?;
            queue.remove(position)
        });
        if stolen.is_some() {
            return stolen;
        }
    }
    None
}

/// Pops the first `Ready` entry `take` yields from `cpu`'s queue, dropping stale ones.
fn pop(
    cpu: &CpuSched,
    mut take: impl FnMut(&mut VecDeque<Arc<Thread>>) -> Option<Arc<Thread>>,
) -> Option<Arc<Thread>> {
    let mut run_queue = cpu.run_queue.lock();
    let taken = queue::take_ready(|| take(&mut run_queue), |t| t.state());
    cpu.queued.store(run_queue.len(), Ordering::SeqCst);
    drop(run_queue);
    if taken.dropped > 0 {
        STALE_ENTRIES.fetch_add(taken.dropped as u64, Ordering::Relaxed);
    }
    taken.ready
}

/// Whether any run queue holds an entry for `thread` (for tests).
pub fn queued_anywhere(thread: &Thread) -> bool {
    CPUS.iter().any(|cpu| {
        cpu.run_queue
            .lock()
            .iter()
            .any(|t| core::ptr::eq(Arc::as_ptr(t), thread))
    })
}

/// Deals with the thread that just switched back to the scheduler loop: lets its stack policy
/// account the switch, then applies `SwitchedOut` and does its duty. The bookkeeping comes
/// first: once the new state is published, another CPU may pick the thread.
fn put_previous(irq: &IrqGuard, cpu_id: u32, previous: Arc<Thread>) {
    let cpu = &CPUS[cpu_id as usize];
    let state = previous.state();
    if state != State::Exited {
        stacks::switched_out(
            irq,
            previous.stack.slot(),
            previous.saved_rsp.load(Ordering::Acquire),
            state == State::Parking,
        );
    }
    let transition = previous
        .state
        .apply(Event::SwitchedOut)
        .unwrap_or_else(|refused| panic!("{} left its CPU: {refused}", previous.name()));
    match transition.duty {
        // Yielded, preempted, or woken before it could sleep: it stays ready, here.
        Duty::Enqueue => match previous.pinned() {
            Some(pinned) if pinned != cpu_id => enqueue(previous, Some(pinned)),
            _ => {
                let mut queue = cpu.run_queue.lock();
                if previous.is_urgent() {
                    queue.push_front(previous);
                } else {
                    queue.push_back(previous);
                }
                cpu.queued.store(queue.len(), Ordering::SeqCst);
            }
        },
        // Blocked: a waker will find it where it registered.
        Duty::Nothing => {}
        // Off the CPU for good: queue its stack for release, then tell the joiners, so that
        // a joiner finds the release already queued (`work::drain` then covers it).
        Duty::Reap => {
            crate::work::reap(irq, previous.clone());
            previous.mark_exited();
            super::joiners(&previous).wake_all();
        }
        Duty::Run => unreachable!("SwitchedOut never asks to run"),
    }
}

/// What the scheduler found to run.
enum Pick {
    /// A thread, admitted.
    Thread(Arc<Thread>),
    /// Threads are ready but none could be admitted now (their stack need is not covered).
    Refused,
    /// Nothing is ready.
    Nothing,
}

/// Takes the next thread this CPU may run: ready and admitted by its stack policy. A refused
/// thread goes to the back of this CPU's queue, the stack-reclaim thread is woken, and the
/// next candidate is tried, up to the queue's length.
fn pick_admitted(irq: &IrqGuard, cpu_id: u32) -> Pick {
    let cpu = &CPUS[cpu_id as usize];
    let mut refused = 0;
    let limit = cpu.queued.load(Ordering::Relaxed) + 1;
    loop {
        let Some(next) = pick(cpu_id as usize) else {
            return if refused > 0 {
                Pick::Refused
            } else {
                Pick::Nothing
            };
        };
        let admission = stacks::admit(irq, next.stack.slot());
        if admission == stacks::Admit::Released {
            panic!(
                "{} is Ready but its stack slot {:?} was released",
                next.name(),
                next.stack.slot()
            );
        }
        if admission == stacks::Admit::Admitted {
            if let Err(refused) = next.state.apply(Event::Pick) {
                panic!("{} was taken from a run queue: {refused}", next.name());
            }
            let since = next.admit_wait_since.swap(0, Ordering::Relaxed);
            if since != 0 {
                let waited = hwcpu::rdtsc().saturating_sub(since);
                stacks::note_admit_wait(next.stack.slot(), waited);
                next.admit_stall_reported.store(false, Ordering::Relaxed);
            }
            return Pick::Thread(next);
        }
        if admission == stacks::Admit::Corrupt {
            // Its restored stack is not what was packed: it runs only its stop, from a fresh
            // frame at the top of its stack, never its own frames.
            if let Err(refused) = next.state.apply(Event::Pick) {
                panic!("{} was taken from a run queue: {refused}", next.name());
            }
            super::redirect_to_stop(&next);
            return Pick::Thread(next);
        }
        next.admit_refused_by.store(cpu_id, Ordering::Relaxed);
        let now = hwcpu::rdtsc();
        let since = match next.admit_wait_since.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        let waited_ms = now.saturating_sub(since) / (crate::hw::apic::tsc_per_us() * 1000).max(1);
        if waited_ms >= ADMISSION_STALL_REPORT_MS
            && !next.admit_stall_reported.swap(true, Ordering::Relaxed)
        {
            report_admission_stall(cpu_id, &next, waited_ms, "waiting");
        }
        {
            let mut queue = cpu.run_queue.lock();
            queue.push_back(next);
            cpu.queued.store(queue.len(), Ordering::SeqCst);
        }
        if admission != stacks::Admit::Flushing {
            crate::reclaim_thread::wake();
        }
        refused += 1;
        if refused >= limit {
            return Pick::Refused;
        }
    }
}

/// How long admission may refuse a thread before the wait is reported (`AdmissionStall`),
/// milliseconds: far above the waits of a working system (a few milliseconds while the
/// reclaim thread frees memory), far below a run's length.
pub const ADMISSION_STALL_REPORT_MS: u64 = 1000;

/// Prints an `AdmissionStall` record for `thread`, refused by CPU `cpu_id`, waiting for
/// `waited_ms`; `when` is `waiting` or `at_end`.
pub fn report_admission_stall(cpu_id: u32, thread: &Thread, waited_ms: u64, when: &str) {
    let (need_pages, magazine_pages) = stacks::admission_shortfall(thread.stack.slot(), cpu_id);
    crate::report::emit(&dks_protocol::record::Record::AdmissionStall(
        dks_protocol::record::AdmissionStall {
            cpu: cpu_id,
            task: alloc::borrow::Cow::Borrowed(thread.name()),
            policy: thread.stack.policy(),
            need_pages: u32::from(need_pages),
            magazine_pages: u32::from(magazine_pages),
            waited_ms,
            when: alloc::borrow::Cow::Borrowed(when),
        },
    ));
}

/// Calls `f(policy, ticks)` for every thread waiting in a run queue for admission right now,
/// with the TSC ticks it has waited so far (the figures count waits in progress too).
pub fn for_each_admission_wait(mut f: impl FnMut(stacks::Policy, u64)) {
    let now = hwcpu::rdtsc();
    for cpu in &CPUS {
        let queue = cpu.run_queue.lock();
        for thread in queue.iter() {
            if let Some(since) = thread.admission_wait_since() {
                f(thread.stack.policy(), now.saturating_sub(since));
            }
        }
    }
}

/// Halts until the next interrupt (the periodic timer wakes every CPU at least once a tick),
/// with no thread on this CPU: while it halts, other CPUs do not wait for its TLB flushes
/// (`tlb::enter_idle`); it catches up before it runs anything again.
fn halt(irq: &IrqGuard) {
    crate::tlb::enter_idle(irq);
    hwcpu::enable_interrupts_and_halt();
    hwcpu::disable_interrupts();
    crate::tlb::leave_idle(irq);
}

#[cold]
#[inline(never)]
fn saved_context_elsewhere(cpu_id: u32, next: &Thread, rsp: u64) -> ! {
    panic!(
        "cpu{cpu_id} picked thread {} ({}, slot {:?}, {:?}) with a saved stack pointer \
         {rsp:#x} outside its stack",
        next.id(),
        next.name(),
        next.stack.slot(),
        next.state()
    )
}

/// The scheduler loop of CPU `cpu_id`.
pub fn run(cpu_id: u32) -> ! {
    // The loop runs on this CPU's own stack and never moves: its `cpu` stays true across its
    // switches, unlike a thread's view of "this CPU".
    assert_eq!(
        cpu_id,
        hwcpu::current_id(&IrqGuard::new()),
        "scheduler loop on another CPU"
    );
    let cpu = &CPUS[cpu_id as usize];
    loop {
        let mut irq = IrqGuard::new();
        let next = match pick_admitted(&irq, cpu_id) {
            Pick::Thread(next) => next,
            Pick::Refused => {
                // Retry at the next interrupt (the timer, or memory freed by a wake-up).
                halt(&irq);
                continue;
            }
            Pick::Nothing => {
                cpu.idle.store(true, Ordering::SeqCst);
                // Re-check after announcing idleness: an enqueue that saw us busy sent no IPI.
                if cpu.queued.load(Ordering::SeqCst) == 0 {
                    halt(&irq);
                }
                cpu.idle.store(false, Ordering::SeqCst);
                continue;
            }
        };
        next.note_switched_in(cpu_id);
        cpu.slice_used.store(0, Ordering::Relaxed);
        cpu.switches.fetch_add(1, Ordering::Relaxed);
        let rsp = next.saved_rsp.load(Ordering::Acquire);
        if !next.stack.contains(rsp) {
            saved_context_elsewhere(cpu_id, &next, rsp);
        }
        *cpu.current.lock() = Some(next);
        context::switch(&mut irq, &cpu.scheduler_rsp, rsp);
        let previous = cpu.current.lock().take().expect("a thread switched back");
        put_previous(&irq, cpu_id, previous);
    }
}

//! TLB shootdown: make every CPU forget translations that were changed.
//!
//! Requests are numbered (`GENERATION`). A request flushes the initiator's own TLB (a range,
//! or everything), marks every other online CPU pending and sends it an IPI; a CPU serves a
//! pending request by flushing its whole TLB and recording the generation it read before the
//! flush (`DONE`). A request is complete when every other online CPU has served a generation
//! at least as new, or is *idle*.
//!
//! An idle CPU is halted in its scheduler loop with no thread ([`enter_idle`]): neither it nor
//! its interrupt handlers touch thread-stack or lazy-region memory, so a stale translation in
//! its TLB cannot be used, and [`leave_idle`] flushes before it runs anything again if a
//! request came meanwhile. Nobody waits for a halted CPU: a wait never depends on an IPI
//! reaching a halted CPU, or on the CPU being scheduled at all (under QEMU's `-icount`, a
//! woken vCPU may get no instructions while another vCPU keeps running; see
//! `docs/kernel.md`). The two sides store one flag and load the other's (`IDLE` against
//! `GENERATION`), so both use sequentially consistent accesses.
//!
//! Serving a request flushes everything, whatever range it was for: a CPU that missed a range
//! while idle, or saw a newer request's range, is covered all the same. A CPU waiting for a
//! request to complete keeps serving the others', so two initiators cannot wait on each
//! other. Callers must not hold a lock that another CPU may spin on with interrupts off: that
//! CPU could not answer the IPI (it serves requests while it spins on an `IrqMutex`, though).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::hw::apic::vector;
use crate::hw::cpu_ops::{self, IrqGuard, MAX_CPUS};
use crate::hw::paging;
use crate::sched;

/// The number of the last request made.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The last generation each CPU has flushed its whole TLB for.
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// A request waits to be served on this CPU.
static PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The CPU is halted in its scheduler loop (see the module docs).
static IDLE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Shootdowns completed since boot.
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Makes a request: marks every other online CPU pending and sends it an IPI. Returns its
/// generation.
fn request(me: usize) -> u64 {
    let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    for (other, pending) in PENDING.iter().enumerate() {
        if other != me && sched::is_online(other as u32) {
            pending.store(true, Ordering::SeqCst);
            sched::send_ipi(other as u32, vector::TLB_SHOOTDOWN);
        }
    }
    generation
}

/// Whether every online CPU other than `except` has flushed for `generation` or is idle.
fn complete(generation: u64, except: Option<usize>) -> bool {
    (0..MAX_CPUS).all(|cpu| {
        Some(cpu) == except
            || !sched::is_online(cpu as u32)
            || DONE[cpu].load(Ordering::SeqCst) >= generation
            || IDLE[cpu].load(Ordering::SeqCst)
    })
}

/// Invalidates `[start, end)` on every online CPU; returns when all have done it (or are
/// idle and will flush before they run anything).
pub fn shootdown(start: u64, end: u64) {
    let irq = IrqGuard::new();
    paging::flush_range(start, end);
    let me = cpu_ops::current_id(&irq) as usize;
    let generation = request(me);
    while !complete(generation, Some(me)) {
        serve(&irq);
        cpu_ops::relax();
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
}

/// Asks every online CPU to flush its whole TLB, without waiting: returns the generation to
/// pass to [`flushed_everywhere`]. This CPU flushes at once; the others when the IPI arrives
/// (an IPI to a busy CPU takes milliseconds under TCG, and nobody needs to wait for it here),
/// or before they leave idleness.
pub fn request_flush_all() -> u64 {
    let irq = IrqGuard::new();
    let me = cpu_ops::current_id(&irq) as usize;
    let generation = request(me);
    paging::flush_range(0, u64::MAX);
    DONE[me].fetch_max(generation, Ordering::SeqCst);
    generation
}

/// Asks again every CPU that has not flushed for `generation` (an IPI may have been lost, or
/// taken before the request was visible): marks it pending and sends the IPI again.
pub fn remind(generation: u64) {
    // `me` must stay this CPU while the others are asked (a thread calls this).
    let irq = IrqGuard::new();
    let me = cpu_ops::current_id(&irq) as usize;
    for (other, pending) in PENDING.iter().enumerate() {
        let behind = DONE[other].load(Ordering::SeqCst) < generation;
        if other != me && sched::is_online(other as u32) && behind {
            pending.store(true, Ordering::SeqCst);
            sched::send_ipi(other as u32, vector::TLB_SHOOTDOWN);
        }
    }
}

/// Whether every online CPU has flushed its whole TLB since `generation` was requested, or is
/// idle (and flushes before it runs anything).
pub fn flushed_everywhere(generation: u64) -> bool {
    complete(generation, None)
}

/// Whether CPU `cpu` is idle now (tests).
pub fn is_idle(cpu: usize) -> bool {
    IDLE[cpu].load(Ordering::SeqCst)
}

/// The last generation CPU `cpu` has flushed for (tests).
pub fn flushed_by(cpu: usize) -> u64 {
    DONE[cpu].load(Ordering::SeqCst)
}

/// Flushes this CPU's TLB if a request came since it last did (from the IPI, or while waiting).
pub fn serve(irq: &IrqGuard) {
    let me = cpu_ops::current_id(irq) as usize;
    if PENDING[me].swap(false, Ordering::SeqCst) {
        catch_up(me);
    }
}

fn catch_up(me: usize) {
    // Read the generation before flushing: a request made after this read stays unserved.
    let generation = GENERATION.load(Ordering::SeqCst);
    if DONE[me].load(Ordering::SeqCst) < generation {
        paging::flush_range(0, u64::MAX);
        DONE[me].fetch_max(generation, Ordering::SeqCst);
    }
}

/// Announces that this CPU halts with no thread: requests stop waiting for it. Interrupts
/// must stay off until it halts (the guard), so that nothing runs in between.
pub fn enter_idle(irq: &IrqGuard) {
    IDLE[cpu_ops::current_id(irq) as usize].store(true, Ordering::SeqCst);
}

/// Ends this CPU's idleness (interrupts still off): flushes first if a request came while it
/// was idle, so it never runs a thread with a translation some CPU asked it to forget.
pub fn leave_idle(irq: &IrqGuard) {
    let me = cpu_ops::current_id(irq) as usize;
    IDLE[me].store(false, Ordering::SeqCst);
    catch_up(me);
}

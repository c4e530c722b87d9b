//! TLB shootdown: invalidate a range of pages on every CPU that may cache it.
//!
//! One shootdown runs at a time (a spin flag). The initiator flushes its own TLB, publishes the
//! range, marks every other online CPU pending, sends them an IPI and waits until each has
//! flushed and cleared its mark. A CPU waiting to start its own shootdown keeps serving the
//! current one, so two initiators cannot wait on each other. Callers must not hold a lock that
//! another CPU may spin on with interrupts off: that CPU could not answer the IPI.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::hw::apic::vector;
use crate::hw::cpu::{self, IrqGuard, MAX_CPUS};
use crate::hw::paging;
use crate::sched;

static BUSY: AtomicBool = AtomicBool::new(false);
/// The last flush-everything epoch requested ([`request_flush_all`]).
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// The last epoch each CPU has flushed its whole TLB for.
static FLUSHED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// A flush-everything request waits on this CPU.
static PENDING_ALL: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static START: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);
static PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Shootdowns completed, and IPIs answered, since boot.
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Invalidates `[start, end)` on every online CPU; returns when all have done it.
pub fn shootdown(start: u64, end: u64) {
    let _irq = IrqGuard::new();
    paging::flush_range(start, end);
    let me = cpu::current_id() as usize;
    while BUSY
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        serve();
        cpu::relax();
    }
    START.store(start, Ordering::Relaxed);
    END.store(end, Ordering::Relaxed);
    for (other, pending) in PENDING.iter().enumerate() {
        if other != me && sched::is_online(other as u32) {
            pending.store(true, Ordering::Release);
            sched::send_ipi(other as u32, vector::TLB_SHOOTDOWN);
        }
    }
    while PENDING.iter().any(|p| p.load(Ordering::Acquire)) {
        cpu::relax();
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    BUSY.store(false, Ordering::Release);
}

/// Asks every online CPU to flush its whole TLB, without waiting: returns the epoch to pass
/// to [`flushed_everywhere`]. This CPU flushes at once; the others when the IPI arrives (an
/// IPI to a busy CPU takes milliseconds under TCG, and nobody needs to wait for it here).
pub fn request_flush_all() -> u64 {
    let _irq = IrqGuard::new();
    let epoch = EPOCH.fetch_add(1, Ordering::AcqRel) + 1;
    let me = cpu::current_id() as usize;
    for (other, pending) in PENDING_ALL.iter().enumerate() {
        if other != me && sched::is_online(other as u32) {
            pending.store(true, Ordering::Release);
            sched::send_ipi(other as u32, vector::TLB_SHOOTDOWN);
        }
    }
    paging::flush_range(0, u64::MAX);
    FLUSHED[me].fetch_max(epoch, Ordering::AcqRel);
    epoch
}

/// Whether every online CPU has flushed its whole TLB since `epoch` was requested.
pub fn flushed_everywhere(epoch: u64) -> bool {
    FLUSHED.iter().enumerate().all(|(cpu, flushed)| {
        !sched::is_online(cpu as u32) || flushed.load(Ordering::Acquire) >= epoch
    })
}

/// Does this CPU's part of a pending shootdown (from the IPI, or while waiting to start one).
pub fn serve() {
    let me = cpu::current_id() as usize;
    if PENDING_ALL[me].swap(false, Ordering::AcqRel) {
        // Read the epoch before flushing: a request made after this read stays pending.
        let epoch = EPOCH.load(Ordering::Acquire);
        paging::flush_range(0, u64::MAX);
        FLUSHED[me].fetch_max(epoch, Ordering::AcqRel);
    }
    if PENDING[me].load(Ordering::Acquire) {
        paging::flush_range(START.load(Ordering::Relaxed), END.load(Ordering::Relaxed));
        PENDING[me].store(false, Ordering::Release);
    }
}

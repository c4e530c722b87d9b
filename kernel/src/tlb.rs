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

/// Invalidates every TLB entry on every online CPU.
pub fn shootdown_all() {
    shootdown(0, u64::MAX);
}

/// Does this CPU's part of a pending shootdown (from the IPI, or while waiting to start one).
pub fn serve() {
    let me = cpu::current_id() as usize;
    if PENDING[me].load(Ordering::Acquire) {
        paging::flush_range(START.load(Ordering::Relaxed), END.load(Ordering::Relaxed));
        PENDING[me].store(false, Ordering::Release);
    }
}

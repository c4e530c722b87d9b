//! Interrupts-off sections of workload paths: interrupts off, one of a few spin locks held, and
//! registered per CPU, so that the fault path can tell a stack fault there (a kernel stop in a
//! real kernel), give the lock up and stop only the thread.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::hw::cpu_ops::{self, IrqGuard, MAX_CPUS};
use crate::{sched, tlb};

/// The spin locks that interrupts-off paths hold (group `i` takes lock `i % SECTION_LOCKS`).
pub(super) const SECTION_LOCKS: usize = 8;
static SECTION_LOCK: [AtomicBool; SECTION_LOCKS] =
    [const { AtomicBool::new(false) }; SECTION_LOCKS];
/// Per CPU, the section its thread is in: the thread's stack slot + 1 (0: none) in the low
/// 32 bits, the lock in the high 32 bits. Written only by that CPU, with interrupts off.
static IN_SECTION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// An interrupts-off section: interrupts off, one of [`SECTION_LOCK`] held, registered in
/// [`IN_SECTION`]. Left when dropped.
pub(super) struct IrqOffSection {
    lock: usize,
    /// The CPU it runs on (registered in `IN_SECTION`).
    cpu: usize,
    // Dropped after `drop` released the lock: interrupts come back last.
    _irq: IrqGuard,
}

impl IrqOffSection {
    pub(super) fn enter(lock: usize, slot: dks_core::SlotIndex) -> IrqOffSection {
        let irq = IrqGuard::new();
        while SECTION_LOCK[lock].swap(true, Ordering::Acquire) {
            // As `IrqMutex` does: a holder may be waiting for this CPU's TLB flush.
            tlb::serve(&irq);
            cpu_ops::relax();
        }
        let entry = (u64::from(slot.as_u32()) + 1) | ((lock as u64) << 32);
        // The section never leaves this CPU: interrupts stay off and its body never switches.
        let cpu = cpu_ops::current_id(&irq) as usize;
        IN_SECTION[cpu].store(entry, Ordering::Relaxed);
        IrqOffSection {
            lock,
            cpu,
            _irq: irq,
        }
    }
}

impl Drop for IrqOffSection {
    fn drop(&mut self) {
        IN_SECTION[self.cpu].store(0, Ordering::Relaxed);
        SECTION_LOCK[self.lock].store(false, Ordering::Release);
    }
}

/// Runs `body` in an interrupts-off section on section lock `lock` (as a workload path with
/// `irqoff_percent` does), in the calling thread.
pub fn with_irqoff_section(lock: usize, body: impl FnOnce()) {
    let me = sched::current().expect("a thread");
    let section = IrqOffSection::enter(lock % SECTION_LOCKS, me.stack.slot());
    drop(me);
    body();
    drop(section);
}

/// Whether the thread of `slot`, running on this CPU with interrupts off, is inside a
/// workload's interrupts-off section (for the fault path; takes no lock).
pub fn in_irqoff_section(irq: &IrqGuard, slot: dks_core::SlotIndex) -> bool {
    let entry = IN_SECTION[cpu_ops::current_id(irq) as usize].load(Ordering::Relaxed);
    entry & 0xffff_ffff == u64::from(slot.as_u32()) + 1
}

/// Gives up the section of this CPU's thread, which is being stopped inside it: releases its
/// lock (nothing else is held in a section) and forgets it.
pub fn abandon_irqoff_section(irq: &IrqGuard) {
    let entry = IN_SECTION[cpu_ops::current_id(irq) as usize].swap(0, Ordering::Relaxed);
    if entry != 0 {
        SECTION_LOCK[(entry >> 32) as usize % SECTION_LOCKS].store(false, Ordering::Release);
    }
}

//! Locks that are safe against interrupts on the same CPU.
//!
//! A spin lock taken by a thread and then wanted by an interrupt handler (or by another thread
//! after a preemption) on the same CPU would spin forever. [`IrqMutex`] therefore disables
//! interrupts for as long as it is held: the holder can be neither interrupted nor preempted.

use core::ops::{Deref, DerefMut};

use spin::Once;

use crate::cpu_ops::IrqGuard;

/// What a CPU does between two attempts at a taken lock, set once by the kernel (it answers
/// TLB shootdowns).
static SPIN_WORK: Once<fn(&IrqGuard)> = Once::new();

/// Sets what a CPU does between two attempts at a taken [`IrqMutex`]: the kernel answers TLB
/// shootdowns there, so that a CPU holding a lock while it shoots down cannot deadlock with a
/// CPU waiting for the lock.
///
/// # Panics
/// If called twice.
pub fn set_spin_work(work: fn(&IrqGuard)) {
    assert!(!SPIN_WORK.is_completed(), "spin work set twice");
    SPIN_WORK.call_once(|| work);
}

/// Does the kernel's spin work, if it registered any. Kept out of line: it runs only while a
/// lock is taken, and the lock's fast path stays small where it is inlined.
#[cold]
#[inline(never)]
fn spin_work() {
    if let Some(work) = SPIN_WORK.get() {
        // Interrupts are off already (the lock's own guard): this guard only proves it, and
        // taking it here keeps the caller's guard out of memory on the lock's fast path.
        work(&IrqGuard::new());
    }
}

/// A spin lock that keeps interrupts off while it is held.
#[derive(Debug)]
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Proof that an [`IrqMutex`] is held; interrupts come back (if they were on) when it drops.
#[derive(Debug)]
pub struct IrqMutexGuard<'a, T> {
    // Field order matters: the lock is released before interrupts are restored.
    guard: spin::MutexGuard<'a, T>,
    _irq: IrqGuard,
}

impl<T> IrqMutex<T> {
    /// Creates an unlocked mutex.
    pub const fn new(value: T) -> IrqMutex<T> {
        IrqMutex {
            inner: spin::Mutex::new(value),
        }
    }

    /// Disables interrupts, then spins until the lock is free. While it spins it does the
    /// kernel's spin work ([`set_spin_work`]: it answers TLB shootdowns).
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let irq = IrqGuard::new();
        loop {
            if let Some(guard) = self.inner.try_lock() {
                return IrqMutexGuard { guard, _irq: irq };
            }
            spin_work();
            core::hint::spin_loop();
        }
    }

    /// Takes the lock only if it is free right now.
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, T>> {
        let irq = IrqGuard::new();
        self.inner
            .try_lock()
            .map(|guard| IrqMutexGuard { guard, _irq: irq })
    }
}

impl<T> IrqMutex<T> {
    /// Takes the lock if it is free, for a caller whose interrupts are off already (`irq`
    /// proves it, and the lock cannot outlive it): what [`try_lock`](Self::try_lock) does
    /// without saving, disabling and restoring the interrupt flag a second time. The trap
    /// paths use it, where every instruction is counted (`docs/fault-path.md`).
    #[inline]
    pub fn try_lock_irqs_off<'a>(&'a self, irq: &'a IrqGuard) -> Option<spin::MutexGuard<'a, T>> {
        let _ = irq;
        self.inner.try_lock()
    }
}

impl<T: Default> Default for IrqMutex<T> {
    fn default() -> Self {
        IrqMutex::new(T::default())
    }
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

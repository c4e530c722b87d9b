//! Locks that are safe against interrupts on the same CPU.
//!
//! A spin lock taken by a thread and then wanted by an interrupt handler (or by another thread
//! after a preemption) on the same CPU would spin forever. [`IrqMutex`] therefore disables
//! interrupts for as long as it is held: the holder can be neither interrupted nor preempted.

use core::ops::{Deref, DerefMut};

use crate::hw::cpu::IrqGuard;

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

    /// Disables interrupts, then spins until the lock is free. While it spins it keeps
    /// answering TLB shootdowns, so a CPU that holds this lock while it shoots down cannot
    /// deadlock with a CPU waiting for the lock.
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let irq = IrqGuard::new();
        loop {
            if let Some(guard) = self.inner.try_lock() {
                return IrqMutexGuard { guard, _irq: irq };
            }
            crate::tlb::serve(&irq);
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

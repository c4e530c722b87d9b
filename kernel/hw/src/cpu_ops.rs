//! Small CPU operations: interrupt flag, halting, time stamps, control registers.

use core::arch::asm;

use super::percpu;

/// The maximum number of CPUs the kernel runs on.
pub const MAX_CPUS: usize = 4;

/// Returns this CPU's index (0 for the boot CPU), from its per-CPU block.
///
/// The guard is what makes the answer true when it is used: with interrupts on, a thread can
/// be preempted right after the read and resumed on another CPU, and would then reach the
/// per-CPU state of a CPU it no longer runs on. So use the index only while the guard lives,
/// and never across a context switch (which takes the guard mutably for that reason). For a
/// CPU number that only labels a record or picks a CPU for a test, see [`id_hint`].
#[inline]
pub fn current_id(irq: &IrqGuard) -> u32 {
    percpu::current_id(irq)
}

/// The CPU the caller ran on a moment ago: for labels and for choosing a CPU, never to reach
/// per-CPU state (the thread may have moved by the time it looks at the answer).
pub fn id_hint() -> u32 {
    current_id(&IrqGuard::new())
}

/// Disables interrupts while it lives and restores the previous state when dropped.
///
/// Functions that must run with interrupts off take `&IrqGuard` as proof.
#[derive(Debug)]
#[must_use = "interrupts are enabled again as soon as the guard is dropped"]
pub struct IrqGuard {
    were_enabled: bool,
}

impl IrqGuard {
    /// Disables interrupts on this CPU.
    #[inline]
    pub fn new() -> IrqGuard {
        let were_enabled = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        IrqGuard { were_enabled }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        IrqGuard::new()
    }
}

impl Drop for IrqGuard {
    #[inline]
    fn drop(&mut self) {
        if self.were_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// Enables interrupts on this CPU.
#[inline]
pub fn enable_interrupts() {
    x86_64::instructions::interrupts::enable();
}

/// Disables interrupts on this CPU (for code that enabled them itself and must give them back
/// off, like a trap handler before it returns).
#[inline]
pub fn disable_interrupts() {
    x86_64::instructions::interrupts::disable();
}

/// Returns whether interrupts are enabled on this CPU.
#[inline]
pub fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Enables interrupts and halts until the next one arrives, atomically (no wake-up is lost
/// between the two).
pub fn enable_interrupts_and_halt() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Reads the time-stamp counter. Under `-icount shift=0` it counts guest instructions.
#[inline]
pub fn rdtsc() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: `rdtsc` only reads the time-stamp counter into EDX:EAX.
    unsafe { asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// Reads CR2, the address of the last page fault.
#[inline]
pub fn read_cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Tells the CPU this is a spin-wait loop.
#[inline]
pub fn relax() {
    core::hint::spin_loop();
}

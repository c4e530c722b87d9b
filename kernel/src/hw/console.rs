//! The serial console (COM1): the only way out of the kernel.
//!
//! Every CPU writes through one lock that records its holder. A CPU that faults or panics while
//! it holds the lock (an exception inside a write) writes anyway, after a line break, instead of
//! deadlocking on itself; a CPU that finds the lock held by another waits. Interrupts are off
//! while the lock is held, so a timer interrupt cannot re-enter a write on the same CPU.

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

use super::cpu;

/// COM1's base I/O port.
const COM1_PORT: u16 = 0x3f8;
/// The holder value when nobody holds the console.
const NO_HOLDER: u32 = u32::MAX;

struct Console {
    holder: AtomicU32,
    port: UnsafeCell<Option<Uart16550Tty<PioBackend>>>,
}

// SAFETY: `port` is only touched by the CPU that set `holder` to its own id (or re-entered on
// that same CPU with interrupts off, see `with_port`).
unsafe impl Sync for Console {}

static CONSOLE: Console = Console {
    holder: AtomicU32::new(NO_HOLDER),
    port: UnsafeCell::new(None),
};

/// Initialises COM1. Called once by the boot CPU before anything is printed.
pub fn init() {
    with_port(|port| {
        // SAFETY: COM1 at 0x3f8 exists on every PC QEMU emulates and nothing else uses it.
        *port = unsafe { Uart16550Tty::new_port(COM1_PORT, Config::default()) }.ok();
    });
}

/// Writes `text` to the console as one unit (no other CPU's output interleaves).
pub fn write_str(text: &str) {
    with_port(|port| {
        if let Some(port) = port {
            let _ = port.write_str(text);
        }
    });
}

fn with_port(f: impl FnOnce(&mut Option<Uart16550Tty<PioBackend>>)) {
    let irq = cpu::IrqGuard::new();
    let me = cpu::current_id();
    let reentered = CONSOLE.holder.load(Ordering::Acquire) == me;
    if !reentered {
        while CONSOLE
            .holder
            .compare_exchange_weak(NO_HOLDER, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
    // SAFETY: this CPU holds the console (taken above, or held by an outer write on this same
    // CPU that an exception interrupted; that outer write cannot run until we return, since
    // interrupts are off and exceptions do not return into the middle of it before we end).
    let port = unsafe { &mut *CONSOLE.port.get() };
    if reentered && let Some(port) = port.as_mut() {
        let _ = port.write_str("\n");
    }
    f(port);
    if !reentered {
        CONSOLE.holder.store(NO_HOLDER, Ordering::Release);
    }
    drop(irq);
}

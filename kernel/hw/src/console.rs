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

use super::cpu_ops;

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

/// Writes `text` like [`write_str`], but waits only a bounded time (about 2^24 spins) for a
/// console another CPU holds, then writes anyway, over whatever that CPU is writing. For the
/// last words of NMI and machine-check handlers, which must not wait for a lock that a
/// context they interrupted (or a CPU stuck in its own machine check) may never release.
pub fn write_str_forced(text: &str) {
    with_port_waiting(Some(1 << 24), |port| {
        if let Some(port) = port {
            let _ = port.write_str(text);
        }
    });
}

fn with_port(f: impl FnOnce(&mut Option<Uart16550Tty<PioBackend>>)) {
    with_port_waiting(None, f);
}

/// Runs `f` with the port, holding the console; `patience` bounds the spins spent waiting for
/// another CPU's hold (then `f` runs without it; the holder stays recorded as it was).
fn with_port_waiting(patience: Option<u64>, f: impl FnOnce(&mut Option<Uart16550Tty<PioBackend>>)) {
    let irq = cpu_ops::IrqGuard::new();
    let me = cpu_ops::current_id(&irq);
    let mut reentered = CONSOLE.holder.load(Ordering::Acquire) == me;
    let mut taken = !reentered;
    if !reentered {
        let mut spins = 0u64;
        while CONSOLE
            .holder
            .compare_exchange_weak(NO_HOLDER, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if patience.is_some_and(|limit| spins >= limit) {
                // Write over the other CPU's line, as a re-entered write does.
                reentered = true;
                taken = false;
                break;
            }
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
    if taken {
        CONSOLE.holder.store(NO_HOLDER, Ordering::Release);
    }
    drop(irq);
}

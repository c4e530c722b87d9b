//! Leaving QEMU through the isa-debug-exit device.

use dks_protocol::exit::ExitCode;
use x86_64::instructions::port::Port;

/// The I/O port of `-device isa-debug-exit,iobase=0xf4,iosize=0x04`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Ends the virtual machine with `code`. If the exit device is missing (the kernel was booted
/// without it), halts this CPU forever with interrupts off, so that the host's timeout, not a
/// false success, ends the run.
pub fn exit(code: ExitCode) -> ! {
    let mut port: Port<u32> = Port::new(DEBUG_EXIT_PORT);
    // SAFETY: writing to the debug-exit port has no effect on memory; QEMU ends the VM.
    unsafe { port.write(code as u32) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

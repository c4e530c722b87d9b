//! From the boot trampoline into Rust.

use super::{console, percpu, pvh};

/// Entered from `boot.rs` on the boot CPU's boot stack, in long mode with the boot page
/// tables, SSE on and interrupts off.
pub extern "C" fn boot_cpu_entry(start_info: u64) -> ! {
    percpu::install(0);
    console::init();
    crate::kmain(pvh::read(start_info))
}

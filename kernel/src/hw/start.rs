//! From the boot trampolines into Rust.

use super::{console, percpu, pvh};

/// Entered from `boot.rs` on the boot CPU's boot stack, in long mode with the boot page
/// tables, SSE on and interrupts off.
pub extern "C" fn boot_cpu_entry(start_info: u64) -> ! {
    percpu::install(0);
    console::init();
    crate::kmain(pvh::read(start_info))
}

/// Entered from the AP trampoline (`smp.rs`) on the stack the boot CPU prepared, in long
/// mode with the kernel's page tables, SSE on and interrupts off.
pub extern "C" fn ap_entry(cpu_index: u64) -> ! {
    percpu::install(cpu_index as usize);
    crate::smp::ap_main(cpu_index as u32)
}

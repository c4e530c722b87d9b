//! From the boot trampolines into the kernel.
//!
//! This crate cannot name the kernel (the kernel depends on it), and the kernel, which forbids
//! `unsafe`, cannot export a symbol under a fixed name. So the kernel states its entry points
//! in a static of type [`KernelEntry`] named `KERNEL_ENTRY`, kept with `#[used]`; the linker
//! script (`kernel/link.ld`) places that static's section between `__kernel_entry_start` and
//! `__kernel_entry_end` and fails the link unless exactly one such static is there. The
//! trampolines' Rust halves below read it.

use super::{console, percpu, pvh};
use crate::pvh::{BootInfo, BootInfoError};

/// The value that opens a [`KernelEntry`]: a second check, at run time, that the linker
/// script found the kernel's static.
const ENTRY_MAGIC: u64 = u64::from_le_bytes(*b"dks-kmai");

/// Where the kernel starts on each CPU. The kernel defines one, as
/// `#[used] static KERNEL_ENTRY: KernelEntry = KernelEntry::new(...)`.
#[derive(Debug)]
#[repr(C)]
pub struct KernelEntry {
    magic: u64,
    boot_cpu: fn(Result<BootInfo, BootInfoError>) -> !,
    application_cpu: fn(u32) -> !,
}

impl KernelEntry {
    /// The kernel's entry points: `boot_cpu` runs once on the boot CPU with what the start
    /// info says, `application_cpu` on every other CPU with its index.
    pub const fn new(
        boot_cpu: fn(Result<BootInfo, BootInfoError>) -> !,
        application_cpu: fn(u32) -> !,
    ) -> KernelEntry {
        KernelEntry {
            magic: ENTRY_MAGIC,
            boot_cpu,
            application_cpu,
        }
    }
}

/// Returns the kernel's [`KernelEntry`].
///
/// # Panics
/// If the linker script's section does not hold one.
fn kernel_entry() -> &'static KernelEntry {
    unsafe extern "C" {
        static __kernel_entry_start: u8;
        static __kernel_entry_end: u8;
    }
    let start = (&raw const __kernel_entry_start) as u64;
    let end = (&raw const __kernel_entry_end) as u64;
    assert!(
        end - start == core::mem::size_of::<KernelEntry>() as u64
            && start.is_multiple_of(core::mem::align_of::<KernelEntry>() as u64),
        "the image holds no KERNEL_ENTRY static (kernel/link.ld)"
    );
    // SAFETY: 1. The linker script puts exactly the input sections of statics named
    // `KERNEL_ENTRY` between the two symbols, and the link fails unless they span one
    // `KernelEntry` (`ASSERT` in kernel/link.ld); the size and alignment are checked again
    // just above. 2. The kernel's `KERNEL_ENTRY` is of this type (the type is this crate's and
    // only `new` makes one); its magic is checked below before any function pointer is used.
    // 3. It is immutable read-only data that lives as long as the image.
    let entry = unsafe { &*(start as *const KernelEntry) };
    assert!(
        entry.magic == ENTRY_MAGIC,
        "KERNEL_ENTRY (kernel/link.ld) is not a KernelEntry"
    );
    entry
}

/// Entered from `boot.rs` on the boot CPU's boot stack, in long mode with the boot page
/// tables, SSE on and interrupts off.
pub extern "C" fn boot_cpu_entry(start_info: u64) -> ! {
    percpu::install(0);
    console::init();
    (kernel_entry().boot_cpu)(pvh::read(start_info))
}

/// Entered from the AP trampoline (`ap_start.rs`) on the stack the boot CPU prepared, in long
/// mode with the kernel's page tables, SSE on and interrupts off.
pub extern "C" fn ap_entry(cpu_index: u64) -> ! {
    percpu::install(cpu_index as usize);
    (kernel_entry().application_cpu)(cpu_index as u32)
}

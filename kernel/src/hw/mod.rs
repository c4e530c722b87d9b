//! The hardware layer: the one module tree where `unsafe` code and assembly live.
//!
//! Everything here turns an x86_64 mechanism into a safe function with a narrow contract:
//! boot and per-CPU setup, page tables, the trap entry path, the local APIC, the serial
//! console and the exit device. The rest of the kernel denies `unsafe` and calls these
//! through their modules (`hw::paging::map`, `hw::apic::eoi`, ...). A reader auditing the
//! dangerous code reads this tree and nothing else.

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod boot_map;
pub mod catch;
pub mod console;
pub mod context;
pub mod cpu;
pub mod gdt;
pub mod heap;
pub mod idt;
mod libc;
pub mod mce;
pub mod paging;
pub mod percpu;
pub mod probes;
pub mod pvh;
pub mod qemu;
pub mod smp;
pub mod start;
pub mod stop;
pub mod trap;

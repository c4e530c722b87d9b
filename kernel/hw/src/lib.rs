//! `dks-hw`: the kernel's hardware layer, the one crate of the kernel where `unsafe` code and
//! assembly live.
//!
//! Everything here turns an x86_64 mechanism into a safe function with a narrow contract:
//! boot and per-CPU setup, page tables, the kernel stacks, the trap entry path, the local
//! APIC, the serial console, the exit device, the heap and the locks. The kernel crate
//! (`dks-kernel`) forbids `unsafe` and calls these through their modules (`hw::stack_pages::map`,
//! `hw::apic::eoi`, ...). A reader auditing the dangerous code reads this crate and nothing
//! else; `docs/architecture.md` draws where the wall runs.
//!
//! Dependencies run one way: this crate never names the kernel. Where the hardware has to
//! call the kernel, the kernel registers itself at boot:
//! - its entry points, as a [`start::KernelEntry`] static the linker script places;
//! - its trap handlers, as a [`trap_entry::TrapHandlers`] type ([`trap_entry::install`]);
//! - its frame allocator, as a [`frame::FrameSource`] ([`frame::register`]);
//! - how far the heap may grow, as a [`heap::HeapGrowth`] ([`heap::set_growth`]);
//! - what a CPU does while it spins for a lock ([`sync::set_spin_work`]).

#![no_std]

extern crate alloc;

pub mod acpi;
pub mod ap_start;
pub mod apic;
pub mod boot;
pub mod boot_map;
pub mod catch;
pub mod console;
pub mod context;
pub mod cpu_ops;
pub mod frame;
pub mod gdt;
pub mod heap;
pub mod idt;
pub mod kstacks;
pub mod layout;
mod libc;
pub mod mca_regs;
pub mod pack_memory;
pub mod paging;
pub mod percpu;
pub mod probes;
pub mod pvh;
pub mod qemu;
pub mod stack_pages;
pub mod start;
pub mod stop;
pub mod sync;
pub mod trap_entry;

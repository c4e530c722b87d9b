//! The interrupt descriptor table, shared by all CPUs.
//!
//! All 256 gates are interrupt gates (interrupts stay off in every handler until it decides
//! otherwise) and every one names an IST stack: see `gdt::Ist` for which vector uses which.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

use super::gdt::{Ist, KERNEL_CODE};
use super::trap_entry;

/// One 16-byte gate descriptor.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}
const _: () = assert!(core::mem::size_of::<Gate>() == 16);

/// Present, DPL 0, 64-bit interrupt gate.
const INTERRUPT_GATE: u8 = 0x8e;

/// Vector numbers with a fixed meaning.
pub mod vectors {
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Double fault.
    pub const DOUBLE_FAULT: u8 = 8;
    /// Page fault.
    pub const PAGE_FAULT: u8 = 14;
    /// Machine check.
    pub const MACHINE_CHECK: u8 = 18;
    /// The first vector that is not a CPU exception.
    pub const FIRST_INTERRUPT: u8 = 32;
}

/// Returns the IST stack that serves `vector`.
pub fn ist_for(vector: u8) -> Ist {
    match vector {
        vectors::PAGE_FAULT => Ist::PageFault,
        vectors::NMI => Ist::Nmi,
        vectors::MACHINE_CHECK => Ist::MachineCheck,
        vectors::DOUBLE_FAULT => Ist::DoubleFault,
        v if v >= vectors::FIRST_INTERRUPT => Ist::Interrupt,
        _ => Ist::Exception,
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

fn build() -> Idt {
    let mut gates = [Gate::default(); 256];
    for (vector, gate) in gates.iter_mut().enumerate() {
        let vector = vector as u8;
        let handler = trap_entry::entry_address(vector);
        *gate = Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE,
            ist: ist_for(vector) as u8,
            type_attributes: INTERRUPT_GATE,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
        assert!(gate.ist != 0, "vector {vector} without an IST stack");
    }
    Idt(gates)
}

/// Loads the IDT on this CPU (building it on first use).
///
/// # Panics
/// If the kernel has not installed its trap handlers (`trap_entry::install`).
pub fn load_on_this_cpu() {
    assert!(
        trap_entry::installed(),
        "trap handlers installed before the IDT is loaded"
    );
    let idt = IDT.call_once(build);
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is a static that lives forever; each gate points at a trap stub in the
    // kernel's text with the kernel code selector and an IST index that this CPU's TSS fills
    // (`gdt::init_this_cpu` runs before this).
    unsafe { lidt(&pointer) };
}

//! Each CPU's GDT and TSS, and the IST stacks the TSS points to.
//!
//! Every IDT gate names an IST stack (see `idt`), so the CPU never pushes an exception frame on
//! the interrupted stack: that stack may be in the middle of its 128-byte red zone, may be an
//! unpopulated dynamic stack, or may be the guard page itself.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use super::cpu_ops::{self, MAX_CPUS};
use crate::kstacks;
use crate::layout::KERNEL_STACK_BYTES;

/// The IST stacks and what they serve. The value is the 1-based IST index of the IDT gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Ist {
    /// Page faults: the stack-fault path runs here.
    PageFault = 1,
    /// Non-maskable interrupts.
    Nmi = 2,
    /// Machine checks.
    MachineCheck = 3,
    /// Double faults.
    DoubleFault = 4,
    /// Device interrupts and IPIs (moved to the interrupted stack before their handlers run).
    Interrupt = 5,
    /// Every other exception.
    Exception = 6,
}

impl Ist {
    /// Every IST stack a CPU needs.
    pub const ALL: [Ist; 6] = [
        Ist::PageFault,
        Ist::Nmi,
        Ist::MachineCheck,
        Ist::DoubleFault,
        Ist::Interrupt,
        Ist::Exception,
    ];
}

/// The kernel code selector.
pub const KERNEL_CODE: u16 = 0x08;

/// The IST stack tops of every CPU, indexed by CPU and `Ist as usize - 1` (0: not set up).
static IST_TOPS: [[AtomicU64; Ist::ALL.len()]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; Ist::ALL.len()] }; MAX_CPUS];

/// Returns the IST stack of this CPU that `rsp` lies on, if any. A stack pointer equal to a
/// stack's top counts as on it (an empty stack, just before the CPU pushes a frame).
#[inline]
pub fn ist_containing(rsp: u64) -> Option<Ist> {
    let irq = cpu_ops::IrqGuard::new();
    let tops = &IST_TOPS[cpu_ops::current_id(&irq) as usize];
    Ist::ALL.into_iter().find(|&ist| {
        let top = tops[ist as usize - 1].load(Ordering::Relaxed);
        top != 0 && rsp <= top && rsp >= top - KERNEL_STACK_BYTES
    })
}

/// Builds this CPU's GDT and TSS (with fresh IST stacks) and loads them.
pub fn init_this_cpu() {
    let mut tss = Box::new(TaskStateSegment::new());
    let irq = cpu_ops::IrqGuard::new();
    let tops = &IST_TOPS[cpu_ops::current_id(&irq) as usize];
    for ist in Ist::ALL {
        let stack = kstacks::alloc().expect("memory for an IST stack");
        let i = ist as usize - 1;
        tss.interrupt_stack_table[i] = VirtAddr::new(stack.top());
        tops[i].store(stack.top(), Ordering::Relaxed);
    }
    let tss: &'static TaskStateSegment = Box::leak(tss);

    let mut gdt = Box::new(GlobalDescriptorTable::new());
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    assert_eq!(code.0, KERNEL_CODE, "kernel code selector");
    let gdt: &'static GlobalDescriptorTable = Box::leak(gdt);
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded: a 64-bit code segment,
    // a data segment and an available TSS that lives forever (leaked above).
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(SegmentSelector(0));
        ES::set_reg(SegmentSelector(0));
        load_tss(tss_selector);
    }
}

//! What the kernel does with each trap, in safe code. The entry path (`hw::trap`) calls
//! [`on_ist`] on the vector's IST stack, and [`on_interrupted_stack`] after a bounce.
//!
//! - Page faults: a fault on a guard page is a stack overflow and is reported as a `GuardHit`
//!   record; a fault a test expects is handed to its catcher; anything else is fatal.
//! - Device interrupts and IPIs are bounced to the interrupted stack and handled there.
//! - Every other exception is fatal unless a test's catcher expects it: one `Exception`
//!   record, then the boot ends with `ExitCode::Exception`.

use alloc::borrow::Cow;
use core::sync::atomic::{AtomicU64, Ordering};

use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Exception, GuardHit, Record};

use crate::hw::apic::{self, vector};
use crate::hw::catch;
use crate::hw::cpu::{self, MAX_CPUS};
use crate::hw::idt::vectors;
use crate::hw::trap::{Disposition, TrapFrame, bounce_target};
use crate::mm::kstacks;
use crate::stacks::{self, StackAddress};
use crate::{report, sched, tlb};

/// Timer interrupts per CPU since boot.
pub static TIMER_TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Handles a trap on its IST stack, or says where to move it.
pub fn on_ist(frame: &mut TrapFrame) -> Disposition {
    let vector = frame.vector as u8;
    match vector {
        vectors::PAGE_FAULT => page_fault(frame),
        v if v >= vectors::FIRST_INTERRUPT => Disposition::Bounce(bounce_target(frame.rsp)),
        _ => {
            if catch::redirect(frame, 0) {
                Disposition::Done
            } else {
                fatal(frame, 0)
            }
        }
    }
}

/// Handles a trap that was moved to the interrupted stack.
pub fn on_interrupted_stack(frame: &mut TrapFrame) {
    match frame.vector as u8 {
        vector::TIMER => {
            TIMER_TICKS[cpu::current_id() as usize].fetch_add(1, Ordering::Relaxed);
            apic::eoi();
            sched::tick();
        }
        vector::TLB_SHOOTDOWN => {
            tlb::serve();
            apic::eoi();
        }
        vector::SPURIOUS => {}
        _ => apic::eoi(),
    }
}

/// A page fault while this CPU's #PF IST frame was live: the frame of the first fault has
/// been overwritten. Report and stop; there is nothing to return to.
pub fn nested_page_fault(frame: &TrapFrame) -> ! {
    report::log(format_args!(
        "nested page fault on the #PF IST stack: cr2={:#x} rip={:#x}",
        cpu::read_cr2(),
        frame.rip
    ));
    fatal(frame, cpu::read_cr2())
}

fn page_fault(frame: &mut TrapFrame) -> Disposition {
    let cr2 = cpu::read_cr2();
    if let StackAddress::Guard { slot, depth } = stacks::locate(cr2) {
        let task = sched::try_current();
        let name = task.as_ref().map_or("(no thread)", |t| t.name());
        report::emit(&Record::GuardHit(GuardHit {
            cpu: cpu::current_id(),
            task: Cow::Borrowed(name),
            address: cr2,
            depth_bytes: depth,
            rip: frame.rip,
        }));
        let _ = slot;
        if catch::redirect(frame, cr2) {
            return Disposition::Done;
        }
        fatal(frame, cr2)
    }
    if let Some((guard_start, _)) = kstacks::guard_containing(cr2) {
        let stack_top = guard_start + crate::layout::KERNEL_STACK_SLOT_BYTES;
        report::emit(&Record::GuardHit(GuardHit {
            cpu: cpu::current_id(),
            task: Cow::Borrowed("kernel-stack"),
            address: cr2,
            depth_bytes: stack_top - cr2,
            rip: frame.rip,
        }));
        if catch::redirect(frame, cr2) {
            return Disposition::Done;
        }
        fatal(frame, cr2)
    }
    if catch::redirect(frame, cr2) {
        return Disposition::Done;
    }
    fatal(frame, cr2)
}

fn fatal(frame: &TrapFrame, cr2: u64) -> ! {
    report::emit(&Record::Exception(Exception {
        cpu: cpu::current_id(),
        vector: frame.vector as u8,
        error_code: frame.has_error_code().then_some(frame.error_code),
        rip: frame.rip,
        rsp: frame.rsp,
        rflags: frame.rflags,
        cr2,
        registers: frame.registers(),
    }));
    report::exit(ExitCode::Exception, "unexpected exception")
}

//! Tests of the trap path: guard pages, the red zone, caught exceptions.

use core::hint::black_box;
use core::sync::atomic::Ordering;

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::cpu::{self, IrqGuard};
use crate::hw::{catch, probes};
use crate::layout::{KERNEL_STACK_BYTES, PAGE_BYTES};
use crate::mm::kstacks;
use crate::trap::TIMER_TICKS;

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "guard_page",
        run: guard_page,
    },
    KernelTest {
        name: "red_zone",
        run: red_zone,
    },
    KernelTest {
        name: "caught_invalid_opcode",
        run: caught_invalid_opcode,
    },
];

/// Recurses with 512-byte frames that touch their locals until the stack runs out.
#[allow(unconditional_recursion)] // reason: overflowing the stack is the point
pub extern "C" fn recurse_forever(depth: usize) {
    let mut frame = [0u8; 512];
    frame[0] = depth as u8;
    black_box(&mut frame);
    recurse_forever(black_box(depth + 1));
    black_box(&frame);
}

fn guard_page() -> TestResult {
    let irq = IrqGuard::new();
    let stack = kstacks::alloc().ok_or("no memory for a test stack")?;
    let caught = catch::catch_fault(&irq, Some(stack.top()), recurse_forever, 0);
    let fault = match caught {
        Err(fault) => fault,
        Ok(()) => return Err("the endless recursion returned".into()),
    };
    check_eq!(fault.vector, 14, "a page fault");
    check_eq!(
        kstacks::guard_containing(fault.address),
        Some((stack.bottom() - PAGE_BYTES, stack.bottom()))
    );
    check!(
        fault.rsp >= stack.bottom() - PAGE_BYTES && fault.rsp < stack.bottom() + 1024,
        "rsp {:#x} not at the bottom of the stack {:#x}",
        fault.rsp,
        stack.bottom()
    );
    check!(
        stack.top() - fault.address > KERNEL_STACK_BYTES,
        "depth {} within the stack",
        stack.top() - fault.address
    );
    Ok(())
}

fn red_zone() -> TestResult {
    check!(cpu::interrupts_enabled(), "tests run with interrupts on");
    let ticks = &TIMER_TICKS[cpu::current_id() as usize];
    let before = ticks.load(Ordering::Relaxed);
    let clobbered = probes::red_zone_probe(ticks, 10);
    let after = ticks.load(Ordering::Relaxed);
    check!(
        after - before >= 10,
        "only {} timer interrupts arrived",
        after - before
    );
    check_eq!(
        clobbered,
        0,
        "red-zone words changed by {} interrupts",
        after - before
    );
    Ok(())
}

fn caught_invalid_opcode() -> TestResult {
    let irq = IrqGuard::new();
    extern "C" fn ud(_: usize) {
        catch::invalid_opcode();
    }
    let caught = catch::catch_fault(&irq, None, ud, 0);
    check!(matches!(caught, Err(f) if f.vector == 6), "ud2: {caught:?}");
    Ok(())
}

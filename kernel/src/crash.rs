//! Deliberate crashes (`crash=`), so the host can check that each kind is reported with one
//! structured record and a failure exit, never a hang and never a success.

use crate::cmdline::Crash;
use crate::hw::{catch, cpu};
use crate::mm::kstacks;

/// Crashes the kernel the way `crash` says. Never returns.
pub fn now(crash: Crash) -> ! {
    match crash {
        Crash::InvalidOpcode => catch::invalid_opcode(),
        Crash::PageFault => {
            catch::read_never_mapped();
        }
        Crash::NestedPageFault => {
            crate::trap::PROVOKE_NESTED_FAULT.store(true, core::sync::atomic::Ordering::Release);
            catch::lazy_write(crate::lazy::DIRECT.start, 1);
        }
        Crash::Guard => {
            let _irq = cpu::IrqGuard::new();
            let stack = kstacks::alloc().expect("memory for a stack to overflow");
            catch::run_on_stack(stack.top(), crate::ktest::traps::recurse_forever, 0);
        }
    }
    panic!("crash={crash:?} did not crash")
}

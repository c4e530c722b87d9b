//! Deliberate crashes (`crash=`), so the host can check that each kind is reported with one
//! structured record and a failure exit, never a hang and never a success.

use core::sync::atomic::Ordering;

use crate::cmdline::Crash;
use crate::hw::kstacks;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::mca_regs as mca;
use crate::hw::{apic, catch, cpu_ops, paging, probes};
use crate::mce::{self, global, status};
use crate::sched::{self, SpawnOptions};
use crate::stacks::{self, Policy};
use crate::trap_handlers::hooks;

/// Crashes the kernel the way `crash` says. Never returns.
pub fn now(crash: Crash) -> ! {
    match crash {
        Crash::InvalidOpcode => catch::invalid_opcode(),
        Crash::PageFault => {
            catch::read_never_mapped();
        }
        Crash::NestedPageFault => {
            crate::trap_handlers::PROVOKE_NESTED_FAULT
                .store(true, core::sync::atomic::Ordering::Release);
            catch::lazy_write(crate::lazy::DIRECT.start, 1);
        }
        Crash::BounceCopyFault => {
            let options = SpawnOptions {
                policy: Policy::Fault,
                ..SpawnOptions::default()
            };
            let thread = sched::spawn("gap-crasher", options, bounce_onto_gap)
                .expect("memory for the crashing thread");
            sched::join(&thread);
        }
        Crash::MachineCheck => {
            let _irq = cpu_ops::IrqGuard::new();
            let fatal = status::VAL | status::UC | status::EN | status::PCC | 0x150;
            mca::stage(mce::TEST_BANK, fatal, global::RIPV | global::MCIP);
            mca::raise();
        }
        Crash::NmiPageFault => {
            let _irq = cpu_ops::IrqGuard::new();
            hooks::PAGE_FAULT_IN_NMI.store(true, Ordering::Release);
            apic::send_nmi_to_self();
            wait_for_the_end();
        }
        Crash::MachineCheckPageFault => {
            let _irq = cpu_ops::IrqGuard::new();
            hooks::PAGE_FAULT_IN_MACHINE_CHECK.store(true, Ordering::Release);
            mce::raise_staged_recoverable();
        }
        Crash::KernelThreadOverflow => {
            // `main` is one of the kernel's own threads: nothing else would end the boot.
            crate::ktest::traps::recurse_forever(0);
        }
        Crash::Guard => {
            let _irq = cpu_ops::IrqGuard::new();
            let stack = kstacks::alloc().expect("memory for a stack to overflow");
            catch::run_on_stack(stack.top(), crate::ktest::traps::recurse_forever, 0);
        }
    }
    panic!("crash={crash:?} did not crash")
}

/// Spins (a bounded time) so that a crash on its way (an NMI sent to this CPU) can land.
fn wait_for_the_end() {
    for _ in 0..50_000_000u64 {
        cpu_ops::relax();
    }
}

/// Runs in a `fault` thread: leaves page 1 of its stack unpopulated below a touched page 2,
/// then takes a bounced lazy-region fault with its stack pointer in page 1, telling the fault
/// path to skip the population: the copy of the #PF frame hits page 1.
fn bounce_onto_gap() {
    let me = sched::current().expect("a thread");
    let top = me.stack.top();
    let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
    let gap = top - 2 * PAGE_BYTES;
    probes::touch_stack(bottom, gap - 64);
    let _irq = cpu_ops::IrqGuard::new();
    assert!(paging::translate(gap).is_none(), "page 1 is populated");
    hooks::SKIP_BOUNCE_POPULATION.store(true, Ordering::Release);
    probes::lazy_read_at(bottom, gap + 300, crate::lazy::BOUNCED.start + 8);
}

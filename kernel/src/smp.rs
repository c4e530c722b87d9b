//! Bringing up the other CPUs and what each runs first.
//!
//! The boot CPU reads the MADT, then starts each application processor in turn (see
//! `hw::ap_start`): the AP loads its own GDT, TSS and IST stacks, the shared IDT, enables its local
//! APIC and timer, marks itself online and enters its scheduler loop.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::hw::cpu_ops::MAX_CPUS;
use crate::hw::kstacks;
use crate::hw::{acpi, ap_start, apic, gdt, idt};
use crate::{report, sched};

static STARTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static HZ: AtomicU32 = AtomicU32::new(100);

/// Starts every CPU the MADT lists (up to `MAX_CPUS`); returns how many run, the boot CPU
/// included.
pub fn start_all(rsdp: u64, hz: u32) -> u32 {
    HZ.store(hz, Ordering::Relaxed);
    let boot_apic_id = apic::id();
    sched::set_online(0, boot_apic_id);
    let cpus = match acpi::cpus(rsdp, boot_apic_id) {
        Ok(cpus) => cpus,
        Err(e) => {
            report::log(format_args!(
                "no ACPI CPU list ({e:?}); running on the boot CPU only"
            ));
            return 1;
        }
    };
    if cpus.ignored > 0 {
        report::log(format_args!(
            "{} CPUs beyond the limit of {MAX_CPUS} left idle",
            cpus.ignored
        ));
    }
    ap_start::install_trampoline();
    let mut online = 1;
    for (index, &apic_id) in cpus.apic_ids.iter().enumerate().take(cpus.count).skip(1) {
        let stack = kstacks::alloc().expect("memory for an AP's scheduler stack");
        let started = &STARTED[index];
        let ok = ap_start::start_ap(
            apic_id,
            index as u64,
            stack.top(),
            crate::hw::start::ap_entry,
            || started.load(Ordering::Acquire),
        );
        if ok {
            online += 1;
        } else {
            report::log(format_args!("CPU with APIC id {apic_id} did not start"));
            break;
        }
    }
    ap_start::remove_trampoline();
    online
}

/// The first Rust code of an application processor, on its scheduler stack.
pub fn ap_main(index: u32) -> ! {
    gdt::init_this_cpu();
    idt::load_on_this_cpu();
    crate::mce::init_this_cpu();
    apic::init_this_cpu();
    apic::start_periodic_timer(HZ.load(Ordering::Relaxed));
    sched::set_online(index, apic::id());
    STARTED[index as usize].store(true, Ordering::Release);
    sched::run(index)
}

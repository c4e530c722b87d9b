//! The dks testbed kernel.
//!
//! Boot order (boot CPU): console, start info, frame allocator, the kernel's page tables,
//! heap, GDT/TSS/IST stacks, IDT, local APIC and timer; then the command line decides what
//! runs: the in-kernel tests (`test=`), a deliberate crash (`crash=`), or nothing (a plain boot
//! that reports what it found and exits with success).
//!
//! All `unsafe` code lives in the hardware crate, `dks-hw` (imported here as [`hw`]); this
//! crate forbids it (`docs/architecture.md`).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use dks_hw as hw;

mod bench;
mod cmdline;
mod crash;
mod ktest;
mod lazy;
mod mce;
mod mm;
mod overhead;
mod reclaim_thread;
mod report;
mod sched;
mod smp;
mod stacks;
mod tlb;
mod trap_handlers;
mod vmstat;
mod work;
mod workload;

use alloc::borrow::Cow;

use dks_protocol::exit::ExitCode;
use dks_protocol::record::{self, Record};
use spin::Once;

use crate::hw::pvh::{BootInfo, BootInfoError, PhysRange};
use crate::hw::start::KernelEntry;
use crate::mm::frames;

/// Where the hardware crate enters the kernel (see `hw::start`): `kmain` on the boot CPU,
/// `smp::ap_main` on the others.
#[used]
static KERNEL_ENTRY: KernelEntry = KernelEntry::new(kmain, smp::ap_main);

/// The start info, kept for the kernel's lifetime.
static BOOT_INFO: Once<BootInfo> = Once::new();

/// The heap: 1/16 of RAM, between 8 MiB and 256 MiB.
fn heap_bytes(ram_bytes: u64) -> u64 {
    (ram_bytes / 16).clamp(8 << 20, 256 << 20)
}

/// Entered once, on the boot CPU, from `hw::start` (through [`KERNEL_ENTRY`]).
fn kmain(info: Result<BootInfo, BootInfoError>) -> ! {
    hw::trap_entry::install::<trap_handlers::KernelTraps>();
    hw::sync::set_spin_work(tlb::serve);
    let info = match info {
        Ok(info) => BOOT_INFO.call_once(|| info),
        Err(e) => {
            report::log(format_args!("unusable boot information: {e:?}"));
            report::exit(ExitCode::Failure, "unusable boot information")
        }
    };

    let image = hw::paging::image_range();
    let mut reserved = [PhysRange::default(); 2 + hw::pvh::MAX_MODULES];
    reserved[0] = PhysRange {
        start: 0,
        bytes: 1 << 20,
    };
    reserved[1] = image;
    for (slot, module) in reserved[2..].iter_mut().zip(info.modules()) {
        *slot = *module;
    }
    frames::init(info.ram(), &reserved, frames::DEFAULT_RESERVE_FRAMES);
    hw::frame::register(&frames::KernelFrames);
    hw::paging::init(info.ram());
    let ram_bytes: u64 = info.ram().iter().map(|r| r.bytes).sum();
    hw::heap::set_growth(&mm::heap::KernelHeapGrowth);
    hw::heap::init(heap_bytes(ram_bytes));
    hw::gdt::init_this_cpu();
    hw::idt::load_on_this_cpu();
    mce::init_this_cpu();
    hw::apic::init_this_cpu();
    hw::apic::calibrate();

    let config = match cmdline::parse(info.cmdline(), &ktest::names()) {
        Ok(config) => config,
        Err(e) => {
            report::emit(&Record::ConfigError(record::ConfigError {
                key: Cow::Borrowed(&e.key),
                value: Cow::Borrowed(&e.value),
                problem: Cow::Borrowed(&e.problem),
                accepted: Cow::Borrowed(&e.accepted),
            }));
            report::exit(ExitCode::ConfigError, "bad kernel command line")
        }
    };
    if let Err(max) = check_reserve(config.reserve_frames) {
        let value = alloc::format!("{}", config.reserve_frames);
        let accepted = alloc::format!(
            "a frame count from 0 to {max} (half of the {} frames free at boot)",
            frames::stats().free
        );
        report::emit(&Record::ConfigError(record::ConfigError {
            key: Cow::Borrowed("reserve"),
            value: Cow::Borrowed(&value),
            problem: Cow::Borrowed("more frames than this boot can set aside"),
            accepted: Cow::Borrowed(&accepted),
        }));
        report::exit(ExitCode::ConfigError, "bad kernel command line")
    }
    frames::set_reserve(config.reserve_frames);
    if let Err(e) = stacks::init(config.max_stack_bytes, config.slots) {
        report::log(format_args!("stack region: {e:?}"));
        report::exit(ExitCode::ConfigError, "bad stack layout");
    }
    // The workload threads' group (group 0), as a memory cgroup's limit would.
    stacks::group(dks_core::GroupId::new(0)).set_limit(config.group_limit_pages);
    mm::heap::set_limit(config.heap_limit_mib.map(|mib| mib << 20));
    stacks::pack::configure(config.pack_after_ms, config.pack_guard);
    sched::init(config.hz);
    hw::apic::start_periodic_timer(config.hz);
    let cpus = smp::start_all(info.rsdp, config.hz);

    let stats = frames::stats();
    report::emit(&Record::Boot(record::Boot {
        version: Cow::Borrowed(env!("CARGO_PKG_VERSION")),
        cpus,
        memory_kib: ram_bytes / 1024,
        frames_total: stats.total,
        frames_free: stats.free,
        cmdline: Cow::Borrowed(info.cmdline()),
    }));

    work::start();
    reclaim_thread::start();
    mce::start_logger();
    let injection = config.injection;
    let options = sched::SpawnOptions {
        system: true,
        ..sched::SpawnOptions::default()
    };
    let main = sched::spawn("main", options, move || main_thread(&config));
    if main.is_err() {
        report::exit(ExitCode::Failure, "no memory for the main thread");
    }
    // The boot CPU's scheduler loop runs on a kernel stack with a guard page, as the other
    // CPUs' do: an overflow there is then a reported guard hit. The boot stack has no guard
    // (below it in `.bss` lie the boot page tables).
    let scheduler_stack = hw::kstacks::alloc().expect("memory for the boot CPU's scheduler stack");
    // Allocation failures are injected only once the system is up: the kernel's own threads
    // (workers, stack reclaim, main) and its boot structures are made without them, so an
    // injection pattern tests the stack mechanism, not start-up.
    frames::set_injection(injection);
    hw::catch::run_on_stack(scheduler_stack.top(), boot_cpu_scheduler, 0);
    unreachable!("the scheduler loop returned")
}

/// The boot CPU's scheduler loop, on its own kernel stack.
extern "C" fn boot_cpu_scheduler(_: usize) {
    sched::run(0)
}

/// Checks that a reserve of `reserve_frames` leaves ordinary allocations enough memory: at most
/// half of the frames free now. `Err` carries the largest accepted value.
fn check_reserve(reserve_frames: u64) -> Result<(), u64> {
    let max = frames::stats().free / 2;
    if reserve_frames <= max {
        Ok(())
    } else {
        Err(max)
    }
}

/// Reads the workload plan from the first boot module and checks it against this boot.
fn load_plan(
    config: &cmdline::Config,
) -> Result<dks_protocol::scenario::Plan, alloc::string::String> {
    let info = BOOT_INFO.get().expect("boot info kept");
    let module = info
        .modules()
        .first()
        .ok_or("no boot module (pass the plan with -initrd)")?;
    let len = usize::try_from(module.bytes).map_err(|_| "boot module too large")?;
    if len > 16 << 20 {
        return Err("boot module larger than 16 MiB".into());
    }
    let bytes = hw::boot_map::copy(module.start, len).ok_or("boot module outside RAM")?;
    let plan = workload::parse(&bytes)?;
    if u64::from(plan.max_stack_bytes) != config.max_stack_bytes {
        return Err(alloc::format!(
            "the plan is for {}-byte stacks, the kernel runs max_stack={} bytes",
            plan.max_stack_bytes,
            config.max_stack_bytes
        ));
    }
    workload::check_policies(&plan)?;
    Ok(plan)
}

/// What the boot was asked to do, in the first thread.
fn main_thread(config: &cmdline::Config) {
    if let Some(crash) = config.crash {
        crash::now(crash);
    }
    if let Some(source) = config.workload {
        let plan = match source {
            cmdline::WorkloadSource::Mixed => Ok(workload::mixed(config.max_stack_bytes as u32)),
            cmdline::WorkloadSource::Initrd => load_plan(config),
        };
        match plan {
            Ok(plan) => {
                let ending = workload::run(plan);
                if ending.refused_creations > 0 {
                    report::exit(
                        ExitCode::Failure,
                        "some threads of the plan could not be created (spawn_failure records)",
                    );
                }
                if ending.corrupted_frames > 0 {
                    report::exit(
                        ExitCode::Failure,
                        "stack data changed under live frames (workload_stat records)",
                    );
                }
                if ending.never_admitted > 0 {
                    report::exit(
                        ExitCode::Failure,
                        "some threads were never admitted: memory never came back \
                         (admission_stall records)",
                    );
                }
            }
            Err(problem) => {
                report::emit(&Record::ConfigError(record::ConfigError {
                    key: Cow::Borrowed("workload"),
                    value: Cow::Borrowed("initrd"),
                    problem: Cow::Borrowed(&problem),
                    accepted: Cow::Borrowed(
                        "a dks-protocol scenario plan (JSON) in the first boot module",
                    ),
                }));
                report::exit(ExitCode::ConfigError, "unusable workload plan")
            }
        }
        report::exit(ExitCode::Success, "workload complete");
    }
    match config.bench {
        Some(cmdline::Bench::Costs) => {
            bench::run(config.tsc_counts_instructions);
            vmstat::emit("end");
            report::exit(ExitCode::Success, "costs measured");
        }
        Some(cmdline::Bench::Soak { lifetimes }) => {
            let failed = ktest::run_soak(lifetimes);
            vmstat::emit("end");
            if failed {
                report::exit(ExitCode::Failure, "the soak failed");
            }
            report::exit(ExitCode::Success, "soak complete");
        }
        None => {}
    }
    if let Some(selection) = &config.tests {
        let failed = ktest::run(selection);
        vmstat::emit("end");
        if failed > 0 {
            report::exit(ExitCode::Failure, "in-kernel tests failed");
        }
        report::exit(ExitCode::Success, "all tests passed");
    }
    vmstat::emit("end");
    report::exit(ExitCode::Success, "boot complete")
}

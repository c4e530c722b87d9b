//! The in-kernel tests, booted under QEMU: one cargo test per boot (`test=all` on 1, 2 and 4
//! CPUs), each checking the boot's records against the kernel's own plan and that the kernel
//! brought up as many CPUs as QEMU was given.
//!
//! The kernel announces `TestPlan{count}`, then reports every test with `TestBegin`/`TestEnd`.
//! [`dks_lab::test_report::check`] asserts that exactly `count` tests ended, all passed, none
//! was left unfinished, and the boot ended with the kernel's success (last record `Exit`
//! success, QEMU status agreeing). Nothing here knows a test's name: a new kernel test is covered
//! as soon as the kernel runs it. On failure the message lists each failed test with its detail,
//! every exception, panic and guard-hit record, and how the boot ended.

use std::time::Duration;

use dks_lab::boot;
use dks_lab::config::BootConfig;
use dks_lab::kernel;
use dks_lab::test_report;

/// Generous for TCG on 2 shared cores; a hung kernel still fails within it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn run_all_kernel_tests(cpus: u8) {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let config = BootConfig {
        kernel_args: vec!["test=all".into()],
        cpus,
        timeout: BOOT_TIMEOUT,
        ..BootConfig::new(kernel)
    };
    let outcome = boot::run(&config, |_| {}).unwrap_or_else(|e| panic!("{e:#}"));
    let report = test_report::check(&outcome).unwrap_or_else(|message| {
        panic!(
            "in-kernel tests on {cpus} CPU(s): {message}--- serial console\n{}--- QEMU stderr\n{}",
            outcome.serial_log, outcome.qemu_stderr
        )
    });
    let booted: Vec<u32> = outcome
        .records()
        .filter_map(|r| match r {
            dks_protocol::record::Record::Boot(b) => Some(b.cpus),
            _ => None,
        })
        .collect();
    assert_eq!(
        booted,
        vec![u32::from(cpus)],
        "CPUs the kernel reported running"
    );
    assert!(
        !report.results.is_empty(),
        "test=all ran no test on {cpus} CPU(s):\n{}",
        outcome.serial_log
    );
}

#[test]
fn kernel_tests_pass_on_1_cpu() {
    run_all_kernel_tests(1);
}

#[test]
fn kernel_tests_pass_on_2_cpus() {
    run_all_kernel_tests(2);
}

#[test]
fn kernel_tests_pass_on_4_cpus() {
    run_all_kernel_tests(4);
}

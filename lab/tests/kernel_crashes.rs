//! Crashes are reported, never hang and never read as success: the kernel is made to crash
//! on purpose (`crash=`) and each boot must end with the structured records that say what
//! happened and the matching exit code.

use std::time::Duration;

use dks_lab::boot::{self, BootOutcome};
use dks_lab::config::BootConfig;
use dks_lab::kernel;
use dks_protocol::exit::ExitCode;
use dks_protocol::record::Record;

const TIMEOUT: Duration = Duration::from_secs(120);
/// The address `crash=page-fault` reads: `NEVER_MAPPED` in `kernel/hw/src/layout.rs`.
const NEVER_MAPPED: u64 = 0x0000_7fff_ffff_f000;

fn crash(kind: &str) -> BootOutcome {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let config = BootConfig {
        kernel_args: vec![format!("crash={kind}")],
        timeout: TIMEOUT,
        ..BootConfig::new(kernel)
    };
    boot::run(&config, |_| {}).unwrap_or_else(|e| panic!("{e:#}"))
}

fn exit_of(outcome: &BootOutcome) -> (ExitCode, String) {
    match outcome.records().last() {
        Some(Record::Exit(exit)) => (exit.code, exit.reason.to_string()),
        other => panic!(
            "last record is not an exit: {other:?}\n{}",
            outcome.serial_log
        ),
    }
}

fn exceptions(outcome: &BootOutcome) -> Vec<(u8, u64)> {
    outcome
        .records()
        .filter_map(|r| match r {
            Record::Exception(e) => Some((e.vector, e.cr2)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_invalid_opcode_is_one_exception_record_and_a_failure_exit() {
    let outcome = crash("ud");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    assert_eq!(exceptions(&outcome), [(6, 0)], "{}", outcome.serial_log);
    assert_eq!(exit_of(&outcome).0, ExitCode::Exception);
}

#[test]
fn an_unhandled_page_fault_names_its_address() {
    let outcome = crash("page-fault");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    assert_eq!(
        exceptions(&outcome),
        [(14, NEVER_MAPPED)],
        "{}",
        outcome.serial_log
    );
    assert_eq!(exit_of(&outcome).0, ExitCode::Exception);
}

#[test]
fn a_kernel_stack_overflow_is_a_guard_hit() {
    let outcome = crash("guard");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    let hits: Vec<u64> = outcome
        .records()
        .filter_map(|r| match r {
            Record::GuardHit(hit) => Some(hit.depth_bytes),
            _ => None,
        })
        .collect();
    assert_eq!(hits.len(), 1, "{}", outcome.serial_log);
    assert!(
        hits[0] > 32 * 1024,
        "the hit is below a 32 KiB kernel stack: {hits:?}"
    );
    assert_eq!(exit_of(&outcome).0, ExitCode::Exception);
}

#[test]
fn a_page_fault_while_the_page_fault_frame_is_live_is_detected() {
    let outcome = crash("nested-page-fault");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    let (code, reason) = exit_of(&outcome);
    assert_eq!(code, ExitCode::Exception);
    assert!(reason.contains("nested page fault"), "{reason}");
    assert_eq!(exceptions(&outcome).len(), 1, "{}", outcome.serial_log);
}

#[test]
fn a_fault_while_copying_the_page_fault_frame_is_reported_not_looped_on() {
    // A bounce onto a stack gap without populating it: the copy of the live #PF frame faults.
    // The #PF entry must see that its frame is live and stop with a report; before it did,
    // the nested frame overwrote the one being copied and `rep movsq` restarted forever.
    let outcome = crash("bounce-copy-fault");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    let (code, reason) = exit_of(&outcome);
    assert_eq!(code, ExitCode::Exception, "{}", outcome.serial_log);
    assert!(
        reason.contains("nested page fault") && reason.contains("bounce copy"),
        "{reason}"
    );
    let faults = exceptions(&outcome);
    assert_eq!(faults.len(), 1, "{}", outcome.serial_log);
    assert_eq!(faults[0].0, 14, "a page fault");
}

#[test]
fn a_fatal_machine_check_is_one_record_and_an_exception_exit() {
    let outcome = crash("machine-check");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    let checks: Vec<(u32, String, String)> = outcome
        .records()
        .filter_map(|r| match r {
            Record::MachineCheck(m) => {
                Some((m.bank, m.severity.to_string(), m.found_by.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        checks,
        [(1, "fatal".to_owned(), "exception".to_owned())],
        "{}",
        outcome.serial_log
    );
    let (code, reason) = exit_of(&outcome);
    assert_eq!(code, ExitCode::Exception);
    assert!(reason.contains("machine check"), "{reason}");
}

/// Runs `crash=KIND` and checks that it stopped with one `exception` record (a page fault)
/// and an exception exit whose reason contains `reason`.
fn assert_page_fault_stop(kind: &str, reason_words: &str) {
    let outcome = crash(kind);
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    let (code, reason) = exit_of(&outcome);
    assert_eq!(code, ExitCode::Exception, "{}", outcome.serial_log);
    assert!(reason.contains(reason_words), "{reason}");
    let faults = exceptions(&outcome);
    assert_eq!(faults.len(), 1, "{}", outcome.serial_log);
    assert_eq!(faults[0].0, 14, "a page fault");
}

/// A page fault inside the NMI handler, one the #PF handler would serve: returning from it
/// with `iretq` would unblock NMIs while the NMI frame is live, so the #PF entry must see the
/// NMI frame marked live and stop with a report instead.
#[test]
fn a_page_fault_inside_the_nmi_handler_is_reported() {
    assert_page_fault_stop("nmi-page-fault", "inside the NMI handler");
}

/// The same inside the machine-check handler.
#[test]
fn a_page_fault_inside_the_machine_check_handler_is_reported() {
    assert_page_fault_stop(
        "machine-check-page-fault",
        "inside the machine-check handler",
    );
}

/// A guard hit on one of the kernel's own threads (here `main`, with interrupts on) stops the
/// kernel with the hit and a reason: stopping the thread instead, as for a workload thread,
/// left the boot hanging until the host's timeout (nothing else ends it, as nothing else
/// frees the stacks of a stopped worker's CPU).
#[test]
fn a_kernel_thread_overflow_stops_the_kernel() {
    let outcome = crash("kernel-thread-overflow");
    assert!(!outcome.is_success(), "{}", outcome.serial_log);
    let hits: Vec<String> = outcome
        .records()
        .filter_map(|r| match r {
            Record::GuardHit(hit) => Some(hit.task.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(hits, ["main"], "{}", outcome.serial_log);
    let (code, reason) = exit_of(&outcome);
    assert_eq!(code, ExitCode::Exception, "{}", outcome.serial_log);
    assert!(reason.contains("kernel's own threads"), "{reason}");
}

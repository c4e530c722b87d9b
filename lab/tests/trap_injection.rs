//! NMIs and machine checks injected into a real boot through QEMU's monitor (QMP), while a
//! workload runs on 2 CPUs: the kernel counts NMIs on every CPU and goes on, reports a
//! corrected error (found by polling) and a recoverable one (found by its #MC) and goes on, and
//! stops cleanly with a record on a fatal one. Before the kernel handled them, the NMI ended
//! the boot as an unexpected exception (vector 2) and the machine check made QEMU raise a
//! triple fault.
//!
//! The injections use the lab's private monitor (`dks_lab::qmp`: a socket in a fresh 0700
//! folder, QEMU connecting as a client), but choose each error's CPU, bank, status and
//! addresses themselves, which `--inject-mce` does not.

use std::time::{Duration, Instant};

use dks_lab::boot::{self, BootOutcome};
use dks_lab::config::BootConfig;
use dks_lab::console::ConsoleLine;
use dks_lab::qmp::MonitorSocket;
use dks_lab::{kernel, qemu};
use dks_protocol::exit::ExitCode;
use dks_protocol::record::{MachineCheck, Record, TrapStat};

const TIMEOUT: Duration = Duration::from_secs(240);

/// A corrected error as QEMU's `mce` takes it: VAL | EN, no #MC raised.
const CORRECTED: &str = "0x9000000000000000";
/// A recoverable (action optional) error: VAL | UC | EN | MISCV | ADDRV | S, MCA code 0xc0.
const RECOVERABLE: &str = "0xbd000000000000c0";
/// An uncorrectable error: VAL | UC | EN | PCC.
const FATAL: &str = "0xb200000000000150";
/// `IA32_MCG_STATUS` with RIPV | MCIP.
const RESTARTABLE: &str = "5";
/// An action-required error (SRAR: VAL | UC | EN | MISCV | ADDRV | S | AR, data load, MCA
/// code 0x134): the kernel must act before the interrupted code resumes, and it implements
/// no recovery action.
const ACTION_REQUIRED: &str = "0xbd80000000000134";
/// `IA32_MCG_STATUS` with RIPV | EIPV | MCIP: the interrupted instruction is the one that
/// consumed the error.
const AT_THE_INSTRUCTION: &str = "7";

/// Boots `workload=mixed` on 2 CPUs with a private QMP monitor and, once the workload runs
/// (its first sample), sends `injections` (`inject-nmi`, or human-monitor command lines).
/// Returns the outcome and QEMU's answers (an empty string: accepted; or the error).
fn boot_and_inject(injections: &[&str]) -> (BootOutcome, Vec<String>) {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let config = BootConfig {
        kernel_args: vec!["workload=mixed".into()],
        cpus: 2,
        timeout: TIMEOUT,
        ..BootConfig::new(kernel)
    };
    let socket = MonitorSocket::new().unwrap_or_else(|e| panic!("{e:#}"));
    let command = qemu::command(
        &qemu::find().unwrap_or_else(|e| panic!("{e:#}")),
        &config,
        Some(&socket),
    );
    let mut answers = Vec::new();
    let mut sent = false;
    let outcome = boot::run_command(command, config.timeout, |line| {
        if sent || !matches!(line, ConsoleLine::Record(Record::Sample(_))) {
            return;
        }
        sent = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut qmp = match socket.accept(deadline, || false) {
            Ok(qmp) => qmp,
            Err(e) => return answers.push(format!("no monitor: {e}")),
        };
        for injection in injections {
            let answer = if *injection == "inject-nmi" {
                qmp.execute("inject-nmi", None).map(|_| String::new())
            } else {
                qmp.human_monitor_command(injection)
            };
            match answer {
                Ok(text) => answers.push(text),
                Err(e) => return answers.push(format!("{injection}: {e}")),
            }
        }
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(sent, "the workload never sampled:\n{}", outcome.serial_log);
    (outcome, answers)
}

fn machine_checks(outcome: &BootOutcome) -> Vec<MachineCheck<'static>> {
    outcome
        .records()
        .filter_map(|r| match r {
            Record::MachineCheck(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn last_trap_stat(outcome: &BootOutcome) -> TrapStat {
    outcome
        .records()
        .filter_map(|r| match r {
            Record::TrapStat(t) => Some(*t),
            _ => None,
        })
        .last()
        .unwrap_or_else(|| panic!("no trap_stat record:\n{}", outcome.serial_log))
}

#[test]
fn injected_nmis_and_survivable_machine_checks_are_counted_and_the_run_completes() {
    let (outcome, answers) = boot_and_inject(&[
        "inject-nmi",
        &format!("mce 1 2 {CORRECTED} 0 0x1234000 0"),
        &format!("mce 0 1 {RECOVERABLE} {RESTARTABLE} 0x5678000 0x86"),
        "inject-nmi",
    ]);
    assert!(
        outcome.is_success(),
        "{}\nQMP answers: {answers:?}\n{}",
        outcome.describe(),
        outcome.serial_log
    );
    assert_eq!(answers, ["", "", "", ""], "QMP answers (empty: accepted)");
    let stat = last_trap_stat(&outcome);
    // Each `inject-nmi` goes to both CPUs; NMIs that arrive while one is pending on a CPU
    // merge, so at least one per CPU is certain.
    assert!(
        stat.nmis >= 2,
        "2 NMIs sent to each of 2 CPUs, counted {stat:?}\n{}",
        outcome.serial_log
    );
    assert_eq!(stat.mce_corrected, 1, "{stat:?}");
    assert_eq!(stat.mce_recoverable, 1, "{stat:?}");
    assert_eq!(stat.machine_check_exceptions, 1, "{stat:?}");
    let checks = machine_checks(&outcome);
    assert_eq!(checks.len(), 2, "{checks:?}\n{}", outcome.serial_log);
    let corrected = checks
        .iter()
        .find(|m| m.severity == "corrected")
        .unwrap_or_else(|| panic!("no corrected error reported: {checks:?}"));
    assert_eq!(
        (corrected.cpu, corrected.bank, corrected.found_by.as_ref()),
        (1, 2, "poll")
    );
    assert_eq!(corrected.status, 0x9000_0000_0000_0000);
    let recoverable = checks
        .iter()
        .find(|m| m.severity == "recoverable")
        .unwrap_or_else(|| panic!("no recoverable error reported: {checks:?}"));
    assert_eq!(
        (
            recoverable.cpu,
            recoverable.bank,
            recoverable.found_by.as_ref()
        ),
        (0, 1, "exception")
    );
    assert_eq!(recoverable.status, 0xbd00_0000_0000_00c0);
    assert_eq!(recoverable.address, 0x567_8000, "ADDRV was set");
    assert_eq!(recoverable.misc, 0x86, "MISCV was set");
    assert_eq!(recoverable.mcg_status, 5);
}

/// Injects one machine check that must stop the kernel (`mce CPU BANK STATUS MCG_STATUS ...`)
/// and checks that it did, with one fatal record of that CPU and bank and an exception exit.
fn assert_stops_the_kernel(cpu: u32, bank: u32, status: &str, mcg_status: &str) {
    let (outcome, answers) = boot_and_inject(&[&format!(
        "mce {cpu} {bank} {status} {mcg_status} 0x9abc000 0x86"
    )]);
    // The monitor accepts the command with an empty answer, but the kernel it stops can make
    // QEMU exit before that answer is written: a closed connection is then the answer, and the
    // fatal record below proves the machine check was delivered.
    assert!(
        answers == [""]
            || (answers.len() == 1 && answers[0].contains("the monitor connection failed")),
        "QMP answers (empty: accepted): {answers:?}"
    );
    let checks = machine_checks(&outcome);
    assert_eq!(
        checks.len(),
        1,
        "{checks:?}\nQMP answers: {answers:?}\n{}",
        outcome.serial_log
    );
    assert_eq!(
        (
            checks[0].cpu,
            checks[0].bank,
            checks[0].severity.as_ref(),
            checks[0].found_by.as_ref()
        ),
        (cpu, bank, "fatal", "exception")
    );
    match outcome.records().last() {
        Some(Record::Exit(exit)) => {
            assert_eq!(exit.code, ExitCode::Exception, "{}", outcome.serial_log);
            assert!(
                exit.reason.contains("machine check"),
                "{}",
                outcome.serial_log
            );
        }
        other => panic!("last record {other:?}\n{}", outcome.serial_log),
    }
}

#[test]
fn an_injected_fatal_machine_check_stops_the_kernel_with_a_record() {
    assert_stops_the_kernel(1, 3, FATAL, RESTARTABLE);
}

/// An action-required error (SRAR) needs a recovery action before the interrupted code may
/// go on, whatever RIPV says (Intel SDM Vol. 3B, 15.6.2 and 15.10.4.1); the kernel has none,
/// so it must stop. It used to read the error as recoverable (PCC clear, RIPV set) and resume
/// the instruction that had just consumed the corrupt data.
#[test]
fn an_injected_action_required_error_stops_the_kernel() {
    assert_stops_the_kernel(0, 1, ACTION_REQUIRED, AT_THE_INSTRUCTION);
}

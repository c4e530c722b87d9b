//! NMIs and machine checks injected into a real boot through QEMU's monitor (QMP), while a
//! workload runs on 2 CPUs: the kernel counts NMIs on every CPU and goes on, reports a
//! corrected error (found by polling) and a recoverable one (found by its #MC) and goes on, and
//! stops cleanly with a record on a fatal one. Before the kernel handled them, the NMI ended
//! the boot as an unexpected exception (vector 2) and the machine check made QEMU raise a
//! triple fault.
//!
//! The QMP code here is deliberately minimal (connect, negotiate, send a command, read its
//! answer). The socket lives in a fresh private folder (0700): QEMU's monitor can run host
//! commands, so nobody else may reach it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use dks_lab::boot::{self, BootOutcome};
use dks_lab::config::BootConfig;
use dks_lab::console::ConsoleLine;
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

/// One QMP connection. Errors are strings: a test reports them with the boot's records (QEMU
/// may have gone away because the kernel stopped).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp, String> {
        let stream = UnixStream::connect(path).map_err(|e| format!("connect to QMP: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| format!("QMP read timeout: {e}"))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("clone the QMP stream: {e}"))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        qmp.execute(serde_json::json!({ "execute": "qmp_capabilities" }))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read from QMP: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("QMP sent {line:?}: {e}"))
    }

    /// Sends `command` and returns its `return` value (events in between are skipped).
    fn execute(&mut self, command: serde_json::Value) -> Result<serde_json::Value, String> {
        writeln!(self.writer, "{command}").map_err(|e| format!("write to QMP: {e}"))?;
        loop {
            let message = self.read_message()?;
            if message.get("event").is_some() {
                continue;
            }
            return message
                .get("return")
                .cloned()
                .ok_or_else(|| format!("QMP refused {command}: {message}"));
        }
    }

    /// Sends one injection: `inject-nmi`, or a human-monitor command line; returns the answer.
    fn inject(&mut self, injection: &str) -> Result<String, String> {
        if injection == "inject-nmi" {
            return self
                .execute(serde_json::json!({ "execute": "inject-nmi" }))
                .map(|v| v.to_string());
        }
        let value = self.execute(serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": injection },
        }))?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }
}

/// Boots `workload=mixed` on 2 CPUs with a QMP socket and, once the workload runs (its first
/// sample), sends `injections` (human-monitor commands, or `inject-nmi`).
fn boot_and_inject(injections: &[&str]) -> (BootOutcome, Vec<String>) {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let config = BootConfig {
        kernel_args: vec!["workload=mixed".into()],
        cpus: 2,
        timeout: TIMEOUT,
        ..BootConfig::new(kernel)
    };
    let private = tempfile::Builder::new()
        .prefix("dks-qmp-")
        .tempdir()
        .expect("a private temporary folder");
    let socket = private.path().join("qmp.sock");
    let mut command = qemu::command(&qemu::find().expect("QEMU"), &config);
    command
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()));
    let mut answers = Vec::new();
    let mut sent = false;
    let outcome = boot::run_command(command, config.timeout, |line| {
        if sent || !matches!(line, ConsoleLine::Record(Record::Sample(_))) {
            return;
        }
        sent = true;
        let mut qmp = match Qmp::connect(&socket) {
            Ok(qmp) => qmp,
            Err(e) => return answers.push(e),
        };
        for injection in injections {
            match qmp.inject(injection) {
                Ok(answer) => answers.push(answer),
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
    assert_eq!(
        answers,
        ["{}", "", "", "{}"],
        "QMP answers (empty: accepted)"
    );
    let stat = last_trap_stat(&outcome);
    assert!(
        stat.nmis >= 4,
        "2 NMIs on each of 2 CPUs, counted {stat:?}\n{}",
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

#[test]
fn an_injected_fatal_machine_check_stops_the_kernel_with_a_record() {
    let (outcome, answers) = boot_and_inject(&[&format!("mce 1 3 {FATAL} {RESTARTABLE} 0 0")]);
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
        (1, 3, "fatal", "exception")
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

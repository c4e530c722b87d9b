//! How a boot ended, judged, and the exit codes of `dks`.
//!
//! A boot is a success only when both channels agree: the last record is `Exit` with
//! [`ExitCode::Success`] *and* QEMU's exit status is the one the exit device produces for that
//! code. Anything else is a failure with its own [`Verdict`], in particular a triple fault:
//! under `-no-reboot` QEMU then exits with status 0 and no `Exit` record, which must never read
//! as success. When the exit device reports a failure code, that code decides the verdict even if
//! the records are incomplete (a panicking kernel may not manage its `Exit` record).
//!
//! [`judge`] is pure (records and process end in, verdict out), so every mapping is unit-tested
//! without QEMU.

use std::fmt;
use std::time::Duration;

use dks_protocol::exit::ExitCode;
use dks_protocol::record::Record;

use crate::test_report::TestReport;

/// How the QEMU process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it (not the lab's timeout).
    Signaled(i32),
    /// It caught this signal, said `terminating on signal N` and exited with status 0 (QEMU
    /// does this for SIGTERM, SIGINT and SIGHUP).
    StoppedBySignal(i32),
    /// The lab killed it when the time limit ran out.
    TimedOut(Duration),
}

/// The judgement of one boot. Each verdict has its own `dks` exit code ([`Verdict::exit_code`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel reported success through its last record and its exit status.
    Success,
    /// The kernel ran and reported a failure (a test or a scenario check failed).
    KernelFailure,
    /// The kernel rejected its command line.
    ConfigError,
    /// The kernel panicked.
    Panic,
    /// An unhandled exception or a fatal stack fault.
    Exception,
    /// QEMU ended without the kernel's exit device: status 0 is a triple fault (or reset) under
    /// `-no-reboot`; other statuses are QEMU's own errors or a signal.
    NoKernelExit(ProcessEnd),
    /// The time limit ran out and QEMU was killed.
    TimedOut(Duration),
    /// The exit status says success but the records do not agree (no final `Exit` record,
    /// a malformed record, a test that failed or never ran, ...).
    Inconsistent(String),
}

/// One row of the exit-code table: code, meaning.
pub type ExitCodeDoc = (u8, &'static str);

/// `dks` exit codes and their meaning; the `--help` text and `docs/lab.md` show this table.
pub const EXIT_CODES: [ExitCodeDoc; 10] = [
    (
        0,
        "success: the kernel reported success and QEMU's exit status agrees",
    ),
    (
        1,
        "the host could not boot: kernel build failed, QEMU missing, KVM unusable, I/O error",
    ),
    (
        2,
        "bad dks command line or scenario (unknown flag or key, value out of range)",
    ),
    (3, "the kernel reported failure (a test or check failed)"),
    (4, "the kernel rejected its command line (config error)"),
    (5, "the kernel panicked"),
    (6, "unhandled exception or fatal stack fault in the kernel"),
    (
        7,
        "QEMU ended without the kernel's exit: triple fault (status 0), QEMU error or signal",
    ),
    (8, "timeout: QEMU was killed"),
    (
        9,
        "inconsistent: exit status says success but the records disagree or are incomplete",
    ),
];

/// Exit code for host-side errors (see [`EXIT_CODES`]).
pub const EXIT_HOST_ERROR: u8 = 1;
/// Exit code for a bad `dks` command line (see [`EXIT_CODES`]).
pub const EXIT_USAGE: u8 = 2;

impl Verdict {
    /// Returns the exit code `dks` ends with for this verdict (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Success => 0,
            Verdict::KernelFailure => 3,
            Verdict::ConfigError => 4,
            Verdict::Panic => 5,
            Verdict::Exception => 6,
            Verdict::NoKernelExit(_) => 7,
            Verdict::TimedOut(_) => 8,
            Verdict::Inconsistent(_) => 9,
        }
    }
}

impl fmt::Display for Verdict {
    /// A short description, without the details that only the records hold.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Success => write!(f, "success"),
            Verdict::KernelFailure => write!(f, "the kernel reported failure"),
            Verdict::ConfigError => write!(f, "the kernel rejected its command line"),
            Verdict::Panic => write!(f, "the kernel panicked"),
            Verdict::Exception => write!(f, "the kernel stopped on an exception"),
            Verdict::NoKernelExit(ProcessEnd::Exited(0)) => write!(
                f,
                "QEMU exited with status 0 without the kernel's exit (a triple fault or reset)"
            ),
            Verdict::NoKernelExit(ProcessEnd::Exited(status)) => write!(
                f,
                "QEMU exited with status {status}, which the kernel's exit device does not produce"
            ),
            Verdict::NoKernelExit(ProcessEnd::Signaled(signal)) => write!(
                f,
                "QEMU was killed by signal {}",
                crate::interrupt::describe_signal(*signal)
            ),
            Verdict::NoKernelExit(ProcessEnd::StoppedBySignal(signal)) => write!(
                f,
                "QEMU was stopped by signal {} from outside (it exited with status 0 after \
                 saying so; not a triple fault)",
                crate::interrupt::describe_signal(*signal)
            ),
            Verdict::NoKernelExit(ProcessEnd::TimedOut(limit)) | Verdict::TimedOut(limit) => {
                write!(
                    f,
                    "timed out after {} s; QEMU was killed",
                    limit.as_secs_f64()
                )
            }
            Verdict::Inconsistent(problem) => {
                write!(f, "QEMU's status says success, but {problem}")
            }
        }
    }
}

/// Judges a boot from its records (in order), the number of malformed record lines, and how
/// QEMU ended.
pub fn judge(records: &[Record<'_>], malformed: usize, end: ProcessEnd) -> Verdict {
    let code = match end {
        ProcessEnd::TimedOut(limit) => return Verdict::TimedOut(limit),
        ProcessEnd::Signaled(_) | ProcessEnd::StoppedBySignal(_) => {
            return Verdict::NoKernelExit(end);
        }
        ProcessEnd::Exited(status) => match ExitCode::from_qemu_status(status) {
            Some(code) => code,
            None => return Verdict::NoKernelExit(end),
        },
    };
    match code {
        ExitCode::Success => {}
        ExitCode::Failure => return Verdict::KernelFailure,
        ExitCode::ConfigError => return Verdict::ConfigError,
        ExitCode::Panic => return Verdict::Panic,
        ExitCode::Exception => return Verdict::Exception,
    }
    match records.last() {
        Some(Record::Exit(exit)) if exit.code == ExitCode::Success => {}
        Some(Record::Exit(exit)) => {
            return Verdict::Inconsistent(format!(
                "the last record is Exit with code {}",
                exit.code.name()
            ));
        }
        Some(_) => {
            return Verdict::Inconsistent("the last record is not Exit".into());
        }
        None => return Verdict::Inconsistent("the kernel printed no records".into()),
    }
    if malformed > 0 {
        return Verdict::Inconsistent(format!("{malformed} record line(s) were malformed"));
    }
    let tests = TestReport::from_records(records);
    if tests.has_plan() {
        let problems = tests.problems();
        if !problems.is_empty() {
            return Verdict::Inconsistent(problems.join("; "));
        }
    }
    Verdict::Success
}

#[cfg(test)]
mod tests;

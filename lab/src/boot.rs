//! One boot: start QEMU, stream its console with a time limit, judge how it ended.
//!
//! Two threads read QEMU's stdout (the kernel's serial line) and stderr (QEMU's own messages)
//! and send lines over one channel; the calling thread classifies them, hands each to the
//! caller's callback as it arrives, and watches the deadline. When the deadline passes, QEMU is
//! killed and the verdict is a timeout; the reader threads are then left to finish on their
//! own (a process QEMU started could still hold a pipe), so a timeout never hangs the lab.
//!
//! QEMU runs in a process group of its own: a Ctrl-C on the terminal reaches `dks` only, and
//! `dks` stops QEMU (the whole group, so anything it started goes too) when the time limit runs
//! out, when fault injection fails, and when `dks` itself is interrupted
//! ([`crate::interrupt`]): the loop looks at the interruption flag every [`POLL_INTERVAL`].
//!
//! With an injection plan ([`BootConfig::injection`]), QEMU's monitor is connected to a private
//! socket and an [`inject::Driver`] thread injects while the boot runs; it sees the records it
//! waits for as they arrive, and its [`inject::Report`] is part of the outcome.
//!
//! [`run`] boots a [`BootConfig`]; [`run_command`] runs any command the same way, which is how
//! the tests drive this machinery without QEMU.

use std::io::BufReader;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use dks_protocol::record::Record;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::config::BootConfig;
use crate::console::{self, ConsoleLine};
use crate::inject::{self, Driver, Handled};
use crate::outcome::{self, ProcessEnd, Verdict};
use crate::qmp::MonitorSocket;
use crate::{interrupt, qemu};

/// How often the lab looks whether QEMU has exited after its output ended.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How often the boot loop looks at the interruption flag and the injection driver while it
/// waits for output.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Everything one boot produced.
#[derive(Clone, Debug)]
pub struct BootOutcome {
    /// Every console line, classified, in order.
    pub lines: Vec<ConsoleLine>,
    /// The console exactly as received (lossy UTF-8).
    pub serial_log: String,
    /// What QEMU itself printed on stderr.
    pub qemu_stderr: String,
    /// How QEMU ended.
    pub end: ProcessEnd,
    /// The judgement of the boot.
    pub verdict: Verdict,
    /// Wall time from start to end.
    pub elapsed: Duration,
    /// What was injected and what the kernel handled, when the boot had an injection plan.
    pub injection: Option<inject::Report>,
}

impl BootOutcome {
    /// Returns the records, in order.
    pub fn records(&self) -> impl Iterator<Item = &Record<'static>> {
        self.lines.iter().filter_map(ConsoleLine::record)
    }

    /// Returns whether the kernel reported success and QEMU agrees.
    pub fn is_success(&self) -> bool {
        self.verdict == Verdict::Success
    }

    /// Returns the number of malformed record lines.
    pub fn malformed(&self) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(line, ConsoleLine::Malformed { .. }))
            .count()
    }

    /// Describes how the boot ended in one line, with the detail the records give: the
    /// rejected key, the panic message, the exception, the last words of QEMU.
    pub fn describe(&self) -> String {
        let mut text = self.verdict.to_string();
        let detail = match &self.verdict {
            Verdict::ConfigError => self.last_rendered(|r| matches!(r, Record::ConfigError(_))),
            Verdict::KernelFailure => self.last_rendered(|r| {
                matches!(r, Record::SpawnFailure(_) | Record::AdmissionStall(_))
            }),
            Verdict::Panic => self.last_rendered(|r| matches!(r, Record::Panic(_))),
            Verdict::Exception => {
                self.last_rendered(|r| matches!(r, Record::Exception(_) | Record::GuardHit(_)))
            }
            Verdict::NoKernelExit(_) => self
                .qemu_stderr
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .map(|line| format!("QEMU said: {line}")),
            _ => None,
        };
        let exit_reason = self.records().last().and_then(|r| match r {
            Record::Exit(exit) if self.verdict != Verdict::Success => Some(format!(
                "exit reason: {}",
                crate::render::one_line(&exit.reason)
            )),
            _ => None,
        });
        for extra in [detail, exit_reason].into_iter().flatten() {
            text.push_str("; ");
            text.push_str(&extra);
        }
        text
    }

    fn last_rendered(&self, wanted: impl Fn(&Record<'_>) -> bool) -> Option<String> {
        self.records()
            .filter(|r| wanted(r))
            .last()
            .map(crate::render::record)
    }
}

/// Boots `config` under QEMU and calls `on_line` with each console line as it arrives.
///
/// Errors are host problems (QEMU missing, KVM unusable, a bad config, I/O); everything the
/// kernel does, including hanging or crashing, is an `Ok` outcome with its verdict.
pub fn run(config: &BootConfig, on_line: impl FnMut(&ConsoleLine)) -> anyhow::Result<BootOutcome> {
    config.validate()?;
    interrupt::check()?;
    qemu::check_accel(config.accel)?;
    let qemu = qemu::find()?;
    match config.injection.filter(|plan| !plan.is_empty()) {
        None => run_command(qemu::command(&qemu, config, None), config.timeout, on_line),
        Some(plan) => {
            let socket = MonitorSocket::new()?;
            let command = qemu::command(&qemu, config, Some(&socket));
            let driver = Driver::start(plan, socket, inject::Timing::default())
                .context("cannot start the fault-injection thread")?;
            run_with(command, config.timeout, Some((plan, driver)), on_line)
        }
    }
}

/// What the reader threads send.
enum Output {
    Serial(String),
    Stderr(String),
}

/// Runs `command` as a boot: its stdout is the kernel console, its stderr QEMU's messages, and it
/// is killed if it has not ended within `timeout`.
pub fn run_command(
    command: Command,
    timeout: Duration,
    on_line: impl FnMut(&ConsoleLine),
) -> anyhow::Result<BootOutcome> {
    run_with(command, timeout, None, on_line)
}

/// A started QEMU (or stand-in): killed with its whole process group and reaped if it is
/// dropped before it ended, so no early return leaves it running.
struct Running {
    child: Child,
    reaped: bool,
}

impl Running {
    /// Kills the process group and reaps the process.
    fn kill(&mut self) -> anyhow::Result<()> {
        if !self.reaped {
            // QEMU leads its own process group (see `run_with`); it may have exited by itself
            // in the meantime, then the signal finds nobody and `wait` reaps it.
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.kill();
            self.child
                .wait()
                .context("cannot reap QEMU after killing it")?;
            self.reaped = true;
        }
        Ok(())
    }

    /// Waits for the process to exit, until `deadline`; `None` if it is still running then.
    /// Stops early with an [`interrupt::Interrupted`] error.
    fn wait_until(&mut self, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait().context("cannot wait for QEMU")? {
                self.reaped = true;
                return Ok(Some(status));
            }
            interrupt::check()?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(EXIT_POLL_INTERVAL);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Runs `command` as a boot, with the injection `driver` of `plan` if any.
fn run_with(
    mut command: Command,
    timeout: Duration,
    injection: Option<(inject::Plan, Driver)>,
    mut on_line: impl FnMut(&ConsoleLine),
) -> anyhow::Result<BootOutcome> {
    let program = command.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let deadline = start + timeout;
    let (plan, driver) = match injection {
        Some((plan, driver)) => (Some(plan), Some(driver)),
        None => (None, None),
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let mut qemu = Running {
        child,
        reaped: false,
    };

    let (sender, receiver) = mpsc::channel();
    let stdout = qemu.child.stdout.take().context("child stdout is piped")?;
    let stderr = qemu.child.stderr.take().context("child stderr is piped")?;
    spawn_reader(BufReader::new(stdout), sender.clone(), Output::Serial)?;
    spawn_reader(BufReader::new(stderr), sender, Output::Stderr)?;

    let mut lines = Vec::new();
    let mut serial_log = String::new();
    let mut qemu_stderr = String::new();
    let mut timed_out = false;
    loop {
        if let Some(signal) = interrupt::pending() {
            qemu.kill()?;
            return Err(interrupt::Interrupted(signal).into());
        }
        if let Some(failure) = driver.as_ref().and_then(Driver::failure) {
            qemu.kill()?;
            anyhow::bail!("fault injection failed, QEMU was stopped: {failure}");
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        match receiver.recv_timeout((deadline - now).min(POLL_INTERVAL)) {
            Ok(Output::Serial(text)) => {
                serial_log.push_str(&text);
                let line = ConsoleLine::parse(&text);
                if let (Some(driver), Some(record)) = (&driver, line.record()) {
                    driver.notify(record);
                }
                on_line(&line);
                lines.push(line);
            }
            Ok(Output::Stderr(text)) => qemu_stderr.push_str(&text),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let end = if timed_out {
        qemu.kill()?;
        ProcessEnd::TimedOut(timeout)
    } else {
        match qemu.wait_until(deadline) {
            Ok(Some(status)) => process_end(status, &qemu_stderr),
            Ok(None) => {
                qemu.kill()?;
                ProcessEnd::TimedOut(timeout)
            }
            Err(error) => {
                qemu.kill()?;
                return Err(error);
            }
        }
    };
    let injected = driver.map(Driver::finish);
    let records: Vec<Record<'static>> = lines
        .iter()
        .filter_map(ConsoleLine::record)
        .cloned()
        .collect();
    let malformed = lines
        .iter()
        .filter(|line| matches!(line, ConsoleLine::Malformed { .. }))
        .count();
    let mut verdict = outcome::judge(&records, malformed, end);
    let injection = plan.zip(injected).map(|(plan, injected)| inject::Report {
        plan,
        cpus: records.iter().find_map(|r| match r {
            Record::Boot(boot) => Some(boot.cpus),
            _ => None,
        }),
        handled: Handled::from_records(&records),
        injected,
    });
    if let Some(shortfall) = injection
        .as_ref()
        .and_then(|r| r.injected.shortfall.as_ref())
        && verdict == Verdict::Success
    {
        verdict = Verdict::Inconsistent(format!("fault injection stopped short: {shortfall}"));
    }
    Ok(BootOutcome {
        lines,
        serial_log,
        qemu_stderr,
        end,
        verdict,
        elapsed: start.elapsed(),
        injection,
    })
}

fn spawn_reader<R: std::io::BufRead + Send + 'static>(
    reader: R,
    sender: mpsc::Sender<Output>,
    wrap: fn(String) -> Output,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("dks-boot-reader".into())
        .spawn(move || {
            // A read error ends the stream like an end of file; the receiver may be gone after a
            // timeout, and then nobody needs the rest.
            let _ = console::read_lines(reader, |line| {
                let _ = sender.send(wrap(line));
            });
        })
        .context("cannot start a console reader thread")?;
    Ok(())
}

/// How QEMU ended, from its exit status and what it printed: QEMU catches SIGTERM, SIGINT and
/// SIGHUP, says `terminating on signal N` and exits with status 0, which alone would read as a
/// triple fault.
fn process_end(status: ExitStatus, qemu_stderr: &str) -> ProcessEnd {
    match (status.code(), status.signal()) {
        (Some(0), _) => match stopping_signal(qemu_stderr) {
            Some(signal) => ProcessEnd::StoppedBySignal(signal),
            None => ProcessEnd::Exited(0),
        },
        (Some(code), _) => ProcessEnd::Exited(code),
        (None, Some(signal)) => ProcessEnd::Signaled(signal),
        (None, None) => ProcessEnd::Signaled(0),
    }
}

/// The signal of QEMU's `terminating on signal N [from pid P (NAME)]`, if it said so.
fn stopping_signal(qemu_stderr: &str) -> Option<i32> {
    const SAYS: &str = "terminating on signal ";
    qemu_stderr.lines().rev().find_map(|line| {
        let rest = &line[line.find(SAYS)? + SAYS.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests;

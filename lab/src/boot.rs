//! One boot: start QEMU, stream its console with a time limit, judge how it ended.
//!
//! Two threads read QEMU's stdout (the kernel's serial line) and stderr (QEMU's own messages)
//! and send lines over one channel; the calling thread classifies them, hands each to the
//! caller's callback as it arrives, and watches the deadline. When the deadline passes, QEMU is
//! killed and the verdict is a timeout; the reader threads are then left to finish on their
//! own (a process QEMU started could still hold a pipe), so a timeout never hangs the lab.
//!
//! [`run`] boots a [`BootConfig`]; [`run_command`] runs any command the same way, which is how
//! the tests drive this machinery without QEMU.

use std::io::BufReader;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use dks_protocol::record::Record;

use crate::config::BootConfig;
use crate::console::{self, ConsoleLine};
use crate::outcome::{self, ProcessEnd, Verdict};
use crate::qemu;

/// How often the lab looks whether QEMU has exited after its output ended.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(5);

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
    qemu::check_accel(config.accel)?;
    let qemu = qemu::find()?;
    run_command(qemu::command(&qemu, config), config.timeout, on_line)
}

/// What the reader threads send.
enum Output {
    Serial(String),
    Stderr(String),
}

/// Runs `command` as a boot: its stdout is the kernel console, its stderr QEMU's messages, and it
/// is killed if it has not ended within `timeout`.
pub fn run_command(
    mut command: Command,
    timeout: Duration,
    mut on_line: impl FnMut(&ConsoleLine),
) -> anyhow::Result<BootOutcome> {
    let program = command.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let deadline = start + timeout;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;

    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().context("child stdout is piped")?;
    let stderr = child.stderr.take().context("child stderr is piped")?;
    spawn_reader(BufReader::new(stdout), sender.clone(), Output::Serial)?;
    spawn_reader(BufReader::new(stderr), sender, Output::Stderr)?;

    let mut lines = Vec::new();
    let mut serial_log = String::new();
    let mut qemu_stderr = String::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(Output::Serial(text)) => {
                serial_log.push_str(&text);
                let line = ConsoleLine::parse(&text);
                on_line(&line);
                lines.push(line);
            }
            Ok(Output::Stderr(text)) => qemu_stderr.push_str(&text),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
        }
    }
    let end = if timed_out {
        kill(&mut child)?;
        ProcessEnd::TimedOut(timeout)
    } else {
        match wait_until(&mut child, deadline)? {
            Some(status) => process_end(status),
            None => {
                kill(&mut child)?;
                ProcessEnd::TimedOut(timeout)
            }
        }
    };
    let records: Vec<Record<'static>> = lines
        .iter()
        .filter_map(ConsoleLine::record)
        .cloned()
        .collect();
    let malformed = lines
        .iter()
        .filter(|line| matches!(line, ConsoleLine::Malformed { .. }))
        .count();
    let verdict = outcome::judge(&records, malformed, end);
    Ok(BootOutcome {
        lines,
        serial_log,
        qemu_stderr,
        end,
        verdict,
        elapsed: start.elapsed(),
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

/// Waits for `child` to exit, until `deadline`; `None` if it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for QEMU")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(EXIT_POLL_INTERVAL);
    }
}

fn kill(child: &mut Child) -> anyhow::Result<()> {
    // It may have exited by itself in the meantime; then kill fails and wait reaps it.
    let _ = child.kill();
    child.wait().context("cannot reap QEMU after killing it")?;
    Ok(())
}

fn process_end(status: ExitStatus) -> ProcessEnd {
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessEnd::Exited(code),
        (None, Some(signal)) => ProcessEnd::Signaled(signal),
        (None, None) => ProcessEnd::Signaled(0),
    }
}

#[cfg(test)]
mod tests {
    use dks_protocol::exit::ExitCode;

    use super::*;

    /// A command that prints `script`'s output on stdout like a kernel console.
    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    const SUCCESS_SCRIPT: &str = r#"
        echo 'free text'
        echo '@dks/1 {"log":{"text":"hi"}}'
        echo 'qemu warning' >&2
        echo '@dks/1 {"exit":{"code":"success","reason":"done"}}'
        exit 33
    "#;

    #[test]
    fn a_clean_exit_with_status_33_is_success_and_streams_lines() {
        assert_eq!(ExitCode::Success.qemu_status(), 33);
        let mut streamed = Vec::new();
        let outcome = run_command(shell(SUCCESS_SCRIPT), Duration::from_secs(20), |line| {
            streamed.push(line.clone())
        })
        .unwrap();
        assert_eq!(outcome.verdict, Verdict::Success, "{}", outcome.describe());
        assert_eq!(outcome.end, ProcessEnd::Exited(33));
        assert_eq!(streamed, outcome.lines);
        assert_eq!(outcome.lines.len(), 3);
        assert_eq!(outcome.records().count(), 2);
        assert_eq!(outcome.lines[0], ConsoleLine::Text("free text".into()));
        assert!(outcome.serial_log.starts_with("free text\n@dks/1 "));
        assert_eq!(outcome.qemu_stderr, "qemu warning\n");
    }

    #[test]
    fn status_zero_without_exit_is_a_triple_fault() {
        let outcome = run_command(
            shell(r#"echo '@dks/1 {"log":{"text":"about to fault"}}'; exit 0"#),
            Duration::from_secs(20),
            |_| {},
        )
        .unwrap();
        assert_eq!(
            outcome.verdict,
            Verdict::NoKernelExit(ProcessEnd::Exited(0))
        );
        assert!(outcome.describe().contains("triple fault"));
    }

    #[test]
    fn a_process_that_never_ends_is_killed_at_the_timeout() {
        let start = Instant::now();
        let outcome = run_command(
            shell("echo started; exec sleep 600"),
            Duration::from_secs(2),
            |_| {},
        )
        .unwrap();
        assert_eq!(outcome.verdict, Verdict::TimedOut(Duration::from_secs(2)));
        assert_eq!(outcome.lines, [ConsoleLine::Text("started".into())]);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_process_that_closes_its_output_and_hangs_is_killed_too() {
        let outcome = run_command(
            shell("exec >&- 2>&-; exec sleep 600"),
            Duration::from_secs(2),
            |_| {},
        )
        .unwrap();
        assert!(matches!(outcome.verdict, Verdict::TimedOut(_)));
    }

    #[test]
    fn a_failure_status_is_reported_with_the_kernel_s_detail() {
        let outcome = run_command(
            shell(
                r#"echo '@dks/1 {"config_error":{"key":"no_such_key","value":"1","problem":"unknown key","accepted":"test"}}'
                   echo '@dks/1 {"exit":{"code":"config_error","reason":"bad command line"}}'
                   exit 37"#,
            ),
            Duration::from_secs(20),
            |_| {},
        )
        .unwrap();
        assert_eq!(outcome.verdict, Verdict::ConfigError);
        let description = outcome.describe();
        assert!(
            description.contains("no_such_key=1: unknown key"),
            "{description}"
        );
    }

    #[test]
    fn a_missing_program_is_a_host_error() {
        let error = run_command(
            Command::new("/no/such/qemu"),
            Duration::from_secs(1),
            |_| {},
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("/no/such/qemu"));
    }
}

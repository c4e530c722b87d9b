//! A small client for QEMU's machine protocol (QMP), private to one `dks` process.
//!
//! **Privacy.** QEMU's monitor can run host commands (`migrate "exec:..."`), so whoever can
//! open the monitor's socket can act as the user running `dks`, often root. The socket is
//! therefore created by `dks` itself ([`MonitorSocket::new`]) inside a fresh folder that only
//! its user can open (`tempfile`, mode 0700, a random name under `$TMPDIR`); QEMU connects to
//! it as a client (`-chardev socket,path=...` without `server`), and the folder and socket are
//! removed when the [`MonitorSocket`] is dropped, also when `dks` is interrupted.
//!
//! **Protocol.** QMP is one JSON object per line: QEMU greets with `{"QMP": ...}`, the client
//! answers `qmp_capabilities`, then every command gets one `return` or `error` object, with
//! asynchronous `event` objects possibly in between (kept in [`Qmp::events`]). Only three
//! commands are needed (`qmp_capabilities`, `inject-nmi`, `human-monitor-command`), so this is
//! written by hand over `UnixStream` and `serde_json` rather than with the `qapi` crate: `qapi`
//! compiles bindings for QEMU's whole schema (about 45 s more per clean build here), and its
//! synchronous handshake panics when QEMU closes the connection before greeting, which in a
//! `panic = "abort"` build would end `dks` without stopping QEMU or removing its files.

use std::ffi::OsString;
use std::fmt;
use std::fs::Permissions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one command may wait for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`MonitorSocket::accept`] looks for QEMU's connection.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// The chardev id QEMU's monitor uses.
const CHARDEV_ID: &str = "dks-qmp";

/// A listening socket for one QEMU's monitor, in a private folder.
#[derive(Debug)]
pub struct MonitorSocket {
    // Field order matters: the listener closes before the folder is removed.
    listener: UnixListener,
    path: PathBuf,
    dir: tempfile::TempDir,
}

impl MonitorSocket {
    /// Creates a folder only this user can open (0700, random name, under `$TMPDIR`) and a
    /// socket `qmp.sock` in it, listening.
    pub fn new() -> anyhow::Result<MonitorSocket> {
        use anyhow::Context;
        let dir = tempfile::Builder::new()
            .prefix("dks-qmp.")
            .permissions(Permissions::from_mode(0o700))
            .tempdir()
            .context("cannot create a private folder for QEMU's monitor socket")?;
        // The umask can only take permissions away; check that nobody else got any.
        let mode = std::fs::metadata(dir.path())?.permissions().mode() & 0o777;
        anyhow::ensure!(
            mode == 0o700,
            "the monitor's folder {} has mode {mode:o}, not 700",
            dir.path().display()
        );
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).with_context(|| {
            format!(
                "cannot create QEMU's monitor socket {} (a socket path must be shorter than \
                 108 bytes; set TMPDIR to a shorter folder)",
                path.display()
            )
        })?;
        listener.set_nonblocking(true)?;
        Ok(MonitorSocket {
            listener,
            path,
            dir,
        })
    }

    /// Returns the socket's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns QEMU's arguments that connect its QMP monitor to this socket.
    pub fn qemu_args(&self) -> [OsString; 4] {
        // QEMU's option syntax separates with commas; a comma in a value is written twice.
        let path = self.path.to_string_lossy().replace(',', ",,");
        [
            "-chardev".into(),
            format!("socket,id={CHARDEV_ID},path={path}").into(),
            "-mon".into(),
            format!("chardev={CHARDEV_ID},mode=control").into(),
        ]
    }

    /// Waits until QEMU connects, until `deadline` or until `give_up` returns true (checked
    /// every few milliseconds), then greets it ([`Qmp::handshake`]).
    pub fn accept(
        &self,
        deadline: Instant,
        mut give_up: impl FnMut() -> bool,
    ) -> Result<Qmp, QmpError> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).map_err(QmpError::Io)?;
                    let mut qmp = Qmp::new(stream)?;
                    qmp.handshake()?;
                    return Ok(qmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(QmpError::Io(e)),
            }
            if give_up() {
                return Err(QmpError::GaveUp);
            }
            if Instant::now() >= deadline {
                return Err(QmpError::NoConnection);
            }
            std::thread::sleep(ACCEPT_POLL);
        }
    }
}

/// What went wrong talking to QEMU's monitor.
#[derive(Debug)]
pub enum QmpError {
    /// QEMU did not connect before the deadline.
    NoConnection,
    /// The caller stopped waiting for the connection.
    GaveUp,
    /// Reading or writing the socket failed (QEMU exited, a timeout, ...).
    Io(std::io::Error),
    /// QEMU closed the connection.
    Closed,
    /// QEMU sent something that is not QMP.
    Protocol(String),
    /// QEMU refused the command: its error class and description.
    Refused {
        /// The command.
        command: String,
        /// QEMU's `error.class` and `error.desc`.
        error: String,
    },
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::NoConnection => write!(f, "QEMU did not connect to its monitor socket"),
            QmpError::GaveUp => write!(f, "stopped waiting for QEMU's monitor"),
            QmpError::Io(e) => write!(f, "the monitor connection failed: {e}"),
            QmpError::Closed => write!(f, "QEMU closed its monitor connection"),
            QmpError::Protocol(what) => write!(f, "QEMU's monitor sent {what}"),
            QmpError::Refused { command, error } => {
                write!(f, "QEMU's monitor refused {command}: {error}")
            }
        }
    }
}

impl std::error::Error for QmpError {}

/// A QMP connection, past its greeting.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    /// Wraps a connected stream; every read waits at most [`ANSWER_TIMEOUT`].
    pub fn new(stream: UnixStream) -> Result<Qmp, QmpError> {
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(QmpError::Io)?;
        let writer = stream.try_clone().map_err(QmpError::Io)?;
        Ok(Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        })
    }

    /// Reads QEMU's greeting and enters command mode (`qmp_capabilities`).
    pub fn handshake(&mut self) -> Result<(), QmpError> {
        let greeting = self.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "{greeting} instead of its greeting"
            )));
        }
        self.execute("qmp_capabilities", None).map(drop)
    }

    /// Runs `command` (with `arguments`, an object) and returns its `return` value; events
    /// that arrive before the answer are kept in [`Qmp::events`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut message = json!({ "execute": command });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(QmpError::Io)?;
        loop {
            let mut answer = self.read_message()?;
            if answer.get("event").is_some() {
                self.events.push(answer);
                continue;
            }
            if let Some(value) = answer.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = answer.get("error") {
                let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("?");
                return Err(QmpError::Refused {
                    command: command.to_owned(),
                    error: format!("{}: {}", text("class"), text("desc")),
                });
            }
            return Err(QmpError::Protocol(format!(
                "{answer} in answer to {command}"
            )));
        }
    }

    /// Runs a human monitor (HMP) command line and returns what it printed (empty when it had
    /// nothing to say, which for `mce` means it did what was asked).
    pub fn human_monitor_command(&mut self, command_line: &str) -> Result<String, QmpError> {
        let answer = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        answer
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| QmpError::Protocol(format!("{answer} as HMP output")))
    }

    /// Returns the events QEMU sent so far, in order.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(QmpError::Closed),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| QmpError::Protocol(format!("a line that is not JSON ({e}): {line}"))),
            Err(e) => Err(QmpError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests;

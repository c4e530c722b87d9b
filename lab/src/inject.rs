//! Fault injection: NMIs and machine checks sent to a running boot through QEMU's monitor.
//!
//! `dks run` and `dks compare` take `--inject-nmi` and `--inject-mce` ([`NmiSpec`],
//! [`MceSpec`], parsed strictly). A boot with a [`Plan`] gets a private monitor socket
//! ([`crate::qmp::MonitorSocket`]) and a [`Driver`]: a thread that connects to QEMU's monitor,
//! waits for the kernel's `Boot` record (before it, the kernel has no handlers to test) and
//! then injects:
//!
//! - **NMIs** with QMP `inject-nmi`, which QEMU delivers to every CPU: `COUNT` of them back to
//!   back, or `RATE/s` until the boot ends. NMIs that arrive while one is already pending on a
//!   CPU merge (the CPU latches one), so the kernel may count fewer than injected × CPUs.
//! - **Machine checks** with the HMP command `mce CPU BANK STATUS MCG_STATUS ADDR MISC`
//!   ([`MceKind::command`]), on CPU `k mod CPUs`, bank [`MCE_BANK`]. QEMU raises #MC only for an
//!   uncorrected error (the UC bit); a corrected one is only written into the bank, for the
//!   kernel to find by polling. Each error `k` gets its own address, and the next one is sent
//!   only after the kernel reported this one (a `MachineCheck` record of that CPU and bank), so
//!   every error is counted once; a report that does not come within [`Timing::report`] stops
//!   the injection and makes the boot inconsistent. `fatal` sends one uncorrectable error
//!   (processor context corrupt), after which the kernel must stop with a record.
//!
//! What was injected ([`Injected`]) and what the kernel says it handled ([`Handled`]: its last
//! `TrapStat` record and its `MachineCheck` records) make a [`Report`], which `dks run` prints
//! and `dks compare` writes into its JSON.

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dks_protocol::record::Record;
use serde::Serialize;

use crate::interrupt;
use crate::qmp::{MonitorSocket, Qmp, QmpError};

/// The most NMIs `COUNT` may ask for.
pub const MAX_NMI_COUNT: u64 = 1_000_000;
/// The highest NMI rate, per second.
pub const MAX_NMI_RATE: u32 = 10_000;
/// The most machine checks one boot may get.
pub const MAX_MCE_COUNT: u32 = 10_000;
/// The MCA bank every injected error goes to (QEMU emulates 10 banks).
pub const MCE_BANK: u32 = 1;
/// The address of injected error 0; error `k` is at `MCE_ADDRESS + k * 4096`.
pub const MCE_ADDRESS: u64 = 0x1234_0000;

/// `--inject-nmi`: how many NMIs, or how fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmiSpec {
    /// This many, back to back, from the `Boot` record on.
    Count(u64),
    /// This many per second (wall time) from the `Boot` record until the boot ends.
    Rate(u32),
}

impl NmiSpec {
    /// What `--inject-nmi` accepts.
    pub const ACCEPTED: &'static str = "COUNT (1 to 1000000 NMIs, back to back from the \
         kernel's Boot record on) or RATE/s (1/s to 10000/s, until the boot ends), e.g. 1000 \
         or 50/s";
}

impl FromStr for NmiSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || {
            format!(
                "{text:?} is not an NMI count or rate; accepted: {}",
                Self::ACCEPTED
            )
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(rate) = text.strip_suffix("/s") {
            if !digits(rate) {
                return Err(error());
            }
            return match rate.parse::<u32>() {
                Ok(rate) if (1..=MAX_NMI_RATE).contains(&rate) => Ok(NmiSpec::Rate(rate)),
                _ => Err(error()),
            };
        }
        if !digits(text) {
            return Err(error());
        }
        match text.parse::<u64>() {
            Ok(count) if (1..=MAX_NMI_COUNT).contains(&count) => Ok(NmiSpec::Count(count)),
            _ => Err(error()),
        }
    }
}

impl fmt::Display for NmiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NmiSpec::Count(count) => write!(f, "{count}"),
            NmiSpec::Rate(rate) => write!(f, "{rate}/s"),
        }
    }
}

/// The severity of an injected machine check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MceKind {
    /// Corrected: only written into the bank (no #MC); the kernel finds it by polling.
    Corrected,
    /// Uncorrected but recoverable, action optional (like a patrol-scrub error): #MC with the
    /// interrupted context valid (`RIPV`); the kernel reports it and continues.
    Recoverable,
    /// Uncorrectable, processor context corrupt (`PCC`), `RIPV` clear: the kernel must stop.
    Fatal,
}

// IA32_MCi_STATUS bits (Intel SDM Vol. 3B, "IA32_MCi_STATUS MSRs").
const MCI_VAL: u64 = 1 << 63;
const MCI_UC: u64 = 1 << 61;
const MCI_EN: u64 = 1 << 60;
const MCI_ADDRV: u64 = 1 << 58;
const MCI_PCC: u64 = 1 << 57;
const MCI_S: u64 = 1 << 56;
/// MCA error code: memory controller, generic transaction, channel not given.
const MCACOD_MEMORY: u64 = 0x008f;
/// MCA error code: memory scrubbing error, channel not given (an SRAO error).
const MCACOD_SCRUB: u64 = 0x00cf;
// IA32_MCG_STATUS bits.
const MCG_RIPV: u64 = 1 << 0;
const MCG_EIPV: u64 = 1 << 1;
const MCG_MCIP: u64 = 1 << 2;

impl MceKind {
    /// Returns the name the CLI and the kernel's records use.
    pub const fn name(self) -> &'static str {
        match self {
            MceKind::Corrected => "corrected",
            MceKind::Recoverable => "recoverable",
            MceKind::Fatal => "fatal",
        }
    }

    /// Returns `IA32_MCi_STATUS` and `IA32_MCG_STATUS` of an error of this kind.
    pub const fn status(self) -> (u64, u64) {
        match self {
            MceKind::Corrected => (MCI_VAL | MCI_EN | MCI_ADDRV | MCACOD_MEMORY, 0),
            MceKind::Recoverable => (
                MCI_VAL | MCI_UC | MCI_EN | MCI_ADDRV | MCI_S | MCACOD_SCRUB,
                MCG_MCIP | MCG_RIPV,
            ),
            MceKind::Fatal => (
                MCI_VAL | MCI_UC | MCI_EN | MCI_ADDRV | MCI_PCC | MCACOD_MEMORY,
                MCG_MCIP | MCG_EIPV,
            ),
        }
    }

    /// Returns the HMP command that injects error number `index` of this kind on `cpu`, and
    /// the error's address.
    pub fn command(self, index: u32, cpu: u32) -> (String, u64) {
        let (status, mcg_status) = self.status();
        let address = MCE_ADDRESS + u64::from(index) * 4096;
        (
            format!("mce {cpu} {MCE_BANK} {status:#x} {mcg_status:#x} {address:#x} 0"),
            address,
        )
    }
}

/// `--inject-mce`: which machine checks, how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MceSpec {
    /// Their kind.
    pub kind: MceKind,
    /// How many (1 for `fatal`).
    pub count: u32,
}

impl MceSpec {
    /// What `--inject-mce` accepts.
    pub const ACCEPTED: &'static str = "corrected:COUNT or recoverable:COUNT (COUNT 1 to \
         10000, one at a time, each after the kernel reported the previous one) or fatal (one \
         uncorrectable error), e.g. corrected:100";
}

impl FromStr for MceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || {
            format!(
                "{text:?} is not a machine-check kind and count; accepted: {}",
                Self::ACCEPTED
            )
        };
        if text == "fatal" {
            return Ok(MceSpec {
                kind: MceKind::Fatal,
                count: 1,
            });
        }
        let (kind, count) = text.split_once(':').ok_or_else(error)?;
        let kind = match kind {
            "corrected" => MceKind::Corrected,
            "recoverable" => MceKind::Recoverable,
            _ => return Err(error()),
        };
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        match count.parse::<u32>() {
            Ok(count) if (1..=MAX_MCE_COUNT).contains(&count) => Ok(MceSpec { kind, count }),
            _ => Err(error()),
        }
    }
}

impl fmt::Display for MceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MceKind::Fatal => write!(f, "fatal"),
            kind => write!(f, "{}:{}", kind.name(), self.count),
        }
    }
}

/// What to inject into one boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// NMIs, if any.
    pub nmi: Option<NmiSpec>,
    /// Machine checks, if any.
    pub mce: Option<MceSpec>,
}

impl Plan {
    /// Returns whether the plan injects anything.
    pub fn is_empty(&self) -> bool {
        self.nmi.is_none() && self.mce.is_none()
    }
}

/// How long the driver waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// For QEMU to connect to the monitor socket.
    pub connect: Duration,
    /// For the kernel's report of a corrected or recoverable machine check.
    pub report: Duration,
    /// Between a report and the next machine check (the kernel may still be leaving its
    /// handler when its record arrives).
    pub after_report: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect: Duration::from_secs(60),
            report: Duration::from_secs(30),
            after_report: Duration::from_millis(10),
        }
    }
}

/// What the driver injected into one boot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Injected {
    /// NMIs QEMU accepted (`inject-nmi` answered).
    pub nmis: u64,
    /// Machine checks QEMU acted on.
    pub machine_checks: u64,
    /// Of those, the ones the kernel reported with a `MachineCheck` record of their CPU and
    /// bank before the next was sent (always `machine_checks` or one less when the boot ended
    /// in between, unless injection stopped).
    pub machine_checks_reported: u64,
    /// Why the injection stopped short because of the kernel (a machine check not reported in
    /// time, QEMU refusing one because of the guest's settings): the boot cannot count as a
    /// success then.
    pub shortfall: Option<String>,
    /// Things worth knowing that change no verdict (the boot ended before all NMIs were sent,
    /// what QEMU said about an injection).
    pub notes: Vec<String>,
}

/// What the kernel says it handled, from its records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Handled {
    /// NMIs handled, all CPUs (the last `TrapStat`); `None` without a `TrapStat` record.
    pub nmis: Option<u64>,
    /// Of those, NMIs that interrupted another trap handler.
    pub nmis_nested: Option<u64>,
    /// #MC exceptions taken (the last `TrapStat`).
    pub machine_check_exceptions: Option<u64>,
    /// `MachineCheck` records, by severity.
    pub mce_corrected: u64,
    /// See [`Handled::mce_corrected`].
    pub mce_recoverable: u64,
    /// See [`Handled::mce_corrected`].
    pub mce_fatal: u64,
}

impl Handled {
    /// Reads what the kernel handled from a boot's records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record<'static>>) -> Handled {
        let mut handled = Handled::default();
        for record in records {
            match record {
                Record::TrapStat(stat) => {
                    handled.nmis = Some(stat.nmis);
                    handled.nmis_nested = Some(stat.nmis_nested);
                    handled.machine_check_exceptions = Some(stat.machine_check_exceptions);
                }
                Record::MachineCheck(mc) => match mc.severity.as_ref() {
                    "corrected" => handled.mce_corrected += 1,
                    "recoverable" => handled.mce_recoverable += 1,
                    _ => handled.mce_fatal += 1,
                },
                _ => {}
            }
        }
        handled
    }

    /// `MachineCheck` records of `kind`.
    pub fn machine_checks(&self, kind: MceKind) -> u64 {
        match kind {
            MceKind::Corrected => self.mce_corrected,
            MceKind::Recoverable => self.mce_recoverable,
            MceKind::Fatal => self.mce_fatal,
        }
    }
}

/// Injection into one boot: the plan, what was injected, what the kernel handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What was asked.
    pub plan: Plan,
    /// CPUs the kernel reported in its `Boot` record.
    pub cpus: Option<u32>,
    /// What the driver did.
    pub injected: Injected,
    /// What the kernel reported.
    pub handled: Handled,
}

impl Report {
    /// One line per kind of injection, for `dks run`'s output.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(nmi) = self.plan.nmi {
            let handled = match self.handled.nmis {
                Some(n) => format!(
                    "the kernel handled {n} ({} nested; each NMI reaches every one of {} CPU(s))",
                    self.handled.nmis_nested.unwrap_or(0),
                    self.cpus.map_or("?".into(), |c| c.to_string())
                ),
                None => "the kernel printed no TrapStat record".into(),
            };
            lines.push(format!(
                "injected {} NMI(s) (asked: {nmi}); {handled}",
                self.injected.nmis
            ));
        }
        if let Some(mce) = self.plan.mce {
            lines.push(format!(
                "injected {} {} machine check(s) (asked: {mce}); the kernel reported {} \
                 (MachineCheck records of that severity)",
                self.injected.machine_checks,
                mce.kind.name(),
                self.handled.machine_checks(mce.kind),
            ));
        }
        if let Some(shortfall) = &self.injected.shortfall {
            lines.push(format!("injection stopped short: {shortfall}"));
        }
        lines.extend(
            self.injected
                .notes
                .iter()
                .map(|n| format!("injection: {n}")),
        );
        lines
    }
}

/// What the boot loop tells the driver.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// The kernel is up, with this many CPUs.
    Boot { cpus: u32 },
    /// The kernel reported a machine check in this CPU's bank.
    MachineCheck { cpu: u32, bank: u32 },
}

/// The thread that injects into one boot.
#[derive(Debug)]
pub struct Driver {
    events: Option<Sender<Event>>,
    failure: Arc<Mutex<Option<String>>>,
    handle: Option<JoinHandle<Injected>>,
}

impl Driver {
    /// Starts injecting `plan` through `socket` (to which QEMU is about to connect).
    pub fn start(plan: Plan, socket: MonitorSocket, timing: Timing) -> std::io::Result<Driver> {
        let (events, inbox) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&failure);
        let handle = std::thread::Builder::new()
            .name("dks-inject".into())
            .spawn(move || {
                let mut run = Run {
                    plan,
                    timing,
                    inbox: Inbox::new(inbox),
                    injected: Injected::default(),
                    failure: failed,
                };
                run.drive(&socket);
                // The socket's folder goes when `socket` is dropped here.
                run.injected
            })?;
        Ok(Driver {
            events: Some(events),
            failure,
            handle: Some(handle),
        })
    }

    /// Passes on the records the driver waits for (`Boot`, `MachineCheck`).
    pub fn notify(&self, record: &Record<'_>) {
        let event = match record {
            Record::Boot(boot) => Event::Boot { cpus: boot.cpus },
            Record::MachineCheck(mc) => Event::MachineCheck {
                cpu: mc.cpu,
                bank: mc.bank,
            },
            _ => return,
        };
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Returns why injection cannot go on (a host problem: no monitor connection, a refused
    /// command); the boot should then be stopped.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Tells the driver the boot is over and returns what it injected.
    pub fn finish(mut self) -> Injected {
        self.stop().unwrap_or_default()
    }

    fn stop(&mut self) -> Option<Injected> {
        self.events = None;
        self.handle.take().and_then(|h| h.join().ok())
    }
}

impl Drop for Driver {
    /// Stops the thread and waits for it, so its socket folder is gone when this returns.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The driver's view of the boot: the events so far.
struct Inbox {
    receiver: Receiver<Event>,
    cpus: Option<u32>,
    reports: Vec<(u32, u32)>,
    closed: bool,
}

impl Inbox {
    fn new(receiver: Receiver<Event>) -> Inbox {
        Inbox {
            receiver,
            cpus: None,
            reports: Vec::new(),
            closed: false,
        }
    }

    /// Takes in every event, waiting up to `wait` for the first.
    fn poll(&mut self, wait: Duration) {
        let first = if wait.is_zero() {
            self.receiver
                .try_recv()
                .map_err(|e| e == TryRecvError::Disconnected)
        } else {
            self.receiver
                .recv_timeout(wait)
                .map_err(|e| e == RecvTimeoutError::Disconnected)
        };
        let mut next = first;
        loop {
            match next {
                Ok(Event::Boot { cpus }) => self.cpus = Some(cpus.max(1)),
                Ok(Event::MachineCheck { cpu, bank }) => self.reports.push((cpu, bank)),
                Err(disconnected) => {
                    self.closed |= disconnected;
                    return;
                }
            }
            next = self
                .receiver
                .try_recv()
                .map_err(|e| e == TryRecvError::Disconnected);
        }
    }

    /// Takes the first report of `cpu`'s bank, if one came.
    fn take_report(&mut self, cpu: u32, bank: u32) -> bool {
        match self.reports.iter().position(|r| *r == (cpu, bank)) {
            Some(at) => {
                self.reports.remove(at);
                true
            }
            None => false,
        }
    }
}

/// Whether `error` is the monitor connection ending (QEMU exited), not a refusal or a slow
/// answer.
fn connection_ended(error: &QmpError) -> bool {
    match error {
        QmpError::Closed => true,
        QmpError::Io(e) => io_ended(e),
        _ => false,
    }
}

/// Whether a socket error is the connection ending rather than a slow answer.
fn io_ended(error: &std::io::Error) -> bool {
    !matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Where the machine-check injection stands.
#[derive(Clone, Copy, Debug)]
enum MceState {
    /// Error `index` may be sent from `at` on.
    Ready { index: u32, at: Instant },
    /// Error `index` was sent to `cpu`; its report is due by `deadline`.
    Waiting {
        index: u32,
        cpu: u32,
        deadline: Instant,
    },
    /// Nothing more to send.
    Done,
}

/// How long the loop sleeps at most between looks at its clock and inbox.
const SLICE: Duration = Duration::from_millis(20);

struct Run {
    plan: Plan,
    timing: Timing,
    inbox: Inbox,
    injected: Injected,
    failure: Arc<Mutex<Option<String>>>,
}

impl Run {
    fn fail(&mut self, problem: String) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(problem);
        }
    }

    /// A failed monitor command: the end of the boot (QEMU closed the connection) or a host
    /// problem.
    fn command_failed(&mut self, what: &str, error: QmpError) {
        match error {
            QmpError::Closed => self.injected.notes.push(format!(
                "QEMU closed its monitor while {what} was being sent (the boot ended)"
            )),
            QmpError::Io(e) if io_ended(&e) => self.injected.notes.push(format!(
                "the monitor connection ended while {what} was being sent ({e})"
            )),
            error => self.fail(format!("cannot send {what}: {error}")),
        }
    }

    /// A fatal machine check stops the kernel, and QEMU may exit before it answers the
    /// command: the connection then ends with the command sent. Whether it arrived is what
    /// the kernel says: its record of that CPU's bank, read until the console closes (at most
    /// the report timeout), counts it as injected and reported.
    fn fatal_unanswered(&mut self, cpu: u32, what: &str) {
        let deadline = Instant::now() + self.timing.report;
        while !self.inbox.take_report(cpu, MCE_BANK) {
            if self.inbox.closed || Instant::now() >= deadline {
                return;
            }
            self.inbox.poll(SLICE);
        }
        self.injected.machine_checks += 1;
        self.injected.machine_checks_reported += 1;
        self.injected.notes.push(format!(
            "QEMU exited before answering {what}: the kernel reported it and stopped"
        ));
    }

    fn stopped(&self) -> bool {
        self.inbox.closed || interrupt::pending().is_some()
    }

    fn drive(&mut self, socket: &MonitorSocket) {
        let deadline = Instant::now() + self.timing.connect;
        let mut qmp = {
            let inbox = &mut self.inbox;
            match socket.accept(deadline, || {
                inbox.poll(Duration::ZERO);
                inbox.closed || interrupt::pending().is_some()
            }) {
                Ok(qmp) => qmp,
                Err(QmpError::GaveUp) => return,
                Err(error) => {
                    let problem = format!(
                        "{error} within {} s; nothing was injected",
                        self.timing.connect.as_secs()
                    );
                    return self.fail(problem);
                }
            }
        };
        let cpus = loop {
            if let Some(cpus) = self.inbox.cpus {
                break cpus;
            }
            if self.stopped() {
                self.injected
                    .notes
                    .push("the kernel printed no Boot record; nothing was injected".into());
                return;
            }
            self.inbox.poll(SLICE);
        };
        self.inject(&mut qmp, cpus);
    }

    fn inject(&mut self, qmp: &mut Qmp, cpus: u32) {
        let start = Instant::now();
        let mut nmi_due = self.plan.nmi.map(|_| start);
        let mut mce = match self.plan.mce {
            Some(_) => MceState::Ready {
                index: 0,
                at: start,
            },
            None => MceState::Done,
        };
        loop {
            if self.stopped() || self.failure().is_some() {
                break;
            }
            let now = Instant::now();
            if let (Some(due), Some(spec)) = (nmi_due, self.plan.nmi)
                && now >= due
            {
                match qmp.execute("inject-nmi", None) {
                    Ok(_) => self.injected.nmis += 1,
                    Err(error) => {
                        self.command_failed("an NMI", error);
                        break;
                    }
                }
                nmi_due = match spec {
                    NmiSpec::Count(count) if self.injected.nmis >= count => None,
                    NmiSpec::Count(_) => Some(now),
                    NmiSpec::Rate(rate) => Some(
                        start
                            + Duration::from_secs_f64(self.injected.nmis as f64 / f64::from(rate)),
                    ),
                };
            }
            mce = match self.machine_checks(qmp, mce, cpus, now) {
                Some(state) => state,
                None => break,
            };
            if nmi_due.is_none() && matches!(mce, MceState::Done) {
                break;
            }
            let next = [
                nmi_due,
                match mce {
                    MceState::Ready { at, .. } => Some(at),
                    _ => None,
                },
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = next.map_or(SLICE, |at| {
                at.saturating_duration_since(Instant::now()).min(SLICE)
            });
            self.inbox.poll(wait);
        }
        // A report that came with the end of the boot still counts.
        self.inbox.poll(Duration::ZERO);
        if let MceState::Waiting { index, cpu, .. } = mce
            && self.inbox.take_report(cpu, MCE_BANK)
        {
            self.injected.machine_checks_reported += 1;
            mce = match self.plan.mce {
                Some(spec) if index + 1 < spec.count => MceState::Ready {
                    index: index + 1,
                    at: Instant::now(),
                },
                _ => MceState::Done,
            };
        }
        if let Some(NmiSpec::Count(count)) = self.plan.nmi
            && self.injected.nmis < count
            && self.inbox.closed
        {
            self.injected.notes.push(format!(
                "the boot ended after {} of {count} NMIs",
                self.injected.nmis
            ));
        }
        if let (Some(spec), MceState::Ready { index, .. } | MceState::Waiting { index, .. }) =
            (self.plan.mce, mce)
            && self.injected.shortfall.is_none()
            && self.inbox.closed
        {
            self.injected.notes.push(format!(
                "the boot ended with machine check {} of {} {}",
                index + 1,
                spec.count,
                if matches!(mce, MceState::Waiting { .. }) {
                    "sent but not yet reported"
                } else {
                    "not yet sent"
                }
            ));
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Advances the machine-check injection; `None` when the loop must stop.
    fn machine_checks(
        &mut self,
        qmp: &mut Qmp,
        state: MceState,
        cpus: u32,
        now: Instant,
    ) -> Option<MceState> {
        let Some(spec) = self.plan.mce else {
            return Some(MceState::Done);
        };
        match state {
            MceState::Done => Some(MceState::Done),
            MceState::Ready { at, .. } if now < at => Some(state),
            MceState::Ready { index, .. } => {
                let cpu = index % cpus;
                let (command, address) = spec.kind.command(index, cpu);
                let what = format!(
                    "{} machine check {} of {} (cpu {cpu}, bank {MCE_BANK}, address {address:#x})",
                    spec.kind.name(),
                    index + 1,
                    spec.count
                );
                let said = match qmp.human_monitor_command(&command) {
                    Ok(said) => said,
                    Err(error) => {
                        let ended = connection_ended(&error);
                        self.command_failed(&what, error);
                        if spec.kind == MceKind::Fatal && ended {
                            self.fatal_unanswered(cpu, &what);
                        }
                        return None;
                    }
                };
                let said = said.trim();
                if said.contains("Invalid") || said.contains("invalid") {
                    self.fail(format!("QEMU refused {what} ({command}): {said}"));
                    return None;
                }
                if !said.is_empty() && !said.contains("triple fault") {
                    self.injected.shortfall = Some(format!(
                        "QEMU did not inject {what}: {said} (the guest's MCA settings refuse it)"
                    ));
                    return Some(MceState::Done);
                }
                self.injected.machine_checks += 1;
                if !said.is_empty() {
                    self.injected.notes.push(format!("QEMU, on {what}: {said}"));
                }
                if spec.kind == MceKind::Fatal {
                    return Some(MceState::Done);
                }
                Some(MceState::Waiting {
                    index,
                    cpu,
                    deadline: now + self.timing.report,
                })
            }
            MceState::Waiting {
                index,
                cpu,
                deadline,
            } => {
                if self.inbox.take_report(cpu, MCE_BANK) {
                    self.injected.machine_checks_reported += 1;
                    if index + 1 >= spec.count {
                        return Some(MceState::Done);
                    }
                    return Some(MceState::Ready {
                        index: index + 1,
                        at: now + self.timing.after_report,
                    });
                }
                if now >= deadline {
                    self.injected.shortfall = Some(format!(
                        "the kernel did not report {} machine check {} of {} (cpu {cpu}, bank \
                         {MCE_BANK}) within {} s",
                        spec.kind.name(),
                        index + 1,
                        spec.count,
                        self.timing.report.as_secs_f64()
                    ));
                    return Some(MceState::Done);
                }
                Some(state)
            }
        }
    }
}

#[cfg(test)]
mod tests;

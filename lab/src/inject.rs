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

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dks_protocol::record::Record;

use crate::interrupt;
use crate::qmp::{MonitorSocket, Qmp, QmpError};

mod report;
mod spec;

pub use self::report::{Handled, Injected, Report};
pub use self::spec::*;

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

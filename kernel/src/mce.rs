//! Machine checks: what an error in an MCA bank means, what is reported, and how records get
//! out of a context that may not wait for the console.
//!
//! Two paths find errors, as Linux's `do_machine_check` and `machine_check_poll` do:
//! - the #MC handler ([`on_exception`], on the #MC IST stack) reads `IA32_MCG_STATUS` and every
//!   bank holding an *uncorrected* error (UC set) and classifies each: UC with PCC clear and
//!   `MCG_STATUS.RIPV` set is `recoverable` (the interrupted code can resume: the run goes
//!   on); anything else, or no restart point (RIPV clear), is `fatal`: the kernel stops with
//!   the records and `ExitCode::Exception`. It clears the banks it consumed and MCIP before it
//!   returns;
//! - the poller ([`poll`], from every CPU's timer tick) finds *corrected* errors (UC clear),
//!   for which the CPU raises no #MC (QEMU's `mce` only writes the bank), and clears them.
//!
//! Neither may wait for the console (the #MC may have interrupted a CPU that holds it), so
//! each error goes into a per-CPU lock-free ring ([`Ring`]) and is printed later from normal
//! context by [`drain`]: by the `mce-log` thread, which the next timer tick on any CPU wakes
//! when something was queued (as Linux logs machine checks from a work item), and by the
//! `vmstat` report and the workload sampler. A fatal error prints directly with
//! `report::emit_forced` and stops the kernel.

use alloc::borrow::Cow;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dks_protocol::record::{MachineCheck, Record};

use crate::hw::cpu::{self, MAX_CPUS};
use crate::hw::mce as hw;
use crate::hw::trap::TrapFrame;
use crate::report;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions};
use crate::stacks::Policy;
use dks_protocol::exit::ExitCode;

/// Bits of `MCi_STATUS`.
pub mod status {
    /// The bank holds an error.
    pub const VAL: u64 = 1 << 63;
    /// Uncorrected.
    pub const UC: u64 = 1 << 61;
    /// Reporting was enabled.
    pub const EN: u64 = 1 << 60;
    /// `MCi_MISC` holds information.
    pub const MISCV: u64 = 1 << 59;
    /// `MCi_ADDR` holds an address.
    pub const ADDRV: u64 = 1 << 58;
    /// Processor context corrupt: the state cannot be trusted.
    pub const PCC: u64 = 1 << 57;
    /// Signaled (raised #MC).
    pub const S: u64 = 1 << 56;
}

/// Bits of `IA32_MCG_STATUS`.
pub mod global {
    /// Restart IP valid: the interrupted program can resume.
    pub const RIPV: u64 = 1 << 0;
    /// Machine check in progress.
    pub const MCIP: u64 = 1 << 2;
}

/// What an error means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Corrected by the hardware (UC clear): reported, nothing else to do.
    Corrected,
    /// Uncorrected, but the processor context is intact (PCC clear) and the interrupted code
    /// can restart (RIPV): reported, the run continues.
    Recoverable,
    /// Anything else: the kernel stops.
    Fatal,
}

impl Severity {
    /// The word records use.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Corrected => "corrected",
            Severity::Recoverable => "recoverable",
            Severity::Fatal => "fatal",
        }
    }
}

/// Classifies a valid error from its bank status and `IA32_MCG_STATUS`.
pub fn classify(bank_status: u64, global_status: u64) -> Severity {
    if bank_status & status::UC == 0 {
        Severity::Corrected
    } else if bank_status & status::PCC == 0 && global_status & global::RIPV != 0 {
        Severity::Recoverable
    } else {
        Severity::Fatal
    }
}

/// How an error was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum FoundBy {
    Exception = 0,
    Poll = 1,
}

/// One error, as queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// The CPU whose bank held it.
    pub cpu: u32,
    /// The bank.
    pub bank: u32,
    /// `MCi_STATUS`.
    pub status: u64,
    /// `MCi_ADDR` if ADDRV, else 0.
    pub address: u64,
    /// `MCi_MISC` if MISCV, else 0.
    pub misc: u64,
    /// `IA32_MCG_STATUS` (0 when found by polling).
    pub global_status: u64,
    /// The classification.
    pub severity: Severity,
    /// True when found by the #MC handler, false when polled.
    pub signaled: bool,
}

impl Error {
    fn record(&self) -> Record<'static> {
        Record::MachineCheck(MachineCheck {
            cpu: self.cpu,
            bank: self.bank,
            status: self.status,
            address: self.address,
            misc: self.misc,
            mcg_status: self.global_status,
            severity: Cow::Borrowed(self.severity.name()),
            found_by: Cow::Borrowed(if self.signaled { "exception" } else { "poll" }),
        })
    }

    fn from_bank(bank: u32, registers: hw::Bank, global_status: u64, by: FoundBy) -> Error {
        let valid = |bit: u64, value: u64| {
            if registers.status & bit != 0 {
                value
            } else {
                0
            }
        };
        Error {
            cpu: cpu::id_hint(),
            bank,
            status: registers.status,
            address: valid(status::ADDRV, registers.address),
            misc: valid(status::MISCV, registers.misc),
            global_status,
            severity: classify(registers.status, global_status),
            signaled: by == FoundBy::Exception,
        }
    }
}

/// Slots per CPU ring.
const RING_SLOTS: usize = 32;

/// A bounded ring of errors that producers in #MC and timer context fill without a lock (the
/// two may nest on one CPU: a #MC can interrupt the poller) and one consumer at a time, in
/// normal context, empties. A producer reserves a sequence number with a compare-and-swap on
/// `head` (after checking that the ring has room), writes the slot, then publishes it by
/// storing the sequence number + 1 in the slot's `ready`; the consumer takes slots in order
/// while they are published and then advances `tail`, which gives them back. A full ring
/// drops the error and counts it in `lost`.
struct Ring {
    head: AtomicU64,
    tail: AtomicU64,
    lost: AtomicU64,
    slots: [Slot; RING_SLOTS],
}

struct Slot {
    ready: AtomicU64,
    /// cpu (bits 0..16), bank (16..32), severity (32..40), found by #MC (40).
    tag: AtomicU64,
    status: AtomicU64,
    address: AtomicU64,
    misc: AtomicU64,
    global_status: AtomicU64,
}

impl Ring {
    const fn new() -> Ring {
        Ring {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            slots: [const {
                Slot {
                    ready: AtomicU64::new(0),
                    tag: AtomicU64::new(0),
                    status: AtomicU64::new(0),
                    address: AtomicU64::new(0),
                    misc: AtomicU64::new(0),
                    global_status: AtomicU64::new(0),
                }
            }; RING_SLOTS],
        }
    }

    fn push(&self, error: &Error) {
        let sequence = loop {
            let head = self.head.load(Ordering::Acquire);
            if head - self.tail.load(Ordering::Acquire) >= RING_SLOTS as u64 {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if self
                .head
                .compare_exchange(head, head + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break head;
            }
        };
        let slot = &self.slots[sequence as usize % RING_SLOTS];
        let severity = match error.severity {
            Severity::Corrected => 0u64,
            Severity::Recoverable => 1,
            Severity::Fatal => 2,
        };
        let tag = u64::from(error.cpu & 0xffff)
            | (u64::from(error.bank & 0xffff) << 16)
            | (severity << 32)
            | (u64::from(error.signaled) << 40);
        slot.tag.store(tag, Ordering::Relaxed);
        slot.status.store(error.status, Ordering::Relaxed);
        slot.address.store(error.address, Ordering::Relaxed);
        slot.misc.store(error.misc, Ordering::Relaxed);
        slot.global_status
            .store(error.global_status, Ordering::Relaxed);
        slot.ready.store(sequence + 1, Ordering::Release);
        QUEUED.store(true, Ordering::Release);
    }

    /// Takes the next published error, if any. One consumer at a time (see [`drain`]).
    fn pop(&self) -> Option<Error> {
        let tail = self.tail.load(Ordering::Acquire);
        let slot = &self.slots[tail as usize % RING_SLOTS];
        if slot.ready.load(Ordering::Acquire) != tail + 1 {
            return None;
        }
        let tag = slot.tag.load(Ordering::Relaxed);
        let error = Error {
            cpu: (tag & 0xffff) as u32,
            bank: ((tag >> 16) & 0xffff) as u32,
            status: slot.status.load(Ordering::Relaxed),
            address: slot.address.load(Ordering::Relaxed),
            misc: slot.misc.load(Ordering::Relaxed),
            global_status: slot.global_status.load(Ordering::Relaxed),
            severity: match (tag >> 32) & 0xff {
                0 => Severity::Corrected,
                1 => Severity::Recoverable,
                _ => Severity::Fatal,
            },
            signaled: tag & (1 << 40) != 0,
        };
        self.tail.store(tail + 1, Ordering::Release);
        Some(error)
    }
}

static RINGS: [Ring; MAX_CPUS] = [const { Ring::new() }; MAX_CPUS];
/// Held by the one consumer of the rings (taken without waiting: see [`Consumer`]).
static CONSUMING: AtomicBool = AtomicBool::new(false);

/// The right to take errors from the rings, released when dropped.
struct Consumer;

impl Consumer {
    /// Takes the right if nobody holds it.
    fn try_take() -> Option<Consumer> {
        (!CONSUMING.swap(true, Ordering::Acquire)).then_some(Consumer)
    }

    /// Waits for the right (normal context only).
    fn take() -> Consumer {
        loop {
            if let Some(consumer) = Consumer::try_take() {
                return consumer;
            }
            cpu::relax();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        CONSUMING.store(false, Ordering::Release);
    }
}

/// Set when an error is queued; the timer tick then wakes the logger.
static QUEUED: AtomicBool = AtomicBool::new(false);
/// Where the logger waits.
static LOGGER: WaitQueue = WaitQueue::new();
/// Set while a test inspects the queued errors itself (see [`HeldLogger`]).
static LOGGER_HELD: AtomicBool = AtomicBool::new(false);

/// Keeps the logger from printing queued errors while it lives, so that a test can take them
/// with [`take_queued`]; the logger resumes when it is dropped.
#[derive(Debug)]
#[must_use = "the logger resumes as soon as this is dropped"]
pub struct HeldLogger;

impl HeldLogger {
    /// Holds the logger back.
    pub fn new() -> HeldLogger {
        LOGGER_HELD.store(true, Ordering::Release);
        HeldLogger
    }
}

impl Drop for HeldLogger {
    fn drop(&mut self) {
        LOGGER_HELD.store(false, Ordering::Release);
        LOGGER.wake_one();
    }
}

/// Starts the `mce-log` thread (static stack, kernel's own), which prints queued errors soon
/// after they are found.
pub fn start_logger() {
    let options = SpawnOptions {
        policy: Policy::Static,
        system: true,
        ..SpawnOptions::default()
    };
    sched::spawn("mce-log", options, || {
        loop {
            LOGGER.wait_until(|| {
                QUEUED.load(Ordering::Acquire) && !LOGGER_HELD.load(Ordering::Acquire)
            });
            QUEUED.store(false, Ordering::Release);
            drain();
        }
    })
    .expect("memory for the mce-log thread");
}

/// From the timer tick: wakes the logger if an error was queued since it last looked.
pub fn wake_logger() {
    if QUEUED.load(Ordering::Relaxed) {
        LOGGER.wake_one();
    }
}

/// #MC exceptions taken, all CPUs.
pub static EXCEPTIONS: AtomicU64 = AtomicU64::new(0);
/// Errors reported as corrected.
pub static CORRECTED: AtomicU64 = AtomicU64::new(0);
/// Errors reported as recoverable.
pub static RECOVERABLE: AtomicU64 = AtomicU64::new(0);

fn count(severity: Severity) {
    match severity {
        Severity::Corrected => CORRECTED.fetch_add(1, Ordering::Relaxed),
        Severity::Recoverable => RECOVERABLE.fetch_add(1, Ordering::Relaxed),
        Severity::Fatal => 0,
    };
}

/// Sets up machine checks on this CPU (CR4.MCE, every bank enabled and cleared).
pub fn init_this_cpu() {
    hw::init_this_cpu();
}

/// The #MC handler, on the #MC IST stack with interrupts off. Returns when the run can go on;
/// otherwise reports and stops the kernel. Takes no lock, allocates nothing.
pub fn on_exception(frame: &TrapFrame) {
    EXCEPTIONS.fetch_add(1, Ordering::Relaxed);
    let global_status = hw::global_status();
    let mut fatal: [Option<Error>; 4] = [None; 4];
    let mut fatal_count = 0;
    for bank in 0..hw::bank_count() {
        let registers = hw::read(bank);
        // Corrected errors are the poller's (Linux leaves them to `machine_check_poll` too).
        if registers.status & status::VAL == 0 || registers.status & status::UC == 0 {
            continue;
        }
        let error = Error::from_bank(bank, registers, global_status, FoundBy::Exception);
        if error.severity == Severity::Fatal {
            if let Some(slot) = fatal.get_mut(fatal_count) {
                *slot = Some(error);
            }
            fatal_count += 1;
            continue;
        }
        count(error.severity);
        RINGS[error.cpu as usize].push(&error);
        hw::clear(bank);
    }
    if fatal_count == 0 && global_status & global::RIPV != 0 {
        hw::clear_global_status();
        return;
    }
    // Fatal: whatever is queued, then the fatal errors, then the end.
    drain_with(report::emit_forced);
    for error in fatal.iter().flatten() {
        report::emit_forced(&error.record());
    }
    if fatal_count == 0 {
        // No bank to blame and no restart point: the frame is all there is to report.
        crate::trap::report_exception_forced(frame, 0);
    }
    report::exit_forced(ExitCode::Exception, "fatal machine check")
}

/// Looks for corrected errors in this CPU's banks (timer context, interrupts off) and queues
/// them; the banks are cleared.
pub fn poll() {
    for bank in 0..hw::bank_count() {
        let status = hw::status(bank);
        if status & status::VAL == 0 || status & status::UC != 0 {
            continue;
        }
        let error = Error::from_bank(bank, hw::read(bank), 0, FoundBy::Poll);
        hw::clear(bank);
        count(error.severity);
        RINGS[error.cpu as usize].push(&error);
    }
}

/// Prints every queued error as a `MachineCheck` record (normal context).
pub fn drain() {
    drain_with(report::emit);
}

fn drain_with(emit: fn(&Record<'_>)) {
    // One consumer at a time; from #MC context, skip rather than wait.
    let Some(_consumer) = Consumer::try_take() else {
        return;
    };
    for ring in &RINGS {
        while let Some(error) = ring.pop() {
            emit(&error.record());
        }
        let lost = ring.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            emit(&Record::Log(dks_protocol::record::Log {
                text: Cow::Borrowed("machine-check records lost: a per-CPU queue was full"),
            }));
        }
    }
}

/// Takes every queued error (normal context; for tests, which check them instead of printing).
pub fn take_queued(mut each: impl FnMut(Error)) {
    let _consumer = Consumer::take();
    for ring in &RINGS {
        while let Some(error) = ring.pop() {
            each(error);
        }
    }
}

/// The bank tests stage errors in.
pub const TEST_BANK: u32 = 1;

/// A recoverable error as QEMU's `mce` injects an SRAO one: VAL, UC, EN, MISCV, ADDRV, S, and
/// the MCA code of a memory scrubbing error.
pub const SRAO_STATUS: u64 =
    status::VAL | status::UC | status::EN | status::MISCV | status::ADDRV | status::S | 0xc0;

/// For tests: stages a recoverable error in [`TEST_BANK`] and runs the #MC handler now.
pub fn raise_staged_recoverable() {
    hw::stage(TEST_BANK, SRAO_STATUS, global::RIPV | global::MCIP);
    hw::raise();
}

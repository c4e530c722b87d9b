//! Machine checks: what an error in an MCA bank means, what is reported, and how records get
//! out of a context that may not wait for the console.
//!
//! Two paths find errors, as Linux's `do_machine_check` and `machine_check_poll` do, and
//! each error belongs to exactly one of them ([`found_by`]), so that they never race for it:
//! - the poller ([`poll`], from every CPU's timer tick) owns *corrected* errors (UC clear),
//!   for which the CPU raises no #MC (QEMU's `mce` only writes the bank), and, on a CPU with
//!   software error recovery (`MCG_SER_P`), *uncorrected no-action* errors (UCNA: UC set, PCC,
//!   S and AR clear), which the hardware signals like corrected ones (Intel SDM Vol. 3B,
//!   15.10.4.2). It reports a bank only if the bank did not change while it read it (a #MC
//!   may take the bank over meanwhile), then clears it;
//! - the #MC handler ([`on_exception`], on the #MC IST stack) owns every other valid error
//!   and classifies it ([`classify`]) by the SDM's error-recovery handler (15.6.2, Table 15-6,
//!   and 15.10.4.1) for a kernel that implements no error-specific recovery action: an
//!   action-optional error (SRAO) and a bank that was not enabled (a spurious log) are
//!   `recoverable`; processor context corrupt (PCC), action required (SRAR), S clear with AR
//!   set, and any uncorrected error on a CPU without software error recovery are `fatal`.
//!   The run goes on only if no error is fatal and `IA32_MCG_STATUS` has MCIP (the #MC was
//!   raised by the machine-check architecture, not by `int 18` or a stray vector 18) and RIPV
//!   (the interrupted code can resume) ([`stop_reason`]); then the handler clears the banks it
//!   consumed and MCIP and returns. Otherwise it prints every record and stops the kernel
//!   with `ExitCode::Exception`.
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

use crate::hw::cpu_ops::{self, MAX_CPUS};
use crate::hw::mca_regs as hw;
use crate::hw::trap_entry::TrapFrame;
use crate::report;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions};
use crate::stacks::Policy;
use dks_protocol::exit::ExitCode;

/// Bits of `MCi_STATUS`.
pub mod status {
    /// The bank holds an error.
    pub const VAL: u64 = 1 << 63;
    /// Overflow: a further error was detected while this one was held.
    pub const OVER: u64 = 1 << 62;
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
    /// Signaled: the error raised a #MC (defined with `MCG_SER_P`).
    pub const S: u64 = 1 << 56;
    /// Action required: software must recover before this CPU runs anything else (defined
    /// with `MCG_SER_P`).
    pub const AR: u64 = 1 << 55;
}

/// Bits of `IA32_MCG_STATUS`.
pub mod global {
    /// Restart IP valid: the interrupted program can resume.
    pub const RIPV: u64 = 1 << 0;
    /// Error IP valid: the interrupted instruction is the one the error is about.
    pub const EIPV: u64 = 1 << 1;
    /// Machine check in progress.
    pub const MCIP: u64 = 1 << 2;
}

/// What an error means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Corrected by the hardware (UC clear): reported, nothing else to do.
    Corrected,
    /// Uncorrected, but nothing needs to be done before the interrupted code resumes: an
    /// action-optional error (SRAO), an uncorrected no-action error (UCNA), or a bank whose
    /// reporting was not enabled (not the source of the #MC). Reported, the run continues.
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

fn set(value: u64, bits: u64) -> bool {
    value & bits != 0
}

/// Which path takes the valid error with `bank_status` out of its bank (see the module docs):
/// `Poll` for corrected errors and, with software error recovery (`ser`), uncorrected
/// no-action ones; `Exception` for the rest.
pub fn found_by(bank_status: u64, ser: bool) -> FoundBy {
    let uncorrected = set(bank_status, status::UC);
    let no_action = uncorrected && !set(bank_status, status::PCC | status::S | status::AR) && ser;
    if !uncorrected || no_action {
        FoundBy::Poll
    } else {
        FoundBy::Exception
    }
}

/// Classifies a valid error from its bank status, by the SDM's error-recovery handler
/// (Vol. 3B, 15.10.4.1), for a kernel that implements no error-specific recovery action.
/// `ser`: the CPU supports software error recovery (`MCG_SER_P`), so S and AR are defined.
pub fn classify(bank_status: u64, ser: bool) -> Severity {
    let has = |bits| set(bank_status, bits);
    if !has(status::UC) {
        return Severity::Corrected;
    }
    if !ser {
        // Without the recovery architecture nothing says an uncorrected error is harmless.
        return Severity::Fatal;
    }
    if !has(status::EN) && !has(status::OVER) {
        // Reporting was not enabled for it: a spurious log, not the source of the #MC.
        return Severity::Recoverable;
    }
    if has(status::PCC) {
        return Severity::Fatal;
    }
    match (has(status::S), has(status::AR)) {
        // Uncorrected, no action required (the poller's).
        (false, false) => Severity::Recoverable,
        // Illegal.
        (false, true) => Severity::Fatal,
        // Action required (SRAR): the action is specific to the error code and this kernel
        // implements none (with OVER, an action-required error may even have been lost).
        (true, true) => Severity::Fatal,
        // Action optional (SRAO): the action may be skipped, the interrupted code resumes.
        (true, false) => Severity::Recoverable,
    }
}

/// Why a machine check with `IA32_MCG_STATUS` = `global_status` stops the kernel, or `None`
/// when the interrupted code resumes. `fatal_error`: a bank the handler read holds a fatal
/// error.
pub fn stop_reason(global_status: u64, fatal_error: bool) -> Option<&'static str> {
    if fatal_error {
        Some("fatal machine check: an uncorrected error this kernel cannot recover from")
    } else if !set(global_status, global::MCIP) {
        Some(
            "fatal machine check: vector 18 without MCG_STATUS.MCIP (not raised by the \
             machine-check architecture)",
        )
    } else if !set(global_status, global::RIPV) {
        Some("fatal machine check: the interrupted code cannot resume (MCG_STATUS.RIPV clear)")
    } else {
        None
    }
}

/// Which path finds (and owns) an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// The #MC handler.
    Exception,
    /// The poller.
    Poll,
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

    fn from_bank(
        bank: u32,
        registers: hw::Bank,
        global_status: u64,
        by: FoundBy,
        ser: bool,
    ) -> Error {
        let valid = |bit: u64, value: u64| {
            if registers.status & bit != 0 {
                value
            } else {
                0
            }
        };
        Error {
            cpu: cpu_ops::id_hint(),
            bank,
            status: registers.status,
            address: valid(status::ADDRV, registers.address),
            misc: valid(status::MISCV, registers.misc),
            global_status,
            severity: classify(registers.status, ser),
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
            cpu_ops::relax();
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
    if crate::trap_handlers::hooks::PAGE_FAULT_IN_MACHINE_CHECK.load(Ordering::Relaxed)
        && crate::trap_handlers::hooks::PAGE_FAULT_IN_MACHINE_CHECK.swap(false, Ordering::AcqRel)
    {
        crate::trap_handlers::fault_inside_handler();
    }
    let global_status = hw::global_status();
    let ser = hw::software_recovery();
    // Every bank is judged before anything is queued or cleared: a fatal error anywhere
    // stops the kernel, and then each error of this machine check is printed once, directly.
    let mut found: [Option<Error>; hw::MAX_BANKS as usize] = [None; hw::MAX_BANKS as usize];
    let mut fatal_error = false;
    for bank in 0..hw::bank_count() {
        let registers = hw::read(bank);
        if !set(registers.status, status::VAL) || found_by(registers.status, ser) == FoundBy::Poll {
            continue;
        }
        let error = Error::from_bank(bank, registers, global_status, FoundBy::Exception, ser);
        fatal_error |= error.severity == Severity::Fatal;
        found[bank as usize] = Some(error);
    }
    let Some(reason) = stop_reason(global_status, fatal_error) else {
        for error in found.iter().flatten() {
            count(error.severity);
            RINGS[error.cpu as usize].push(error);
            hw::clear(error.bank);
        }
        hw::clear_global_status();
        return;
    };
    // Whatever is queued, then this machine check's errors, then the end.
    drain_with(report::emit_forced);
    for error in found.iter().flatten() {
        report::emit_forced(&error.record());
    }
    if found.iter().all(Option::is_none) {
        // No bank to blame: the frame is all there is to report.
        crate::trap_handlers::report_exception_forced(frame, 0);
    }
    report::exit_forced(ExitCode::Exception, reason)
}

/// Looks for the errors the poller owns (corrected, and uncorrected no-action ones: see the
/// module docs) in this CPU's banks (timer context, interrupts off), queues them and clears
/// their banks.
pub fn poll() {
    let ser = hw::software_recovery();
    for bank in 0..hw::bank_count() {
        let first = hw::status(bank);
        if !set(first, status::VAL) || found_by(first, ser) != FoundBy::Poll {
            continue;
        }
        if bank == TEST_BANK
            && crate::trap_handlers::hooks::MACHINE_CHECK_IN_POLL.load(Ordering::Relaxed)
            && crate::trap_handlers::hooks::MACHINE_CHECK_IN_POLL.swap(false, Ordering::AcqRel)
        {
            raise_staged(SRAO_STATUS | status::OVER);
        }
        // A machine check can take the bank over while it is read (an uncorrected error
        // overwrites a corrected one, and its handler consumes and clears the bank), or a new
        // error can replace it: report only a bank that held the same status before and after
        // its address and misc registers were read. A bank that changed is the handler's or
        // the next poll's.
        let registers = hw::read(bank);
        if registers.status != first || hw::status(bank) != first {
            continue;
        }
        hw::clear(bank);
        let error = Error::from_bank(bank, registers, 0, FoundBy::Poll, ser);
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
    raise_staged(SRAO_STATUS);
}

/// For tests: stages an error with `bank_status` in [`TEST_BANK`] (with RIPV and MCIP, as a
/// machine check that allows a restart) and runs the #MC handler now.
pub fn raise_staged(bank_status: u64) {
    hw::stage(TEST_BANK, bank_status, global::RIPV | global::MCIP);
    hw::raise();
}

//! Tests of machine-check handling: the classification of errors against the Intel SDM's
//! rules, and the poller racing with the #MC handler on one bank.

use core::sync::atomic::Ordering;

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::mca_regs as mca;
use crate::mce::{self, FoundBy, Severity, global, status};
use crate::sched;
use crate::trap_handlers::hooks;

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "machine_check_classification",
        run: machine_check_classification,
    },
    KernelTest {
        name: "machine_check_during_poll",
        run: machine_check_during_poll,
    },
    KernelTest {
        name: "machine_check_bank_owners",
        run: machine_check_bank_owners,
    },
];

const OVER: u64 = status::OVER;
const AR: u64 = status::AR;
/// MCA error codes: memory scrubbing (an SRAO code), data load (an SRAR code), generic memory.
const SCRUB: u64 = 0xcf;
const DATA_LOAD: u64 = 0x134;
const MEMORY: u64 = 0x8f;
const RIPV: u64 = global::RIPV;
const EIPV: u64 = global::EIPV;
const MCIP: u64 = global::MCIP;

/// One error, its `IA32_MCG_STATUS`, and what the SDM (Vol. 3B, 15.6.2 and the handlers of
/// 15.10.4.1 and 15.10.4.2) says it means for a kernel that implements no error-specific
/// recovery action: who takes it from its bank, its severity, and whether the kernel stops.
struct Case {
    what: &'static str,
    bank: u64,
    global: u64,
    /// The CPU supports software error recovery (`MCG_SER_P`; QEMU's do).
    ser: bool,
    by: FoundBy,
    severity: Severity,
    stops: bool,
}

const UCR: u64 = status::VAL | status::UC | status::EN | status::MISCV | status::ADDRV;

const CASES: &[Case] = &[
    Case {
        what: "corrected",
        bank: status::VAL | status::EN | MEMORY,
        global: 0,
        ser: true,
        by: FoundBy::Poll,
        severity: Severity::Corrected,
        stops: false,
    },
    Case {
        what: "SRAO (action optional): resume",
        bank: UCR | status::S | SCRUB,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Recoverable,
        stops: false,
    },
    Case {
        what: "SRAO with an overflow: the optional action is skipped, resume",
        bank: UCR | status::S | OVER | SCRUB,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Recoverable,
        stops: false,
    },
    Case {
        what: "UCNA (uncorrected, no action): the poller's, as corrected errors",
        bank: UCR | MEMORY,
        global: 0,
        ser: true,
        by: FoundBy::Poll,
        severity: Severity::Recoverable,
        stops: false,
    },
    Case {
        what: "processor context corrupt",
        bank: status::VAL | status::UC | status::EN | status::PCC | MEMORY,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "SRAR (action required) at the interrupted instruction, no restart point",
        bank: UCR | status::S | AR | DATA_LOAD,
        global: EIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "SRAR with RIPV: the action is still required and the kernel has none",
        bank: UCR | status::S | AR | DATA_LOAD,
        global: RIPV | EIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "SRAR with an overflow: an action-required error may be lost",
        bank: UCR | status::S | AR | OVER | DATA_LOAD,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "S clear with AR set: an illegal combination",
        bank: UCR | AR | MEMORY,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "not enabled (EN clear, no overflow): not the source of the #MC, log and clear",
        bank: status::VAL | status::UC | status::PCC | MEMORY,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Recoverable,
        stops: false,
    },
    Case {
        what: "not enabled but overflowed: judged as enabled (PCC)",
        bank: status::VAL | OVER | status::UC | status::PCC | MEMORY,
        global: RIPV | MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "SRAO raised without MCIP (int 18 or a stray vector 18): unexpected",
        bank: UCR | status::S | SCRUB,
        global: RIPV,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Recoverable,
        stops: true,
    },
    Case {
        what: "SRAO without a restart point",
        bank: UCR | status::S | SCRUB,
        global: MCIP,
        ser: true,
        by: FoundBy::Exception,
        severity: Severity::Recoverable,
        stops: true,
    },
    Case {
        what: "uncorrected without software error recovery: S and AR mean nothing",
        bank: UCR | status::S | SCRUB,
        global: RIPV | MCIP,
        ser: false,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "uncorrected, S and AR clear, without software error recovery: not a UCNA",
        bank: UCR | MEMORY,
        global: RIPV | MCIP,
        ser: false,
        by: FoundBy::Exception,
        severity: Severity::Fatal,
        stops: true,
    },
    Case {
        what: "corrected without software error recovery",
        bank: status::VAL | status::EN | MEMORY,
        global: 0,
        ser: false,
        by: FoundBy::Poll,
        severity: Severity::Corrected,
        stops: false,
    },
];

/// Every case of the table is taken by the path, classified and acted on as the SDM says.
fn machine_check_classification() -> TestResult {
    let mut wrong = alloc::vec::Vec::new();
    for case in CASES {
        let by = mce::found_by(case.bank, case.ser);
        let severity = mce::classify(case.bank, case.ser);
        let stops = by == FoundBy::Exception
            && mce::stop_reason(case.global, severity == Severity::Fatal).is_some();
        if (by, severity, stops) != (case.by, case.severity, case.stops) {
            wrong.push(alloc::format!(
                "{} (status {:#x}, MCG_STATUS {:#x}, SER {}): {:?}, expected {:?}",
                case.what,
                case.bank,
                case.global,
                case.ser,
                (by, severity, stops),
                (case.by, case.severity, case.stops)
            ));
        }
    }
    check!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

/// The machine-check errors queued since the last drain.
pub(super) fn queued_errors() -> alloc::vec::Vec<mce::Error> {
    let mut errors = alloc::vec::Vec::new();
    mce::take_queued(|e| errors.push(e));
    errors
}

/// A corrected error waits in a bank for the poller; when the poller has looked at its status,
/// an uncorrected error arrives in the same bank (overwriting it, with OVER set, as QEMU and
/// the hardware do) and its #MC handler consumes and clears the bank before the poller reads
/// the rest. The poller must report only what it read whole: the recoverable error (by the
/// handler), and nothing made of a bank that changed under it.
fn machine_check_during_poll() -> TestResult {
    check!(
        mca::bank_count() > mce::TEST_BANK,
        "no MCA bank {}",
        mce::TEST_BANK
    );
    let _held = mce::HeldLogger::new();
    let _ = queued_errors();
    const CORRECTED_STATUS: u64 = status::VAL | status::EN | 0x17;
    let irq = IrqGuard::new();
    hooks::MACHINE_CHECK_IN_POLL.store(true, Ordering::Release);
    mca::stage(mce::TEST_BANK, CORRECTED_STATUS, 0);
    drop(irq);
    for _ in 0..100 {
        if !hooks::MACHINE_CHECK_IN_POLL.load(Ordering::Acquire) {
            break;
        }
        sched::sleep_ms(2);
    }
    let hook_left = hooks::MACHINE_CHECK_IN_POLL.swap(false, Ordering::AcqRel);
    let irq = IrqGuard::new();
    let bank_after = mca::status(mce::TEST_BANK);
    drop(irq);
    let errors = queued_errors();
    check!(
        !hook_left,
        "no poll of bank {} ran the hook",
        mce::TEST_BANK
    );
    check_eq!(bank_after, 0, "the bank is cleared");
    for error in &errors {
        check!(
            error.status & status::VAL != 0,
            "a record of a bank that held no error: {error:?}"
        );
    }
    check_eq!(errors.len(), 1, "queued errors: {errors:?}");
    check_eq!(errors[0].severity, Severity::Recoverable);
    check!(errors[0].signaled, "found by the #MC handler");
    check_eq!(errors[0].status, mce::SRAO_STATUS | OVER);
    Ok(())
}

/// Waits (at most about 200 ms) until the poller has counted an error more than `before`.
fn wait_for_poll(counter: &core::sync::atomic::AtomicU64, before: u64) {
    for _ in 0..100 {
        if counter.load(Ordering::Acquire) > before {
            return;
        }
        sched::sleep_ms(2);
    }
}

/// The #MC handler and the poller each take only their own errors: an uncorrected no-action
/// error (UCNA) in a bank when a #MC arrives is left there for the poller, which reports it
/// (`found_by: poll`); an uncorrected error whose reporting was not enabled (EN clear) is
/// not the source of the #MC: the handler logs and clears it and the run goes on. Errors in
/// two banks at one #MC are both taken.
fn machine_check_bank_owners() -> TestResult {
    check!(
        mca::bank_count() > mce::TEST_BANK && mca::software_recovery(),
        "no MCA bank {} with software error recovery",
        mce::TEST_BANK
    );
    let _held = mce::HeldLogger::new();
    let _ = queued_errors();
    const UCNA: u64 = UCR | MEMORY;
    const NOT_ENABLED: u64 = status::VAL | status::UC | status::PCC | MEMORY;
    let recoverable = mce::RECOVERABLE.load(Ordering::Acquire);

    let irq = IrqGuard::new();
    mce::raise_staged(UCNA);
    let (bank_after, global_after) = (mca::status(mce::TEST_BANK), mca::global_status());
    drop(irq);
    check_eq!(
        bank_after,
        UCNA,
        "the #MC handler left the UCNA error to the poller"
    );
    check_eq!(global_after & MCIP, 0, "MCIP is cleared");
    wait_for_poll(&mce::RECOVERABLE, recoverable);
    let irq = IrqGuard::new();
    let polled_bank = mca::status(mce::TEST_BANK);
    drop(irq);
    let errors = queued_errors();
    check_eq!(polled_bank, 0, "the poller cleared the bank");
    check_eq!(errors.len(), 1, "queued errors: {errors:?}");
    check_eq!(errors[0].status, UCNA);
    check_eq!(errors[0].severity, Severity::Recoverable);
    check!(!errors[0].signaled, "found by the poller: {:?}", errors[0]);

    let irq = IrqGuard::new();
    mce::raise_staged(NOT_ENABLED);
    let bank_after = mca::status(mce::TEST_BANK);
    drop(irq);
    let errors = queued_errors();
    check_eq!(bank_after, 0, "the handler cleared the bank");
    check_eq!(errors.len(), 1, "queued errors: {errors:?}");
    check_eq!(errors[0].status, NOT_ENABLED);
    check_eq!(errors[0].severity, Severity::Recoverable);
    check!(
        errors[0].signaled,
        "found by the #MC handler: {:?}",
        errors[0]
    );
    Ok(())
}

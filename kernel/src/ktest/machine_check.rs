//! Tests of machine-check handling: the classification of errors against the Intel SDM's
//! rules, and the poller racing with the #MC handler on one bank.

use core::sync::atomic::Ordering;

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::cpu::IrqGuard;
use crate::hw::mce as mca;
use crate::mce::{self, Severity, global, status};
use crate::sched;
use crate::trap::hooks;

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
];

const OVER: u64 = 1 << 62;
const AR: u64 = 1 << 55;
/// MCA error codes: memory scrubbing (an SRAO code), data load (an SRAR code), generic memory.
const SCRUB: u64 = 0xcf;
const DATA_LOAD: u64 = 0x134;
const MEMORY: u64 = 0x8f;
const RIPV: u64 = global::RIPV;
const EIPV: u64 = 1 << 1;
const MCIP: u64 = global::MCIP;

/// One error, its `IA32_MCG_STATUS`, and what the SDM (Vol. 3B, 15.6.2 and the error-recovery
/// handler of 15.10.4.1) says it means for a kernel that implements no recovery action.
struct Case {
    what: &'static str,
    bank: u64,
    global: u64,
    severity: Severity,
}

const UCR: u64 = status::VAL | status::UC | status::EN | status::MISCV | status::ADDRV;

const CASES: &[Case] = &[
    Case {
        what: "corrected",
        bank: status::VAL | status::EN | MEMORY,
        global: 0,
        severity: Severity::Corrected,
    },
    Case {
        what: "SRAO (action optional): resume",
        bank: UCR | status::S | SCRUB,
        global: RIPV | MCIP,
        severity: Severity::Recoverable,
    },
    Case {
        what: "SRAO with an overflow: the optional action is skipped, resume",
        bank: UCR | status::S | OVER | SCRUB,
        global: RIPV | MCIP,
        severity: Severity::Recoverable,
    },
    Case {
        what: "processor context corrupt",
        bank: status::VAL | status::UC | status::EN | status::PCC | MEMORY,
        global: RIPV | MCIP,
        severity: Severity::Fatal,
    },
    Case {
        what: "SRAR (action required) at the interrupted instruction, no restart point",
        bank: UCR | status::S | AR | DATA_LOAD,
        global: EIPV | MCIP,
        severity: Severity::Fatal,
    },
    Case {
        what: "SRAR with RIPV: the action is still required and the kernel has none",
        bank: UCR | status::S | AR | DATA_LOAD,
        global: RIPV | EIPV | MCIP,
        severity: Severity::Fatal,
    },
    Case {
        what: "SRAR with an overflow: an action-required error may be lost",
        bank: UCR | status::S | AR | OVER | DATA_LOAD,
        global: RIPV | MCIP,
        severity: Severity::Fatal,
    },
    Case {
        what: "S clear with AR set: an illegal combination",
        bank: UCR | AR | MEMORY,
        global: RIPV | MCIP,
        severity: Severity::Fatal,
    },
    Case {
        what: "not enabled (EN clear, no overflow): not the source of the #MC, log and clear",
        bank: status::VAL | status::UC | status::PCC | MEMORY,
        global: RIPV | MCIP,
        severity: Severity::Recoverable,
    },
    Case {
        what: "not enabled but overflowed: judged as enabled (PCC)",
        bank: status::VAL | OVER | status::UC | status::PCC | MEMORY,
        global: RIPV | MCIP,
        severity: Severity::Fatal,
    },
    Case {
        what: "SRAO raised without MCIP (int 18 or a stray vector 18): unexpected",
        bank: UCR | status::S | SCRUB,
        global: RIPV,
        severity: Severity::Fatal,
    },
    Case {
        what: "SRAO without a restart point",
        bank: UCR | status::S | SCRUB,
        global: MCIP,
        severity: Severity::Fatal,
    },
];

/// Every case of the table is classified as the SDM says.
fn machine_check_classification() -> TestResult {
    let mut wrong = alloc::vec::Vec::new();
    for case in CASES {
        let got = mce::classify(case.bank, case.global);
        if got != case.severity {
            wrong.push(alloc::format!(
                "{} (status {:#x}, MCG_STATUS {:#x}): {got:?}, expected {:?}",
                case.what,
                case.bank,
                case.global,
                case.severity
            ));
        }
    }
    check!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

/// The machine-check errors queued since the last drain.
fn queued_errors() -> alloc::vec::Vec<mce::Error> {
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

//! The machine-check architecture (MCA) registers: setup, bank access, and raising a machine
//! check for tests. What an error means and what is reported is decided in `crate::mce`, in
//! safe code; the #MC entry is in `trap_entry`.
//!
//! Registers (Intel SDM Vol. 3B, "Machine-Check Architecture"): `IA32_MCG_CAP` (bank count in
//! bits 7:0, `MCG_CTL_P` bit 8, `MCG_SER_P` bit 24: the S and AR bits of the banks are
//! defined, for software error recovery), `IA32_MCG_STATUS` (`RIPV`, `EIPV`, `MCIP`), `IA32_MCG_CTL`
//! (present when `MCG_CTL_P`), and per bank `i` the four MSRs from `0x400 + 4i`: `MCi_CTL`,
//! `MCi_STATUS`, `MCi_ADDR`, `MCi_MISC`.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::model_specific::Msr;

use super::cpu_ops::{self, MAX_CPUS};

const IA32_MCG_CAP: u32 = 0x179;
const IA32_MCG_STATUS: u32 = 0x17a;
const IA32_MCG_CTL: u32 = 0x17b;
const IA32_MC0_CTL: u32 = 0x400;

const MCG_CAP_COUNT: u64 = 0xff;
const MCG_CTL_P: u64 = 1 << 8;
const MCG_SER_P: u64 = 1 << 24;

/// CPUID.1:EDX bits: machine-check exception, machine-check architecture.
const CPUID_MCE: u32 = 1 << 7;
const CPUID_MCA: u32 = 1 << 14;

/// The most banks the kernel reads (the architecture allows up to 255; QEMU emulates 10).
pub const MAX_BANKS: u32 = 32;

/// Banks each CPU reads (0 until `init_this_cpu`, or without MCA).
static BANKS: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Whether each CPU reports software error recovery (`MCG_SER_P`).
static RECOVERY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn read_msr(msr: u32) -> u64 {
    // SAFETY: callers pass only MCA MSRs this CPU has: the global ones exist when CPUID
    // reports MCA (checked in `init_this_cpu` before any bank count is recorded), the bank
    // ones only below the recorded count. Reading them has no side effects.
    unsafe { Msr::new(msr).read() }
}

fn write_msr(msr: u32, value: u64) {
    // SAFETY: as in `read_msr`; the values written are all ones (enable every error) or zero
    // (clear a status), which the architecture defines for these registers, or, in tests
    // under QEMU, a staged status.
    unsafe { Msr::new(msr).write(value) }
}

/// Sets up machine checks on this CPU: every bank enabled and cleared, `MCG_CTL` all ones if
/// present, then CR4.MCE. Returns the number of banks it reads (0 without MCA: then a machine
/// check, if the CPU raises one, still reaches the handler, which finds no bank).
pub fn init_this_cpu() -> u32 {
    let edx = core::arch::x86_64::__cpuid(1).edx;
    let mut banks = 0;
    if edx & CPUID_MCA != 0 {
        let cap = read_msr(IA32_MCG_CAP);
        banks = ((cap & MCG_CAP_COUNT) as u32).min(MAX_BANKS);
        if cap & MCG_CTL_P != 0 {
            write_msr(IA32_MCG_CTL, u64::MAX);
        }
        for bank in 0..banks {
            write_msr(IA32_MC0_CTL + 4 * bank, u64::MAX);
            write_msr(IA32_MC0_CTL + 4 * bank + 1, 0);
        }
        write_msr(IA32_MCG_STATUS, 0);
        let irq = cpu_ops::IrqGuard::new();
        let cpu = cpu_ops::current_id(&irq) as usize;
        let recovery = cap & MCG_SER_P != 0;
        RECOVERY[cpu].store(recovery, Ordering::Relaxed);
        BANKS[cpu].store(banks as u8, Ordering::Relaxed);
        // `bank_count` and `software_recovery` rely on it: a thread may read them on a CPU it
        // then leaves.
        let first = BANKS[0].load(Ordering::Relaxed);
        assert!(
            first == 0 || (first == banks as u8 && RECOVERY[0].load(Ordering::Relaxed) == recovery),
            "CPU {cpu} has {banks} MCA banks (recovery {recovery}), CPU 0 {first}"
        );
    }
    if edx & CPUID_MCE != 0 {
        // SAFETY: setting CR4.MCE only enables delivery of #MC, whose IDT gate and IST stack
        // are in place (the IDT is loaded before this runs).
        unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::MACHINE_CHECK_EXCEPTION)) };
    }
    banks
}

/// Whether CR4.MCE is set on this CPU.
pub fn enabled() -> bool {
    Cr4::read().contains(Cr4Flags::MACHINE_CHECK_EXCEPTION)
}

/// The number of banks this CPU reads (the same on every CPU: checked when each CPU sets up
/// its banks, so the answer stays true if the caller moves to another CPU).
pub fn bank_count() -> u32 {
    let irq = cpu_ops::IrqGuard::new();
    u32::from(BANKS[cpu_ops::current_id(&irq) as usize].load(Ordering::Relaxed))
}

/// Whether this CPU supports software error recovery (`IA32_MCG_CAP.MCG_SER_P`): only then
/// do the S and AR bits of `MCi_STATUS` say what an uncorrected error needs. The same on every
/// CPU (checked at set-up), like [`bank_count`].
pub fn software_recovery() -> bool {
    let irq = cpu_ops::IrqGuard::new();
    RECOVERY[cpu_ops::current_id(&irq) as usize].load(Ordering::Relaxed)
}

/// One bank's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bank {
    /// `MCi_STATUS`.
    pub status: u64,
    /// `MCi_ADDR` (meaningful when the status has ADDRV).
    pub address: u64,
    /// `MCi_MISC` (meaningful when the status has MISCV).
    pub misc: u64,
}

/// Reads `MCi_STATUS` of `bank` (below [`bank_count`]).
pub fn status(bank: u32) -> u64 {
    assert!(bank < bank_count(), "bank {bank} beyond this CPU's banks");
    read_msr(IA32_MC0_CTL + 4 * bank + 1)
}

/// Reads the status, address and misc registers of `bank`.
pub fn read(bank: u32) -> Bank {
    let status = status(bank);
    Bank {
        status,
        address: read_msr(IA32_MC0_CTL + 4 * bank + 2),
        misc: read_msr(IA32_MC0_CTL + 4 * bank + 3),
    }
}

/// Clears `MCi_STATUS` of `bank`: the error is consumed.
pub fn clear(bank: u32) {
    assert!(bank < bank_count(), "bank {bank} beyond this CPU's banks");
    write_msr(IA32_MC0_CTL + 4 * bank + 1, 0);
}

/// Reads `IA32_MCG_STATUS` (0 without MCA).
pub fn global_status() -> u64 {
    if bank_count() == 0 {
        return 0;
    }
    read_msr(IA32_MCG_STATUS)
}

/// Clears `IA32_MCG_STATUS` (MCIP among others), which a handler must do before it returns:
/// a machine check while MCIP is set shuts the processor down.
pub fn clear_global_status() {
    if bank_count() > 0 {
        write_msr(IA32_MCG_STATUS, 0);
    }
}

/// For tests under QEMU, which lets software write any `MCi_STATUS` (real hardware may raise
/// #GP): puts an error in `bank` and sets `IA32_MCG_STATUS`, as a machine check would.
pub fn stage(bank: u32, status: u64, global_status: u64) {
    assert!(bank < bank_count(), "bank {bank} beyond this CPU's banks");
    write_msr(IA32_MC0_CTL + 4 * bank + 2, 0);
    write_msr(IA32_MC0_CTL + 4 * bank + 3, 0);
    write_msr(IA32_MC0_CTL + 4 * bank + 1, status);
    write_msr(IA32_MCG_STATUS, global_status);
}

/// Runs the machine-check handler now (`int 18`), with whatever the banks hold.
pub fn raise() {
    // SAFETY: `int 18` enters the #MC gate like a machine check (on the #MC IST stack, with
    // interrupts off), and the handler returns to the next instruction unless it finds a fatal
    // error, in which case the kernel stops. It preserves every register (the entry saves and
    // restores them all).
    unsafe { asm!("int 18") };
}

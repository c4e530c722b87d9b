//! The local APIC (xAPIC, memory-mapped): timer, end of interrupt, inter-processor interrupts.
//!
//! The legacy 8259 PICs are remapped away from the exception vectors and masked, so that every
//! interrupt the kernel sees comes from a local APIC. The register page is mapped once,
//! uncached, in the MMIO region; every CPU sees its own APIC at that same address.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use super::{cpu_ops, paging};
use crate::layout::{MMIO_BASE, PAGE_BYTES};

/// Interrupt vectors the kernel programs.
pub mod vector {
    /// The local APIC timer.
    pub const TIMER: u8 = 0x20;
    /// "Look at your run queue" IPI.
    pub const RESCHEDULE: u8 = 0x21;
    /// TLB shootdown IPI.
    pub const TLB_SHOOTDOWN: u8 = 0x22;
    /// The APIC's spurious-interrupt vector.
    pub const SPURIOUS: u8 = 0xff;
}

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_VIRT: u64 = MMIO_BASE;

const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT1: u64 = 0x360;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const TIMER_DIVIDE_BY_16: u32 = 0b0011;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// Delivery mode NMI (in an LVT entry or the ICR).
const DELIVERY_NMI: u32 = 0b100 << 8;
/// ICR destination shorthand "self".
const ICR_TO_SELF: u32 = 0b01 << 18;

static MAPPED: Once<()> = Once::new();
/// APIC timer ticks (at divide-by-16) per millisecond, measured against the PIT.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per microsecond, measured against the PIT.
static TSC_PER_US: AtomicU64 = AtomicU64::new(0);

#[inline]
fn read(register: u64) -> u32 {
    // SAFETY: the APIC page is mapped uncached at APIC_VIRT (`init_this_cpu` ran), and
    // `register` is one of the 16-byte aligned register offsets within that page.
    unsafe { core::ptr::read_volatile((APIC_VIRT + register) as *const u32) }
}

#[inline]
fn write(register: u64, value: u32) {
    // SAFETY: as in `read`; writing these registers affects only this CPU's APIC.
    unsafe { core::ptr::write_volatile((APIC_VIRT + register) as *mut u32, value) }
}

fn mask_legacy_pics() {
    let outs: [(u16, u8); 10] = [
        (0x20, 0x11),
        (0xa0, 0x11), // ICW1: init, expect ICW4
        (0x21, 0xf0),
        (0xa1, 0xf8), // ICW2: vectors 0xf0.. and 0xf8.., away from exceptions
        (0x21, 0x04),
        (0xa1, 0x02), // ICW3: cascade
        (0x21, 0x01),
        (0xa1, 0x01), // ICW4: 8086 mode
        (0x21, 0xff),
        (0xa1, 0xff), // mask everything
    ];
    for (port, value) in outs {
        // SAFETY: programming the legacy PICs only changes which interrupts they raise; after
        // this sequence they raise none.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

/// Enables this CPU's local APIC. The boot CPU maps the registers and masks the legacy PICs.
pub fn init_this_cpu() {
    MAPPED.call_once(|| {
        mask_legacy_pics();
        // SAFETY: reading IA32_APIC_BASE has no side effects.
        let base = unsafe { Msr::new(IA32_APIC_BASE).read() } & 0xf_ffff_f000;
        paging::map_mmio(APIC_VIRT, base, PAGE_BYTES);
    });
    write(REG_TPR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(vector::SPURIOUS));
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(vector::TIMER));
    // LINT1 delivers NMIs (as firmware sets it up on the boot CPU): an NMI from the platform,
    // such as QEMU's `inject-nmi` on a CPU whose APIC is enabled, arrives through it.
    write(REG_LVT_LINT1, DELIVERY_NMI);
}

/// Sends an NMI to this CPU. Writes only the low ICR word (the destination is the shorthand
/// "self"), so it does not disturb an IPI that the interrupted code was composing in the high
/// word; tests use it from inside handlers.
pub fn send_nmi_to_self() {
    write(REG_ICR_LOW, ICR_TO_SELF | DELIVERY_NMI);
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Signals the end of the current interrupt.
#[inline]
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Measures the APIC timer and the TSC against the PIT (channel 2, 10 ms). Called once, on
/// the boot CPU. Returns (APIC timer ticks per ms, TSC ticks per µs).
pub fn calibrate() -> (u64, u64) {
    const PIT_HZ: u64 = 1_193_182;
    const WINDOW_MS: u64 = 10;
    let count = (PIT_HZ * WINDOW_MS / 1000) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    // SAFETY: port 0x61 bit 0 gates PIT channel 2 and bit 1 routes it to the speaker (kept
    // off); 0x43/0x42 program channel 2 only, which nothing else uses.
    let (elapsed, tsc_elapsed) = unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        write(REG_TIMER_INITIAL, u32::MAX);
        let tsc_start = cpu_ops::rdtsc();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        (
            u32::MAX - read(REG_TIMER_CURRENT),
            cpu_ops::rdtsc() - tsc_start,
        )
    };
    write(REG_TIMER_INITIAL, 0);
    let per_ms = (u64::from(elapsed) / WINDOW_MS).max(1);
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
    let tsc_per_us = (tsc_elapsed / (WINDOW_MS * 1000)).max(1);
    TSC_PER_US.store(tsc_per_us, Ordering::Relaxed);
    (per_ms, tsc_per_us)
}

/// TSC ticks per microsecond (from [`calibrate`]).
pub fn tsc_per_us() -> u64 {
    TSC_PER_US.load(Ordering::Relaxed).max(1)
}

/// Spins for at least `us` microseconds (by the TSC calibrated in [`calibrate`]).
pub fn delay_us(us: u64) {
    let per_us = TSC_PER_US.load(Ordering::Relaxed).max(1);
    let end = cpu_ops::rdtsc() + us * per_us;
    while cpu_ops::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Starts this CPU's periodic timer at `hz` interrupts per second.
pub fn start_periodic_timer(hz: u32) {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed).max(1);
    let initial = (per_ms * 1000 / u64::from(hz.max(1))).clamp(1, u64::from(u32::MAX));
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(vector::TIMER));
    write(REG_TIMER_INITIAL, initial as u32);
}

/// Sends `vector` to the CPU whose APIC id is `apic_id`.
#[inline]
pub fn send_ipi(apic_id: u32, vector: u8) {
    send_icr(apic_id, u32::from(vector));
}

/// Sends an INIT IPI (bring-up of application processors).
pub fn send_init(apic_id: u32) {
    send_icr(apic_id, 0x4500);
}

/// Sends a start-up IPI pointing at the page `trampoline_page` (physical address / 4096).
pub fn send_startup(apic_id: u32, trampoline_page: u8) {
    send_icr(apic_id, 0x4600 | u32::from(trampoline_page));
}

#[inline]
fn send_icr(apic_id: u32, low: u32) {
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, low);
    while read(REG_ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
        core::hint::spin_loop();
    }
}

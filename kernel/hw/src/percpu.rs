//! The per-CPU block each CPU reaches through its GS base.
//!
//! The block holds only what the entry code and `current_id` need; the kernel's per-CPU state
//! (run queues, magazines, counters) lives in arrays indexed by [`current_id`], in safe code.
//! A CPU's GS base is set once, before anything else runs on that CPU, and never changes (the
//! kernel has no user mode, so no `swapgs`): every entry stub, the NMI and machine-check ones
//! included, can use `gs:` from its first instruction.
//!
//! Fields the assembly reads or writes, at fixed offsets (checked below):
//! - `trap_state`: one byte per kind of frame that must never meet a page fault while it is
//!   live: byte 0 the #PF IST frame, byte 1 the NMI frame, byte 2 the #MC frame, byte 3 a
//!   preemption's frames while the entry moves them to the thread's stack. Each is set by the
//!   entry code before anything else and cleared by the same code path after the last access
//!   to the frame (see `trap_entry`). Only this CPU touches its block, with interrupts off.
//! - `preempt_save`, `preempt_load`: the two operands of the context switch a preemption
//!   makes from the trap entry itself (written by `trap_entry::dispatch` just before).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu_ops::{IrqGuard, MAX_CPUS};

/// The fields the assembly reads at fixed offsets.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// Address of this block (gs:[0]).
    self_address: AtomicU64,
    /// This CPU's index (gs:[8]).
    id: AtomicU64,
    /// Live IST frames (gs:[16]): see the module docs.
    trap_state: AtomicU64,
    /// Where a preemption stores the thread's stack pointer (gs:[24]).
    preempt_save: AtomicU64,
    /// The stack pointer a preemption switches to (gs:[32]).
    preempt_load: AtomicU64,
}

/// Offset of `id` in [`PerCpu`], used by the assembly of `current_id`.
const ID_OFFSET: usize = 8;
/// Offset of `trap_state`.
pub const TRAP_STATE_OFFSET: usize = 16;
/// Offset of `preempt_save`.
pub const PREEMPT_SAVE_OFFSET: usize = 24;
/// Offset of `preempt_load`.
pub const PREEMPT_LOAD_OFFSET: usize = 32;
const _: () = assert!(core::mem::offset_of!(PerCpu, id) == ID_OFFSET);
const _: () = assert!(core::mem::offset_of!(PerCpu, trap_state) == TRAP_STATE_OFFSET);
const _: () = assert!(core::mem::offset_of!(PerCpu, preempt_save) == PREEMPT_SAVE_OFFSET);
const _: () = assert!(core::mem::offset_of!(PerCpu, preempt_load) == PREEMPT_LOAD_OFFSET);

/// Bits of `trap_state`: the byte of each live frame kind.
pub mod live {
    /// The NMI IST frame (byte 1).
    pub const NMI: u64 = 0xff00;
    /// The #MC IST frame (byte 2).
    pub const MACHINE_CHECK: u64 = 0xff_0000;
    /// A preemption's frames being moved to the thread's stack (byte 3).
    pub const PREEMPTION_MOVE: u64 = 0xff00_0000;
}

static BLOCKS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        self_address: AtomicU64::new(0),
        id: AtomicU64::new(0),
        trap_state: AtomicU64::new(0),
        preempt_save: AtomicU64::new(0),
        preempt_load: AtomicU64::new(0),
    }
}; MAX_CPUS];

const IA32_GS_BASE: u32 = 0xc000_0101;

/// Points this CPU's GS base at block `index`. Called once per CPU, first thing.
pub fn install(index: usize) {
    assert!(index < MAX_CPUS, "CPU index {index} beyond MAX_CPUS");
    let block = &BLOCKS[index];
    let address = block as *const PerCpu as u64;
    block.self_address.store(address, Ordering::Relaxed);
    block.id.store(index as u64, Ordering::Relaxed);
    let mut msr = x86_64::registers::model_specific::Msr::new(IA32_GS_BASE);
    // SAFETY: GS_BASE takes any canonical address; `address` is a static block that lives
    // forever, and nothing else on this CPU uses GS.
    unsafe { msr.write(address) };
}

/// Returns this CPU's index; see `cpu_ops::current_id` for why it takes the guard.
#[inline]
pub fn current_id(_irq: &IrqGuard) -> u32 {
    let id: u64;
    // SAFETY: every CPU installs its block (`install`) before any code that can call this runs
    // on it, so gs:[ID_OFFSET] is the `id` field of a live static.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) id, off = const ID_OFFSET,
             options(nostack, readonly, preserves_flags));
    }
    id as u32
}

#[inline]
fn this(irq: &IrqGuard) -> &PerCpu {
    &BLOCKS[current_id(irq) as usize]
}

/// This CPU's live IST frames (bits of [`live`]).
#[inline]
pub fn trap_state(irq: &IrqGuard) -> u64 {
    this(irq).trap_state.load(Ordering::Relaxed)
}

/// Sets the operands of the context switch the trap entry makes for a preemption: the
/// address of the preempted thread's saved-stack-pointer cell and the stack pointer to load.
#[inline]
pub fn set_preempt_switch(irq: &IrqGuard, save_at: u64, load_rsp: u64) {
    let block = this(irq);
    block.preempt_save.store(save_at, Ordering::Relaxed);
    block.preempt_load.store(load_rsp, Ordering::Relaxed);
}

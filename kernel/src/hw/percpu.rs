//! The per-CPU block each CPU reaches through its GS base.
//!
//! The block holds only what the entry code and `current_id` need; the kernel's per-CPU state
//! (run queues, magazines, counters) lives in arrays indexed by [`current_id`], in safe code.
//! A CPU's GS base is set once, before anything else runs on that CPU, and never changes.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu::MAX_CPUS;

/// The fields the assembly reads at fixed offsets.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// Address of this block (gs:[0]).
    self_address: AtomicU64,
    /// This CPU's index (gs:[8]).
    id: AtomicU64,
}

/// Offset of `id` in [`PerCpu`], used by the assembly of `current_id`.
const ID_OFFSET: usize = 8;
const _: () = assert!(core::mem::offset_of!(PerCpu, id) == ID_OFFSET);

static BLOCKS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        self_address: AtomicU64::new(0),
        id: AtomicU64::new(0),
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

/// Returns this CPU's index.
#[inline]
pub fn current_id() -> u32 {
    let id: u64;
    // SAFETY: every CPU installs its block (`install`) before any code that can call this runs
    // on it, so gs:[ID_OFFSET] is the `id` field of a live static.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) id, off = const ID_OFFSET,
             options(nostack, readonly, preserves_flags));
    }
    id as u32
}

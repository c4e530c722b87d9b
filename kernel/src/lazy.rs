//! The lazy region: memory mapped on first touch by ordinary (non-stack) page faults.
//!
//! It stands in for user memory touched by the kernel (`copy_from_user`): the fault handler
//! may allocate and sleep, so it must run on the interrupted thread's stack, not on the #PF
//! IST stack. Its lower half is served that way (the trap is *bounced*); its upper half is
//! served directly on the IST stack with an atomic allocation, only so that the cost of the
//! bounce can be measured against a handler that does the same work without it.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw::cpu_ops;
use crate::hw::layout::{LAZY_REGION_BASE, LAZY_REGION_BYTES, PAGE_BYTES};
use crate::hw::paging::{self, MapError};
use crate::hw::trap_entry::TrapFrame;
use crate::mm::frames::{self, Urgency};
use crate::sched;

/// Faults here are handled on the interrupted stack (and may sleep).
pub const BOUNCED: core::ops::Range<u64> =
    LAZY_REGION_BASE..LAZY_REGION_BASE + LAZY_REGION_BYTES / 2;
/// Faults here are handled directly on the #PF IST stack (for the cost comparison).
pub const DIRECT: core::ops::Range<u64> =
    LAZY_REGION_BASE + LAZY_REGION_BYTES / 2..LAZY_REGION_BASE + LAZY_REGION_BYTES;

/// Pages mapped by bounced faults.
pub static BOUNCED_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Pages mapped by direct faults.
pub static DIRECT_FAULTS: AtomicU64 = AtomicU64::new(0);

const RFLAGS_IF: u64 = 1 << 9;

#[inline]
fn map_zeroed(address: u64, urgency: Urgency) -> Result<(), MapError> {
    let page = address & !(PAGE_BYTES - 1);
    let frame = frames::alloc_zeroed(urgency).ok_or(MapError::OutOfMemory)?;
    match paging::map_lazy_page(page, frame) {
        // The entry was not present: no TLB holds it.
        Ok(flush) => {
            flush.ignore();
            Ok(())
        }
        // Another thread mapped it first.
        Err((frame, MapError::AlreadyMapped)) => {
            frames::free(frame);
            Ok(())
        }
        Err((frame, e)) => {
            frames::free(frame);
            Err(e)
        }
    }
}

/// Serves a fault in [`BOUNCED`], on the interrupted stack. If the interrupted code had
/// interrupts on, the handler runs with them on and sleeps while memory is short; otherwise
/// it may not wait. Returns false if the page could not be mapped.
pub fn handle_bounced(frame: &TrapFrame, address: u64) -> bool {
    let may_sleep = frame.rflags & RFLAGS_IF != 0;
    if may_sleep {
        cpu_ops::enable_interrupts();
    }
    let mut mapped = map_zeroed(address, Urgency::Normal);
    for _ in 0..100 {
        if mapped != Err(MapError::OutOfMemory) || !may_sleep {
            break;
        }
        sched::sleep_ms(1);
        mapped = map_zeroed(address, Urgency::Normal);
    }
    if may_sleep {
        // The trap's return path runs with interrupts off, as it was entered.
        cpu_ops::disable_interrupts();
    }
    BOUNCED_FAULTS.fetch_add(u64::from(mapped.is_ok()), Ordering::Relaxed);
    mapped.is_ok()
}

/// Serves a fault in [`DIRECT`] on the IST stack: an atomic allocation, no waiting.
pub fn handle_direct(address: u64) -> bool {
    let mapped = map_zeroed(address, Urgency::Atomic).is_ok();
    DIRECT_FAULTS.fetch_add(u64::from(mapped), Ordering::Relaxed);
    mapped
}

/// Unmaps and frees every page of `range` (a part of the lazy region), with one shootdown.
pub fn reset(range: core::ops::Range<u64>) {
    assert!(range.start >= LAZY_REGION_BASE && range.end <= LAZY_REGION_BASE + LAZY_REGION_BYTES);
    let mut freed = alloc::vec::Vec::new();
    for page in range.clone().step_by(PAGE_BYTES as usize) {
        if let Some((frame, flush)) = paging::unmap_lazy_page(page) {
            flush.ignore(); // the shootdown below covers every CPU
            freed.push(frame);
        }
    }
    if !freed.is_empty() {
        crate::tlb::shootdown(range.start, range.end);
    }
    for frame in freed {
        frames::free(frame);
    }
}

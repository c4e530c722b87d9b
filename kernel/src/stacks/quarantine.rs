//! Frames and slots of released stacks whose TLB entries may still live on some CPU.
//!
//! Reusing such a frame, or mapping such a slot again, before every TLB forgot the old
//! translation would let a CPU read or write memory that belongs to someone else. They wait
//! here until a purge: one shootdown of every TLB (all CPUs, all addresses), after which they
//! go back to the frame allocator and the free slots. A purge happens when the quarantine
//! holds `PURGE_FRAMES` frames, when stack creation runs out of slots or memory, and before
//! counts are compared with a baseline.

use alloc::vec::Vec;

use crate::mm::frames::{self, Frame};
use crate::sync::IrqMutex;
use crate::tlb;

/// The quarantine is purged when it holds this many frames.
pub const PURGE_FRAMES: usize = 256;

struct Held {
    frames: Vec<Frame>,
    slots: Vec<u32>,
}

static HELD: IrqMutex<Held> = IrqMutex::new(Held {
    frames: Vec::new(),
    slots: Vec::new(),
});

/// Keeps `frame` until the next purge.
pub fn hold_frame(frame: Frame) {
    HELD.lock().frames.push(frame);
}

/// Keeps `slot` until the next purge.
pub fn hold_slot(slot: u32) {
    HELD.lock().slots.push(slot);
}

/// (frames, slots) waiting.
pub fn held() -> (usize, usize) {
    let held = HELD.lock();
    (held.frames.len(), held.slots.len())
}

/// Whether the quarantine is full enough to purge.
pub fn wants_purge() -> bool {
    HELD.lock().frames.len() >= PURGE_FRAMES
}

/// Flushes every TLB, then frees the held frames and returns the held slots (for the caller
/// to put back among the free slots). Must run in a thread (it waits for the other CPUs).
pub fn purge() -> Vec<u32> {
    let (held_frames, slots) = {
        let mut held = HELD.lock();
        (
            core::mem::take(&mut held.frames),
            core::mem::take(&mut held.slots),
        )
    };
    if held_frames.is_empty() && slots.is_empty() {
        return slots;
    }
    // Taken out before the shootdown: anything held after this point waits for the next one.
    tlb::shootdown_all();
    for frame in held_frames {
        frames::free(frame);
    }
    slots
}

//! Frames and slots of released stacks whose TLB entries may still live on some CPU.
//!
//! Reusing such a frame, or mapping such a slot again, before every TLB forgot the old
//! translation would let a CPU read or write memory that belongs to someone else. They wait
//! here, in two stages:
//!
//! 1. *held*: collected as stacks are released;
//! 2. *flushing*: once `PURGE_FRAMES` frames are held, the batch is tagged with a
//!    flush-everything epoch (`tlb::request_flush_all`: an IPI to every CPU, not waited for).
//!    When every CPU has flushed for that epoch (`tlb::flushed_everywhere`), the batch's frames
//!    go back to the frame allocator and its slots to the free slots ([`poll`]).
//!
//! Nothing waits for an IPI on the way (an IPI to a busy CPU takes milliseconds under TCG, and
//! the reaper would stall behind it); [`purge_now`] waits, for when memory or slots run out and
//! before counts are compared with a baseline. It never spins on another CPU: idle CPUs do not
//! count (`tlb`), it yields a few times, then sleeps a tick between polls and sends the
//! request again to the CPUs that have not answered.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::hw::sync::IrqMutex;
use crate::mm::frames::{self, Frame};
use crate::sched;
use crate::tlb;

/// A batch starts flushing when this many frames are held.
pub const PURGE_FRAMES: usize = 256;

#[derive(Debug, Default)]
struct Batch {
    frames: Vec<Frame>,
    slots: Vec<u32>,
}

struct Quarantine {
    held: Batch,
    flushing: VecDeque<(u64, Batch)>,
}

static QUARANTINE: IrqMutex<Quarantine> = IrqMutex::new(Quarantine {
    held: Batch {
        frames: Vec::new(),
        slots: Vec::new(),
    },
    flushing: VecDeque::new(),
});

/// Keeps `frame` until a flush of every TLB.
pub fn hold_frame(frame: Frame) {
    QUARANTINE.lock().held.frames.push(frame);
}

/// Keeps `slot` until a flush of every TLB.
pub fn hold_slot(slot: u32) {
    QUARANTINE.lock().held.slots.push(slot);
}

/// (frames, slots) in the quarantine, held or flushing.
pub fn held() -> (usize, usize) {
    let q = QUARANTINE.lock();
    let flushing = q
        .flushing
        .iter()
        .map(|(_, b)| (b.frames.len(), b.slots.len()));
    flushing.fold(
        (q.held.frames.len(), q.held.slots.len()),
        |(f, s), (bf, bs)| (f + bf, s + bs),
    )
}

/// Starts flushing the held batch if it is big enough (or `always`), without waiting.
pub fn start_flush(always: bool) {
    let batch = {
        let mut q = QUARANTINE.lock();
        let empty = q.held.frames.is_empty() && q.held.slots.is_empty();
        if empty || (!always && q.held.frames.len() < PURGE_FRAMES) {
            return;
        }
        core::mem::take(&mut q.held)
    };
    // Taken out before the request: whatever is held after this waits for the next epoch.
    let epoch = tlb::request_flush_all();
    QUARANTINE.lock().flushing.push_back((epoch, batch));
}

/// Requests a flush of every TLB now, whatever is held, tags the held batch (if any) with it
/// and returns its generation, without waiting: for trims of live stacks, whose threads wait
/// for exactly this flush (`stacks::trim`). Every frame held before the call was unmapped
/// before the request, so it is covered too.
pub fn start_flush_epoch() -> u64 {
    let batch = core::mem::take(&mut QUARANTINE.lock().held);
    let epoch = tlb::request_flush_all();
    if !batch.frames.is_empty() || !batch.slots.is_empty() {
        QUARANTINE.lock().flushing.push_back((epoch, batch));
    }
    epoch
}

/// Frees the frames of every batch whose flush has completed everywhere and returns their
/// slots (for the caller to put back among the free slots).
pub fn poll() -> Vec<u32> {
    let mut done = Vec::new();
    {
        let mut q = QUARANTINE.lock();
        while q
            .flushing
            .front()
            .is_some_and(|(epoch, _)| tlb::flushed_everywhere(*epoch))
        {
            if let Some((_, batch)) = q.flushing.pop_front() {
                done.push(batch);
            }
        }
    }
    let mut slots = Vec::new();
    for batch in done {
        for frame in batch.frames {
            frames::free(frame);
        }
        slots.extend(batch.slots);
    }
    slots
}

/// Polls between yields before [`purge_now`] starts sleeping between polls.
const YIELDS_BEFORE_SLEEP: u32 = 16;

/// Flushes everything held and waits until every batch is freed; returns their slots. Must
/// run in a thread (it yields, then sleeps, while other CPUs take their IPI).
pub fn purge_now() -> Vec<u32> {
    start_flush(true);
    let mut slots = poll();
    let mut polls = 0;
    loop {
        let oldest = QUARANTINE.lock().flushing.front().map(|(epoch, _)| *epoch);
        let Some(epoch) = oldest else {
            return slots;
        };
        polls += 1;
        if polls <= YIELDS_BEFORE_SLEEP {
            sched::yield_now();
        } else {
            // The other CPU may be slow to take the IPI (or never got it): ask again, and let
            // this CPU halt meanwhile rather than spin.
            tlb::remind(epoch);
            sched::sleep_ms(1);
        }
        slots.extend(poll());
    }
}

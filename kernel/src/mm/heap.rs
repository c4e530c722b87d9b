//! How much the kernel heap may be asked for, and when it grows.
//!
//! The heap starts as one block taken at boot (`hw::heap::init`) and grows from the frame
//! allocator when thread creation needs room ([`ensure_free`]), so its size follows the number
//! of threads a boot runs instead of a fixed share of RAM. Allocations themselves cannot fail
//! cleanly on stable Rust (`Arc::new` and friends abort on failure), so the kernel keeps the
//! heap from running dry instead: an operation that creates many objects (a thread, a
//! workload member) first asks [`ensure_free`] for its bytes *plus a margin*, grows the heap if
//! needed, and is refused (`OutOfMemory`) when even growing cannot provide them. Everything
//! else (queue entries, sleepers, records) allocates from the margin, which is at least
//! [`MIN_MARGIN_BYTES`] and an eighth of the heap in use: more than a doubling of every
//! per-thread queue (at most a few words per thread, where a thread costs hundreds of bytes of
//! heap) can take at once.
//!
//! The heap grows only here, in thread context, never in an interrupt handler; an interrupt
//! handler that wants heap memory asks [`has_room`] and does without when it says no.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::sync::IrqMutex;

/// The smallest margin the heap keeps free beyond a request.
pub const MIN_MARGIN_BYTES: u64 = 2 << 20;
/// The most the heap grows by at once (less when no such contiguous block is free).
const GROW_CHUNK_BYTES: u64 = 32 << 20;
/// The least it grows by when it must.
const MIN_GROW_BYTES: u64 = 64 * 1024;

/// Serialises growing (two CPUs short of room at once grow once).
static GROWING: IrqMutex<()> = IrqMutex::new(());
/// Bytes the heap has grown by since boot.
static GROWN_BYTES: AtomicU64 = AtomicU64::new(0);
/// The most bytes the heap may grow to (`heap_limit_mib=`, for tests); `u64::MAX`: no limit.
static LIMIT_BYTES: AtomicU64 = AtomicU64::new(u64::MAX);
/// Requests [`ensure_free`] refused since boot.
static REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Caps the heap's size at `bytes` (its first block counts too): beyond it the heap does not
/// grow, and [`ensure_free`] refuses what does not fit.
pub fn set_limit(bytes: Option<u64>) {
    LIMIT_BYTES.store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Requests [`ensure_free`] has refused since boot.
pub fn refusals() -> u64 {
    REFUSALS.load(Ordering::Relaxed)
}

/// Bytes the heap must keep free beyond a request, with `used` bytes in use.
fn margin(used: u64) -> u64 {
    (used / 8).max(MIN_MARGIN_BYTES)
}

/// Returns (bytes in use, bytes free) of the heap; with a limit below the heap's first block,
/// only what the limit leaves counts as free.
fn usage() -> (u64, u64) {
    let (used, claimed) = hw::heap::usage();
    let claimed = (claimed as u64).min(LIMIT_BYTES.load(Ordering::Relaxed));
    (used as u64, claimed.saturating_sub(used as u64))
}

/// Whether `bytes` can be allocated now while the margin stays free (for code that must not
/// grow the heap, such as an interrupt handler).
pub fn has_room(bytes: u64) -> bool {
    let (used, free) = usage();
    free >= bytes + margin(used)
}

/// Makes sure `bytes` can be allocated with the margin left free, growing the heap from the
/// frame allocator if needed. `false`: memory has run out (nothing was taken).
pub fn ensure_free(bytes: u64) -> bool {
    if has_room(bytes) {
        return true;
    }
    let _growing = GROWING.lock();
    let (used, free) = usage();
    let want = bytes + margin(used);
    if free >= want {
        return true;
    }
    let short = (want - free).next_multiple_of(PAGE_BYTES);
    let room = LIMIT_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(hw::heap::usage().1 as u64);
    // A large block first (fewer, larger spans), then the least that does.
    for size in [
        GROW_CHUNK_BYTES.max(short),
        (GROW_CHUNK_BYTES / 16).max(short),
        short.max(MIN_GROW_BYTES),
    ] {
        if size > room {
            continue;
        }
        if hw::heap::grow(size) {
            GROWN_BYTES.fetch_add(size, Ordering::Relaxed);
            return has_room(bytes) || refuse();
        }
    }
    refuse()
}

fn refuse() -> bool {
    REFUSALS.fetch_add(1, Ordering::Relaxed);
    false
}

/// How much an allocation of `bytes` that found no room may grow the heap, which has
/// `claimed` bytes (for the heap's out-of-memory handler): `None` beyond the limit.
pub fn emergency_growth(claimed: u64, bytes: u64) -> Option<u64> {
    let size = (bytes + MIN_GROW_BYTES).next_multiple_of(MIN_GROW_BYTES);
    let room = LIMIT_BYTES.load(Ordering::Relaxed).saturating_sub(claimed);
    (size <= room).then_some(size)
}

/// Counts `bytes` the heap grew by outside [`ensure_free`].
pub fn note_growth(bytes: u64) {
    GROWN_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Bytes the heap has grown by since boot (frames it took after `hw::heap::init`).
pub fn grown_bytes() -> u64 {
    GROWN_BYTES.load(Ordering::Relaxed)
}

/// Bytes of the heap in use now.
pub fn used_bytes() -> u64 {
    usage().0
}

/// The growth policy as the hardware crate's heap sees it (`hw::heap::set_growth`).
#[derive(Debug)]
pub struct KernelHeapGrowth;

impl crate::hw::heap::HeapGrowth for KernelHeapGrowth {
    fn emergency_growth(&self, claimed: u64, bytes: u64) -> Option<u64> {
        emergency_growth(claimed, bytes)
    }

    fn note_growth(&self, bytes: u64) {
        note_growth(bytes);
    }
}

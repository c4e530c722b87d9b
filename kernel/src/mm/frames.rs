//! The physical frame allocator.
//!
//! A bitmap over every 4 KiB frame below `MAX_PHYS_BYTES` (32 GiB: all the RAM of the largest
//! guest the lab boots, 16 GiB, whose upper part QEMU places above the 4 GiB boundary), one bit
//! per frame, set when the frame is free. A frame is handed out as a [`Frame`], which is neither `Copy` nor `Clone`:
//! whoever holds it owns the memory, and giving it back (`free`) consumes it. Freeing a frame
//! that is already free is a kernel bug and panics.
//!
//! Two urgencies: [`Urgency::Normal`] never takes the last `reserve` frames; [`Urgency::Atomic`]
//! (callers that cannot wait, like the stack-magazine refill at context switch) may. Neither
//! ever blocks.
//!
//! Fault injection makes allocations fail on purpose, by a pattern chosen on the command line
//! or by a test ([`Injection`]); injected failures are counted apart from real ones. Boot-time
//! allocations happen before injection is armed.

pub use crate::hw::frame::Frame;
use crate::hw::frame::FrameSource;
use crate::hw::layout::{MAX_PHYS_BYTES, PAGE_BYTES};
use crate::hw::pvh::PhysRange;
use crate::hw::sync::IrqMutex;

const MAX_FRAMES: usize = (MAX_PHYS_BYTES / PAGE_BYTES) as usize;
const BITMAP_WORDS: usize = MAX_FRAMES / 64;
const _: () = assert!(MAX_FRAMES.is_multiple_of(64));

/// Default number of frames only atomic allocations may take.
pub const DEFAULT_RESERVE_FRAMES: u64 = 256;

/// How much an allocation may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// May not dip into the reserve.
    Normal,
    /// May take the reserve; used where waiting is impossible.
    Atomic,
}

/// A pattern of allocations that fail on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Nothing fails on purpose.
    None,
    /// Every `n`th allocation attempt fails (any urgency).
    EveryNth(u64),
    /// Each attempt fails with probability `percent`%, from a PRNG seeded with `seed`.
    Percent {
        /// 0 to 100.
        percent: u8,
        /// The PRNG seed.
        seed: u64,
    },
    /// Atomic attempts number `start .. start + len` (counted from when this was set) fail.
    AtomicWindow {
        /// The first failing atomic attempt.
        start: u64,
        /// How many fail.
        len: u64,
    },
    /// Every atomic attempt fails.
    AllAtomic,
}

/// Counters of the allocator, read together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames managed.
    pub total: u64,
    /// Frames free now.
    pub free: u64,
    /// Frames only atomic allocations may take.
    pub reserve: u64,
    /// Successful allocations since boot.
    pub allocations: u64,
    /// Frees since boot.
    pub frees: u64,
    /// Attempts that failed because of injection.
    pub injected_failures: u64,
    /// Attempts that failed because memory (or the non-reserve part) was exhausted.
    pub real_failures: u64,
}

struct Allocator {
    free_bits: [u64; BITMAP_WORDS],
    next_word: usize,
    stats: Stats,
    injection: Injection,
    attempts: u64,
    atomic_attempts: u64,
    rng: u64,
}

static FRAMES: IrqMutex<Allocator> = IrqMutex::new(Allocator {
    free_bits: [0; BITMAP_WORDS],
    next_word: 0,
    stats: Stats {
        total: 0,
        free: 0,
        reserve: 0,
        allocations: 0,
        frees: 0,
        injected_failures: 0,
        real_failures: 0,
    },
    injection: Injection::None,
    attempts: 0,
    atomic_attempts: 0,
    rng: 0,
});

impl Allocator {
    fn set_free(&mut self, number: usize, free: bool) {
        let (word, bit) = (number / 64, number % 64);
        if free {
            self.free_bits[word] |= 1 << bit;
        } else {
            self.free_bits[word] &= !(1 << bit);
        }
    }

    fn is_free(&self, number: usize) -> bool {
        self.free_bits[number / 64] & (1 << (number % 64)) != 0
    }

    fn injected(&mut self, urgency: Urgency) -> bool {
        self.attempts += 1;
        if urgency == Urgency::Atomic {
            self.atomic_attempts += 1;
        }
        match self.injection {
            Injection::None => false,
            Injection::EveryNth(n) => n > 0 && self.attempts.is_multiple_of(n),
            Injection::Percent { percent, .. } => {
                // xorshift64: small, seedable, good enough to spread failures.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                self.rng % 100 < u64::from(percent)
            }
            Injection::AtomicWindow { start, len } => {
                urgency == Urgency::Atomic
                    && (start..start.saturating_add(len)).contains(&(self.atomic_attempts - 1))
            }
            Injection::AllAtomic => urgency == Urgency::Atomic,
        }
    }

    fn take_one(&mut self) -> Option<u64> {
        for offset in 0..BITMAP_WORDS {
            let word = (self.next_word + offset) % BITMAP_WORDS;
            let bits = self.free_bits[word];
            if bits != 0 {
                let number = word * 64 + bits.trailing_zeros() as usize;
                self.set_free(number, false);
                self.next_word = word;
                return Some(number as u64 * PAGE_BYTES);
            }
        }
        None
    }
}

/// Hands every page of `ram` to the allocator, except those overlapping `reserved` ranges and
/// those beyond `MAX_PHYS_BYTES`. Called once at boot.
pub fn init(ram: &[PhysRange], reserved: &[PhysRange], reserve_frames: u64) {
    let mut frames = FRAMES.lock();
    for range in ram {
        let first = range.start.div_ceil(PAGE_BYTES);
        let end = range.end().min(MAX_PHYS_BYTES) / PAGE_BYTES;
        for number in first..end {
            let start = number * PAGE_BYTES;
            let page = PhysRange {
                start,
                bytes: PAGE_BYTES,
            };
            let overlaps = reserved
                .iter()
                .any(|r| r.start < page.end() && page.start < r.end());
            if !overlaps && !frames.is_free(number as usize) {
                frames.set_free(number as usize, true);
                frames.stats.total += 1;
                frames.stats.free += 1;
            }
        }
    }
    frames.stats.reserve = reserve_frames.min(frames.stats.total);
}

/// Allocates one frame, or `None` when memory is exhausted for this urgency or injection says
/// this attempt fails. Never blocks. The frame's content is whatever it was.
pub fn alloc(urgency: Urgency) -> Option<Frame> {
    let mut frames = FRAMES.lock();
    if frames.injected(urgency) {
        frames.stats.injected_failures += 1;
        return None;
    }
    let floor = match urgency {
        Urgency::Normal => frames.stats.reserve,
        Urgency::Atomic => 0,
    };
    if frames.stats.free <= floor {
        frames.stats.real_failures += 1;
        return None;
    }
    let address = frames.take_one()?;
    frames.stats.free -= 1;
    frames.stats.allocations += 1;
    Some(Frame::from_address(address))
}

/// Allocates one frame and fills it with zeros.
pub fn alloc_zeroed(urgency: Urgency) -> Option<Frame> {
    let frame = alloc(urgency)?;
    crate::hw::paging::zero_frame(&frame);
    Some(frame)
}

/// Gives a frame back.
///
/// # Panics
/// If the frame is already free or was never managed: a double free is a kernel bug.
pub fn free(frame: Frame) {
    let number = (frame.address() / PAGE_BYTES) as usize;
    let mut frames = FRAMES.lock();
    assert!(
        number < MAX_FRAMES && !frames.is_free(number),
        "double free of {frame:?}"
    );
    frames.set_free(number, true);
    frames.stats.free += 1;
    frames.stats.frees += 1;
}

/// Allocates `count` physically contiguous frames (for the heap), returning the physical
/// address of the first. Ignores injection; never takes the reserve. Scans the bitmap a word
/// at a time where it can (a whole word free or taken), so growing the heap of a large guest
/// stays cheap.
pub fn alloc_contiguous(count: u64) -> Option<u64> {
    let count = usize::try_from(count).ok().filter(|&c| c > 0)?;
    let mut frames = FRAMES.lock();
    if frames.stats.free < frames.stats.reserve + count as u64 {
        return None;
    }
    let mut run_start = 0;
    let mut run_len = 0;
    let mut number = 0;
    while number < MAX_FRAMES {
        let word = frames.free_bits[number / 64];
        if number.is_multiple_of(64) && word == 0 {
            run_len = 0;
            number += 64;
            continue;
        }
        if number.is_multiple_of(64) && word == u64::MAX && run_len + 64 < count {
            if run_len == 0 {
                run_start = number;
            }
            run_len += 64;
            number += 64;
            continue;
        }
        if frames.is_free(number) {
            if run_len == 0 {
                run_start = number;
            }
            run_len += 1;
            if run_len == count {
                for n in run_start..run_start + count {
                    frames.set_free(n, false);
                }
                frames.stats.free -= count as u64;
                frames.stats.allocations += count as u64;
                return Some(run_start as u64 * PAGE_BYTES);
            }
        } else {
            run_len = 0;
        }
        number += 1;
    }
    None
}

/// Returns the allocator's counters.
pub fn stats() -> Stats {
    FRAMES.lock().stats
}

/// Sets the failure pattern and returns the previous one. Attempt counting restarts.
pub fn set_injection(injection: Injection) -> Injection {
    let mut frames = FRAMES.lock();
    frames.attempts = 0;
    frames.atomic_attempts = 0;
    if let Injection::Percent { seed, .. } = injection {
        // xorshift must not start at 0.
        frames.rng = seed | 1;
    }
    core::mem::replace(&mut frames.injection, injection)
}

/// Changes how many frames only atomic allocations may take; returns the previous value.
pub fn set_reserve(reserve_frames: u64) -> u64 {
    let mut frames = FRAMES.lock();
    let total = frames.stats.total;
    core::mem::replace(&mut frames.stats.reserve, reserve_frames.min(total))
}

/// The allocator as the hardware crate sees it (`hw::frame::register`): zeroed frames of
/// normal urgency for page tables and kernel stacks, and the heap's block.
#[derive(Debug)]
pub struct KernelFrames;

impl FrameSource for KernelFrames {
    fn alloc_zeroed(&self) -> Option<Frame> {
        alloc_zeroed(Urgency::Normal)
    }

    fn free(&self, frame: Frame) {
        free(frame);
    }

    fn alloc_contiguous(&self, count: u64) -> Option<u64> {
        alloc_contiguous(count)
    }
}

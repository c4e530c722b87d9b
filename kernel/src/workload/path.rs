//! A workload path: a recursion to a drawn depth whose frames are filled with a pattern and
//! checked on the way back (frames corrupted, their checksum), and the per-policy sums of
//! those checks.
//!
//! Two kinds of path. A *high-water* path ([`path`]) touches the byte exactly its depth below
//! the stack top (a thread's deepest byte, as the census's `used_bytes`). A *sleep* path
//! ([`sleep_path`]) puts the thread to sleep with its **saved stack pointer** at its depth
//! (as the census's `sleeping_depth_bytes`, a Linux thread's saved stack pointer, which
//! includes Linux's own `schedule()` frames): it descends that depth less this kernel's own
//! sleep path ([`sleep_path_bytes`], measured by [`calibrate`] as each run starts), pads the
//! rest with small frames, and sleeps there. A depth below what this kernel needs at least (the
//! thread's entry, its loop and the sleep path: the *floor*) sleeps at the floor.

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes::{self, stack_pointer};
use crate::sched;
use crate::stacks::Policy;

/// Bytes of stack one level of [`descend`] uses, at most (a 256-byte frame and its overhead).
const LEVEL_BYTES: u64 = 512;
/// How far above the target depth the recursion stops (room for what runs at the bottom).
const BOTTOM_ROOM: u64 = 1024;
const _: () = assert!(
    BOTTOM_ROOM > 512 + 256,
    "the probe needs 512 bytes below its own frame"
);

/// Goes `depth` bytes deep on this thread's stack (`top`, `bottom` its ends) and runs
/// `at_bottom` there.
pub(super) fn path(
    top: u64,
    bottom: u64,
    depth: u64,
    salt: u64,
    at_bottom: &mut dyn FnMut(),
) -> PathCheck {
    let depth = depth.min(top - bottom - PAGE_BYTES / 4);
    let mut check = PathCheck::default();
    let mut bottom = Bottom::Touch {
        bottom,
        then: at_bottom,
    };
    descend(top, depth, 0, salt, &mut bottom, &mut check);
    check
}

/// This kernel's own sleep path, bytes: from the stack pointer of a frame that calls
/// [`sleep_here`] to the stack pointer the switch saves (0 until [`calibrate`] ran).
static SLEEP_PATH_BYTES: AtomicU64 = AtomicU64::new(0);

/// The bytes of this kernel's own sleep path ([`SLEEP_PATH_BYTES`]), measured by
/// [`calibrate`] (which runs first when it has not yet).
pub fn sleep_path_bytes() -> u64 {
    match SLEEP_PATH_BYTES.load(Ordering::Relaxed) {
        0 => calibrate(),
        bytes => bytes,
    }
}

/// Measures this kernel's own sleep path: sleeps a tick through [`sleep_here`] from this
/// frame and compares the saved stack pointer with this frame's. Repeated until two sleeps
/// agree (a preemption between the wake-up and the reading would overwrite the saved stack
/// pointer; the scheduler keeps the sleep's, so this is a safeguard). Runs in a thread.
#[inline(never)]
pub fn calibrate() -> u64 {
    let top = sched::current().expect("calibrate in a thread").stack.top();
    let mut last = 0;
    for _ in 0..8 {
        let here = top - stack_pointer();
        let saved = sleep_here(top, 1);
        if saved == 0 {
            // Woken before it switched away: nothing measured.
            continue;
        }
        let bytes = saved - here;
        if bytes == last {
            SLEEP_PATH_BYTES.store(bytes, Ordering::Relaxed);
            return bytes;
        }
        last = bytes;
    }
    panic!("the sleep path's depth never measured the same twice (last {last} bytes)");
}

/// Sleeps `nap_ms` and returns how deep below `top` the switch saved this thread's stack
/// pointer. Always inlined into its caller, whose frame calls the sleep; the reading after the
/// wake-up is out of line, so its frame is not under the sleep.
#[inline(always)]
fn sleep_here(top: u64, nap_ms: u64) -> u64 {
    sleep_ms(nap_ms);
    saved_depth(top)
}

/// [`sched::sleep_ms`], never inlined: every caller's sleep path is the same code.
#[inline(never)]
fn sleep_ms(nap_ms: u64) {
    sched::sleep_ms(nap_ms);
}

/// How deep below `top` the last sleep's switch saved this thread's stack pointer; 0 when the
/// sleep did not switch away (woken before it could).
#[inline(never)]
fn saved_depth(top: u64) -> u64 {
    match sched::current()
        .expect("a sleeping thread")
        .take_blocked_stack_pointer()
    {
        0 => 0,
        sp => top - sp,
    }
}

/// Goes deep enough on this thread's stack (`top`, `bottom` its ends) that its saved stack
/// pointer sits `depth` below `top` while it sleeps `nap_ms` (or at this kernel's floor when
/// `depth` is shallower), calls `note` with the depth it is about to sleep at, and sleeps.
/// Inlined, so that the floor is the caller's frame and the sleep path: a sleep at the floor
/// or less than two levels of [`descend`] below it sleeps from the caller's frame or through
/// small frames ([`pad`]); deeper ones descend out of line ([`descend_to_sleep`]).
#[inline(always)]
pub(super) fn sleep_path(
    top: u64,
    bottom: u64,
    depth: u64,
    salt: u64,
    nap_ms: u64,
    note: &mut dyn FnMut(u64),
) -> (PathCheck, Slept) {
    let depth = depth.min(top - bottom - PAGE_BYTES / 4);
    let cost = sleep_path_bytes();
    let used = top - stack_pointer();
    if used + cost >= depth {
        // At (or below) the floor: sleep from here.
        note(used + cost);
        let saved = sleep_here(top, nap_ms);
        (
            PathCheck::default(),
            Slept {
                saved,
                floor: used + cost,
            },
        )
    } else if used + 2 * LEVEL_BYTES + cost > depth {
        // Less than two levels to go: small frames only.
        note(depth);
        let saved = pad(top, depth - cost, nap_ms);
        (PathCheck::default(), Slept { saved, floor: 0 })
    } else {
        descend_to_sleep(top, depth, salt, nap_ms, cost, note)
    }
}

/// The deep part of [`sleep_path`]: frames of [`descend`] (their locals checked after the
/// sleep), then small ones.
#[inline(never)]
fn descend_to_sleep(
    top: u64,
    depth: u64,
    salt: u64,
    nap_ms: u64,
    cost: u64,
    note: &mut dyn FnMut(u64),
) -> (PathCheck, Slept) {
    let mut check = PathCheck::default();
    let mut slept = Slept::default();
    let mut bottom = Bottom::Sleep {
        nap_ms,
        cost,
        note,
        slept: &mut slept,
    };
    descend(top, depth, 0, salt, &mut bottom, &mut check);
    (check, slept)
}

/// Where a sleep path slept.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slept {
    /// The saved stack pointer's depth below the stack top, bytes.
    pub(super) saved: u64,
    /// When the path slept at this kernel's floor: the floor, bytes (else 0).
    pub(super) floor: u64,
}

/// What a path does at its bottom.
enum Bottom<'a> {
    /// Touch the byte `depth` below the stack top (a stack of that `bottom`), then run the
    /// closure.
    Touch {
        bottom: u64,
        then: &'a mut dyn FnMut(),
    },
    /// Sleep with the saved stack pointer `depth` below the stack top.
    Sleep {
        nap_ms: u64,
        cost: u64,
        note: &'a mut dyn FnMut(u64),
        slept: &'a mut Slept,
    },
}

/// The most bytes one frame of [`pad`] takes: a sleep path above the floor lands the saved
/// stack pointer at its depth or at most this much less one byte deeper (checked by the
/// kernel test `workload_sleep_lands_at_drawn_depth`).
pub const PAD_BYTES_AT_MOST: u64 = 32;

/// One small frame (its return address and a saved register) per call, down to `target`
/// below `top`, then the sleep: the last bytes of a sleep path, finer than a level of
/// [`descend`].
#[inline(never)]
fn pad(top: u64, target: u64, nap_ms: u64) -> u64 {
    let saved = if top - stack_pointer() < target {
        pad(top, target, nap_ms)
    } else {
        sleep_here(top, nap_ms)
    };
    // Not a tail call: this frame stays while the thread sleeps.
    black_box(saved)
}

/// What the frames of one path found on the way back up.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PathCheck {
    /// Frames checked.
    pub(super) frames: u64,
    /// Frames whose locals had changed.
    pub(super) corrupted: u64,
    /// Wrapping sum of their words.
    pub(super) sum: u64,
}

fn descend(
    top: u64,
    depth: u64,
    level: u64,
    salt: u64,
    at_bottom: &mut Bottom<'_>,
    check: &mut PathCheck,
) {
    // The frame's locals: a pattern of this level and path, checked after everything below
    // (deeper frames, stack faults, interrupts, a sleep, a migration) has run.
    let word = level.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    let mut frame = [word; 32];
    black_box(&mut frame);
    let used = top - stack_pointer();
    match at_bottom {
        Bottom::Touch { bottom, then } => {
            if used + LEVEL_BYTES + BOTTOM_ROOM < depth {
                descend(top, depth, level + 1, salt, at_bottom, check);
            } else {
                if depth > used + BOTTOM_ROOM {
                    // The deepest byte of the path, exactly. With interrupts on, a fault here
                    // that cannot be served stops this thread; in an interrupts-off section it
                    // would stop the kernel (counted, see the module docs).
                    probes::touch_stack(*bottom, top - depth);
                }
                then();
            }
        }
        Bottom::Sleep {
            nap_ms,
            cost,
            note,
            slept,
        } => {
            // The frame that calls `sleep_here` sits `cost` above the saved stack pointer.
            let target = depth - *cost;
            if used + LEVEL_BYTES <= target {
                descend(top, depth, level + 1, salt, at_bottom, check);
            } else {
                note(depth.max(used + *cost));
                slept.saved = pad(top, target, *nap_ms);
            }
        }
    }
    let frame = black_box(&frame);
    check.frames += 1;
    if frame.iter().any(|&w| w != word) {
        check.corrupted += 1;
    }
    check.sum = frame.iter().fold(check.sum, |sum, &w| sum.wrapping_add(w));
}

/// Per policy (in `Policy::ALL` order): what its workload threads did and found.
pub(super) struct PolicyChecks {
    pub(super) threads_finished: AtomicU64,
    /// Of those, threads that ended without a single path (the run stopped first).
    pub(super) threads_idle: AtomicU64,
    pub(super) paths: AtomicU64,
    pub(super) frames: AtomicU64,
    pub(super) corrupted: AtomicU64,
    pub(super) sum: AtomicU64,
}

static CHECKS: [PolicyChecks; Policy::COUNT] = [const {
    PolicyChecks {
        threads_finished: AtomicU64::new(0),
        threads_idle: AtomicU64::new(0),
        paths: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        corrupted: AtomicU64::new(0),
        sum: AtomicU64::new(0),
    }
}; Policy::COUNT];

pub(super) fn checks_of(policy: Policy) -> &'static PolicyChecks {
    &CHECKS[policy.index()]
}

impl PolicyChecks {
    pub(super) fn add(&self, check: PathCheck) {
        self.paths.fetch_add(1, Ordering::Relaxed);
        self.frames.fetch_add(check.frames, Ordering::Relaxed);
        self.corrupted.fetch_add(check.corrupted, Ordering::Relaxed);
        self.sum.fetch_add(check.sum, Ordering::Relaxed);
    }
}

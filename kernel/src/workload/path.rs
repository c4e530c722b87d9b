//! A workload path: a recursion to a drawn depth whose frames are filled with a pattern and
//! checked on the way back (frames corrupted, their checksum), and the per-policy sums of
//! those checks.

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes::{self, stack_pointer};
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
    descend(top, bottom, depth, 0, salt, at_bottom, &mut check);
    check
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
    bottom: u64,
    depth: u64,
    level: u64,
    salt: u64,
    at_bottom: &mut dyn FnMut(),
    check: &mut PathCheck,
) {
    // The frame's locals: a pattern of this level and path, checked after everything below
    // (deeper frames, stack faults, interrupts, a sleep, a migration) has run.
    let word = level.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    let mut frame = [word; 32];
    black_box(&mut frame);
    let used = top - stack_pointer();
    if used + LEVEL_BYTES + BOTTOM_ROOM < depth {
        descend(top, bottom, depth, level + 1, salt, at_bottom, check);
    } else {
        if depth > used + BOTTOM_ROOM {
            // The deepest byte of the path, exactly. With interrupts on, a fault here that
            // cannot be served stops this thread; in an interrupts-off section it would stop
            // the kernel (counted, see the module docs).
            probes::touch_stack(bottom, top - depth);
        }
        at_bottom();
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

//! The `reclaim` policy's trims: giving back the dead pages of sleeping threads' stacks.
//!
//! A thread that went to sleep (`switched_out` with `asleep`) has its live data between its
//! saved stack pointer and its stack top. Below the saved stack pointer lie, in this order,
//! the red zone (128 bytes, kept although kernel code is built without one) and whatever the
//! thread's deeper calls left there. Nothing resumes the thread below its saved stack pointer
//! (`docs/reclaim.md`): a voluntary switch resumes by popping the 64-byte switch frame
//! (`hw::context::SWITCH_FRAME_BYTES`) that starts *at* the saved stack pointer, and a
//! preempted thread by popping the same frame and then the moved trap frame above it; the
//! trap entry runs no code on the thread's stack below those frames. So every populated page
//! wholly below `saved_sp - 128` is dead (`dks_core::reclaim::dead_pages`), and the margin
//! for the resume frame below the saved stack pointer is zero bytes.
//!
//! # When
//!
//! The stack-reclaim thread trims (`reclaim_thread`):
//! - under memory pressure (admission refused): every sleeping `reclaim` stack, with no age and
//!   no limit ([`TrimCause::Pressure`]);
//! - at its own pace: every [`LONG_SLEEP_ROUND_MS`] it trims `reclaim` stacks asleep for at
//!   least [`LONG_SLEEP_MS`], at most [`LONG_SLEEP_PAGES_PER_ROUND`] pages per round
//!   ([`TrimCause::LongSleep`]).
//!
//! A round does not read every slot: the switch-out that makes a slot a candidate sets the
//! slot's bit in the region's trim hints (after the claim word), and a round looks only at
//! set bits, starting at the word where the last round stopped at its limit. A bit is cleared
//! only by a round that found its slot no candidate, which then reads the slot again and sets
//! the bit back if it became one meanwhile. The hints decide nothing: the claim does.
//!
//! # Why it is safe on several CPUs
//!
//! A trim acts on a stack only while its thread is off every CPU: it takes the slot's stack
//! lock and goes on only if it wins the slot's trim claim (`dks_core::trim_claim`, in the
//! slot's policy mirror) from `Candidate`, which only `switched_out` of a thread that went to
//! sleep with dead pages sets, under that lock, after the thread's context is saved and the
//! scheduler of the CPU it left is back on its own stack. The admission that wakes the thread
//! races for the same claim (one compare-and-swap `Candidate → Idle`) before any CPU switches
//! to it: exactly one of them wins. Admission first, and the trim takes nothing (the admission
//! may then go on without the locks); the trim first, and admission takes the stack lock, so
//! waits for the trim's end, and finds the larger need (the trimmed pages count in it again)
//! and the slot's pending flush, and refuses until both are covered (docs/reclaim.md).
//!
//! The trimmed pages were used, so any CPU's TLB may still translate them. They are unmapped
//! with the shootdown deferred (`X86Platform::releasing`): their frames go to the quarantine,
//! and the slot is marked [`TRIM_PENDING`] under its lock. After the round, one flush of every
//! TLB is requested ([`quarantine::start_flush_epoch`]) and its generation replaces the mark.
//! The frames are freed only when that flush (or a later one) completed everywhere
//! (`quarantine::poll`), and admission refuses the thread until it did
//! ([`super::Admit::Flushing`]): a stale translation would let the thread write, through the
//! old frame, data that a later fault would not find. Dead pages whose Accessed bit is clear
//! were never cached and go straight back to the frame allocator.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dks_core::pack::{NotPacked, PackDone};
use dks_core::reclaim::{self, TrimCause};
use dks_core::{CpuId, Magazine, Policy, TrimState};

use super::platform::X86Platform;
use super::{GROUPS, quarantine, region, tally};
use crate::hw::cpu_ops;

/// A thread asleep at least this long has its dead pages trimmed by the reclaim thread's
/// rounds (milliseconds; one tick at the default 100 Hz is 10 ms, and sleeps shorter than a
/// round are left alone: a trim costs a TLB flush of every CPU and a fault per page when the
/// thread goes deep again).
pub const LONG_SLEEP_MS: u64 = 20;

/// How often the reclaim thread looks for long sleepers (milliseconds, rounded up to ticks).
pub const LONG_SLEEP_ROUND_MS: u64 = 10;

/// The most pages one long-sleep round trims (whole stacks: it stops after the stack that
/// reaches the limit). 256 pages a round at one round per 10 ms is at most 100 MiB/s, and one
/// TLB flush of every CPU per round.
pub const LONG_SLEEP_PAGES_PER_ROUND: u32 = 256;

/// The age (ms) from which long-sleep rounds trim, [`LONG_SLEEP_MS`] unless a test changed it
/// (`u64::MAX`: no long-sleep trims, so that a test sees only the trims it makes).
static LONG_SLEEP_AGE_MS: AtomicU64 = AtomicU64::new(LONG_SLEEP_MS);

/// Whether the reclaim thread trims under pressure (tests that must see only the trims they
/// make or wait for turn it off for a while).
static PRESSURE_TRIMS: AtomicBool = AtomicBool::new(true);

/// Whether the reclaim thread trims under pressure now.
pub fn pressure_trims() -> bool {
    PRESSURE_TRIMS.load(Ordering::Relaxed)
}

/// Lets the reclaim thread trim under pressure (`true`) or not; returns the old setting.
pub fn set_pressure_trims(enabled: bool) -> bool {
    PRESSURE_TRIMS.swap(enabled, Ordering::Relaxed)
}

/// The age from which long-sleep rounds trim now.
pub fn long_sleep_ms() -> u64 {
    LONG_SLEEP_AGE_MS.load(Ordering::Relaxed)
}

/// Sets the age from which long-sleep rounds trim (`u64::MAX`: never); returns the old one.
pub fn set_long_sleep_ms(ms: u64) -> u64 {
    LONG_SLEEP_AGE_MS.swap(ms, Ordering::Relaxed)
}

/// The slot's flush mark while its trimmed pages wait for the round's flush to be requested.
pub const TRIM_PENDING: u64 = u64::MAX;

/// Whether some stack may be a candidate for a trim (set when one sleeps with dead pages,
/// cleared by a round that left none).
static CANDIDATES: AtomicBool = AtomicBool::new(false);

/// The flush generation of the last round that requested one.
static LAST_FLUSH: AtomicU64 = AtomicU64::new(0);

/// Whether a round may find work: a candidate sleeps, or the last round's flush has not
/// completed everywhere yet (then the round reminds the CPUs that have not flushed).
pub fn candidates() -> bool {
    if CANDIDATES.load(Ordering::Relaxed) {
        return true;
    }
    let last = LAST_FLUSH.load(Ordering::Relaxed);
    last != 0 && !crate::tlb::flushed_everywhere(last)
}

/// Notes that candidates are left for a later round.
pub fn note_candidates() {
    CANDIDATES.store(true, Ordering::Relaxed);
}

/// Asks again the CPUs that have not flushed for the last round's trims (an IPI may be lost,
/// see `tlb::remind`); trimmed threads wait for that flush.
pub fn remind_flush() {
    let last = LAST_FLUSH.load(Ordering::Relaxed);
    if last != 0 && !crate::tlb::flushed_everywhere(last) {
        crate::tlb::remind(last);
    }
}

/// What one round of trims did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimRound {
    /// Stacks that gave pages back.
    pub stacks: u32,
    /// Pages given back.
    pub pages: u32,
    /// Candidates left for a later round (too young, or over the round's limit: then at
    /// least 1, the one it stopped at).
    pub left: u32,
    /// Stacks it tried to claim.
    pub claims: u32,
    /// Whether it stopped at its page limit with candidates left to look at.
    pub capped: bool,
    /// The TLB flush generation the trimmed threads wait for, if any page needed one.
    pub flush: Option<u64>,
}

/// Trims the dead pages of sleeping stacks: those asleep for at least `min_asleep_ms`, up to
/// `max_pages` pages (whole stacks), for `cause`; only `reclaim` stacks (`switch`, which
/// dks-core would also let give pages back asleep, keeps the pages its threads touched). Must run in a thread
/// whose stack is static (the stack-reclaim thread, or a test), never in the scheduler loop.
pub fn trim_sleeping(cause: TrimCause, min_asleep_ms: u64, max_pages: u32) -> TrimRound {
    let region = region();
    let now = crate::sched::uptime_ms();
    let cpu = cpu_ops::current_id(&cpu_ops::IrqGuard::new());
    // Frames never cached (Accessed clear) land here and go straight back to the allocator.
    let mut clean = Magazine::new(CpuId::new(cpu), &region.layout);
    let mut round = TrimRound::default();
    let mut waiting: Vec<usize> = Vec::new();
    CANDIDATES.store(false, Ordering::Relaxed);
    let pack_after_ms = super::pack::after_ms();
    let hints = &region.trim_hints;
    // Where the last round stopped at its limit: every candidate gets its turn.
    let start = CURSOR.load(Ordering::Relaxed) % hints.len().max(1);
    'words: for step in 0..hints.len() {
        let word = (start + step) % hints.len();
        let mut bits = hints[word].load(Ordering::Acquire);
        while bits != 0 {
            let index = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let cell = &region.slots[index];
            if !is_candidate(cell) {
                drop_hint(index);
                continue;
            }
            let state = cell.policy.state();
            let is_pack = cell.policy() == Some(Policy::Pack);
            let since = cell.asleep_since.load(Ordering::Relaxed).max(1);
            let asleep_ms = now.saturating_sub(since - 1);
            // A woken `pack` stack (waiting for admission) is trimmed, never packed.
            let pack_due =
                is_pack && asleep_ms >= pack_after_ms && !cell.woken.load(Ordering::Relaxed);
            if round.pages >= max_pages {
                // The next round starts here.
                round.left += 1;
                round.capped = true;
                CURSOR.store(word, Ordering::Relaxed);
                break 'words;
            }
            // Too young, or trimmed already (pages given back, or none to give) and its pack
            // not due yet.
            if !pack_due
                && (state == TrimState::Trimmed
                    || asleep_ms < min_asleep_ms
                    || cell.dead_trimmed.load(Ordering::Relaxed))
            {
                round.left += 1;
                continue;
            }
            round.claims += 1;
            let mut platform = X86Platform::releasing();
            let trimmed = trim_slot(
                cell,
                cause,
                pack_due,
                cpu as usize,
                &mut clean,
                &mut platform,
            );
            if is_candidate(cell) {
                // A `pack` stack not packed yet: a later round packs it.
                round.left += 1;
            } else {
                drop_hint(index);
            }
            let Some(trimmed) = trimmed else {
                continue;
            };
            if trimmed > 0 {
                round.stacks += 1;
                round.pages += u32::from(trimmed);
            }
            // A pack in guard mode may give back no page and still defer a flush (of the top
            // page it keeps): the slot waits for this round's flush all the same.
            if platform.deferred() {
                waiting.push(index);
            }
        }
    }
    clean.drain(&mut X86Platform::live());
    if !waiting.is_empty() {
        let epoch = quarantine::start_flush_epoch();
        for index in waiting {
            let _ = region.slots[index].flush_epoch.compare_exchange(
                TRIM_PENDING,
                epoch,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        LAST_FLUSH.store(epoch, Ordering::Relaxed);
        round.flush = Some(epoch);
    }
    round
}

/// Slots whose trim hint is set now (candidates, and slots a round has not yet found to be
/// none any more): for the stack-reclaim thread's report.
pub fn hinted() -> u32 {
    region()
        .trim_hints
        .iter()
        .map(|word| word.load(Ordering::Relaxed).count_ones())
        .sum()
}

/// The word of the trim hints where the next round starts (where the last one stopped at its
/// limit).
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// Whether the trims may act on `cell`: a candidate, or a `pack` stack trimmed but not packed
/// yet (a snapshot; the claim decides).
fn is_candidate(cell: &super::Slot) -> bool {
    match cell.policy.state() {
        TrimState::Candidate => true,
        TrimState::Trimmed => {
            cell.policy() == Some(Policy::Pack)
                && cell.asleep_since.load(Ordering::Relaxed) != 0
                && !cell.woken.load(Ordering::Relaxed)
        }
        TrimState::Idle | TrimState::Trimming => false,
    }
}

/// Marks slot `index` as one the rounds must look at, after it became a candidate.
fn hint(index: usize) {
    region().trim_hints[index / 64].fetch_or(1 << (index % 64), Ordering::Release);
}

/// Takes back the hint of slot `index`, which was found no candidate; the slot's hint stays
/// set if it became one since (its switch-out sets the hint after the claim word).
fn drop_hint(index: usize) {
    let word = &region().trim_hints[index / 64];
    let bit = 1u64 << (index % 64);
    if word.fetch_and(!bit, Ordering::AcqRel) & bit != 0 && is_candidate(&region().slots[index]) {
        word.fetch_or(bit, Ordering::Release);
    }
}

/// Trims the stack of `cell` if it is asleep (for `cause`; see [`trim_sleeping`]), or packs
/// it if it is a `pack` stack asleep long enough (`pack_due`); returns the pages given back,
/// or `None` when the slot holds no stack. Counts on CPU `cpu`.
fn trim_slot(
    cell: &super::Slot,
    cause: TrimCause,
    pack_due: bool,
    cpu: usize,
    clean: &mut Magazine,
    platform: &mut X86Platform,
) -> Option<u8> {
    let region = region();
    let mut live = cell.stack.lock();
    let stack = live.as_mut()?;
    // Only a candidate (or a `pack` stack an earlier trim left for its pack), and only if the
    // trim, not the waking admission, gets it (the claim is taken with the lock held: an
    // admission that finds it taken waits for the lock, so for the end of this trim).
    let Some(from) = claim(cell, stack.policy()) else {
        return Some(0);
    };
    let mut again = false;
    if stack.policy() == Policy::Pack && pack_due {
        match super::pack::pack_locked(cell, stack, cpu, clean, platform) {
            Ok(done) => {
                cell.asleep_since.store(0, Ordering::Relaxed);
                cell.policy.end_claim(from, true, false);
                return Some(done.pages_given_back);
            }
            // No buffer now: a later round tries again (it stays a candidate).
            Err(NotPacked::NoBuffer) => {
                cell.policy.end_claim(from, false, true);
                return Some(0);
            }
            // Too deep to pack (it keeps its pages as under `reclaim`: trimmed below, and no
            // candidate for a pack any more), or woken (the wake path marks it awake).
            Err(
                NotPacked::TooDeep { .. }
                | NotPacked::Awake
                | NotPacked::AlreadyPacked
                | NotPacked::Policy,
            ) => cell.asleep_since.store(0, Ordering::Relaxed),
        }
    } else if stack.policy() == Policy::Pack {
        // Trimmed now, packed once it has slept long enough: it stays a candidate, which
        // rounds leave alone until then (without this mark, one with no dead pages would be
        // claimed and trimmed of nothing every round).
        again = stack.is_asleep() && !cell.woken.load(Ordering::Relaxed);
        cell.dead_trimmed.store(true, Ordering::Relaxed);
    }
    let trimmed = reclaim::trim_asleep(
        platform,
        &region.layout,
        clean,
        tally(cpu),
        &GROUPS[stack.group().as_usize()],
        stack,
        cause,
    );
    if trimmed > 0 {
        cell.mirror(stack);
        if platform.deferred() {
            cell.flush_epoch.store(TRIM_PENDING, Ordering::Relaxed);
        }
    }
    // Nothing more to take until it sleeps again (but a `pack` stack's pack); the waking
    // admission takes the lock if pages went (the need grew, a flush may be pending).
    cell.policy.end_claim(from, trimmed > 0, again);
    Some(trimmed)
}

/// Takes the trim claim of `cell` (its stack's lock held): from `Candidate`, or for a `pack`
/// stack from `Trimmed` (dead pages trimmed, its pack still to come). The state it was taken
/// from, or `None` if the slot is not the trim's to touch.
fn claim(cell: &super::Slot, policy: Policy) -> Option<TrimState> {
    if cell.policy.claim() {
        Some(TrimState::Candidate)
    } else if policy == Policy::Pack && cell.policy.claim_again() {
        Some(TrimState::Trimmed)
    } else {
        None
    }
}

/// Trims the stack in `slot` alone if it sleeps (cause "pressure") and requests the TLB flush
/// its thread then waits for: what one trim costs, for `bench=costs`. Returns the pages given
/// back.
pub fn trim_one(slot: dks_core::SlotIndex) -> u8 {
    let region = region();
    let cell = &region.slots[slot.as_usize()];
    let cpu = cpu_ops::current_id(&cpu_ops::IrqGuard::new());
    let mut clean = Magazine::new(CpuId::new(cpu), &region.layout);
    let mut platform = X86Platform::releasing();
    let trimmed = trim_slot(
        cell,
        TrimCause::Pressure,
        false,
        cpu as usize,
        &mut clean,
        &mut platform,
    )
    .unwrap_or(0);
    clean.drain(&mut X86Platform::live());
    if platform.deferred() {
        let epoch = quarantine::start_flush_epoch();
        let _ = cell.flush_epoch.compare_exchange(
            TRIM_PENDING,
            epoch,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        LAST_FLUSH.store(epoch, Ordering::Relaxed);
    }
    trimmed
}

/// Notes, in `switched_out` under the slot's lock, whether the stack just switched out is a
/// candidate for a trim (asleep, with dead pages, of a policy that gives pages back asleep).
pub(super) fn note_switched_out(slot: usize, stack: &dks_core::Stack, asleep: bool) {
    let layout = &region().layout;
    let cell = &region().slots[slot];
    // A sleeping `pack` stack is a candidate until it is packed, dead pages or not.
    let candidate = asleep
        && (stack.policy() == Policy::Reclaim
            && stack.saved_sp().is_some_and(|sp| {
                reclaim::dead_pages(layout, stack, sp).is_ok_and(|dead| !dead.is_empty())
            })
            || stack.policy() == Policy::Pack);
    debug_assert_eq!(
        cell.policy.state(),
        TrimState::Idle,
        "a running thread is no candidate"
    );
    if candidate {
        cell.asleep_since
            .store(crate::sched::uptime_ms() + 1, Ordering::Relaxed);
        cell.dead_trimmed.store(false, Ordering::Relaxed);
        cell.woken.store(false, Ordering::Relaxed);
        // Last: a trim that sees the candidate finds the sleep recorded (and takes this lock).
        cell.policy.note_candidate();
        hint(slot);
        CANDIDATES.store(true, Ordering::Relaxed);
    }
}

/// Whether admission must still wait for the flush of the stack's trimmed pages (`cell`'s
/// lock held); clears the mark once the flush completed everywhere.
pub(super) fn flush_pending(irq: &cpu_ops::IrqGuard, cell: &super::Slot) -> bool {
    let epoch = cell.flush_epoch.load(Ordering::Relaxed);
    if epoch == 0 {
        return false;
    }
    if epoch != TRIM_PENDING {
        // This CPU may not have taken the IPI yet (interrupts are off here).
        crate::tlb::serve(irq);
        if crate::tlb::flushed_everywhere(epoch) {
            cell.flush_epoch.store(0, Ordering::Relaxed);
            return false;
        }
    }
    true
}

/// Packs the stack in `slot` alone if it sleeps, whatever its age, and requests the TLB flush
/// its thread then waits for (see [`trim_one`]).
pub(super) fn pack_one(slot: dks_core::SlotIndex) -> Result<PackDone, NotPacked> {
    let region = region();
    let cell = &region.slots[slot.as_usize()];
    let cpu = cpu_ops::current_id(&cpu_ops::IrqGuard::new());
    let mut clean = Magazine::new(CpuId::new(cpu), &region.layout);
    let mut platform = X86Platform::releasing();
    let done = {
        let mut live = cell.stack.lock();
        match live.as_mut() {
            None => Err(NotPacked::Awake),
            Some(stack) => match claim(cell, stack.policy()) {
                // Running, runnable or being switched in: not the trims' to touch.
                None => Err(NotPacked::Awake),
                Some(from) => {
                    let done = super::pack::pack_locked(
                        cell,
                        stack,
                        cpu as usize,
                        &mut clean,
                        &mut platform,
                    );
                    if done.is_ok() {
                        cell.asleep_since.store(0, Ordering::Relaxed);
                    }
                    cell.policy.end_claim(from, done.is_ok(), false);
                    done
                }
            },
        }
    };
    clean.drain(&mut X86Platform::live());
    if platform.deferred() {
        let epoch = quarantine::start_flush_epoch();
        let _ = cell.flush_epoch.compare_exchange(
            TRIM_PENDING,
            epoch,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        LAST_FLUSH.store(epoch, Ordering::Relaxed);
    }
    done
}

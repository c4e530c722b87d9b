//! Who may touch a sleeping stack's pages: a trim, or the admission that wakes it.
//!
//! A policy that gives back a sleeping thread's dead pages (`reclaim`) has two parties that
//! want the same switched-out stack: a *trim* (the kernel's reclaim thread, on any CPU) and the
//! *admission* that switches the thread in again (the scheduler of one CPU). The stack's own
//! state is behind its lock, but the scheduler should not take that lock at every switch: a
//! thread that no trim touched since it was switched out has the same pages, the same need and
//! no pending TLB flush, so its admission needs nothing but the lock-free checks every policy
//! makes. [`TrimClaim`] is the one word per slot that decides, without the lock, which of the two
//! gets the stack:
//!
//! ```text
//!             note_candidate (switch-out, asleep with dead pages, stack lock held)
//!     Idle ─────────────────────────────────────────────────────────▶ Candidate
//!      ▲  ▲                                                            │     │
//!      │  └────────────── admit: CAS Candidate → Idle ─────────────────┘     │
//!      │                  (the fast path wins; the trim will not touch it)   │
//!      │                                              claim: CAS Candidate → Trimming
//!      │                                              (stack lock held)      │
//!      │    settle (admission's slow path,                                   ▼
//!      └─── stack lock held)  ◀── Trimmed ◀── trim_done(changed) ───── Trimming
//!            (or trim_done(false): back to Idle at once)
//! ```
//!
//! - Only the switch-out of a sleeping thread makes a slot a [`Candidate`](TrimState::Candidate),
//!   and only after it recorded the saved stack pointer and the sleep in the stack, under the
//!   stack's lock.
//! - A trim acts on a stack only after its compare-and-swap `Candidate → Trimming` succeeded,
//!   with the stack's lock held; it leaves `Trimmed` (pages were given back: the need grew and a
//!   flush may be pending) or `Idle` (nothing changed) before it releases the lock.
//! - Admission's first step is [`TrimClaim::admit`]: one compare-and-swap `Candidate → Idle`
//!   (or a read of `Idle`). Exactly one of it and a trim's claim succeeds from `Candidate`. If
//!   admission's succeeds (or the slot was `Idle`), no trim touched the stack since its
//!   switch-out and none will until the thread sleeps again: the admission may go on without the
//!   stack's lock. Otherwise ([`Touched`]) it takes the stack's lock, which it gets only once the
//!   trim released it (so the trim is over), wakes the stack, waits for the flush if one is
//!   pending and then [`TrimClaim::settle`]s the slot back to `Idle`.
//!
//! So a trim never acts on a thread that runs or is being switched in: a thread runs only after
//! an admission that either won the race from `Candidate` (then the trim's claim fails) or found
//! the slot `Trimming`/`Trimmed` and waited for the trim's lock. `tests/trim_claim_model.rs`
//! checks this exhaustively over every interleaving of a trim with a thread that sleeps, wakes,
//! runs and sleeps again (stateright).
//!
//! A policy that acts on one sleep more than once (`pack`: dead pages trimmed first, the live
//! bytes packed once the thread has slept long enough) claims a `Trimmed` slot again
//! ([`TrimClaim::claim_again`]: `Trimmed → Trimming`, under the stack's lock) and ends a claim
//! that changed nothing but may act later back in `Candidate` ([`TrimClaim::end_claim`]). A
//! claim taken from `Trimmed` always ends in `Trimmed`: the admission still owes the locked
//! path for what the earlier trim did.
//!
//! `Idle` while the thread sleeps (it had no dead pages) is no candidate: trims skip it. The
//! stack's own `asleep` flag (`Stack::is_asleep`) then stays as the switch-out left it until the
//! next locked admission or switch-out; nobody reads it without a claim.

use core::sync::atomic::{AtomicU8, Ordering};

/// The state of a slot's [`TrimClaim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TrimState {
    /// No trim may touch the stack: it runs, is runnable, or sleeps without dead pages.
    Idle = 0,
    /// Its thread sleeps with dead pages: the first of a trim and the waking admission to
    /// claim it gets it.
    Candidate = 1,
    /// A trim claimed it and works on it under the stack's lock.
    Trimming = 2,
    /// A trim gave pages back since the switch-out: the admission must take the stack's lock.
    Trimmed = 3,
}

impl TrimState {
    const fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Idle,
            1 => Self::Candidate,
            2 => Self::Trimming,
            _ => Self::Trimmed,
        }
    }
}

/// What [`TrimClaim::admit`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a touched stack must be admitted under its lock"]
pub enum Claim {
    /// No trim touched the stack since its switch-out, and none will before it sleeps again.
    Untouched,
    /// A trim claimed it (it may still be at work): admit under the stack's lock.
    Touched,
}

/// The bits of a [`TrimClaim`]'s word that hold its [`TrimState`]; the others are its owner's.
pub const STATE_BITS: u8 = 0b0011_0000;

/// Where [`STATE_BITS`] start.
const STATE_SHIFT: u32 = STATE_BITS.trailing_zeros();

/// The per-slot word that a trim and the waking admission race for (see the module docs).
///
/// The word has room for its owner: the bits outside [`STATE_BITS`] are the caller's, set with
/// [`TrimClaim::new`] or [`TrimClaim::reset`] and constant in between (the kernel keeps the
/// slot's policy there, which the scheduler loads at every switch anyway: one load then
/// answers both).
#[derive(Debug)]
pub struct TrimClaim(AtomicU8);

impl TrimClaim {
    /// A claim word holding the owner's `bits` (outside [`STATE_BITS`]), `Idle`.
    #[must_use]
    pub const fn new(bits: u8) -> Self {
        assert!(
            bits & STATE_BITS == 0,
            "the owner's bits stay out of STATE_BITS"
        );
        Self(AtomicU8::new(bits))
    }

    /// Sets the owner's `bits` (outside [`STATE_BITS`]) and `Idle`, when no trim and no
    /// admission can act on the slot (its stack is being created or released).
    pub fn reset(&self, bits: u8) {
        debug_assert!(bits & STATE_BITS == 0);
        self.0.store(bits, Ordering::Release);
    }

    /// A claim word as [`TrimClaim::load`] returned it (the model checker's states are words).
    #[must_use]
    pub const fn from_word(word: u8) -> Self {
        Self(AtomicU8::new(word))
    }

    /// The whole word (the owner's bits and the state).
    #[inline]
    #[must_use]
    pub fn load(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    /// The state in a `word` [`TrimClaim::load`] returned.
    #[inline]
    #[must_use]
    pub const fn state_of(word: u8) -> TrimState {
        TrimState::from_u8((word & STATE_BITS) >> STATE_SHIFT)
    }

    /// The state now (a snapshot: for a trim's scan and for reports).
    #[must_use]
    pub fn state(&self) -> TrimState {
        Self::state_of(self.load())
    }

    const fn with_state(word: u8, state: TrimState) -> u8 {
        (word & !STATE_BITS) | ((state as u8) << STATE_SHIFT)
    }

    /// Moves the word from `from` to `to`, keeping the owner's bits: whether it was in `from`.
    fn transition(&self, from: TrimState, to: TrimState) -> bool {
        let word = self.0.load(Ordering::Relaxed);
        self.0
            .compare_exchange(
                Self::with_state(word, from),
                Self::with_state(word, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Stores `state`, keeping the owner's bits, where nobody else can change the word (the
    /// stack's lock held and the state one only the holder leaves).
    fn set(&self, state: TrimState) {
        let word = self.0.load(Ordering::Relaxed);
        self.0
            .store(Self::with_state(word, state), Ordering::Release);
    }

    /// Marks the slot a candidate for a trim. Only the switch-out of a sleeping thread with dead
    /// pages calls it, with the stack's lock held, after recording the sleep in the stack.
    pub fn note_candidate(&self) {
        debug_assert_eq!(self.state(), TrimState::Idle);
        self.set(TrimState::Candidate);
    }

    /// Admission's claim, before switching the thread in: [`Claim::Untouched`] if the slot is
    /// `Idle` or its `Candidate` state could be taken back (one compare-and-swap), else
    /// [`Claim::Touched`].
    ///
    /// `Idle` is read without a compare-and-swap (the common case: a thread that was preempted,
    /// or slept without dead pages): only the switch-out of this same thread leaves `Idle`,
    /// and it cannot run while the thread is being switched in; trims never do.
    #[inline]
    pub fn admit(&self) -> Claim {
        if self.load() & STATE_BITS == 0 {
            return Claim::Untouched;
        }
        self.admit_from_candidate()
    }

    /// [`Self::admit`] for a slot that was not `Idle`: out of line, so that the common case
    /// stays one test of a loaded word.
    #[cold]
    #[inline(never)]
    fn admit_from_candidate(&self) -> Claim {
        if self.transition(TrimState::Candidate, TrimState::Idle) || self.state() == TrimState::Idle
        {
            Claim::Untouched
        } else {
            Claim::Touched
        }
    }

    /// A trim's claim, with the stack's lock held: whether the trim may act on the stack (the
    /// slot was a `Candidate`; it is `Trimming` now).
    pub fn claim(&self) -> bool {
        self.transition(TrimState::Candidate, TrimState::Trimming)
    }

    /// Ends a trim's claim, before it releases the stack's lock: `Trimmed` if it `changed` the
    /// stack (gave pages back), else `Idle`.
    pub fn trim_done(&self, changed: bool) {
        self.end_claim(TrimState::Candidate, changed, false);
    }

    /// A trim's claim of a slot that an earlier trim left `Trimmed`, with the stack's lock
    /// held: for a policy that acts on one sleep more than once (`pack`: the dead pages
    /// trimmed first, the live bytes packed once the thread has slept long enough). The thread
    /// has not run since: the admission that would run it takes this lock and settles the slot
    /// first. It may have been woken (the stack says so, under the lock): the trim must look.
    pub fn claim_again(&self) -> bool {
        self.transition(TrimState::Trimmed, TrimState::Trimming)
    }

    /// Ends a claim taken from `from` ([`Self::claim`]: `Candidate`, [`Self::claim_again`]:
    /// `Trimmed`), before the trim releases the stack's lock:
    /// - `Trimmed` if this trim `changed` the stack or an earlier one had (`from` `Trimmed`):
    ///   the admission must take the lock;
    /// - else `Candidate` if a later trim may still act (`again`: a `pack` stack not packed
    ///   yet). Nothing changed since the switch-out, so the admission may take it back without
    ///   the lock as before;
    /// - else `Idle`.
    pub fn end_claim(&self, from: TrimState, changed: bool, again: bool) {
        debug_assert_eq!(self.state(), TrimState::Trimming);
        debug_assert!(matches!(from, TrimState::Candidate | TrimState::Trimmed));
        self.set(if changed || from == TrimState::Trimmed {
            TrimState::Trimmed
        } else if again {
            TrimState::Candidate
        } else {
            TrimState::Idle
        });
    }

    /// Back to `Idle` after a locked admission dealt with what a trim did (woke the stack,
    /// covered the grown need, saw the flush complete), or took back a `Candidate` itself.
    /// With the stack's lock held no trim is at work (it claims under that lock), so the word
    /// is `Idle`, `Candidate` or `Trimmed`.
    pub fn settle(&self) {
        debug_assert_ne!(self.state(), TrimState::Trimming);
        self.set(TrimState::Idle);
    }
}

impl Default for TrimClaim {
    fn default() -> Self {
        Self::new(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_takes_a_candidate_back_and_the_trim_then_cannot_claim_it() {
        let claim = TrimClaim::new(0b1100_0101);
        assert_eq!(claim.admit(), Claim::Untouched);
        claim.note_candidate();
        assert_eq!(claim.admit(), Claim::Untouched);
        assert_eq!(claim.state(), TrimState::Idle);
        assert!(!claim.claim());
    }

    #[test]
    fn a_trim_that_claimed_first_sends_admission_to_the_lock() {
        let claim = TrimClaim::new(0b1100_0101);
        claim.note_candidate();
        assert!(claim.claim());
        assert_eq!(claim.admit(), Claim::Touched);
        claim.trim_done(true);
        assert_eq!(claim.admit(), Claim::Touched);
        claim.settle();
        assert_eq!(claim.admit(), Claim::Untouched);
        assert_eq!(
            claim.load() & !STATE_BITS,
            0b1100_0101,
            "the owner's bits stay"
        );
    }

    #[test]
    fn a_trim_that_changed_nothing_leaves_the_slot_idle() {
        let claim = TrimClaim::new(0b1100_0101);
        claim.note_candidate();
        assert!(claim.claim());
        assert!(!claim.claim());
        claim.trim_done(false);
        assert_eq!(claim.state(), TrimState::Idle);
        assert_eq!(claim.admit(), Claim::Untouched);
    }

    #[test]
    fn a_second_trim_of_a_trimmed_slot_keeps_it_trimmed_whatever_it_did() {
        let claim = TrimClaim::new(0b0000_0110);
        claim.note_candidate();
        assert!(claim.claim());
        claim.end_claim(TrimState::Candidate, true, true);
        assert_eq!(claim.state(), TrimState::Trimmed);
        assert!(!claim.claim(), "a trimmed slot is no candidate");
        assert!(claim.claim_again());
        assert_eq!(claim.admit(), Claim::Touched);
        claim.end_claim(TrimState::Trimmed, false, true);
        assert_eq!(
            claim.state(),
            TrimState::Trimmed,
            "an earlier trim's change still needs the locked admission"
        );
        claim.settle();
        assert!(!claim.claim_again(), "only a trimmed slot is claimed again");
    }

    #[test]
    fn a_trim_that_changed_nothing_but_may_act_later_leaves_a_candidate() {
        let claim = TrimClaim::new(0b0000_0110);
        claim.note_candidate();
        assert!(claim.claim());
        claim.end_claim(TrimState::Candidate, false, true);
        assert_eq!(claim.state(), TrimState::Candidate);
        assert_eq!(claim.admit(), Claim::Untouched);
        assert!(!claim.claim());
    }
}

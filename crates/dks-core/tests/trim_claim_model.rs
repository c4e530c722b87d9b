//! Model check of the trim claim (`dks_core::trim_claim`, docs/reclaim.md): every interleaving
//! of a trim (the kernel's reclaim thread, on any CPU) with one thread that sleeps with dead
//! pages, is woken and admitted (without the stack's lock while the claim allows, else under
//! it), runs, and sleeps again. With `pack` set, the trim is `pack`'s scanner: it also claims a
//! slot an earlier trim left `Trimmed` (`TrimClaim::claim_again`) and ends each claim in any of
//! the ways `TrimClaim::end_claim` allows (changed the stack or not, may act again or not). Each
//! step is one call of the real `TrimClaim` on the model's
//! word, or one take or release of the stack's lock. Checked: a trim never acts on a thread that
//! runs or is being admitted under the lock, a thread never runs without the lock on a stack a
//! trim changed since its switch-out, and both the lock-free wake and the trim happen.

use dks_core::trim_claim::{Claim, TrimClaim, TrimState};
use stateright::{Checker, Model, Property};

/// Where the thread is.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Thread {
    /// Runs on its CPU.
    Running,
    /// Switching out to sleep, with the stack's lock: records the sleep, then the candidacy.
    SleepingLocked,
    /// Asleep (a candidate): the next step is its admission's claim.
    Asleep,
    /// Admission found the claim touched: waits for the stack's lock.
    WaitLock,
    /// Admission with the stack's lock: settles the claim, then runs.
    AdmitLocked,
}

impl Thread {
    /// Asleep, or its admission waits for the lock a trim holds: nothing runs on its stack.
    fn off_cpu(self) -> bool {
        matches!(self, Self::Asleep | Self::WaitLock)
    }
}

/// Where the trim is.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Trim {
    /// Scanning: may pick the slot if its claim reads `Candidate`.
    Scan,
    /// Picked it: waits for the stack's lock.
    WaitLock,
    /// Holds the lock, about to claim.
    Locked,
    /// Holds the lock and the claim (taken from `Candidate`, or `Trimmed` by `pack`'s
    /// scanner): gives pages back or packs.
    Trimming(TrimState),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    word: u8,
    thread: Thread,
    trim: Trim,
    /// Trims completed (bounded, so the state space is finite).
    trims: u8,
    /// Sleeps completed (bounded).
    sleeps: u8,
    /// Whether the last admission was lock-free after a sleep as a candidate.
    woke_without_lock: bool,
    /// Whether a trim ever acted on the thread while it was not asleep.
    violation: bool,
    /// Whether a trim changed the stack since the thread's last switch-out.
    changed: bool,
    /// Whether the thread ever ran without the lock on a stack a trim had changed.
    ran_changed: bool,
}

impl State {
    fn lock_held(&self) -> bool {
        matches!(self.thread, Thread::SleepingLocked | Thread::AdmitLocked)
            || matches!(self.trim, Trim::Locked | Trim::Trimming(_))
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Action {
    Thread,
    Trim,
    /// The end of a claim: whether the trim changed the stack, and may act on it again.
    EndClaim {
        changed: bool,
        again: bool,
    },
}

struct ClaimModel {
    max_sleeps: u8,
    max_trims: u8,
    /// The trim is `pack`'s scanner (claims `Trimmed` slots again, ends claims every way).
    pack: bool,
}

/// Runs `f` on the real `TrimClaim` holding `word`, returns the new word and `f`'s result.
fn on<R>(word: u8, f: impl FnOnce(&TrimClaim) -> R) -> (u8, R) {
    let claim = TrimClaim::from_word(word);
    let result = f(&claim);
    (claim.load(), result)
}

impl Model for ClaimModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            // Owner bits as the kernel sets them (a policy index and switch-out bits).
            word: 0b1100_0011,
            thread: Thread::Running,
            trim: Trim::Scan,
            trims: 0,
            sleeps: 0,
            woke_without_lock: false,
            violation: false,
            changed: false,
            ran_changed: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let thread_can = match s.thread {
            Thread::Running => s.sleeps < self.max_sleeps && !s.lock_held(),
            Thread::WaitLock => !s.lock_held(),
            _ => true,
        };
        if thread_can {
            actions.push(Action::Thread);
        }
        let trim_can = match s.trim {
            Trim::Scan => s.trims < self.max_trims,
            Trim::WaitLock => !s.lock_held(),
            _ => true,
        };
        if let Trim::Trimming(_) = s.trim {
            if self.pack {
                for changed in [false, true] {
                    for again in [false, true] {
                        actions.push(Action::EndClaim { changed, again });
                    }
                }
            } else {
                actions.push(Action::EndClaim {
                    changed: true,
                    again: false,
                });
            }
        } else if trim_can {
            actions.push(Action::Trim);
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        let mut n = s.clone();
        match action {
            Action::Thread => match s.thread {
                Thread::Running => {
                    n.thread = Thread::SleepingLocked;
                    n.changed = false;
                }
                Thread::SleepingLocked => {
                    (n.word, ()) = on(s.word, TrimClaim::note_candidate);
                    n.thread = Thread::Asleep;
                    n.sleeps += 1;
                }
                Thread::Asleep => {
                    let (word, claim) = on(s.word, TrimClaim::admit);
                    n.word = word;
                    if claim == Claim::Untouched {
                        n.thread = Thread::Running;
                        n.woke_without_lock = true;
                        n.ran_changed |= s.changed;
                    } else {
                        n.thread = Thread::WaitLock;
                    }
                }
                Thread::WaitLock => n.thread = Thread::AdmitLocked,
                Thread::AdmitLocked => {
                    (n.word, ()) = on(s.word, TrimClaim::settle);
                    n.thread = Thread::Running;
                }
            },
            Action::Trim => match s.trim {
                Trim::Scan => {
                    let state = TrimClaim::state_of(s.word);
                    if state == TrimState::Candidate || self.pack && state == TrimState::Trimmed {
                        n.trim = Trim::WaitLock;
                    } else {
                        // Nothing to do this round.
                        n.trims += 1;
                    }
                }
                Trim::WaitLock => n.trim = Trim::Locked,
                Trim::Locked => {
                    let (word, claimed) = on(s.word, TrimClaim::claim);
                    let (word, from) = if claimed {
                        (word, Some(TrimState::Candidate))
                    } else if self.pack {
                        let (word, again) = on(word, TrimClaim::claim_again);
                        (word, again.then_some(TrimState::Trimmed))
                    } else {
                        (word, None)
                    };
                    n.word = word;
                    if let Some(from) = from {
                        n.trim = Trim::Trimming(from);
                    } else {
                        n.trim = Trim::Scan;
                        n.trims += 1;
                    }
                }
                Trim::Trimming(_) => return None,
            },
            Action::EndClaim { changed, again } => {
                let Trim::Trimming(from) = s.trim else {
                    return None;
                };
                if !s.thread.off_cpu() {
                    n.violation = true;
                }
                (n.word, ()) = on(s.word, |claim| claim.end_claim(from, changed, again));
                n.changed |= changed;
                n.trim = Trim::Scan;
                n.trims += 1;
            }
        }
        Some(n)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("a trim acts only on a sleeping thread", |_, s: &State| {
                !s.violation && (!matches!(s.trim, Trim::Trimming(_)) || s.thread.off_cpu())
            }),
            Property::always(
                "a thread never runs without the lock on a stack a trim changed",
                |_, s: &State| !s.ran_changed,
            ),
            Property::always("the owner's bits stay", |_, s: &State| {
                s.word & !dks_core::trim_claim::STATE_BITS == 0b1100_0011
            }),
            Property::always("a running thread's claim is Idle", |_, s: &State| {
                s.thread != Thread::Running || TrimClaim::state_of(s.word) == TrimState::Idle
            }),
            Property::sometimes("a sleeper wakes without the lock", |_, s: &State| {
                s.woke_without_lock && s.sleeps > 0
            }),
            Property::sometimes("a trim takes a sleeper", |_, s: &State| {
                matches!(s.trim, Trim::Trimming(_))
            }),
            Property::sometimes(
                "a trimmed thread is admitted under the lock",
                |_, s: &State| {
                    s.thread == Thread::AdmitLocked
                        && TrimClaim::state_of(s.word) == TrimState::Trimmed
                },
            ),
        ]
    }
}

#[test]
fn a_trim_never_acts_on_a_running_or_waking_thread() {
    let checker = ClaimModel {
        max_sleeps: 3,
        max_trims: 4,
        pack: false,
    }
    .checker()
    .spawn_bfs()
    .join();
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 50,
        "{}",
        checker.unique_state_count()
    );
}

#[test]
fn packs_scanner_claiming_trimmed_slots_again_never_acts_on_a_running_thread() {
    let checker = ClaimModel {
        max_sleeps: 3,
        max_trims: 5,
        pack: true,
    }
    .checker()
    .spawn_bfs()
    .join();
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 100,
        "{}",
        checker.unique_state_count()
    );
}

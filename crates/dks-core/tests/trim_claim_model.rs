//! Model check of the trim claim (`dks_core::trim_claim`, docs/reclaim.md): every interleaving
//! of a trim (the kernel's reclaim thread, on any CPU) with one thread that sleeps with dead
//! pages, is woken and admitted (without the stack's lock while the claim allows, else under
//! it), runs, and sleeps again. Each step is one call of the real `TrimClaim` on the model's
//! word, or one take or release of the stack's lock. Checked: a trim never acts on a thread that
//! runs or is being admitted under the lock, and both the lock-free wake and the trim happen.

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
    /// Holds the lock and the claim: gives pages back.
    Trimming,
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
}

impl State {
    fn lock_held(&self) -> bool {
        matches!(self.thread, Thread::SleepingLocked | Thread::AdmitLocked)
            || matches!(self.trim, Trim::Locked | Trim::Trimming)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Action {
    Thread,
    Trim,
}

struct ClaimModel {
    max_sleeps: u8,
    max_trims: u8,
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
        if trim_can {
            actions.push(Action::Trim);
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        let mut n = s.clone();
        match action {
            Action::Thread => match s.thread {
                Thread::Running => n.thread = Thread::SleepingLocked,
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
                    if TrimClaim::state_of(s.word) == TrimState::Candidate {
                        n.trim = Trim::WaitLock;
                    } else {
                        // Nothing to do this round.
                        n.trims += 1;
                    }
                }
                Trim::WaitLock => n.trim = Trim::Locked,
                Trim::Locked => {
                    let (word, claimed) = on(s.word, TrimClaim::claim);
                    n.word = word;
                    if claimed {
                        n.trim = Trim::Trimming;
                    } else {
                        n.trim = Trim::Scan;
                        n.trims += 1;
                    }
                }
                Trim::Trimming => {
                    if !s.thread.off_cpu() {
                        n.violation = true;
                    }
                    (n.word, ()) = on(s.word, |claim| claim.trim_done(true));
                    n.trim = Trim::Scan;
                    n.trims += 1;
                }
            },
        }
        Some(n)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("a trim acts only on a sleeping thread", |_, s: &State| {
                !s.violation && (s.trim != Trim::Trimming || s.thread.off_cpu())
            }),
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
                s.trim == Trim::Trimming
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

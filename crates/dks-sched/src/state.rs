//! The states, the events, the transition function and the atomic cell that applies it.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// A thread's scheduling state (see the crate docs for who moves it where).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ThreadState {
    /// In exactly one run queue, its context saved.
    Ready = 0,
    /// On a CPU.
    Running = 1,
    /// On a CPU, registered with one waker, about to switch away to sleep.
    Parking = 2,
    /// Off every CPU, registered with one waker, its context saved.
    Blocked = 3,
    /// Stopped by the fault path of its CPU: runs only its exit path there, and cannot be
    /// woken, queued or picked.
    Stopped = 4,
    /// Off its CPU for good; its stack is freed.
    Exited = 5,
}

impl ThreadState {
    /// Every state, in the order of their encoding.
    pub const ALL: [ThreadState; 6] = [
        ThreadState::Ready,
        ThreadState::Running,
        ThreadState::Parking,
        ThreadState::Blocked,
        ThreadState::Stopped,
        ThreadState::Exited,
    ];

    #[inline]
    fn from_u8(value: u8) -> ThreadState {
        ThreadState::ALL
            .get(usize::from(value))
            .copied()
            .expect("a StateCell only ever holds an encoded ThreadState")
    }

    /// Whether the thread still runs its own code (not stopped, not exited).
    #[inline]
    pub fn is_live(self) -> bool {
        !matches!(self, ThreadState::Stopped | ThreadState::Exited)
    }

    /// Whether a timer or a reschedule request may take the CPU from a thread in this state.
    /// A stopped thread finishes its exit path where it was stopped: its next switch is its
    /// last, so no scheduler ever meets it again.
    #[inline]
    pub fn preemptible(self) -> bool {
        matches!(self, ThreadState::Running | ThreadState::Parking)
    }
}

/// Something that changes a thread's state (see the crate docs for who applies which).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A scheduler took the thread from a run queue and will run it.
    Pick,
    /// The thread registered with a waker and will sleep.
    Park,
    /// A waker took the thread from where it was registered.
    Wake,
    /// The scheduler of the CPU the thread just left puts it where it belongs.
    SwitchedOut,
    /// The thread ends itself (the last thing it does before its last switch).
    Exit,
    /// The fault path of the CPU running the thread stops it.
    Stop,
}

/// What the party that made a transition must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Duty {
    /// Nothing.
    Nothing,
    /// Put the thread in exactly one run queue.
    Enqueue,
    /// Switch to the thread's saved context.
    Run,
    /// The thread left its CPU for good: free its stack.
    Reap,
}

/// A transition that took place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a transition may oblige its maker to queue, run or reap the thread"]
pub struct Transition {
    /// The state before.
    pub from: ThreadState,
    /// The state after.
    pub to: ThreadState,
    /// What the maker of the transition must do now.
    pub duty: Duty,
}

/// An event that the thread's state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Refused {
    /// The state the thread was in.
    pub state: ThreadState,
    /// The event.
    pub event: Event,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} refused in state {:?}", self.event, self.state)
    }
}

/// The transition function: what `event` does to a thread in `state` (the table in the crate
/// docs).
#[inline]
pub fn next(state: ThreadState, event: Event) -> Result<Transition, Refused> {
    use {Duty as D, Event as E, ThreadState as S};
    let (to, duty) = match (event, state) {
        (E::Pick, S::Ready) => (S::Running, D::Run),
        (E::Park, S::Running) => (S::Parking, D::Nothing),
        (E::Wake, S::Parking) => (S::Running, D::Nothing),
        (E::Wake, S::Blocked) => (S::Ready, D::Enqueue),
        (E::SwitchedOut, S::Running) => (S::Ready, D::Enqueue),
        (E::SwitchedOut, S::Parking) => (S::Blocked, D::Nothing),
        (E::SwitchedOut, S::Exited) => (S::Exited, D::Reap),
        (E::Exit, S::Running | S::Stopped) => (S::Exited, D::Nothing),
        (E::Stop, S::Running | S::Parking) => (S::Stopped, D::Nothing),
        _ => return Err(Refused { state, event }),
    };
    Ok(Transition {
        from: state,
        to,
        duty,
    })
}

/// A thread's state in one atomic byte, changed only through [`next`].
///
/// Orderings: a successful transition is `AcqRel`, so whatever its maker wrote before it (a
/// saved context, a registration) is visible to whoever observes the new state, and a load is
/// `Acquire`.
#[derive(Debug)]
pub struct StateCell(AtomicU8);

impl StateCell {
    /// A cell holding `state`.
    pub const fn new(state: ThreadState) -> StateCell {
        StateCell(AtomicU8::new(state as u8))
    }

    /// The state now.
    #[inline]
    pub fn load(&self) -> ThreadState {
        ThreadState::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Applies `event`: the transition [`next`] allows from the current state, made by
    /// compare-and-swap (retried if another party changed the state meanwhile), or the refusal
    /// in the state found.
    #[inline]
    pub fn apply(&self, event: Event) -> Result<Transition, Refused> {
        let mut seen = self.0.load(Ordering::Acquire);
        loop {
            let transition = next(ThreadState::from_u8(seen), event)?;
            if transition.to == transition.from {
                return Ok(transition);
            }
            match self.0.compare_exchange_weak(
                seen,
                transition.to as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(transition),
                Err(actual) => seen = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests;

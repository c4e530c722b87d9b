//! The two loops that act on queue entries by the rules of the state machine.
//!
//! Both take the queue as a `pop` closure (the kernel pops under the queue's lock, the model
//! checker from its abstract state) and the thread's state as a closure, so that the same
//! code runs in the kernel and in the model.

use crate::{Event, Refused, ThreadState, Transition};

/// What [`wake_first`] did.
#[derive(Debug)]
pub struct WakeResult<T> {
    /// The waiter that accepted the wake-up, and its transition (whose duty the caller must
    /// do: `Enqueue` for a thread that had left its CPU).
    pub woken: Option<(T, Transition)>,
    /// Entries taken and dropped because their thread refused the wake-up: stale entries of
    /// threads stopped while registered.
    pub dropped: usize,
}

/// Delivers one wake-up: takes waiters in order (`pop`) and applies [`Event::Wake`] to each
/// (`wake`) until one accepts it. A waiter that refuses (stopped or exited while registered)
/// is dropped, and the wake-up goes on to the next, so a stale entry never swallows a
/// wake-up meant for a live waiter.
pub fn wake_first<T>(
    mut pop: impl FnMut() -> Option<T>,
    mut wake: impl FnMut(&T, Event) -> Result<Transition, Refused>,
) -> WakeResult<T> {
    let mut dropped = 0;
    while let Some(waiter) = pop() {
        match wake(&waiter, Event::Wake) {
            Ok(transition) => {
                return WakeResult {
                    woken: Some((waiter, transition)),
                    dropped,
                };
            }
            Err(_) => dropped += 1,
        }
    }
    WakeResult {
        woken: None,
        dropped,
    }
}

/// What [`take_ready`] found.
#[derive(Debug)]
pub struct TakeResult<T> {
    /// The first entry whose thread is `Ready`.
    pub ready: Option<T>,
    /// Entries taken and dropped because their thread was not `Ready` (none exist if the
    /// state machine is kept; counted so that the kernel can prove it).
    pub dropped: usize,
}

/// Takes the first entry of a run queue whose thread is `Ready`, dropping any other: a run
/// queue entry is only ever acted on while its thread is `Ready`, so a stale one can never
/// be switched to.
pub fn take_ready<T>(
    mut pop: impl FnMut() -> Option<T>,
    state: impl Fn(&T) -> ThreadState,
) -> TakeResult<T> {
    let mut dropped = 0;
    while let Some(entry) = pop() {
        if state(&entry) == ThreadState::Ready {
            return TakeResult {
                ready: Some(entry),
                dropped,
            };
        }
        dropped += 1;
    }
    TakeResult {
        ready: None,
        dropped,
    }
}

#[cfg(test)]
mod tests;

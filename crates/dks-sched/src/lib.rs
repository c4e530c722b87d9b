//! The thread state machine of the dks kernel's scheduler, independent of any CPU.
//!
//! A kernel thread is in exactly one [`ThreadState`] at a time, kept in one atomic byte
//! ([`StateCell`]). Every change of state is an [`Event`] applied by compare-and-swap through
//! one pure function, [`next`], which says whether the event is allowed in the current state,
//! what the state becomes and what the party that made the change must do next (its
//! [`Duty`]): put the thread in a run queue, run it, or free its stack. The kernel applies
//! events only through [`StateCell::apply`]; the model checker in `tests/model.rs` applies the
//! same function to an abstract machine with several CPUs, run queues, a wait queue, wakers
//! and stops, and checks every interleaving.
//!
//! # The states and who moves a thread between them
//!
//! | event | by | from | to | duty |
//! |---|---|---|---|---|
//! | [`Pick`](Event::Pick) | the scheduler of a CPU that took the thread from a run queue | `Ready` | `Running` | run it |
//! | [`Park`](Event::Park) | the thread itself, under the lock of the waker it registers with | `Running` | `Parking` | none |
//! | [`Wake`](Event::Wake) | a waker that took the thread from where it was registered | `Parking` | `Running` | none: it is still on its CPU and will not sleep |
//! | | | `Blocked` | `Ready` | put it in one run queue |
//! | [`SwitchedOut`](Event::SwitchedOut) | the scheduler of the CPU the thread just left | `Running` | `Ready` | put it in one run queue (a yield, a preemption, or a wake-up that came before the sleep) |
//! | | | `Parking` | `Blocked` | none: a waker will find it |
//! | | | `Exited` | `Exited` | free its stack |
//! | [`Exit`](Event::Exit) | the thread itself, before its last switch | `Running`, `Stopped` | `Exited` | none |
//! | [`Stop`](Event::Stop) | the fault path of the CPU running it (a fatal stack fault or a guard hit) | `Running`, `Parking` | `Stopped` | none |
//!
//! Every other pair is refused ([`Refused`]). The consequences the kernel relies on:
//!
//! - **One run-queue entry at most.** Only a `Duty::Enqueue` puts a thread in a run queue, and
//!   it comes with the move into `Ready`; the only way out of `Ready` is a `Pick` by the
//!   scheduler that took the entry. A waker never queues a thread that is still on its CPU
//!   (`Parking`): the wake-up is absorbed, and the thread's own scheduler queues it if it
//!   switched away meanwhile. So a queued thread's context is always completely saved.
//! - **A stop is safe.** A thread is stopped only by the CPU that runs it, so it is `Running`
//!   or `Parking` and in no run queue. `Stopped` refuses `Park`, `Wake`, `Pick` and
//!   `SwitchedOut`: nothing can queue, wake or pick it any more. If it was registered with a
//!   waker (stopped while `Parking`), that entry is stale: the waker's `Wake` is refused and
//!   the wake-up goes to the next waiter ([`queue::wake_first`]). The stopped thread runs only
//!   its exit path, on the CPU where it was stopped (the kernel does not preempt a `Stopped`
//!   thread: [`ThreadState::preemptible`]), and its last switch finds it `Exited`.
//! - **`Exited` is final.** Nothing leaves it; its stack is freed once (`Duty::Reap` on its
//!   last switch), and a stale entry that names it anywhere is refused.
//!
//! [`queue`] holds the two loops that act on entries of queues by these rules: delivering a
//! wake-up to the first waiter that accepts it, and taking the first runnable thread of a run
//! queue.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod queue;
mod state;

pub use self::state::{Duty, Event, Refused, StateCell, ThreadState, Transition, next};

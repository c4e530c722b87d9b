//! Model checking of the thread state machine (stateright, breadth-first over every
//! interleaving).
//!
//! The model is the kernel's scheduler reduced to what the state machine decides: `CPUS` CPUs,
//! each running a thread or its scheduler loop, a run queue per CPU (pop from the front for
//! itself, from the back when stealing), one wait queue, a waker that makes a condition true
//! and then wakes one waiter (as `WaitQueue::wake_one`), timer preemptions, and the fault path
//! stopping the thread a CPU runs at any point of its body where interrupts are on: before it
//! checks its condition, or in the window after it registered as a waiter and before it
//! switched away. Every thread waits once for a token and exits; the waker posts one token per
//! thread that is not stopped. Each step applies [`dks_sched::next`] and the loops of [`dks_sched::queue`], the
//! same code the kernel runs.
//!
//! Checked in every reachable state, or on every path that ends:
//! - a thread is never picked (switched to) after it was stopped or exited, nor with its
//!   stack freed;
//! - a thread is in at most one run queue, and in none while a CPU holds it;
//! - no two CPUs hold the same thread;
//! - every wake-up that is delivered reaches a live waiter, and every transition the protocol
//!   relies on is allowed (a refused park, pick, switch-out or stop would be a kernel stop);
//! - nothing is lost: every path that ends has every thread exited and reaped (a live
//!   waiter whose condition became true was woken), unless a second stop abandoned the
//!   cleanup of a stopped thread (the one loss the design accepts).
//!
//! The tests at the end break the protocol in the model on purpose (the old kernel's
//! waker that queued a thread still on its CPU, a pick that ignores the state, a wake-up that
//! gives up at a stale waiter) and check that the checker finds each.

use std::collections::VecDeque;

use dks_sched::queue::{take_ready, wake_first};
use dks_sched::{Duty, Event, Refused, ThreadState, Transition, next};
use stateright::{Checker, Model, Property};

const CPUS: usize = 2;
const THREADS: usize = 3;

/// Where a thread's code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pc {
    /// About to take the wait queue's lock and check its condition for the first time.
    Check,
    /// Registered as a waiter (parked), interrupts on, before `block()` switches away.
    Window,
    /// Back from `block()` (woken), about to take the lock and check again: it holds a
    /// wake-up that it has not used yet.
    Recheck,
    /// Stopped inside `wait_until` (in `Window` or `Recheck`): its cleanup takes the lock,
    /// removes its own entry, or passes on the wake-up it was given.
    Cleanup,
    /// Its body is over (it took its token) or abandoned (stopped): calls `exit()`.
    ExitPath,
    /// Gone.
    Done,
}

/// What a CPU does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cpu {
    /// Its scheduler loop, no thread.
    Scheduler,
    /// Runs this thread.
    Runs(u8),
    /// This thread just switched away; the scheduler has yet to put it where it belongs.
    Left(u8),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct World {
    state: [ThreadState; THREADS],
    pc: [Pc; THREADS],
    cpus: [Cpu; CPUS],
    run_queues: [VecDeque<u8>; CPUS],
    waiters: VecDeque<u8>,
    /// The condition: tokens available.
    tokens: u8,
    posted: u8,
    /// Wake-ups owed: each post is followed by one `wake_one`.
    wakes_due: u8,
    stops_left: u8,
    // Ghost state, for the properties only.
    stopped: [bool; THREADS],
    reaped: [bool; THREADS],
    /// A second stop abandoned a stopped thread's cleanup.
    abandoned_cleanup: bool,
    /// The first violation an action saw.
    bad: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// The thread on this CPU runs its next step.
    Step(u8),
    /// A timer interrupt preempts the thread on this CPU.
    Preempt(u8),
    /// The fault path of this CPU stops its thread.
    Stop(u8),
    /// This CPU's scheduler loop: puts the previous thread away, or picks one.
    Schedule(u8),
    /// The waker makes the condition true (one more token).
    Post,
    /// The waker wakes one waiter; a thread that must be queued goes to this CPU's queue.
    WakeOne(u8),
}

/// A deliberate break of the protocol, to show the checker finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    /// A waker makes a parking thread `Ready` and queues it while it is still on its CPU
    /// (what the kernel did before the state machine).
    WakeQueuesParking,
    /// The scheduler switches to whatever entry it pops, whatever the thread's state.
    PickIgnoresState,
    /// `wake_one` hands its wake-up to the first waiter it pops, even a stopped one.
    WakeGivesUpAtStale,
    /// A thread stopped after it was woken and before it used the wake-up keeps it.
    StopKeepsWakeUp,
}

struct Sched {
    /// Stops the fault path may make in one run.
    stops: u8,
    /// Whether a stop may also hit a stopped thread's cleanup (a second fault there).
    double_stops: bool,
    flaws: Vec<Flaw>,
}

impl Sched {
    fn correct(stops: u8, double_stops: bool) -> Sched {
        Sched {
            stops,
            double_stops,
            flaws: Vec::new(),
        }
    }

    fn flawed(flaws: &[Flaw], stops: u8, double_stops: bool) -> Sched {
        Sched {
            stops,
            double_stops,
            flaws: flaws.to_vec(),
        }
    }

    fn has(&self, flaw: Flaw) -> bool {
        self.flaws.contains(&flaw)
    }

    /// Applies `event` to thread `t` of `w` through the real transition function (or a
    /// flawed one).
    fn apply(&self, w: &mut World, t: u8, event: Event) -> Result<Transition, Refused> {
        let state = w.state[usize::from(t)];
        let transition = if self.has(Flaw::WakeQueuesParking)
            && event == Event::Wake
            && state == ThreadState::Parking
        {
            Ok(Transition {
                from: state,
                to: ThreadState::Ready,
                duty: Duty::Enqueue,
            })
        } else {
            next(state, event)
        }?;
        w.state[usize::from(t)] = transition.to;
        Ok(transition)
    }
}

fn flag(w: &mut World, what: &'static str) {
    w.bad.get_or_insert(what);
}

impl Model for Sched {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        // Every thread starts `Ready`, spread over the run queues.
        let mut run_queues: [VecDeque<u8>; CPUS] = Default::default();
        for t in 0..THREADS as u8 {
            run_queues[usize::from(t) % CPUS].push_back(t);
        }
        vec![World {
            state: [ThreadState::Ready; THREADS],
            pc: [Pc::Check; THREADS],
            cpus: [Cpu::Scheduler; CPUS],
            run_queues,
            waiters: VecDeque::new(),
            tokens: 0,
            posted: 0,
            wakes_due: 0,
            stops_left: self.stops,
            stopped: [false; THREADS],
            reaped: [false; THREADS],
            abandoned_cleanup: false,
            bad: None,
        }]
    }

    fn actions(&self, w: &World, actions: &mut Vec<Action>) {
        if w.bad.is_some() {
            return;
        }
        for c in 0..CPUS as u8 {
            match w.cpus[usize::from(c)] {
                Cpu::Runs(t) => {
                    let t = usize::from(t);
                    actions.push(Action::Step(c));
                    if w.state[t].preemptible() && w.pc[t] != Pc::Done {
                        actions.push(Action::Preempt(c));
                    }
                    // A stop in the body, or a second one during the cleanup of the first.
                    let stoppable = matches!(w.pc[t], Pc::Check | Pc::Window | Pc::Recheck)
                        || (w.pc[t] == Pc::Cleanup && self.double_stops);
                    if w.stops_left > 0 && stoppable {
                        actions.push(Action::Stop(c));
                    }
                }
                Cpu::Left(_) => actions.push(Action::Schedule(c)),
                Cpu::Scheduler => {
                    if w.run_queues.iter().any(|q| !q.is_empty()) {
                        actions.push(Action::Schedule(c));
                    }
                }
            }
        }
        // One token per thread that will still want one: a stopped thread takes none.
        let wanting = w.stopped.iter().filter(|&&s| !s).count();
        if usize::from(w.posted) < wanting {
            actions.push(Action::Post);
        }
        if w.wakes_due > 0 {
            for c in 0..CPUS as u8 {
                actions.push(Action::WakeOne(c));
            }
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut w = last.clone();
        match action {
            Action::Step(c) => {
                let Cpu::Runs(t) = w.cpus[usize::from(c)] else {
                    return None;
                };
                let ti = usize::from(t);
                match w.pc[ti] {
                    Pc::Check | Pc::Recheck => {
                        // `wait_until`: under the queue's lock, check, else park and register.
                        if w.tokens > 0 {
                            w.tokens -= 1;
                            w.pc[ti] = Pc::ExitPath;
                        } else if self.apply(&mut w, t, Event::Park).is_ok() {
                            w.waiters.push_back(t);
                            w.pc[ti] = Pc::Window;
                        } else {
                            flag(&mut w, "park refused");
                        }
                    }
                    Pc::Window => {
                        // `block()`: a thread already woken (`Running`) does not switch.
                        if w.state[ti] != ThreadState::Running {
                            w.cpus[usize::from(c)] = Cpu::Left(t);
                        }
                        w.pc[ti] = Pc::Recheck;
                    }
                    Pc::Cleanup => {
                        // Under the queue's lock: still registered, or woken (only wakers
                        // take entries out), and then the wake-up goes on to the next waiter.
                        if let Some(at) = w.waiters.iter().position(|&x| x == t) {
                            w.waiters.remove(at);
                        } else if !self.has(Flaw::StopKeepsWakeUp) {
                            self.wake_one(&mut w, c);
                        }
                        w.pc[ti] = Pc::ExitPath;
                    }
                    Pc::ExitPath => {
                        if self.apply(&mut w, t, Event::Exit).is_err() {
                            flag(&mut w, "exit refused");
                        }
                        w.cpus[usize::from(c)] = Cpu::Left(t);
                        w.pc[ti] = Pc::Done;
                    }
                    Pc::Done => flag(&mut w, "a finished thread ran"),
                }
            }
            Action::Preempt(c) => {
                let Cpu::Runs(t) = w.cpus[usize::from(c)] else {
                    return None;
                };
                w.cpus[usize::from(c)] = Cpu::Left(t);
            }
            Action::Stop(c) => {
                let Cpu::Runs(t) = w.cpus[usize::from(c)] else {
                    return None;
                };
                w.stops_left -= 1;
                if w.pc[usize::from(t)] == Pc::Cleanup {
                    // Stopped again in its cleanup: the kernel lands at the outermost stop
                    // point and the cleanup is abandoned, its entry left stale.
                    w.pc[usize::from(t)] = Pc::ExitPath;
                    w.abandoned_cleanup = true;
                } else if self.apply(&mut w, t, Event::Stop).is_ok() {
                    let ti = usize::from(t);
                    w.stopped[ti] = true;
                    // Inside `wait_until`'s stop guard, the stop lands in its cleanup.
                    w.pc[ti] = if w.pc[ti] == Pc::Check {
                        Pc::ExitPath
                    } else {
                        Pc::Cleanup
                    };
                } else {
                    flag(&mut w, "stop refused: the kernel would stop");
                }
            }
            Action::Schedule(c) => self.schedule(&mut w, c),
            Action::Post => {
                w.tokens += 1;
                w.posted += 1;
                w.wakes_due += 1;
            }
            Action::WakeOne(target) => {
                w.wakes_due -= 1;
                self.wake_one(&mut w, target);
            }
        }
        Some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("no violation seen by an action", |_, w: &World| {
                w.bad.is_none()
            }),
            Property::always("picked only live threads with their stacks", picked_live),
            Property::always(
                "one run-queue entry at most, none while on a CPU",
                queued_once,
            ),
            Property::always("no thread on two CPUs", on_one_cpu),
            Property::eventually("every thread exits and is reaped", |_, w: &World| {
                let finished = w.pc.iter().all(|&pc| pc == Pc::Done) && w.reaped.iter().all(|&r| r);
                finished || w.abandoned_cleanup
            }),
            Property::sometimes(
                "a thread is stopped while registered as a waiter",
                |_, w: &World| (0..THREADS).any(|t| w.stopped[t] && w.waiters.contains(&(t as u8))),
            ),
            Property::sometimes(
                "a thread is stopped holding a wake-up it did not use",
                |_, w: &World| {
                    (0..THREADS).any(|t| {
                        w.stopped[t] && w.pc[t] == Pc::Cleanup && !w.waiters.contains(&(t as u8))
                    })
                },
            ),
            Property::sometimes(
                "a wake-up meets a thread still on its CPU",
                |_, w: &World| {
                    (0..THREADS).any(|t| {
                        w.state[t] == ThreadState::Running
                            && w.pc[t] == Pc::Window
                            && !w.waiters.contains(&(t as u8))
                    })
                },
            ),
        ];
        if self.double_stops {
            properties.push(Property::sometimes(
                "a cleanup is abandoned",
                |_, w: &World| w.abandoned_cleanup,
            ));
        }
        properties
    }
}

/// The CPU holding thread `t`, if one does.
fn holders(w: &World, t: u8) -> usize {
    w.cpus
        .iter()
        .filter(|&&c| c == Cpu::Runs(t) || c == Cpu::Left(t))
        .count()
}

fn picked_live(_: &Sched, w: &World) -> bool {
    let running_ok = w.cpus.iter().all(|&cpu| match cpu {
        Cpu::Runs(t) => {
            let t = usize::from(t);
            // A stopped thread runs its cleanup and exit path where it was stopped (the pick
            // of a stopped thread is flagged by the scheduler step itself).
            !w.reaped[t] && (w.state[t].is_live() || matches!(w.pc[t], Pc::Cleanup | Pc::ExitPath))
        }
        _ => true,
    });
    running_ok && w.bad != Some("switched to a stopped or exited thread")
}

fn queued_once(_: &Sched, w: &World) -> bool {
    (0..THREADS as u8).all(|t| {
        let queued: usize = w
            .run_queues
            .iter()
            .map(|q| q.iter().filter(|&&e| e == t).count())
            .sum();
        queued <= 1 && !(holders(w, t) > 0 && queued > 0)
    })
}

fn on_one_cpu(_: &Sched, w: &World) -> bool {
    (0..THREADS as u8).all(|t| holders(w, t) <= 1)
}

impl Sched {
    /// The scheduler loop of CPU `c`: `put_previous`, or a pick (own queue from the front,
    /// then stealing from the back of the others).
    fn schedule(&self, w: &mut World, c: u8) {
        let ci = usize::from(c);
        if let Cpu::Left(t) = w.cpus[ci] {
            match self.apply(w, t, Event::SwitchedOut) {
                Ok(Transition {
                    duty: Duty::Enqueue,
                    ..
                }) => w.run_queues[ci].push_back(t),
                Ok(Transition {
                    duty: Duty::Reap, ..
                }) => w.reaped[usize::from(t)] = true,
                Ok(_) => {}
                Err(_) => flag(w, "switched out in a state that forbids it"),
            }
            w.cpus[ci] = Cpu::Scheduler;
            return;
        }
        let picked = (0..CPUS).find_map(|offset| {
            let victim = (ci + offset) % CPUS;
            if self.has(Flaw::PickIgnoresState) {
                return if offset == 0 {
                    w.run_queues[victim].pop_front()
                } else {
                    w.run_queues[victim].pop_back()
                };
            }
            let states = w.state;
            let queue = &mut w.run_queues[victim];
            let taken = if offset == 0 {
                take_ready(|| queue.pop_front(), |&t| states[usize::from(t)])
            } else {
                take_ready(|| queue.pop_back(), |&t| states[usize::from(t)])
            };
            taken.ready
        });
        let Some(t) = picked else {
            return;
        };
        let ti = usize::from(t);
        if w.stopped[ti] || w.state[ti] == ThreadState::Exited || w.reaped[ti] {
            flag(w, "switched to a stopped or exited thread");
        }
        if self.has(Flaw::PickIgnoresState) {
            w.state[ti] = ThreadState::Running;
        } else if self.apply(w, t, Event::Pick).is_err() {
            flag(w, "pick refused on a ready entry");
        }
        w.cpus[ci] = Cpu::Runs(t);
    }

    /// `WaitQueue::wake_one`: the first waiter that accepts the wake-up.
    fn wake_one(&self, w: &mut World, target: u8) {
        let live_waiter = w.waiters.iter().any(|&t| {
            matches!(
                w.state[usize::from(t)],
                ThreadState::Parking | ThreadState::Blocked
            )
        });
        let woken = if self.has(Flaw::WakeGivesUpAtStale) {
            w.waiters.pop_front().and_then(|t| {
                let transition = self.apply(w, t, Event::Wake).ok()?;
                Some((t, transition))
            })
        } else {
            let mut waiters = std::mem::take(&mut w.waiters);
            let result = wake_first(|| waiters.pop_front(), |&t, e| self.apply(w, t, e));
            w.waiters = waiters;
            result.woken
        };
        if live_waiter && woken.is_none() {
            flag(w, "a wake-up missed a live waiter");
        }
        if let Some((t, transition)) = woken {
            if w.stopped[usize::from(t)] {
                flag(w, "a wake-up reached a stopped thread");
            }
            if transition.duty == Duty::Enqueue {
                w.run_queues[usize::from(target)].push_back(t);
            }
        }
    }
}

fn check(model: Sched) -> impl Checker<Sched> {
    model.checker().threads(2).spawn_bfs().join()
}

#[test]
fn the_state_machine_holds_on_every_interleaving() {
    let checker = check(Sched::correct(1, false));
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 10_000,
        "the model explored only {} states",
        checker.unique_state_count()
    );
}

#[test]
fn without_stops_too() {
    check(Sched::correct(0, false)).assert_no_discovery("every thread exits and is reaped");
}

/// A second stop while a stopped thread cleans up abandons the cleanup: its entry stays in
/// the wait queue (stale, and wakers drop it) and a wake-up it had received is lost, which is
/// the one loss the design accepts (see the kernel's `sched` docs). Everything else holds.
#[test]
fn with_a_second_stop_in_the_cleanup_of_the_first() {
    let checker = check(Sched::correct(2, true));
    checker.assert_properties();
    checker.assert_any_discovery("a cleanup is abandoned");
}

#[test]
fn finds_the_old_waker_that_queued_a_thread_still_on_its_cpu() {
    let checker = check(Sched::flawed(&[Flaw::WakeQueuesParking], 1, false));
    checker.assert_any_discovery("one run-queue entry at most, none while on a CPU");
}

#[test]
fn finds_the_old_kernel_switching_to_a_stopped_thread() {
    // The kernel before the state machine: the waker queued a thread still on its CPU, and
    // the scheduler switched to any entry it popped.
    let checker = check(Sched::flawed(
        &[Flaw::WakeQueuesParking, Flaw::PickIgnoresState],
        1,
        false,
    ));
    checker.assert_any_discovery("picked only live threads with their stacks");
}

#[test]
fn finds_a_wake_up_lost_with_a_thread_stopped_after_it_was_woken() {
    let checker = check(Sched::flawed(&[Flaw::StopKeepsWakeUp], 1, false));
    checker.assert_any_discovery("every thread exits and is reaped");
}

#[test]
fn finds_a_wake_up_lost_to_a_stopped_waiter() {
    // Between a stop and its cleanup (or for good, when a second stop abandons the cleanup)
    // the stopped thread's entry is stale.
    let checker = check(Sched::flawed(&[Flaw::WakeGivesUpAtStale], 1, false));
    checker.assert_any_discovery("no violation seen by an action");
}

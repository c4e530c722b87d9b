use super::*;
use crate::StateCell;
use std::collections::VecDeque;

#[test]
fn a_stopped_waiter_passes_the_wake_up_on() {
    let stopped = StateCell::new(ThreadState::Running);
    let _ = stopped.apply(Event::Park).unwrap();
    let _ = stopped.apply(Event::Stop).unwrap();
    let live = StateCell::new(ThreadState::Running);
    let _ = live.apply(Event::Park).unwrap();
    let _ = live.apply(Event::SwitchedOut).unwrap();
    let cells = [stopped, live];
    let mut waiters: VecDeque<usize> = [0, 1].into();
    let result = wake_first(|| waiters.pop_front(), |&i, e| cells[i].apply(e));
    let (woken, transition) = result.woken.unwrap();
    assert_eq!((woken, transition.to), (1, ThreadState::Ready));
    assert_eq!(result.dropped, 1);
    assert!(waiters.is_empty());
}

#[test]
fn only_ready_entries_are_taken() {
    let states = [ThreadState::Exited, ThreadState::Ready];
    let mut queue: VecDeque<usize> = [0, 1].into();
    let result = take_ready(|| queue.pop_front(), |&i| states[i]);
    assert_eq!((result.ready, result.dropped), (Some(1), 1));
}

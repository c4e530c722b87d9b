use super::*;

const EVENTS: [Event; 6] = [
    Event::Pick,
    Event::Park,
    Event::Wake,
    Event::SwitchedOut,
    Event::Exit,
    Event::Stop,
];

#[test]
fn the_table_has_exactly_the_documented_transitions() {
    let allowed: Vec<(Event, ThreadState)> = EVENTS
        .iter()
        .flat_map(|&e| ThreadState::ALL.iter().map(move |&s| (e, s)))
        .filter(|&(e, s)| next(s, e).is_ok())
        .collect();
    use {Event as E, ThreadState as S};
    assert_eq!(
        allowed,
        vec![
            (E::Pick, S::Ready),
            (E::Park, S::Running),
            (E::Wake, S::Parking),
            (E::Wake, S::Blocked),
            (E::SwitchedOut, S::Running),
            (E::SwitchedOut, S::Parking),
            (E::SwitchedOut, S::Exited),
            (E::Exit, S::Running),
            (E::Exit, S::Stopped),
            (E::Stop, S::Running),
            (E::Stop, S::Parking),
        ]
    );
}

#[test]
fn stopped_and_exited_refuse_every_wake_queue_and_pick() {
    for state in [ThreadState::Stopped, ThreadState::Exited] {
        for event in [Event::Pick, Event::Park, Event::Wake, Event::Stop] {
            assert!(next(state, event).is_err(), "{event:?} in {state:?}");
        }
    }
    assert!(next(ThreadState::Stopped, Event::SwitchedOut).is_err());
}

#[test]
fn only_enqueue_duties_lead_into_ready() {
    for state in ThreadState::ALL {
        for event in EVENTS {
            if let Ok(t) = next(state, event) {
                assert_eq!(
                    t.to == ThreadState::Ready,
                    t.duty == Duty::Enqueue,
                    "{event:?} from {state:?}"
                );
            }
        }
    }
}

#[test]
fn the_cell_applies_the_table() {
    let cell = StateCell::new(ThreadState::Ready);
    assert_eq!(cell.apply(Event::Pick).map(|t| t.duty), Ok(Duty::Run));
    assert_eq!(
        cell.apply(Event::Park).map(|t| t.to),
        Ok(ThreadState::Parking)
    );
    assert_eq!(
        cell.apply(Event::Stop).map(|t| t.to),
        Ok(ThreadState::Stopped)
    );
    assert_eq!(
        cell.apply(Event::Wake),
        Err(Refused {
            state: ThreadState::Stopped,
            event: Event::Wake
        })
    );
    assert_eq!(
        cell.apply(Event::Exit).map(|t| t.to),
        Ok(ThreadState::Exited)
    );
    assert_eq!(
        cell.apply(Event::SwitchedOut).map(|t| t.duty),
        Ok(Duty::Reap)
    );
    assert_eq!(cell.load(), ThreadState::Exited);
}

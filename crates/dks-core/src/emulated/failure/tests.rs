use super::*;

fn failures(pattern: FailurePattern, urgency: Urgency, attempts: usize) -> usize {
    let mut injector = Injector::new(pattern, 42);
    (0..attempts).filter(|_| injector.fails(urgency)).count()
}

#[test]
fn patterns_fail_what_they_say() {
    assert_eq!(failures(FailurePattern::Never, Urgency::Atomic, 100), 0);
    assert_eq!(failures(FailurePattern::EveryNth(3), Urgency::Normal, 9), 3);
    assert_eq!(failures(FailurePattern::EveryNth(1), Urgency::Normal, 5), 5);
    assert_eq!(failures(FailurePattern::EveryNth(0), Urgency::Normal, 5), 5);
    assert_eq!(failures(FailurePattern::AllAtomic, Urgency::Atomic, 7), 7);
    assert_eq!(failures(FailurePattern::AllAtomic, Urgency::Normal, 7), 0);
    let some = failures(
        FailurePattern::Fraction { per_mille: 250 },
        Urgency::Atomic,
        4000,
    );
    assert!((800..1200).contains(&some), "{some}");
    assert_eq!(
        failures(
            FailurePattern::Fraction { per_mille: 0 },
            Urgency::Atomic,
            100
        ),
        0
    );
    assert_eq!(
        failures(
            FailurePattern::Fraction { per_mille: 1000 },
            Urgency::Atomic,
            100
        ),
        100
    );
}

#[test]
fn the_same_seed_gives_the_same_failures() {
    let run = |seed| {
        let mut injector = Injector::new(FailurePattern::Fraction { per_mille: 500 }, seed);
        (0..64)
            .map(|_| injector.fails(Urgency::Atomic))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

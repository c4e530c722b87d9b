use super::*;

#[test]
fn names_round_trip_and_unknown_names_are_rejected() {
    for policy in Policy::ALL {
        assert_eq!(policy.name().parse(), Ok(policy));
        assert_eq!(format!("{policy}"), policy.name());
    }
    assert_eq!("Static".parse::<Policy>(), Err(UnknownPolicy));
    assert_eq!("".parse::<Policy>(), Err(UnknownPolicy));
    assert!(format!("{UnknownPolicy}").contains("guaranteed"));
}

#[test]
fn the_table_of_the_module_doc() {
    let layout = StackLayout::try_with_default_base(0x8000, 1).unwrap();
    assert_eq!(Policy::Static.initial_pages(&layout), PageSet::top(8));
    let row = |p: Policy| {
        (
            p.initial_pages(&layout).len(),
            p.grows_by_fault(),
            p.needs_admission(),
            p.maps_all_while_running(),
            p.refills_after_switch(),
            p.reclaims_while_asleep(),
        )
    };
    assert_eq!(row(Policy::Static), (8, false, false, false, false, false));
    assert_eq!(row(Policy::Fault), (1, true, false, false, true, false));
    assert_eq!(
        row(Policy::Guaranteed),
        (1, true, true, false, false, false)
    );
    assert_eq!(row(Policy::Reclaim), (1, true, true, false, false, true));
    assert_eq!(row(Policy::Switch), (1, false, true, true, false, true));
    assert_eq!(row(Policy::Pack), (1, true, true, false, false, true));
    let packs: Vec<Policy> = Policy::ALL
        .into_iter()
        .filter(|p| p.packs_while_asleep())
        .collect();
    assert_eq!(packs, [Policy::Pack]);
}

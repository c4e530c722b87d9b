use super::*;

#[test]
fn charges_within_the_limit_succeed_and_beyond_fail_cleanly() {
    let group = GroupCharge::new(Some(4));
    assert_eq!(group.limit_pages(), Some(4));
    assert_eq!(group.try_charge(3), Ok(()));
    assert_eq!(
        group.try_charge(2),
        Err(ChargeError {
            pages: 2,
            charged_pages: 3,
            limit_pages: 4
        })
    );
    // The failed charge took nothing.
    assert_eq!(group.charged_pages(), 3);
    assert_eq!(group.try_charge(1), Ok(()));
    group.uncharge(4);
    assert_eq!(group.charged_pages(), 0);
    assert_eq!(group.peak_pages(), 4);
    assert!(
        format!(
            "{}",
            ChargeError {
                pages: 2,
                charged_pages: 3,
                limit_pages: 4
            }
        )
        .contains("exceed the group limit")
    );
}

#[test]
fn forced_charges_may_exceed_the_limit_and_are_counted() {
    let group = GroupCharge::new(Some(1));
    group.force_charge(1);
    assert_eq!(group.over_limit_charges(), 0);
    group.force_charge(1);
    assert_eq!(group.over_limit_charges(), 1);
    assert_eq!(group.charged_pages(), 2);
    assert!(group.try_charge(1).is_err());
    group.set_limit(None);
    assert_eq!(group.limit_pages(), None);
    assert_eq!(group.try_charge(1), Ok(()));
    assert_eq!(GroupCharge::default().limit_pages(), None);
    assert_eq!(GroupId::new(3).as_usize(), 3);
}

#[test]
fn an_overflowing_charge_fails() {
    let group = GroupCharge::new(None);
    group.force_charge(u64::MAX - 1);
    assert!(group.try_charge(2).is_err());
}

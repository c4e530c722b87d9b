use super::*;

fn page(index: u8) -> StackPage {
    StackPage::new(index)
}

#[test]
fn top_sets_hold_the_first_pages() {
    assert_eq!(PageSet::top(0), PageSet::EMPTY);
    assert_eq!(PageSet::top(4).bits(), 0b1111);
    assert_eq!(PageSet::top(16).bits(), u16::MAX);
    assert_eq!(PageSet::top(16).len(), 16);
}

#[test]
#[should_panic(expected = "at most 16 pages")]
fn top_rejects_more_than_capacity() {
    let _ = PageSet::top(17);
}

#[test]
fn insert_remove_contains_and_set_algebra() {
    let mut set = PageSet::EMPTY;
    assert!(set.is_empty());
    set.insert(page(3));
    set.insert(page(0));
    assert!(set.contains(page(3)) && set.contains(page(0)));
    assert!(!set.contains(page(1)));
    assert_eq!(set.len(), 2);
    assert_eq!(set.deepest(), Some(page(3)));
    set.remove(page(3));
    assert_eq!(set, PageSet::single(page(0)));
    assert_eq!(PageSet::EMPTY.deepest(), None);

    let a = PageSet::from_bits(0b0110);
    let b = PageSet::from_bits(0b0011);
    assert_eq!(a.union(b).bits(), 0b0111);
    assert_eq!(a.intersection(b).bits(), 0b0010);
    assert_eq!(a.difference(b).bits(), 0b0100);
    assert!(PageSet::from_bits(0b0010).is_subset(a));
    assert!(!b.is_subset(a));
}

#[test]
fn iteration_goes_from_the_top_down() {
    let pages: Vec<u8> = PageSet::from_bits(0b1000_0000_0000_0101)
        .iter()
        .map(StackPage::index)
        .collect();
    assert_eq!(pages, [0, 2, 15]);
    assert_eq!(PageSet::EMPTY.iter().count(), 0);
    assert_eq!(
        format!("{:?}", PageSet::from_bits(1)),
        "PageSet(0b0000000000000001)"
    );
}

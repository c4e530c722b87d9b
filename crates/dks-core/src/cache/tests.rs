use super::*;

fn cached(slot: u32, pages: usize) -> CachedStack {
    CachedStack::new(SlotIndex::new(slot), PageSet::top(pages))
}

#[test]
fn holds_two_and_gives_back_the_third() {
    let mut cache = StackCache::new();
    assert!(cache.is_empty());
    assert_eq!(cache.put(cached(1, 1)), Ok(()));
    assert_eq!(cache.put(cached(2, 3)), Ok(()));
    assert_eq!(cache.put(cached(3, 2)), Err(cached(3, 2)));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.iter().count(), 2);
    // The most populated comes out first.
    assert_eq!(cache.take(), Some(cached(2, 3)));
    assert_eq!(cache.take(), Some(cached(1, 1)));
    assert_eq!(cache.take(), None);
}

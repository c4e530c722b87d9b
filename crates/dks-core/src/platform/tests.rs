use super::*;

#[test]
fn a_batch_covers_only_the_pages_that_may_be_cached() {
    let mut batch = FlushBatch::default();
    assert_eq!(batch.need(), FlushNeed::NotCached);
    assert_eq!(batch.range(), None);
    batch.add(Flush::new(VirtAddr::new(0x9000), FlushNeed::NotCached));
    assert_eq!(batch.need(), FlushNeed::NotCached);
    batch.add(Flush::new(VirtAddr::new(0x5000), FlushNeed::Shootdown));
    batch.add(Flush::new(VirtAddr::new(0x3000), FlushNeed::Shootdown));
    assert_eq!(batch.need(), FlushNeed::Shootdown);
    assert_eq!(batch.pages(), 2);
    assert_eq!(
        batch.range(),
        Some((VirtAddr::new(0x3000), VirtAddr::new(0x6000)))
    );
    let flush = Flush::new(VirtAddr::new(0x3000), FlushNeed::Shootdown);
    assert_eq!(
        (flush.addr(), flush.need()),
        (VirtAddr::new(0x3000), FlushNeed::Shootdown)
    );
}

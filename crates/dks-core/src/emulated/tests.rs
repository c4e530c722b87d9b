use super::*;
use crate::cpu::PerCpu;
use crate::layout::StackPage;

fn platform(frames: u32, reserve: u32) -> EmulatedPlatform {
    EmulatedPlatform::new(EmulatedConfig {
        cpus: 2,
        frames,
        atomic_reserve_frames: reserve,
        ..EmulatedConfig::default()
    })
}

fn layout() -> StackLayout {
    StackLayout::try_with_default_base(0x4000, 4).unwrap()
}

fn page(layout: &StackLayout, slot: u32, page: u8) -> VirtAddr {
    layout.page_addr(SlotIndex::new(slot), StackPage::new(page))
}

#[test]
fn normal_allocations_leave_the_atomic_reserve_alone() {
    let mut p = platform(4, 2);
    let a = p.alloc_frame(Urgency::Normal).unwrap();
    let b = p.alloc_frame(Urgency::Normal).unwrap();
    assert_eq!(p.alloc_frame(Urgency::Normal), None);
    let c = p.alloc_frame(Urgency::Atomic).unwrap();
    let d = p.alloc_frame(Urgency::Atomic).unwrap();
    assert_eq!(p.alloc_frame(Urgency::Atomic), None);
    assert_eq!(p.free_frames(), 0);
    assert_eq!(p.stats().allocations, 6);
    assert_eq!(p.stats().failed_allocations, 2);
    assert!(p.is_clean(a.phys_addr()));
    for frame in [a, b, c, d] {
        p.free_frame(frame);
    }
    assert_eq!(p.free_frames(), 4);
    assert_eq!(p.total_frames(), 4);
    assert_eq!(p.config().atomic_reserve_frames, 2);
    assert!(format!("{p:?}").contains("free_frames: 4"));
}

#[test]
#[should_panic(expected = "double free")]
fn a_double_free_is_caught() {
    let mut p = platform(2, 0);
    let frame = p.alloc_frame(Urgency::Normal).unwrap();
    let copy = Frame::from_phys_addr(frame.phys_addr());
    p.free_frame(frame);
    p.free_frame(copy);
}

#[test]
#[should_panic(expected = "present already")]
fn mapping_a_present_page_is_caught() {
    let layout = layout();
    let mut p = platform(2, 0);
    let addr = page(&layout, 0, 0);
    let a = p.alloc_frame(Urgency::Normal).unwrap();
    let b = p.alloc_frame(Urgency::Normal).unwrap();
    let _ = p.map_stack_page(addr, a);
    let _ = p.map_stack_page(addr, b);
}

#[test]
#[should_panic(expected = "not present")]
fn unmapping_an_absent_page_is_caught() {
    let layout = layout();
    let mut p = platform(2, 0);
    let _ = p.unmap_stack_page(page(&layout, 0, 1), AbsentPte::EMPTY);
}

#[test]
#[should_panic(expected = "mapped twice")]
fn mapping_one_frame_twice_is_caught() {
    let layout = layout();
    let mut p = platform(2, 0);
    let a = p.alloc_frame(Urgency::Normal).unwrap();
    let copy = Frame::from_phys_addr(a.phys_addr());
    let _ = p.map_stack_page(page(&layout, 0, 0), a);
    let _ = p.map_stack_page(page(&layout, 1, 0), copy);
}

#[test]
#[should_panic(expected = "not from this pool")]
fn foreign_frames_are_caught() {
    let mut p = platform(2, 0);
    p.free_frame(Frame::from_phys_addr(0x1000));
}

#[test]
fn touches_fault_on_absent_pages_and_cache_present_ones() {
    let layout = layout();
    let mut p = platform(4, 0);
    let addr = page(&layout, 1, 0);
    assert_eq!(p.touch(addr), Err(PageFault { addr, entry: 0 }));
    let frame = p.alloc_frame(Urgency::Normal).unwrap();
    let phys = frame.phys_addr();
    let _ = p.map_stack_page(addr, frame);
    assert!(p.is_clean(phys));
    assert_eq!(p.frame_at(addr), Some(phys));
    p.touch(VirtAddr::new(addr.as_u64() + 8)).unwrap();
    assert!(!p.is_clean(phys));
    assert!(matches!(
        pte::decode(p.read_entry(addr)),
        EntryKind::Present { accessed: true, .. }
    ));
    p.zero_page(addr);
    assert!(p.is_clean(phys));
    assert_eq!(p.mapped_pages(), 1);
    p.check_tlbs().unwrap();
}

#[test]
fn an_unmap_without_its_shootdown_leaves_a_stale_translation() {
    let layout = layout();
    let mut p = platform(4, 0);
    let addr = page(&layout, 0, 0);
    let frame = p.alloc_frame(Urgency::Normal).unwrap();
    let _ = p.map_stack_page(addr, frame);
    p.set_current_cpu(CpuId::new(1));
    p.touch(addr).unwrap();
    p.set_current_cpu(CpuId::new(0));
    let (frame, flush) = p.unmap_stack_page(addr, AbsentPte::unpopulated(SlotIndex::new(0)));
    assert_eq!(flush.need(), FlushNeed::Shootdown);
    let stale = p.check_tlbs().unwrap_err();
    assert_eq!((stale.cpu, stale.addr), (CpuId::new(1), addr));
    // CPU 1 still reaches the frame through its TLB: the hazard.
    p.set_current_cpu(CpuId::new(1));
    assert_eq!(p.touch(addr), Ok(()));
    let mut batch = FlushBatch::new();
    batch.add(flush);
    p.flush(batch);
    p.check_tlbs().unwrap();
    assert!(p.touch(addr).is_err());
    assert_eq!((p.stats().shootdowns, p.stats().shot_down_pages), (1, 1));
    p.free_frame(frame);
}

#[test]
fn an_untouched_page_is_unmapped_without_a_flush() {
    let layout = layout();
    let mut p = platform(4, 0);
    let addr = page(&layout, 0, 2);
    let frame = p.alloc_frame(Urgency::Normal).unwrap();
    let _ = p.map_stack_page(addr, frame);
    let (frame, flush) = p.unmap_stack_page(addr, AbsentPte::EMPTY);
    assert_eq!(flush.need(), FlushNeed::NotCached);
    p.check_tlbs().unwrap();
    p.free_frame(frame);
}

#[test]
fn the_census_finds_every_frame_exactly_once() {
    let layout = layout();
    let mut p = platform(8, 0);
    let mut cpu = PerCpu::new(CpuId::new(0), &layout);
    let _ = cpu.magazine.refill(&mut p, Urgency::Atomic);
    let stack_frame = p.alloc_frame(Urgency::Normal).unwrap();
    let cache_frame = p.alloc_frame(Urgency::Normal).unwrap();
    let other = p.alloc_frame(Urgency::Normal).unwrap();
    let _ = p.map_stack_page(page(&layout, 0, 0), stack_frame);
    let _ = p.map_stack_page(page(&layout, 2, 0), cache_frame);
    let slot_use = |slot: SlotIndex| match slot.as_u32() {
        0 => SlotUse::Live,
        2 => SlotUse::Cached,
        _ => SlotUse::Unused,
    };
    let mut census = p.census(&layout, slot_use).unwrap();
    census.record_magazine(&cpu.magazine).unwrap();
    census.record(&other, Place::Other).unwrap();
    let counts = census.finish().unwrap();
    assert_eq!(
        counts,
        FrameCounts {
            free: 2,
            magazine: 3,
            stack: 1,
            cache: 1,
            other: 1
        }
    );
    assert_eq!(counts.total(), 8);

    // Forgetting a frame, or recording one twice, is caught.
    let census = p.census(&layout, slot_use).unwrap();
    assert!(matches!(census.finish(), Err(CensusError::Nowhere { .. })));
    let mut census = p.census(&layout, slot_use).unwrap();
    census.record(&other, Place::Other).unwrap();
    assert_eq!(
        census.record(&other, Place::Other),
        Err(CensusError::TwoPlaces {
            frame_phys_addr: other.phys_addr(),
            first: Place::Other,
            second: Place::Other
        })
    );
    assert!(matches!(
        census.record(&Frame::from_phys_addr(0x1000), Place::Other),
        Err(CensusError::NotOurs {
            frame_phys_addr: 0x1000
        })
    ));
    // A page mapped in an unused slot is not a stack's.
    assert_eq!(
        p.census(&layout, |_| SlotUse::Unused).unwrap_err(),
        CensusError::MappedOutsideStacks {
            addr: page(&layout, 0, 0)
        }
    );
}

#[test]
fn check_slot_reports_the_first_wrong_entry() {
    let layout = layout();
    let mut p = platform(4, 0);
    let slot = SlotIndex::new(1);
    p.check_slot(&layout, slot, None).unwrap();
    let top = page(&layout, 1, 0);
    let frame = p.alloc_frame(Urgency::Normal).unwrap();
    let _ = p.map_stack_page(top, frame);
    // Unused slot with a present page.
    assert_eq!(p.check_slot(&layout, slot, None).unwrap_err().addr, top);
    // In use, but the other pages are not marked yet.
    let mismatch = p
        .check_slot(&layout, slot, Some(PageSet::top(1)))
        .unwrap_err();
    assert_eq!(
        mismatch.expected,
        Some(PageState::Unpopulated { owner: slot })
    );
    for index in 1..4 {
        p.write_absent(page(&layout, 1, index), AbsentPte::unpopulated(slot));
    }
    let counts = p.check_slot(&layout, slot, Some(PageSet::top(1))).unwrap();
    assert_eq!(
        counts,
        PageCounts {
            populated: 1,
            unpopulated: 3,
            guard: 1
        }
    );
    assert_eq!(counts.total(), layout.slot_size_in_pages());
    // A guard page that is not empty.
    p.write_raw_entry(layout.guard_page_addr(slot, 0), 0x10);
    assert_eq!(
        p.check_slot(&layout, slot, Some(PageSet::top(1)))
            .unwrap_err()
            .expected,
        Some(PageState::Guard)
    );
}

#[test]
#[should_panic(expected = "no CPU 2")]
fn there_is_no_cpu_beyond_the_configured_ones() {
    platform(1, 0).set_current_cpu(CpuId::new(2));
}

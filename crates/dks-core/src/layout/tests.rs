use super::*;

fn layout(max_stack_bytes: u64) -> StackLayout {
    StackLayout::try_with_default_base(max_stack_bytes, 8).unwrap()
}

#[test]
fn sizes_other_than_16_32_64_kib_are_rejected() {
    for bytes in [0, 4096, 0x3fff, 0x4001, 0xc000, 0x2_0000, u64::MAX] {
        assert_eq!(
            StackLayout::try_with_default_base(bytes, 1),
            Err(LayoutError::BadMaxStack { bytes })
        );
    }
    for max in MaxStack::ALL {
        assert_eq!(MaxStack::try_from_bytes(max.bytes()), Ok(max));
        assert_eq!(layout(max.bytes()).stack_pages(), max.pages());
    }
}

#[test]
fn bad_bases_and_slot_counts_are_rejected() {
    let misaligned = VirtAddr::new(DEFAULT_STACK_REGION_BASE + 8);
    assert_eq!(
        StackLayout::try_new(misaligned, 0x4000, 1),
        Err(LayoutError::MisalignedBase { base: misaligned })
    );
    assert_eq!(
        StackLayout::try_with_default_base(0x4000, 0),
        Err(LayoutError::NoSlots)
    );
    // Crosses from the lower canonical half into the hole.
    let near_hole = VirtAddr::new(0x7fff_ffff_f000);
    assert_eq!(
        StackLayout::try_new(near_hole, 0x4000, 2),
        Err(LayoutError::NotCanonical {
            base: near_hole,
            slot_count: 2
        })
    );
    // Starts in the hole.
    let in_hole = VirtAddr::new(0x8000_0000_0000);
    assert!(StackLayout::try_new(in_hole, 0x4000, 1).is_err());
    // Wraps past the end of the address space.
    let last_page = VirtAddr::new(0xffff_ffff_ffff_f000);
    assert!(StackLayout::try_new(last_page, 0x4000, 1).is_err());
    // The lower half works too.
    assert!(StackLayout::try_new(VirtAddr::new(0x10_0000), 0x4000, 4).is_ok());
}

#[test]
#[should_panic(expected = "invalid stack layout")]
fn new_panics_on_an_invalid_geometry() {
    let _ = StackLayout::new(VirtAddr::new(DEFAULT_STACK_REGION_BASE), 0x5000, 1);
}

#[test]
fn slots_are_guard_then_stack_with_the_top_at_the_high_end() {
    let layout = layout(0x4000);
    let slot = SlotIndex::new(3);
    let base = DEFAULT_STACK_REGION_BASE + 3 * 5 * PAGE_SIZE_IN_BYTES;
    assert_eq!(layout.slot_size_in_pages(), 5);
    assert_eq!(layout.slot_base(slot).as_u64(), base);
    assert_eq!(layout.guard_page_addr(slot, 0).as_u64(), base);
    assert_eq!(
        layout.stack_bottom(slot).as_u64(),
        base + PAGE_SIZE_IN_BYTES
    );
    assert_eq!(
        layout.stack_top(slot).as_u64(),
        base + 5 * PAGE_SIZE_IN_BYTES
    );
    assert_eq!(
        layout.page_addr(slot, StackPage::TOP).as_u64(),
        base + 4 * PAGE_SIZE_IN_BYTES
    );
    assert_eq!(
        layout.page_addr(slot, StackPage::new(3)).as_u64(),
        base + PAGE_SIZE_IN_BYTES
    );
    assert_eq!(
        layout.region_end().as_u64(),
        DEFAULT_STACK_REGION_BASE + 8 * 5 * PAGE_SIZE_IN_BYTES
    );
    assert_eq!(layout.slot(7), Some(SlotIndex::new(7)));
    assert_eq!(layout.slot(8), None);
    assert_eq!(layout.stack_page(3), Some(StackPage::new(3)));
    assert_eq!(layout.stack_page(4), None);
}

#[test]
fn locate_inverts_the_address_functions_for_every_page() {
    for max in MaxStack::ALL {
        let layout = layout(max.bytes());
        for slot in (0..layout.slot_count()).map(SlotIndex::new) {
            for page in layout.all_pages().iter() {
                let addr = layout.page_addr(slot, page);
                for probe in [addr.as_u64(), addr.as_u64() + PAGE_SIZE_IN_BYTES - 1] {
                    assert_eq!(
                        layout.locate(VirtAddr::new(probe)),
                        Some(Location {
                            slot,
                            part: SlotPart::Stack(page)
                        })
                    );
                }
            }
            let guard = layout.guard_page_addr(slot, 0);
            assert_eq!(
                layout.locate(guard),
                Some(Location {
                    slot,
                    part: SlotPart::Guard
                })
            );
        }
        assert_eq!(
            layout.locate(VirtAddr::new(DEFAULT_STACK_REGION_BASE - 1)),
            None
        );
        assert_eq!(layout.locate(layout.region_end()), None);
    }
}

#[test]
fn depth_and_live_pages_follow_the_stack_pointer_and_red_zone() {
    let layout = layout(0x4000);
    let slot = SlotIndex::new(1);
    let top = layout.stack_top(slot).as_u64();
    assert_eq!(layout.depth_in_bytes(slot, VirtAddr::new(top - 100)), 100);
    let live = |depth: u64| layout.live_pages(slot, VirtAddr::new(top - depth)).unwrap();
    // An empty stack still has its top page live.
    assert_eq!(live(0), PageSet::top(1));
    // The red zone reaches into page 1 only once sp is within 128 bytes of it.
    assert_eq!(
        live(PAGE_SIZE_IN_BYTES - RED_ZONE_IN_BYTES),
        PageSet::top(1)
    );
    assert_eq!(
        live(PAGE_SIZE_IN_BYTES - RED_ZONE_IN_BYTES + 1),
        PageSet::top(2)
    );
    // At the very bottom the red zone would leave the stack: clamp.
    assert_eq!(live(0x4000), PageSet::top(4));
    let below = VirtAddr::new(layout.stack_bottom(slot).as_u64() - 1);
    assert_eq!(
        layout.live_pages(slot, below),
        Err(LayoutError::SpOutsideStack { slot, sp: below })
    );
    let above = VirtAddr::new(top + 1);
    assert!(layout.live_pages(slot, above).is_err());
    assert_eq!(layout.pages_to_depth(0), PageSet::top(1));
    assert_eq!(layout.pages_to_depth(4097), PageSet::top(2));
    assert_eq!(layout.pages_to_depth(1 << 20), PageSet::top(4));
}

#[test]
#[should_panic(expected = "outside the region")]
fn slot_outside_the_region_panics() {
    let _ = layout(0x4000).slot_base(SlotIndex::new(8));
}

#[test]
#[should_panic(expected = "outside the stack")]
fn page_outside_the_stack_panics() {
    let _ = layout(0x4000).page_addr(SlotIndex::new(0), StackPage::new(4));
}

#[test]
fn errors_explain_themselves() {
    let text = format!("{}", LayoutError::BadMaxStack { bytes: 15 * 1024 });
    assert!(text.contains("16, 32 or 64 KiB"), "{text}");
    assert!(format!("{}", LayoutError::NoSlots).contains("at least one slot"));
}

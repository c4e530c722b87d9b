use super::*;
use crate::layout::StackPage;

#[test]
fn unpopulated_entries_round_trip_every_owner_width() {
    for owner in [0, 1, 0x1234, 0xdead_beef, u32::MAX] {
        let entry = AbsentPte::unpopulated(SlotIndex::new(owner));
        assert_eq!(entry.raw() & bits::PRESENT, 0);
        assert_eq!(
            decode(entry.raw()),
            EntryKind::Unpopulated {
                owner: SlotIndex::new(owner)
            }
        );
    }
}

#[test]
fn documented_bit_layout() {
    let raw = AbsentPte::unpopulated(SlotIndex::new(0xabcd)).raw();
    assert_eq!(raw, 0x05af_f000_0abc_d000);
    assert_eq!(raw >> 52 & 0x7f, UNPOPULATED_MARKER);
    assert_eq!(raw >> 44 & 0xff, 0xff);
    assert_eq!(raw >> 12 & 0xffff_ffff, 0xabcd);
    assert_eq!(raw & 0xfff, 0);
    assert_eq!(raw >> 59, 0);
}

#[test]
fn present_and_empty_entries_never_decode_as_stack_pages() {
    assert_eq!(decode(0), EntryKind::Empty);
    assert_eq!(AbsentPte::EMPTY.raw(), 0);
    // A present entry whose other bits look exactly like the marker.
    let lookalike = AbsentPte::unpopulated(SlotIndex::new(7)).raw() | bits::PRESENT;
    assert!(matches!(decode(lookalike), EntryKind::Present { .. }));
    let present = 0x1234_5000 | bits::PRESENT | bits::WRITABLE | bits::ACCESSED | bits::NO_EXECUTE;
    assert_eq!(
        decode(present),
        EntryKind::Present {
            frame_phys_addr: 0x1234_5000,
            accessed: true
        }
    );
    assert_eq!(
        decode(0x5000 | bits::PRESENT),
        EntryKind::Present {
            frame_phys_addr: 0x5000,
            accessed: false
        }
    );
}

#[test]
fn any_stray_bit_makes_an_entry_foreign() {
    let good = AbsentPte::unpopulated(SlotIndex::new(3)).raw();
    for bit in (1..12).chain(44..64) {
        let raw = good ^ (1 << bit);
        assert_eq!(decode(raw), EntryKind::Foreign, "bit {bit}");
    }
    // A Linux-style swap entry or other software use is not ours.
    assert_eq!(decode(0x0000_0000_0012_3400), EntryKind::Foreign);
}

#[test]
fn page_state_checks_entries_against_their_position() {
    let stack = SlotPart::Stack(StackPage::new(2));
    let owner = SlotIndex::new(9);
    let unpopulated = AbsentPte::unpopulated(owner).raw();
    assert_eq!(page_state(SlotPart::Guard, 0), Some(PageState::Guard));
    assert_eq!(
        page_state(stack, 0x7000 | bits::PRESENT),
        Some(PageState::Populated)
    );
    assert_eq!(
        page_state(stack, unpopulated),
        Some(PageState::Unpopulated { owner })
    );
    assert_eq!(page_state(stack, 0), None);
    assert_eq!(page_state(SlotPart::Guard, unpopulated), None);
    assert_eq!(page_state(SlotPart::Guard, 0x7000 | bits::PRESENT), None);
    assert_eq!(page_state(stack, 0x10), None);
    let packed = AbsentPte::packed(owner).raw();
    assert_eq!(
        page_state(stack, packed),
        Some(PageState::Unpopulated { owner })
    );
    assert_eq!(page_state(SlotPart::Guard, packed), None);
}

#[test]
fn a_packed_stack_s_entries_are_not_served_and_name_their_owner() {
    let owner = SlotIndex::new(77);
    let packed = AbsentPte::packed(owner).raw();
    assert_eq!(packed & bits::PRESENT, 0);
    // What the fault path's served branch reads: not an unpopulated page.
    assert_eq!(decode(packed), EntryKind::Foreign);
    assert_eq!(packed_owner(packed), Some(owner));
    assert_eq!(packed_owner(AbsentPte::unpopulated(owner).raw()), None);
    assert_eq!(packed_owner(0), None);
}

use super::*;

#[test]
fn frames_know_their_address_and_number() {
    let frame = Frame::from_phys_addr(0x5000);
    assert_eq!(frame.phys_addr(), 0x5000);
    assert_eq!(frame.number(), 5);
    assert_eq!(format!("{frame:?}"), "Frame(0x5000)");
}

#[test]
#[should_panic(expected = "not page aligned")]
fn misaligned_frames_are_refused() {
    let _ = Frame::from_phys_addr(0x5008);
}

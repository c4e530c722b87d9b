use super::*;

#[test]
fn a_class_is_the_smallest_multiple_of_256_bytes_that_holds_the_bytes() {
    assert_eq!(SizeClass::for_len(0), None);
    assert_eq!(SizeClass::for_len(1).map(SizeClass::bytes), Some(256));
    assert_eq!(SizeClass::for_len(256).map(SizeClass::bytes), Some(256));
    assert_eq!(SizeClass::for_len(257).map(SizeClass::bytes), Some(512));
    assert_eq!(SizeClass::for_len(802).map(SizeClass::bytes), Some(1024));
    assert_eq!(SizeClass::for_len(4096), Some(SizeClass::LARGEST));
    assert_eq!(SizeClass::LARGEST.bytes(), 4096);
    assert_eq!(SizeClass::for_len(4097), None);
    for len in 1..=4096 {
        let class = SizeClass::for_len(len).unwrap();
        assert!(class.bytes() >= len && class.bytes() - len < SIZE_CLASS_STEP_IN_BYTES);
    }
}

#[test]
fn checksums_tell_one_changed_byte() {
    let mut bytes = [0x5au8; 1000];
    let before = Checksum::of(&bytes);
    bytes[999] ^= 1;
    assert_ne!(Checksum::of(&bytes), before);
    // The IEEE CRC-32 check value.
    assert_eq!(Checksum::of(b"123456789").as_u32(), 0xcbf4_3926);
}

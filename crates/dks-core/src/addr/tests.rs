use super::*;

#[test]
fn page_base_rounds_down_and_alignment_is_exact() {
    let addr = VirtAddr::new(0x1234_5fff);
    assert_eq!(addr.page_base(), VirtAddr::new(0x1234_5000));
    assert!(!addr.is_page_aligned());
    assert!(addr.page_base().is_page_aligned());
    assert_eq!(format!("{addr:?}"), "VirtAddr(0x12345fff)");
    assert_eq!(format!("{addr}"), "0x12345fff");
}

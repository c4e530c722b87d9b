use super::*;

#[test]
fn statuses_round_trip_and_are_never_zero() {
    for code in ExitCode::ALL {
        let status = code.qemu_status();
        assert_ne!(status, 0);
        assert_eq!(ExitCode::from_qemu_status(status), Some(code));
    }
    assert_eq!(ExitCode::from_qemu_status(0), None);
    assert_eq!(ExitCode::from_qemu_status(1), None);
}

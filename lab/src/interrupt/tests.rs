use super::*;

#[test]
fn signals_are_named() {
    assert_eq!(describe_signal(15), "15 (SIGTERM)");
    assert_eq!(describe_signal(9), "9 (SIGKILL)");
    assert_eq!(describe_signal(2), "2 (SIGINT)");
    assert_eq!(describe_signal(1000), "1000");
    assert_eq!(
        Interrupted(Signal::SIGHUP).to_string(),
        "interrupted by SIGHUP"
    );
}

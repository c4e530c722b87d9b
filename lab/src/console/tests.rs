use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Outcome, TestPlan};

use super::*;

#[test]
fn lines_are_classified() {
    assert_eq!(
        ConsoleLine::parse("hello from the kernel\r\n"),
        ConsoleLine::Text("hello from the kernel".into())
    );
    assert_eq!(
        ConsoleLine::parse("@dks/1 {\"test_plan\":{\"count\":3}}\n"),
        ConsoleLine::Record(Record::TestPlan(TestPlan { count: 3 }))
    );
    // An escaped string cannot be borrowed: the parser hands out owned text.
    assert_eq!(
        ConsoleLine::parse(
            "@dks/1 {\"test_end\":{\"name\":\"a\\\"b\",\"outcome\":\"fail\",\"detail\":\"x\\ny\"}}"
        ),
        ConsoleLine::Record(Record::TestEnd(TestEnd {
            name: "a\"b".into(),
            outcome: Outcome::Fail,
            detail: "x\ny".into(),
        }))
    );
    for bad in ["@dks/1 {\"exit\":{}}", "@dks/1 garbage", "@dks/2 {}"] {
        match ConsoleLine::parse(bad) {
            ConsoleLine::Malformed { line, error } => {
                assert_eq!(line, bad);
                assert!(!error.is_empty());
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn read_lines_splits_and_keeps_a_partial_last_line() {
    let input: &[u8] = b"one\n\xfftwo\r\n\nlast";
    let mut lines = Vec::new();
    read_lines(input, |line| lines.push(line)).unwrap();
    assert_eq!(lines, ["one\n", "\u{fffd}two\r\n", "\n", "last"]);
}

#[test]
fn owned_keeps_every_field() {
    let mut buf = [0u8; wire::MAX_LINE_BYTES];
    let record = Record::Exit(Exit {
        code: ExitCode::Failure,
        reason: "1 test failed".into(),
    });
    let line = wire::encode(&record, &mut buf).unwrap().to_owned();
    let parsed = wire::parse_line(&line).unwrap().unwrap();
    assert_eq!(owned(parsed), record);
}

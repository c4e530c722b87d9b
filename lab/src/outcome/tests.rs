use dks_protocol::record::{Exit, Log, Outcome, TestBegin, TestEnd, TestPlan};

use super::*;

fn exit(code: ExitCode) -> Record<'static> {
    Record::Exit(Exit {
        code,
        reason: "".into(),
    })
}
fn log() -> Record<'static> {
    Record::Log(Log { text: "hi".into() })
}
fn status(code: ExitCode) -> ProcessEnd {
    ProcessEnd::Exited(code.qemu_status())
}

#[test]
fn success_needs_both_the_exit_record_and_the_status() {
    let ok = [log(), exit(ExitCode::Success)];
    assert_eq!(judge(&ok, 0, status(ExitCode::Success)), Verdict::Success);

    // Status says success, records do not.
    assert!(matches!(
        judge(&[log()], 0, status(ExitCode::Success)),
        Verdict::Inconsistent(p) if p.contains("not Exit")
    ));
    assert!(matches!(
        judge(&[], 0, status(ExitCode::Success)),
        Verdict::Inconsistent(p) if p.contains("no records")
    ));
    assert!(matches!(
        judge(&[exit(ExitCode::Failure)], 0, status(ExitCode::Success)),
        Verdict::Inconsistent(p) if p.contains("failure")
    ));
    assert!(matches!(
        judge(
            &[exit(ExitCode::Success), log()],
            0,
            status(ExitCode::Success)
        ),
        Verdict::Inconsistent(_)
    ));
    assert!(matches!(
        judge(&ok, 1, status(ExitCode::Success)),
        Verdict::Inconsistent(p) if p.contains("malformed")
    ));
}

#[test]
fn a_triple_fault_is_never_success() {
    // QEMU exits 0 after a triple fault under -no-reboot, even after an Exit record.
    for records in [vec![], vec![log()], vec![log(), exit(ExitCode::Success)]] {
        let verdict = judge(&records, 0, ProcessEnd::Exited(0));
        assert_eq!(verdict, Verdict::NoKernelExit(ProcessEnd::Exited(0)));
        assert_eq!(verdict.exit_code(), 7);
        assert!(verdict.to_string().contains("triple fault"));
    }
}

#[test]
fn other_ends_map_to_their_verdicts() {
    let ok = [exit(ExitCode::Success)];
    for (code, verdict) in [
        (ExitCode::Failure, Verdict::KernelFailure),
        (ExitCode::ConfigError, Verdict::ConfigError),
        (ExitCode::Panic, Verdict::Panic),
        (ExitCode::Exception, Verdict::Exception),
    ] {
        // The exit device decides a failure even when the records are incomplete.
        assert_eq!(judge(&[], 0, status(code)), verdict);
        assert_eq!(judge(&[exit(code)], 0, status(code)), verdict);
    }
    assert_eq!(
        judge(&ok, 0, ProcessEnd::Exited(1)),
        Verdict::NoKernelExit(ProcessEnd::Exited(1))
    );
    assert_eq!(
        judge(&ok, 0, ProcessEnd::Signaled(9)),
        Verdict::NoKernelExit(ProcessEnd::Signaled(9))
    );
    let limit = Duration::from_secs(3);
    assert_eq!(
        judge(&ok, 0, ProcessEnd::TimedOut(limit)),
        Verdict::TimedOut(limit)
    );
}

#[test]
fn a_success_exit_with_failed_or_missing_tests_is_inconsistent() {
    let end = |name: &'static str, outcome| {
        Record::TestEnd(TestEnd {
            name: name.into(),
            outcome,
            detail: "".into(),
        })
    };
    let begin = |name: &'static str| Record::TestBegin(TestBegin { name: name.into() });
    let plan = Record::TestPlan(TestPlan { count: 2 });
    let passing = [
        plan.clone(),
        begin("a"),
        end("a", Outcome::Pass),
        begin("b"),
        end("b", Outcome::Pass),
        exit(ExitCode::Success),
    ];
    assert_eq!(
        judge(&passing, 0, status(ExitCode::Success)),
        Verdict::Success
    );
    let one_missing = [
        plan.clone(),
        begin("a"),
        end("a", Outcome::Pass),
        exit(ExitCode::Success),
    ];
    assert!(matches!(
        judge(&one_missing, 0, status(ExitCode::Success)),
        Verdict::Inconsistent(p) if p.contains("announced 2 tests, 1 ended")
    ));
    let one_failed = [
        plan,
        begin("a"),
        end("a", Outcome::Pass),
        begin("b"),
        end("b", Outcome::Fail),
        exit(ExitCode::Success),
    ];
    assert!(matches!(
        judge(&one_failed, 0, status(ExitCode::Success)),
        Verdict::Inconsistent(p) if p.contains("test b failed")
    ));
}

#[test]
fn exit_codes_are_distinct_and_documented() {
    let verdicts = [
        Verdict::Success,
        Verdict::KernelFailure,
        Verdict::ConfigError,
        Verdict::Panic,
        Verdict::Exception,
        Verdict::NoKernelExit(ProcessEnd::Exited(0)),
        Verdict::TimedOut(Duration::from_secs(1)),
        Verdict::Inconsistent(String::new()),
    ];
    let mut codes: Vec<u8> = verdicts.iter().map(Verdict::exit_code).collect();
    codes.extend([EXIT_HOST_ERROR, EXIT_USAGE]);
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), codes.len(), "distinct: {codes:?}");
    let documented: Vec<u8> = EXIT_CODES.iter().map(|(code, _)| *code).collect();
    assert_eq!(sorted, documented);
}

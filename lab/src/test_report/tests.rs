use dks_protocol::record::{Panic, TestBegin, TestEnd, TestPlan};

use super::*;

fn plan(count: u32) -> Record<'static> {
    Record::TestPlan(TestPlan { count })
}
fn begin(name: &'static str) -> Record<'static> {
    Record::TestBegin(TestBegin { name: name.into() })
}
fn end(name: &'static str, outcome: Outcome, detail: &'static str) -> Record<'static> {
    Record::TestEnd(TestEnd {
        name: name.into(),
        outcome,
        detail: detail.into(),
    })
}

#[test]
fn a_complete_passing_run_has_no_problems() {
    let records = [
        plan(2),
        begin("a"),
        end("a", Outcome::Pass, ""),
        begin("b"),
        end("b", Outcome::Pass, ""),
    ];
    let report = TestReport::from_records(&records);
    assert!(report.has_plan());
    assert_eq!(report.results.len(), 2);
    assert_eq!(report.problems(), Vec::<String>::new());
}

#[test]
fn failures_missing_tests_and_incidents_are_all_reported() {
    let records = [
        plan(3),
        begin("a"),
        end("a", Outcome::Fail, "expected 1\ngot 2"),
        begin("b"),
        Record::Panic(Panic {
            cpu: 1,
            message: "boom".into(),
            file: "k.rs".into(),
            line: 7,
        }),
    ];
    let report = TestReport::from_records(&records);
    let problems = report.problems();
    assert!(problems.contains(&"the plan announced 3 tests, 1 ended".to_owned()));
    assert!(problems.contains(&"test a failed: expected 1\\ngot 2".to_owned()));
    assert!(problems.contains(&"test b began and never ended".to_owned()));
    assert_eq!(report.incidents.len(), 1);
    assert!(
        report.incidents[0].contains("boom"),
        "{:?}",
        report.incidents
    );
}

#[test]
fn plans_and_order_are_checked() {
    let no_plan = TestReport::from_records(&[begin("a"), end("a", Outcome::Pass, "")]);
    let problems = no_plan.problems();
    assert!(problems.contains(&"the kernel printed no test plan".to_owned()));
    assert!(problems.contains(&"test a began before the test plan".to_owned()));

    let two_plans = TestReport::from_records(&[plan(0), plan(0)]);
    assert!(two_plans.problems()[0].contains("2 test plans"));

    let stray_end = TestReport::from_records(&[plan(1), end("z", Outcome::Pass, "")]);
    assert_eq!(stray_end.problems(), ["test z ended without beginning"]);
}

//! The in-kernel test results of one boot, checked against the kernel's own plan.
//!
//! A boot with `test=...` prints one `TestPlan{count}`, then a `TestBegin`/`TestEnd` pair per
//! test, then `Exit`. [`TestReport`] collects those records without knowing any test by name,
//! and [`TestReport::problems`] lists everything that does not add up: no plan or several, a
//! count that differs from the plan, a failed test, a test that began and never ended (the
//! kernel died inside it), an end without a beginning. [`check`] adds the boot's verdict and
//! writes one message a developer can act on.

use dks_protocol::record::{Outcome, Record};

use crate::boot::BootOutcome;
use crate::outcome::Verdict;
use crate::render;

/// One finished test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    /// The test's name, as the kernel reported it.
    pub name: String,
    /// Pass or fail.
    pub outcome: Outcome,
    /// The failed check, empty on success.
    pub detail: String,
}

/// The test records of one boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestReport {
    /// The count of every `TestPlan` record (a well-formed boot has exactly one).
    pub plans: Vec<u32>,
    /// Every finished test, in order.
    pub results: Vec<TestResult>,
    /// Tests that began and never ended.
    pub unfinished: Vec<String>,
    /// Ends without a matching beginning, and beginnings before the plan.
    pub out_of_order: Vec<String>,
    /// Exceptions, panics and guard hits, rendered as one line each.
    pub incidents: Vec<String>,
}

impl TestReport {
    /// Collects the test records among `records`.
    pub fn from_records<'r, 'a: 'r>(
        records: impl IntoIterator<Item = &'r Record<'a>>,
    ) -> TestReport {
        let mut report = TestReport::default();
        let mut open: Vec<String> = Vec::new();
        for record in records {
            match record {
                Record::TestPlan(plan) => report.plans.push(plan.count),
                Record::TestBegin(begin) => {
                    if report.plans.is_empty() {
                        report
                            .out_of_order
                            .push(format!("test {} began before the test plan", begin.name));
                    }
                    open.push(begin.name.to_string());
                }
                Record::TestEnd(end) => {
                    match open.iter().position(|name| *name == end.name) {
                        Some(at) => {
                            open.remove(at);
                        }
                        None => report
                            .out_of_order
                            .push(format!("test {} ended without beginning", end.name)),
                    }
                    report.results.push(TestResult {
                        name: end.name.to_string(),
                        outcome: end.outcome,
                        detail: end.detail.to_string(),
                    });
                }
                Record::Exception(_) | Record::Panic(_) | Record::GuardHit(_) => {
                    report.incidents.push(render::record(record));
                }
                _ => {}
            }
        }
        report.unfinished = open;
        report
    }

    /// Returns whether the boot announced any tests.
    pub fn has_plan(&self) -> bool {
        !self.plans.is_empty()
    }

    /// Returns the tests that failed.
    pub fn failed(&self) -> impl Iterator<Item = &TestResult> {
        self.results.iter().filter(|r| r.outcome == Outcome::Fail)
    }

    /// Returns every way these records fall short of "all planned tests ran and passed", one
    /// sentence each; empty when they do not.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.plans.as_slice() {
            [] => problems.push("the kernel printed no test plan".to_owned()),
            [count] if *count as usize != self.results.len() => problems.push(format!(
                "the plan announced {count} tests, {} ended",
                self.results.len()
            )),
            [_] => {}
            several => problems.push(format!(
                "the kernel printed {} test plans ({several:?})",
                several.len()
            )),
        }
        problems.extend(
            self.failed()
                .map(|r| format!("test {} failed: {}", r.name, render::one_line(&r.detail))),
        );
        problems.extend(
            self.unfinished
                .iter()
                .map(|name| format!("test {name} began and never ended")),
        );
        problems.extend(self.out_of_order.iter().cloned());
        problems
    }
}

/// Checks that the boot ran all its planned tests, every one passed, and it ended with the
/// kernel's success. Returns the report, or a message listing every problem, every exception,
/// panic and guard hit, and how the boot ended.
pub fn check(outcome: &BootOutcome) -> Result<TestReport, String> {
    let report = TestReport::from_records(outcome.records());
    let mut problems = report.problems();
    if outcome.verdict != Verdict::Success {
        problems.push(format!("the boot failed: {}", outcome.describe()));
    }
    if problems.is_empty() {
        return Ok(report);
    }
    let mut message = format!(
        "{} of {} finished tests passed; problems:\n",
        report.results.len() - report.failed().count(),
        report.results.len()
    );
    for problem in &problems {
        message.push_str(&format!("  - {problem}\n"));
    }
    if !report.incidents.is_empty() {
        message.push_str("exceptions, panics and guard hits:\n");
        for incident in &report.incidents {
            message.push_str(&format!("  {incident}\n"));
        }
    }
    Err(message)
}

#[cfg(test)]
mod tests;

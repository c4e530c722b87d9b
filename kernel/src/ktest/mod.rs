//! In-kernel tests, selected on the command line (`test=all` or `test=a,b`) and reported as
//! records: one `TestPlan` with the count, then `TestBegin`/`TestEnd` per test. The host turns
//! them into `cargo test` results; it knows nothing about individual tests.
//!
//! A test is a function returning `Ok(())` or `Err(why)`. The `check!` family builds the
//! `Err` with the failed condition and its values; a panic in a test ends the boot (the host
//! sees a `Panic` record and a plan that was not completed).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use dks_protocol::record::{Outcome, Record, TestBegin, TestEnd, TestPlan};

use crate::cmdline::TestSelection;
use crate::report;

mod basic;
mod dynamic;
mod entry;
mod machine_check;
mod memory;
mod sched;
mod soak;
mod stops;
pub mod traps;

/// A test's verdict: `Err` carries what failed.
pub type TestResult = Result<(), String>;

/// A registered test.
pub struct KernelTest {
    /// Unique name, as used in `test=`.
    pub name: &'static str,
    /// The test.
    pub run: fn() -> TestResult,
}

/// Fails the test with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(alloc::format!(
                "{}:{}: check `{}` failed: {}",
                file!(), line!(), stringify!($cond), alloc::format!($($fmt)+)
            ));
        }
    };
}

/// Fails the test unless the two values are equal, showing both.
macro_rules! check_eq {
    ($left:expr, $right:expr) => {
        check_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($fmt:tt)*) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(alloc::format!(
                "{}:{}: `{}` = {:?}, expected `{}` = {:?}. {}",
                file!(), line!(), stringify!($left), left, stringify!($right), right,
                alloc::format!($($fmt)*)
            ));
        }
    }};
}

pub(crate) use {check, check_eq};

/// Every test, in the order `test=all` runs them.
fn registry() -> Vec<&'static KernelTest> {
    let mut tests = Vec::new();
    for group in [
        basic::TESTS,
        memory::TESTS,
        traps::TESTS,
        machine_check::TESTS,
        entry::TESTS,
        sched::TESTS,
        stops::TESTS,
        dynamic::TESTS,
    ] {
        tests.extend(group.iter());
    }
    tests
}

/// The names of all tests.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|t| t.name).collect()
}

/// Runs the selected tests, reporting each; returns how many failed.
pub fn run(selection: &TestSelection) -> usize {
    let all = registry();
    let chosen: Vec<&KernelTest> = match selection {
        TestSelection::All => all,
        TestSelection::Named(names) => names
            .iter()
            .filter_map(|name| all.iter().copied().find(|t| t.name == *name))
            .collect(),
    };
    report::emit(&Record::TestPlan(TestPlan {
        count: chosen.len() as u32,
    }));
    chosen
        .into_iter()
        .filter(|test| !run_one(test.name, || (test.run)()))
        .count()
}

/// Runs the soak of `bench=soak:N` (`lifetimes` thread lifetimes) as a plan of one test
/// named `soak`, so that the host judges it like any test; returns whether it failed.
pub fn run_soak(lifetimes: u64) -> bool {
    report::emit(&Record::TestPlan(TestPlan { count: 1 }));
    !run_one("soak", || soak::run(lifetimes).map(|_| ()))
}

/// Runs one test between its `TestBegin` and `TestEnd` records; returns whether it passed.
fn run_one(name: &'static str, test: impl FnOnce() -> TestResult) -> bool {
    report::emit(&Record::TestBegin(TestBegin {
        name: Cow::Borrowed(name),
    }));
    let result = test();
    let (outcome, detail) = match &result {
        Ok(()) => (Outcome::Pass, ""),
        Err(why) => (Outcome::Fail, why.as_str()),
    };
    report::emit(&Record::TestEnd(TestEnd {
        name: Cow::Borrowed(name),
        outcome,
        detail: Cow::Borrowed(truncate(detail, 700)),
    }));
    result.is_ok()
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

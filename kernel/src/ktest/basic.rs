//! Tests of the boot itself and of the command-line parser.

use alloc::vec::Vec;

use super::{KernelTest, TestResult, check, check_eq};
use crate::cmdline::{self, Crash, TestSelection};
use crate::hw::{cpu_ops, heap, paging};
use crate::mm::frames::{self, Injection};
use crate::sched;

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "boot",
        run: boot,
    },
    KernelTest {
        name: "cmdline_accepts",
        run: cmdline_accepts,
    },
    KernelTest {
        name: "cmdline_rejects",
        run: cmdline_rejects,
    },
];

fn boot() -> TestResult {
    check!(
        paging::kernel_tables_active(),
        "kernel page tables not loaded"
    );
    check!(
        sched::is_online(cpu_ops::id_hint()),
        "running on an offline CPU"
    );
    check!(
        cpu_ops::interrupts_enabled(),
        "interrupts are off in test context"
    );
    let stats = frames::stats();
    check!(stats.total > 1024, "only {} frames managed", stats.total);
    check!(
        stats.free <= stats.total,
        "free {} > total {}",
        stats.free,
        stats.total
    );
    let (_, size) = heap::usage();
    check!(size >= 8 << 20, "heap of {size} bytes");
    // Other threads allocate too, so compare with a margin well below the Vec's 80,000 bytes.
    let v: Vec<u64> = (0..10_000).collect();
    check_eq!(v.iter().sum::<u64>(), 49_995_000);
    let with_vec = heap::usage().0;
    drop(v);
    let after = heap::usage().0;
    check!(
        with_vec >= after + 70_000,
        "dropping an 80,000-byte Vec freed only {} bytes",
        with_vec.saturating_sub(after)
    );
    Ok(())
}

const NAMES: &[&str] = &["boot", "guard_page"];

fn cmdline_accepts() -> TestResult {
    let empty = cmdline::parse("", NAMES).map_err(|e| alloc::format!("{e:?}"))?;
    check_eq!(empty, cmdline::Config::default());
    let c = cmdline::parse(
        "  test=guard_page,boot inject=percent:25:7 reserve=0 hz=1000 crash=guard ",
        NAMES,
    )
    .map_err(|e| alloc::format!("{e:?}"))?;
    check_eq!(
        c.tests,
        Some(TestSelection::Named(alloc::vec!["guard_page", "boot"]))
    );
    check_eq!(
        c.injection,
        Injection::Percent {
            percent: 25,
            seed: 7
        }
    );
    check_eq!(c.reserve_frames, 0);
    check_eq!(c.hz, 1000);
    check_eq!(c.crash, Some(Crash::Guard));
    for (text, injection) in [
        ("inject=none", Injection::None),
        ("inject=all-atomic", Injection::AllAtomic),
        ("inject=every:3", Injection::EveryNth(3)),
        (
            "inject=atomic-window:5:10",
            Injection::AtomicWindow { start: 5, len: 10 },
        ),
    ] {
        let c = cmdline::parse(text, NAMES).map_err(|e| alloc::format!("{text}: {e:?}"))?;
        check_eq!(c.injection, injection, "for {}", text);
    }
    let all = cmdline::parse("test=all", NAMES).map_err(|e| alloc::format!("{e:?}"))?;
    check_eq!(all.tests, Some(TestSelection::All));
    check_eq!(
        (empty.pack_after_ms, empty.pack_guard),
        (dks_core::pack::DEFAULT_PACK_THRESHOLD_MS, false)
    );
    for (text, after_ms, guard) in [
        ("pack_after_ms=1 pack_guard=on", 1, true),
        ("pack_after_ms=60000 pack_guard=off", 60_000, false),
        ("pack_after_ms=250", 250, false),
    ] {
        let c = cmdline::parse(text, NAMES).map_err(|e| alloc::format!("{text}: {e:?}"))?;
        check_eq!(
            (c.pack_after_ms, c.pack_guard),
            (after_ms, guard),
            "for {}",
            text
        );
    }
    Ok(())
}

fn cmdline_rejects() -> TestResult {
    let cases: &[(&str, &str, &str)] = &[
        ("no_such_key=1", "no_such_key", "unknown key"),
        ("lonely", "lonely", "not of the form key=value"),
        ("hz=5", "hz", "not a number in range"),
        ("hz=abc", "hz", "not a number in range"),
        ("hz=", "hz", "not a number in range"),
        ("hz=+100", "hz", "not a number in range"),
        ("reserve=-1", "reserve", "not a number in range"),
        (
            "reserve=99999999999999999999999",
            "reserve",
            "not a number in range",
        ),
        ("inject=every:0", "inject", "bad injection pattern"),
        ("inject=percent:101:1", "inject", "bad injection pattern"),
        ("inject=percent:5", "inject", "bad injection pattern"),
        ("inject=sometimes", "inject", "bad injection pattern"),
        ("crash=boom", "crash", "unknown crash kind"),
        ("hz=100 hz=200", "hz", "key given twice"),
        ("test=", "test", "no test named \"\""),
        ("test=nope", "test", "no test named \"nope\""),
        ("test=boot,", "test", "no test named \"\""),
        (
            "pack_after_ms=0",
            "pack_after_ms",
            "not a number of milliseconds in range",
        ),
        (
            "pack_after_ms=60001",
            "pack_after_ms",
            "not a number of milliseconds in range",
        ),
        (
            "pack_after_ms=1s",
            "pack_after_ms",
            "not a number of milliseconds in range",
        ),
        ("pack_guard=yes", "pack_guard", "neither on nor off"),
        ("pack_guard=", "pack_guard", "neither on nor off"),
    ];
    for (line, key, problem) in cases {
        match cmdline::parse(line, NAMES) {
            Ok(c) => check!(false, "{line:?} was accepted as {c:?}"),
            Err(e) => {
                check_eq!(e.key.as_str(), *key, "key named for {:?}", line);
                check_eq!(&*e.problem, *problem, "problem for {:?}", line);
                check!(
                    !e.accepted.is_empty(),
                    "no accepted values named for {line:?}"
                );
            }
        }
    }
    let unknown = cmdline::parse("no_such_key=1", NAMES)
        .err()
        .unwrap_or_else(|| unreachable!());
    check!(
        unknown.accepted.contains("test") && unknown.accepted.contains("inject"),
        "accepted keys: {}",
        unknown.accepted
    );
    let bad_test = cmdline::parse("test=nope", NAMES)
        .err()
        .unwrap_or_else(|| unreachable!());
    check!(
        bad_test.accepted.contains("guard_page"),
        "accepted tests: {}",
        bad_test.accepted
    );
    cmdline_limits()
}

/// A line beyond the limits of `dks_protocol::cmdline` is refused as a whole, and the error of
/// any line within them fits one record line (with the real list of tests as accepted values).
fn cmdline_limits() -> TestResult {
    use alloc::borrow::Cow;
    use alloc::string::String;

    use dks_protocol::cmdline::MAX_CMDLINE_BYTES;
    use dks_protocol::record::{ConfigError, Record};
    use dks_protocol::wire::{self, MAX_LINE_BYTES};

    let too_long = "x".repeat(MAX_CMDLINE_BYTES + 1);
    let quoted = "test=\"boot\"";
    for (line, problem) in [
        (
            too_long.as_str(),
            alloc::format!(
                "{} bytes, longer than the kernel accepts",
                MAX_CMDLINE_BYTES + 1
            ),
        ),
        (
            quoted,
            String::from("byte 5 is '\"', which is not accepted"),
        ),
    ] {
        match cmdline::parse(line, NAMES) {
            Ok(c) => check!(
                false,
                "a line of {} bytes was accepted as {c:?}",
                line.len()
            ),
            Err(e) => {
                check_eq!(e.key.as_str(), "command line");
                check_eq!(&*e.problem, problem.as_str());
                check!(e.accepted.contains("at most 768 bytes"), "{}", e.accepted);
            }
        }
    }
    let names = super::names();
    let longest = |prefix: &str| {
        let mut line = String::from(prefix);
        while line.len() < MAX_CMDLINE_BYTES {
            line.push('a');
        }
        line
    };
    for line in [
        longest(""),
        longest("test="),
        longest("no_such_key="),
        longest("hz="),
    ] {
        let Err(e) = cmdline::parse(&line, &names) else {
            return Err(alloc::format!("{line:?} was accepted"));
        };
        let record = Record::ConfigError(ConfigError {
            key: Cow::Borrowed(&e.key),
            value: Cow::Borrowed(&e.value),
            problem: Cow::Borrowed(&e.problem),
            accepted: Cow::Borrowed(&e.accepted),
        });
        let mut buf = [0u8; MAX_LINE_BYTES];
        check!(
            wire::encode(&record, &mut buf).is_ok(),
            "the error for a {}-byte line does not fit a record line: {e:?}",
            line.len()
        );
        check!(
            e.value.len() <= cmdline::ECHO_BYTES + 3,
            "echoed {:?}",
            e.value
        );
    }
    Ok(())
}

//! Settings that starve the kernel of memory end in success or in one clear record, never in a
//! panic: allocation failures injected from the command line (issue 10, finding 2) and a
//! reserve larger than the boot can spare (finding 3).

use std::time::Duration;

use dks_lab::boot::{self, BootOutcome};
use dks_lab::config::{BootConfig, MemorySize};
use dks_lab::kernel;
use dks_protocol::exit::ExitCode;
use dks_protocol::record::Record;

const TIMEOUT: Duration = Duration::from_secs(240);

fn boot_with(args: &[&str], memory_mib: u64, cpus: u8) -> BootOutcome {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let config = BootConfig {
        kernel_args: args.iter().map(|a| a.to_string()).collect(),
        timeout: TIMEOUT,
        memory: MemorySize::from_mib(memory_mib).expect("a valid size"),
        cpus,
        ..BootConfig::new(kernel)
    };
    boot::run(&config, |_| {}).unwrap_or_else(|e| panic!("{e:#}"))
}

fn panics(outcome: &BootOutcome) -> Vec<String> {
    outcome
        .records()
        .filter_map(|r| match r {
            Record::Panic(p) => Some(format!("{}:{}: {}", p.file, p.line, p.message)),
            _ => None,
        })
        .collect()
}

/// The kernel's own threads are made before injection is armed: patterns that used to panic
/// start-up (a worker or the reclaim thread without memory) now run the workload to the end,
/// which succeeds or fails with `spawn_failure` records when injected failures refused some
/// thread creations.
#[test]
fn injection_patterns_do_not_panic_start_up() {
    for pattern in ["percent:10:1", "every:3", "percent:5:7", "every:2"] {
        let arg = format!("inject={pattern}");
        let outcome = boot_with(&["workload=mixed", &arg], 512, 1);
        assert!(
            panics(&outcome).is_empty(),
            "{arg}: {:?}\n{}",
            panics(&outcome),
            outcome.serial_log
        );
        // Injected failures hit ordinary allocations too, so some thread creations may be
        // refused: then the run fails with a record saying so, never silently.
        let refused = outcome
            .records()
            .any(|r| matches!(r, Record::SpawnFailure(_)));
        let exit = match outcome.records().last() {
            Some(Record::Exit(e)) => e.code,
            other => panic!("{arg}: the boot did not end with an exit record: {other:?}"),
        };
        assert!(
            exit == ExitCode::Success || (exit == ExitCode::Failure && refused),
            "{arg}: {exit:?}\n{}",
            outcome.serial_log
        );
    }
}

/// A reserve the boot cannot spare is a `config_error` naming `reserve` and the largest value
/// accepted; that largest value itself runs a workload to the end.
#[test]
fn a_reserve_beyond_the_memory_is_refused_and_the_largest_accepted_works() {
    let outcome = boot_with(&["reserve=1048576"], 48, 1);
    assert!(panics(&outcome).is_empty(), "{}", outcome.serial_log);
    let errors: Vec<_> = outcome
        .records()
        .filter_map(|r| match r {
            Record::ConfigError(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{}", outcome.serial_log);
    assert_eq!(errors[0].key, "reserve");
    assert!(
        matches!(outcome.records().last(), Some(Record::Exit(e)) if e.code == ExitCode::ConfigError),
        "{}",
        outcome.serial_log
    );
    // "a frame count from 0 to N (...)": N is the largest accepted value.
    let max: u64 = errors[0]
        .accepted
        .split_whitespace()
        .nth(6)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no maximum in {:?}", errors[0].accepted));
    assert!(max > 0 && max < 1_048_576, "maximum {max}");
    let arg = format!("reserve={max}");
    let outcome = boot_with(&[&arg, "workload=mixed"], 48, 2);
    assert!(panics(&outcome).is_empty(), "{}", outcome.serial_log);
    assert!(outcome.is_success(), "{}", outcome.serial_log);
}

/// A long sampling period does not let exited threads' records pile up on the heap: the
/// `adversarial` scenario (128 MiB, so an 8 MiB heap) with one sample a second ran out of heap
/// ("memory allocation of 528 bytes failed") while the same file with 100 ms succeeded.
#[test]
fn a_long_sampling_period_does_not_exhaust_the_heap() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sample-period-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let builtin = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/adversarial.toml"
    ))
    .unwrap();
    let scenario = builtin.replace("sample_ms = 100", "sample_ms = 1000");
    assert_ne!(scenario, builtin, "the built-in samples every 100 ms");
    let path = dir.join("adversarial-1s.toml");
    std::fs::write(&path, scenario).unwrap();
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dks"))
        .arg("compare")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--scenario")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("[panic]"), "{text}");
    assert_eq!(output.status.code(), Some(0), "{text}");
}

/// A workload that cannot create every thread its plan asks for fails, with a record naming
/// the group, how many threads were created and why the others were not (it exited 0 with
/// hundreds of threads missing from one policy, or 9 with "no PolicyStat record").
#[test]
fn threads_that_cannot_be_created_fail_the_run_naming_the_cause() {
    const SCENARIO: &str = r#"
name = "too-many"
description = "more stacks than 48 MiB holds"
duration_ms = 500
sample_ms = 100
max_stack = "16K"
memory = "48M"
cpus = 1
seed = 1

[[group]]
name = "many"
policy = "each"
threads = 2000
lifetime = "long"
calls = 1
depth = { fixed = 2000 }
sleep_depth = { fixed = 1000 }
sleep_ms = 50
wake = "timer"
"#;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("spawn-failure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("too-many.toml");
    std::fs::write(&path, SCENARIO).unwrap();
    let json = dir.join("out.json");
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dks"))
        .arg("compare")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--scenario")
        .arg(&path)
        .args(["--policies", "static,guaranteed", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(3), "{text}");
    let failure = text
        .lines()
        .find(|l| l.starts_with("dks: FAILED"))
        .unwrap_or_else(|| panic!("no failure line:\n{text}"));
    assert!(
        failure.contains("[spawn failure] group many (policy guaranteed)")
            && failure.contains("for want of memory"),
        "{failure}"
    );
    assert!(!json.exists(), "figures written for a failed run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `guaranteed` (and `reclaim`, `switch`) admission may wait, but never silently: with every
/// atomic allocation failing their threads are never admitted; the figures count the waits in progress, a thread refused
/// for longer than the reporting limit gets an `admission_stall` record, and the run ends with
/// one record per thread never admitted and a failure (it used to time out without a word,
/// reporting a longest wait of 0).
#[test]
fn admission_that_never_comes_is_reported_not_silent() {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let config = BootConfig {
        kernel_args: vec!["workload=mixed".into(), "inject=all-atomic".into()],
        timeout: Duration::from_secs(120),
        cpus: 2,
        ..BootConfig::new(kernel)
    };
    let outcome = boot::run(&config, |_| {}).unwrap_or_else(|e| panic!("{e:#}"));
    let log = &outcome.serial_log;
    let stalls: Vec<(String, String)> = outcome
        .records()
        .filter_map(|r| match r {
            Record::AdmissionStall(a) => Some((a.policy.to_string(), a.when.to_string())),
            _ => None,
        })
        .collect();
    assert!(
        stalls.iter().any(|(_, when)| when == "waiting"),
        "no stall reported while waiting:\n{log}"
    );
    assert!(
        stalls.iter().any(|(_, when)| when == "at_end"),
        "no stall reported at the end:\n{log}"
    );
    // The policies with admission (`guaranteed`, `reclaim`, and `switch`, which maps the
    // whole stack at admission) wait; `static` and `fault` never do.
    assert!(
        stalls
            .iter()
            .all(|(policy, _)| ["guaranteed", "reclaim", "switch", "pack"]
                .contains(&policy.as_str())),
        "{stalls:?}"
    );
    for policy in ["guaranteed", "reclaim", "switch", "pack"] {
        assert!(
            stalls
                .iter()
                .any(|(p, when)| p == policy && when == "at_end"),
            "{policy} never reported at the end: {stalls:?}"
        );
    }
    let longest_wait_us = outcome
        .records()
        .filter_map(|r| match r {
            Record::PolicyStat(p) if p.policy == dks_core::Policy::Guaranteed => {
                Some(p.admit_wait_us_max)
            }
            _ => None,
        })
        .max()
        .unwrap_or_else(|| panic!("no policy_stat for guaranteed:\n{log}"));
    assert!(
        longest_wait_us >= 1_000_000,
        "waits in progress not counted: longest {longest_wait_us} us"
    );
    assert!(
        matches!(outcome.records().last(), Some(Record::Exit(e)) if e.code == ExitCode::Failure),
        "{log}"
    );
    assert!(
        outcome.describe().contains("[admission stall]"),
        "{}",
        outcome.describe()
    );
}

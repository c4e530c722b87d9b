//! The starvation matrix (issue 10): `fault` and `guaranteed` under every allocation-failure
//! pattern the scenario format accepts, reserves up to the largest the kernel accepts, and
//! guest memories from 32 MiB. Every run must end in success or in a clear record: no panic,
//! no silent hang (a timeout), and `guaranteed` never has a fatal stack fault.
//!
//! `cargo bench -p dks-lab --bench starvation` (160 runs, about 10 minutes on an idle 2-core
//! machine; not part of the test suite). `-- --quick` runs one memory size only. It prints the
//! matrix and the counts per outcome, writes them as JSON to `target/starvation.json`, keeps
//! the consoles of every run that ended badly in `target/starvation-logs/`, and exits non-zero
//! when a run ended badly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

/// The workload: deep long-lived threads that block and sleep deep, beside churning
/// short-lived ones, under `fault` and `guaranteed` side by side.
const SCENARIO: &str = r#"
name = "starvation"
description = "deep sleepers and churn under starvation"
duration_ms = 1000
sample_ms = 100
max_stack = "16K"
memory = "@MEMORY@"
cpus = 2
seed = 7
@INJECT@
reserve = @RESERVE@

[[group]]
name = "deep"
policy = "each"
threads = 24
lifetime = "long"
calls = 2
depth = [[4096, 0], [8192, 1], [12288, 1], [14336, 2]]
sleep_depth = [[4096, 0], [8192, 1], [12288, 1]]
block_percent = 50
sleep_ms = 2
wake = "peer"

[[group]]
name = "churn"
policy = "each"
threads = 16
lifetime = "short"
calls = 1
respawn = true
depth = [[1024, 0], [8192, 1], [14336, 1]]
block_percent = 25
sleep_ms = 1
wake = "peer"
"#;

/// Every kind of pattern the scenario format accepts (`inject`), with values from gentle to
/// total.
const PATTERNS: [&str; 10] = [
    "none",
    "every:1",
    "every:2",
    "every:10",
    "percent:10:1",
    "percent:50:2",
    "percent:100:3",
    "atomic-window:0:100000000",
    "atomic-window:64:4096",
    "all-atomic",
];

const MEMORIES_MIB: [u64; 4] = [32, 48, 128, 512];

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    /// Exit 0.
    Success,
    /// A non-zero exit with a record that says why (config error, failure record, ...).
    ClearRecord,
    /// The kernel panicked.
    Panic,
    /// The boot timed out without saying why.
    SilentHang,
    /// QEMU ended without the kernel's exit, or the records were incomplete.
    Other,
}

impl Ending {
    fn bad(self) -> bool {
        !matches!(self, Ending::Success | Ending::ClearRecord)
    }
}

struct Run {
    /// The console log of a run that ended badly, kept for diagnosis.
    kept_log: Option<PathBuf>,
    memory_mib: u64,
    pattern: &'static str,
    reserve: u64,
    ending: Ending,
    exit: Option<i32>,
    guaranteed_fatal: u64,
    fault_fatal: u64,
    /// The last records of a failed run, for the report.
    detail: String,
}

fn kernel() -> PathBuf {
    dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The largest `reserve=` the kernel accepts in this matrix's workload boot with
/// `memory_mib` of RAM (it depends on the frames free at boot: CPUs, the plan module), read
/// from the `config_error` that boot prints for an impossible one.
fn largest_reserve(kernel: &Path, dir: &Path, memory_mib: u64) -> u64 {
    let (_, output) = compare(kernel, dir, memory_mib, "none", 1 << 20);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // "... (accepted: a frame count from 0 to N (half ...))"
    text.split("reserve=1048576: ")
        .nth(1)
        .and_then(|rest| rest.split("from 0 to ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no maximum for reserve in:\n{text}"))
}

/// Runs `dks compare` on the matrix's scenario; returns its console log too.
fn compare(
    kernel: &Path,
    dir: &Path,
    memory_mib: u64,
    pattern: &str,
    reserve: u64,
) -> (String, std::process::Output) {
    let inject = if pattern == "none" {
        String::new()
    } else {
        format!("inject = \"{pattern}\"")
    };
    let scenario = SCENARIO
        .replace("@MEMORY@", &format!("{memory_mib}M"))
        .replace("@INJECT@", &inject)
        .replace("@RESERVE@", &reserve.to_string());
    let path = dir.join("scenario.toml");
    let json_path = dir.join("out.json");
    let log_path = dir.join("console.log");
    let _ = std::fs::remove_file(&json_path);
    let _ = std::fs::remove_file(&log_path);
    std::fs::write(&path, scenario).expect("write the scenario");
    let output = Command::new(env!("CARGO_BIN_EXE_dks"))
        .args(["compare", "--kernel"])
        .arg(kernel)
        .arg("--scenario")
        .arg(&path)
        .args(["--policies", "fault,guaranteed", "--timeout", "180"])
        .arg("--json")
        .arg(&json_path)
        .arg("--log")
        .arg(&log_path)
        .output()
        .expect("run dks compare");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    (log, output)
}

fn fatal_of(json: &Value, policy: &str) -> u64 {
    json["policies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["policy"] == policy))
        .and_then(|p| p["fatal_faults"].as_u64())
        .unwrap_or(0)
}

/// Counts `[stack fault]` lines of `policy` in a console log (for runs that wrote no JSON).
fn fatal_in_log(log: &str, policy: &str) -> u64 {
    let needle = format!("\"policy\":\"{policy}\"");
    log.lines()
        .filter(|l| l.contains("{\"stack_fault\":{") && l.contains(&needle))
        .count() as u64
}

fn run_one(kernel: &Path, dir: &Path, memory_mib: u64, pattern: &'static str, reserve: u64) -> Run {
    let (log, output) = compare(kernel, dir, memory_mib, pattern, reserve);
    let json_path = dir.join("out.json");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let exit = output.status.code();
    let panicked = log.contains("\"panic\"") || stdout.contains("[panic]");
    let ending = match exit {
        Some(0) => Ending::Success,
        _ if panicked => Ending::Panic,
        Some(8) => Ending::SilentHang,
        Some(2..=6) => Ending::ClearRecord,
        _ => Ending::Other,
    };
    let json: Value = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let (fault_fatal, guaranteed_fatal) = if json.is_null() {
        (
            fatal_in_log(&log, "fault"),
            fatal_in_log(&log, "guaranteed"),
        )
    } else {
        (fatal_of(&json, "fault"), fatal_of(&json, "guaranteed"))
    };
    let detail = if ending == Ending::Success {
        String::new()
    } else {
        // The verdict line names the boot, the verdict and the record that explains it.
        stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| l.starts_with("dks: FAILED"))
            .unwrap_or("no verdict line")
            .to_owned()
    };
    // A bad ending's consoles are kept beside the JSON (target/starvation-logs/).
    let kept_log = (ending.bad() || guaranteed_fatal > 0).then(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/starvation-logs");
        let name = format!(
            "{memory_mib}M-{}-reserve{reserve}.log",
            pattern.replace(':', "_")
        );
        let path = dir.join(name);
        let kept = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &log));
        kept.map(|()| path)
            .unwrap_or_else(|e| panic!("keep the console log: {e}"))
    });
    Run {
        kept_log,
        memory_mib,
        pattern,
        reserve,
        ending,
        exit,
        guaranteed_fatal,
        fault_fatal,
        detail,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let memories: &[u64] = if quick {
        &MEMORIES_MIB[..1]
    } else {
        &MEMORIES_MIB
    };
    let kernel = kernel();
    let scratch = tempfile::Builder::new()
        .prefix("dks-starvation-")
        .tempdir()
        .expect("a scratch folder");
    let started = Instant::now();
    let mut runs = Vec::new();
    for &memory in memories {
        let max = largest_reserve(&kernel, scratch.path(), memory);
        let mut reserves = vec![0, 256, max / 2, max];
        reserves.retain(|&r| r <= max);
        reserves.dedup();
        for pattern in PATTERNS {
            for &reserve in &reserves {
                let run = run_one(&kernel, scratch.path(), memory, pattern, reserve);
                eprintln!(
                    "[{:>5.0} s] {memory:>3} MiB  {pattern:<26} reserve={reserve:<6} {:?}{}",
                    started.elapsed().as_secs_f64(),
                    run.ending,
                    if run.detail.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", run.detail)
                    }
                );
                runs.push(run);
            }
        }
    }

    let mut counts: BTreeMap<Ending, usize> = BTreeMap::new();
    for run in &runs {
        *counts.entry(run.ending).or_default() += 1;
    }
    let guaranteed_fatal: u64 = runs.iter().map(|r| r.guaranteed_fatal).sum();
    let fault_fatal: u64 = runs.iter().map(|r| r.fault_fatal).sum();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "starvation matrix: {} runs ({} memories x {} patterns x up to 4 reserves), {:.0} s",
        runs.len(),
        memories.len(),
        PATTERNS.len(),
        started.elapsed().as_secs_f64()
    );
    for (ending, n) in &counts {
        let _ = writeln!(table, "  {ending:?}: {n}");
    }
    let _ = writeln!(
        table,
        "  fatal stack faults: fault {fault_fatal}, guaranteed {guaranteed_fatal}"
    );
    print!("{table}");
    let bad: Vec<&Run> = runs
        .iter()
        .filter(|r| r.ending.bad() || r.guaranteed_fatal > 0)
        .collect();
    for run in &bad {
        println!(
            "BAD: {} MiB {} reserve={} -> {:?} (exit {:?}, guaranteed fatal {}): {}; consoles: {}",
            run.memory_mib,
            run.pattern,
            run.reserve,
            run.ending,
            run.exit,
            run.guaranteed_fatal,
            run.detail,
            run.kept_log
                .as_ref()
                .map_or("not kept".into(), |p| p.display().to_string())
        );
    }
    let report = json!({
        "runs": runs.iter().map(|r| json!({
            "memory_mib": r.memory_mib,
            "inject": r.pattern,
            "reserve": r.reserve,
            "ending": format!("{:?}", r.ending),
            "exit": r.exit,
            "fault_fatal": r.fault_fatal,
            "guaranteed_fatal": r.guaranteed_fatal,
            "detail": r.detail,
        })).collect::<Vec<_>>(),
        "counts": counts.iter().map(|(e, n)| (format!("{e:?}"), *n)).collect::<BTreeMap<_, _>>(),
        "fault_fatal": fault_fatal,
        "guaranteed_fatal": guaranteed_fatal,
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/starvation.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).expect("write JSON");
    println!("written: {}", out.display());
    if !bad.is_empty() {
        std::process::exit(1);
    }
}

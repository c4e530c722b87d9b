//! What the `dks compare` tests against a fake QEMU share (`compare.rs`, `compare_errors.rs`):
//! the fake QEMU script, a small scenario, the records the fake kernel prints, running
//! `dks compare` and reading back what it handed the kernel and what it printed.

#![allow(dead_code)] // reason: each test file uses its own subset of these helpers

use std::fs;
use std::path::Path;
use std::process::Output;

use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Cost, Exit, PolicyStat, Record, Sample, ThreadPages};
use dks_protocol::scenario::Plan;
use dks_protocol::wire;
use serde_json::Value;

use crate::common::{FakeQemu, text};

/// The fake QEMU: records the `-append` of every call in `appends.txt`, copies each plan it is
/// given to `plan-N.json`, and prints `costs.txt` for the cost boot, or the
/// `workload-POLICY.txt` of every policy in the plan (then `workload-end.txt`) for a workload
/// boot, and exits with `status-costs.txt` / `status-workload.txt` (default 33, success).
pub const FAKE: &str = r#"
d=$(dirname "$0")
append="" initrd="" prev=""
for a in "$@"; do
    case "$prev" in -append) append="$a";; -initrd) initrd="$a";; esac
    prev="$a"
done
printf '%s\n' "$append" >> "$d/appends.txt"
n=$(wc -l < "$d/appends.txt" | tr -d ' ')
printf '%s\n' "$@" > "$d/args-$n.txt"
case "$append" in
*bench=costs*)
    cat "$d/costs.txt"
    exit $(cat "$d/status-costs.txt" 2>/dev/null || echo 33);;
*workload=initrd*)
    cp "$initrd" "$d/plan-$n.json"
    for p in static fault guaranteed reclaim switch pack; do
        if grep -q "\"policy\":\"$p\"" "$initrd" && [ -f "$d/workload-$p.txt" ]; then
            cat "$d/workload-$p.txt"
        fi
    done
    cat "$d/workload-end.txt"
    exit $(cat "$d/status-workload.txt" 2>/dev/null || echo 33);;
esac
echo "unexpected boot: $append" >&2
exit 1
"#;

/// A small scenario: 4 long-lived threads per policy, every path 9,000 bytes deep.
pub const SCENARIO: &str = r#"
name = "small"
description = "four threads, 9000 bytes deep"
duration_ms = 1000
sample_ms = 100
max_stack = "16K"
memory = "256M"
cpus = 2

[[group]]
name = "deep"
policy = "each"
threads = 4
lifetime = "long"
depth = { fixed = 9000 }
sleep_depth = { fixed = 512 }
"#;

pub fn line(record: &Record<'_>) -> String {
    let mut buf = [0u8; wire::MAX_LINE_BYTES];
    wire::encode(record, &mut buf).unwrap().to_owned()
}

pub fn cost(what: &str, policy: &str, samples: u64, total: u64) -> String {
    let mut log2_histogram = [0; 24];
    log2_histogram[(total / samples).ilog2() as usize] = samples;
    line(&Record::Cost(Cost {
        what: what.into(),
        policy: (!policy.is_empty()).then(|| policy.parse().expect("a policy")),
        samples,
        total,
        min: total / samples,
        median: total / samples,
        max: total / samples,
        instructions: true,
        log2_histogram,
    }))
}

pub fn exit_success() -> String {
    line(&Record::Exit(Exit {
        code: ExitCode::Success,
        reason: "fake".into(),
    }))
}

/// The cost boot's records for `policies` (each with create and switch; the dynamic ones with
/// stack faults; `pack` with its pack and restore), then the exit.
pub fn costs(policies: &[&str]) -> String {
    let mut out = String::new();
    for (i, policy) in policies.iter().enumerate() {
        let i = i as u64;
        out += &cost("create", policy, 10, 20_000 + 1_000 * i);
        out += &cost("switch", policy, 100, 100_000 + 10_000 * i);
        if *policy != "static" {
            out += &cost("stack_fault", policy, 8, 12_000 + 800 * i);
        }
        if *policy == "pack" {
            out += &cost("pack", policy, 20, 62_000);
            out += &cost("restore", policy, 20, 45_000);
        }
    }
    out += &cost("direct_fault", "", 4, 4_000);
    out += &cost("bounce_fault", "", 4, 6_000);
    out + &exit_success()
}

/// A workload boot's records for one policy of the small scenario: `pages` per thread.
pub fn workload(policy: &str, pages: u64) -> String {
    let mut out = String::new();
    for t in 1..=10 {
        out += &line(&Record::Sample(Sample {
            t_ms: t * 100,
            policy: policy.parse().expect("a policy"),
            stack_kib: 4 * pages * 4,
            live_kib: 4 * 4 + t,
            threads: 4,
        }));
    }
    out += &line(&Record::PolicyStat(PolicyStat {
        policy: policy.parse().expect("a policy"),
        threads_created: 4,
        threads_live: 0,
        stack_kib_now: 0,
        stack_kib_peak: 4 * pages * 4,
        faults: if policy == "static" {
            0
        } else {
            4 * (pages - 1)
        },
        fatal: u64::from(policy == "fault"),
        refills: 3,
        refill_failures: u64::from(policy == "fault"),
        guard_hits: 0,
        admit_waits: if policy == "guaranteed" { 2 } else { 0 },
        admit_wait_us_total: 0,
        admit_wait_us_max: 0,
        killed: 0,
        kernel_stops: 0,
        reclaimed: 0,
        reclaimed_dead: 0,
        reclaimed_accessed_clear: 0,
        flushes_avoided: 0,
        switch_faults: 0,
        running_extra_kib_peak: None,
        high_water_mean_bytes: 0,
        high_water_max_bytes: 0,
        // `pack`: 12 packs, 8 restores (one after a wait), 4 stacks packed at the end.
        packs: if policy == "pack" { 12 } else { 0 },
        restores: if policy == "pack" { 8 } else { 0 },
        restore_waits: u64::from(policy == "pack"),
        pack_checksum_failures: 0,
        pack_guard_catches: 0,
        packed_threads: if policy == "pack" { 4 } else { 0 },
        packed_kib: if policy == "pack" { 4 } else { 0 },
    }));
    out += &line(&Record::ThreadPages(ThreadPages {
        policy: policy.parse().expect("a policy"),
        pages: pages as u32,
        threads: 4,
    }));
    out
}

/// A fake QEMU whose kernel implements `policies`, with workload records for each.
pub fn fake(name: &str, policies: &[&str]) -> FakeQemu {
    let qemu = FakeQemu::new(name, FAKE);
    fs::write(qemu.dir.join("costs.txt"), costs(policies)).unwrap();
    for policy in policies {
        let pages = if *policy == "static" { 4 } else { 3 };
        fs::write(
            qemu.dir.join(format!("workload-{policy}.txt")),
            workload(policy, pages),
        )
        .unwrap();
    }
    fs::write(qemu.dir.join("workload-end.txt"), exit_success()).unwrap();
    fs::write(qemu.dir.join("small.toml"), SCENARIO).unwrap();
    qemu
}

pub fn compare(qemu: &FakeQemu, args: &[&str]) -> Output {
    qemu.dks()
        .arg("compare")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args(args)
        .output()
        .unwrap()
}

pub fn appends(qemu: &FakeQemu) -> Vec<String> {
    fs::read_to_string(qemu.dir.join("appends.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn plans(qemu: &FakeQemu) -> Vec<Plan> {
    (1..=appends(qemu).len())
        .filter_map(|n| fs::read_to_string(qemu.dir.join(format!("plan-{n}.json"))).ok())
        .map(|json| serde_json::from_str(&json).unwrap())
        .collect()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The table's rows (after the title and the header), split into cells.
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("dks compare: scenario "), "{stdout}");
    assert!(lines[1].starts_with("policy "), "{stdout}");
    lines[2..]
        .iter()
        .take_while(|l| !l.starts_with("non-stack page fault"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The cells the table must show for a JSON entry, formatted like the table.
pub fn expected_cells(p: &Value) -> Vec<String> {
    let percent = |v: &Value| {
        v.as_f64()
            .map_or("n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
    };
    let times = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    let insns = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |r| format!("{r:.0}"));
    let count = |v: &Value| v.as_u64().map_or("n/a".to_owned(), |r| r.to_string());
    vec![
        p["policy"].as_str().unwrap().to_owned(),
        count(&p["stack_kib_end"]),
        count(&p["stack_kib_peak"]),
        count(&p["threads_at_end"]),
        times(&p["stack_kib_per_thread"]),
        times(&p["total_kib_per_thread"]),
        percent(&p["stack_end_vs_static"]),
        percent(&p["stack_peak_vs_static"]),
        count(&p["live_bound_kib"]),
        percent(&p["stack_peak_vs_live_bound"]),
        count(&p["faults"]),
        count(&p["refills"]),
        count(&p["refill_failures"]),
        count(&p["fatal_faults"]),
        count(&p["kernel_stops"]),
        count(&p["admission_waits"]),
        count(&p["reclaimed_dead"]),
        count(&p["reclaimed_accessed_clear"]),
        count(&p["flushes_avoided"]),
        count(&p["running_extra_kib_peak"]),
        count(&p["packs"]),
        count(&p["restores"]),
        count(&p["restore_waits"]),
        count(&p["packed_threads_end"]),
        count(&p["packed_kib_end"]),
        count(&p["pack_checksum_failures"]),
        count(&p["pack_guard_catches"]),
        insns(&p["insns_per_fault"]),
        insns(&p["insns_per_switch"]),
        times(&p["insns_per_switch_vs_static"]),
        insns(&p["insns_per_switch_in"]),
        insns(&p["insns_per_switch_out"]),
        insns(&p["insns_per_create"]),
        times(&p["insns_per_create_vs_static"]),
        insns(&p["insns_per_trim"]),
        insns(&p["insns_per_pack"]),
        insns(&p["insns_per_restore"]),
    ]
}

pub fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[at + 1]
}

pub fn args_of_call(qemu: &FakeQemu, n: usize) -> Vec<String> {
    fs::read_to_string(qemu.dir.join(format!("args-{n}.txt")))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts that `output` is one error with `code`, naming `expected`, and that nothing was
/// written: no table, no JSON, no report.
pub fn assert_one_error(output: &Output, code: i32, expected: &[&str], json: &Path, report: &Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    assert!(output.stdout.is_empty(), "{}", text(output));
    for part in expected {
        assert!(stderr.contains(part), "{part:?} missing:\n{}", text(output));
    }
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("dks: error:") || l.starts_with("dks: FAILED:"))
            .count(),
        1,
        "{}",
        text(output)
    );
    assert!(!json.exists(), "{} written", json.display());
    assert!(!report.exists(), "{} written", report.display());
}

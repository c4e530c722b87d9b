//! `dks compare` end to end against a fake QEMU (see `common`): the fake plays the cost boot
//! and the workload boots with records written here, so every figure of the table and the JSON
//! is known exactly, and the tests see what `dks` handed the kernel (command lines, plans).
//!
//! The real kernel is in `compare_kernel.rs`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{FakeQemu, text};
use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Cost, Exit, PolicyStat, Record, Sample, ThreadPages};
use dks_protocol::scenario::Plan;
use dks_protocol::wire;
use serde_json::Value;

/// The fake QEMU: records the `-append` of every call in `appends.txt`, copies each plan it is
/// given to `plan-N.json`, and prints `costs.txt` for the cost boot, or the
/// `workload-POLICY.txt` of every policy in the plan (then `workload-end.txt`) for a workload
/// boot, and exits with `status-costs.txt` / `status-workload.txt` (default 33, success).
const FAKE: &str = r#"
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
    for p in static fault guaranteed reclaim switch; do
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
const SCENARIO: &str = r#"
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

fn line(record: &Record<'_>) -> String {
    let mut buf = [0u8; wire::MAX_LINE_BYTES];
    wire::encode(record, &mut buf).unwrap().to_owned()
}

fn cost(what: &str, policy: &str, samples: u64, total: u64) -> String {
    let mut log2_histogram = [0; 24];
    log2_histogram[(total / samples).ilog2() as usize] = samples;
    line(&Record::Cost(Cost {
        what: what.into(),
        policy: policy.into(),
        samples,
        total,
        min: total / samples,
        max: total / samples,
        instructions: true,
        log2_histogram,
    }))
}

fn exit_success() -> String {
    line(&Record::Exit(Exit {
        code: ExitCode::Success,
        reason: "fake".into(),
    }))
}

/// The cost boot's records for `policies` (each with create and switch; the dynamic ones with
/// stack faults), then the exit.
fn costs(policies: &[&str]) -> String {
    let mut out = String::new();
    for (i, policy) in policies.iter().enumerate() {
        let i = i as u64;
        out += &cost("create", policy, 10, 20_000 + 1_000 * i);
        out += &cost("switch", policy, 100, 100_000 + 10_000 * i);
        if *policy != "static" {
            out += &cost("stack_fault", policy, 8, 12_000 + 800 * i);
        }
    }
    out += &cost("direct_fault", "", 4, 4_000);
    out += &cost("bounce_fault", "", 4, 6_000);
    out + &exit_success()
}

/// A workload boot's records for one policy of the small scenario: `pages` per thread.
fn workload(policy: &str, pages: u64) -> String {
    let mut out = String::new();
    for t in 1..=10 {
        out += &line(&Record::Sample(Sample {
            t_ms: t * 100,
            policy: policy.into(),
            stack_kib: 4 * pages * 4,
            live_kib: 4 * 4 + t,
            threads: 4,
        }));
    }
    out += &line(&Record::PolicyStat(PolicyStat {
        policy: policy.into(),
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
        high_water_mean_bytes: 0,
        high_water_max_bytes: 0,
    }));
    out += &line(&Record::ThreadPages(ThreadPages {
        policy: policy.into(),
        pages: pages as u32,
        threads: 4,
    }));
    out
}

/// A fake QEMU whose kernel implements `policies`, with workload records for each.
fn fake(name: &str, policies: &[&str]) -> FakeQemu {
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

fn compare(qemu: &FakeQemu, args: &[&str]) -> Output {
    qemu.dks()
        .arg("compare")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args(args)
        .output()
        .unwrap()
}

fn appends(qemu: &FakeQemu) -> Vec<String> {
    fs::read_to_string(qemu.dir.join("appends.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn plans(qemu: &FakeQemu) -> Vec<Plan> {
    (1..=appends(qemu).len())
        .filter_map(|n| fs::read_to_string(qemu.dir.join(format!("plan-{n}.json"))).ok())
        .map(|json| serde_json::from_str(&json).unwrap())
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The table's rows (after the title and the header), split into cells.
fn table_rows(stdout: &str) -> Vec<Vec<String>> {
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
fn expected_cells(p: &Value) -> Vec<String> {
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
        insns(&p["insns_per_fault"]),
        insns(&p["insns_per_switch"]),
        times(&p["insns_per_switch_vs_static"]),
        insns(&p["insns_per_create"]),
        times(&p["insns_per_create_vs_static"]),
    ]
}

fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[at + 1]
}

fn args_of_call(qemu: &FakeQemu, n: usize) -> Vec<String> {
    fs::read_to_string(qemu.dir.join(format!("args-{n}.txt")))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_table_has_a_row_per_policy_and_the_json_matches_it() {
    let qemu = fake("compare-table", &["static", "fault", "guaranteed"]);
    let json = qemu.dir.join("out.json");
    let report = qemu.dir.join("report");
    let scenario = qemu.dir.join("small.toml");
    let output = compare(
        &qemu,
        &[
            "--scenario",
            path_str(&scenario),
            "--json",
            path_str(&json),
            "--report",
            path_str(&report),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    // A row per policy, in report order, and the JSON says the same.
    let rows = table_rows(&stdout);
    let json: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json["scenario"], "small");
    assert_eq!(json["workload_boots"], 1);
    let policies = json["policies"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["static", "fault", "guaranteed"], "{stdout}");
    assert_eq!(policies.len(), rows.len());
    for (row, entry) in rows.iter().zip(policies) {
        assert_eq!(*row, expected_cells(entry), "{stdout}\n{entry}");
    }

    // The figures the fake kernel reported, exactly: static holds 4 threads × 4 pages, the
    // dynamic policies 4 × 3 pages after 4 × 2 faults.
    let by_name = |name: &str| policies.iter().find(|p| p["policy"] == name).unwrap();
    assert_eq!(by_name("static")["stack_kib_peak"], 64);
    assert_eq!(by_name("fault")["stack_kib_peak"], 48);
    assert_eq!(by_name("fault")["faults"], 8);
    assert_eq!(by_name("fault")["stack_peak_vs_static"], 0.75);
    assert_eq!(by_name("fault")["fatal_faults"], 1);
    assert_eq!(by_name("fault")["refill_failures"], 1);
    assert_eq!(by_name("guaranteed")["admission_waits"], 2);
    assert_eq!(by_name("static")["live_bound_kib"], 26);
    assert_eq!(by_name("static")["stack_kib_end"], 0);
    assert_eq!(by_name("static")["insns_per_fault"], Value::Null);
    assert_eq!(by_name("fault")["insns_per_fault"], 1600.0);
    assert_eq!(by_name("guaranteed")["insns_per_switch"], 1200.0);
    assert_eq!(by_name("guaranteed")["insns_per_switch_vs_static"], 1.2);
    assert_eq!(by_name("fault")["insns_per_create"], 2100.0);
    assert_eq!(json["fault_paths"]["insns_direct"], 1000.0);
    assert_eq!(json["fault_paths"]["insns_bounce"], 1500.0);
    assert!(stdout.contains("1000 insns handled on the IST stack, 1500 moved"));

    // The report: one page, three plots.
    let page = fs::read_to_string(report.join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 3);

    // Progress went to stderr, the table to stdout.
    assert!(stderr.contains("[costs] measuring costs"), "{stderr}");
    assert!(stderr.contains("[workload small] t=1.0s/1.0s"), "{stderr}");
    assert!(stderr.contains("dks: success (3 policies"), "{stderr}");
    assert!(!stdout.contains("[workload"), "{stdout}");

    // What the kernel was given: the cost boot under -icount on 1 CPU, then one workload
    // boot with the plan as initrd and every policy side by side.
    assert_eq!(
        appends(&qemu),
        [
            "bench=costs tsc=instructions max_stack=16K",
            "workload=initrd max_stack=16K slots=8192"
        ]
    );
    let costs_args = args_of_call(&qemu, 1);
    assert_eq!(value_of(&costs_args, "-icount"), "shift=0");
    assert_eq!(value_of(&costs_args, "-smp"), "1");
    assert_eq!(value_of(&costs_args, "-accel"), "tcg");
    let workload_args = args_of_call(&qemu, 2);
    assert_eq!(value_of(&workload_args, "-smp"), "2");
    assert_eq!(value_of(&workload_args, "-m"), "256M");
    assert_eq!(value_of(&workload_args, "-accel"), "tcg,thread=multi");
    assert!(!workload_args.iter().any(|a| a == "-icount"));
    // The plan file is gone once the boot is over.
    assert!(!PathBuf::from(value_of(&workload_args, "-initrd")).exists());
    let plans = plans(&qemu);
    assert_eq!(plans.len(), 1);
    let plan = &plans[0];
    plan.check().unwrap();
    assert_eq!(plan.max_stack_bytes, 16 * 1024);
    let groups: Vec<(&str, &str, u32)> = plan
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.policy.as_str(), g.threads))
        .collect();
    assert_eq!(
        groups,
        [
            ("deep", "static", 4),
            ("deep", "fault", 4),
            ("deep", "guaranteed", 4)
        ]
    );
    assert_eq!(plan.groups[0].depth.max_bytes(), 9000);
}

#[test]
fn default_policies_are_the_ones_the_kernel_measured() {
    let qemu = fake("compare-discover", &["static", "fault"]);
    let scenario = qemu.dir.join("small.toml");
    let output = compare(&qemu, &["--scenario", path_str(&scenario), "--cpus", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let rows = table_rows(&String::from_utf8_lossy(&output.stdout));
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["static", "fault"]);
    let policies: Vec<String> = plans(&qemu)[0]
        .groups
        .iter()
        .map(|g| g.policy.clone())
        .collect();
    assert_eq!(policies, ["static", "fault"]);
    // --cpus overrides the scenario's; one CPU means single-threaded TCG.
    let workload_args = args_of_call(&qemu, 2);
    assert_eq!(value_of(&workload_args, "-smp"), "1");
    assert_eq!(value_of(&workload_args, "-accel"), "tcg");
}

#[test]
fn chosen_policies_and_scenario_settings_reach_the_kernel() {
    let qemu = fake("compare-choose", &["static", "fault", "guaranteed"]);
    let scenario = qemu.dir.join("inject.toml");
    fs::write(
        &scenario,
        SCENARIO
            .replace(
                "cpus = 2",
                "cpus = 2\ninject = \"atomic-window:5:10\"\nreserve = 32\nmax_stack = \"32K\"",
            )
            .replace("max_stack = \"16K\"\n", ""),
    )
    .unwrap();
    let output = compare(
        &qemu,
        &[
            "--scenario",
            path_str(&scenario),
            "--policies",
            "guaranteed,static",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        appends(&qemu),
        [
            "bench=costs tsc=instructions max_stack=32K",
            "workload=initrd max_stack=32K slots=8192 inject=atomic-window:5:10 reserve=32"
        ]
    );
    let rows = table_rows(&String::from_utf8_lossy(&output.stdout));
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["static", "guaranteed"]);
}

#[test]
fn threads_that_do_not_fit_one_boot_get_one_boot_per_policy() {
    let qemu = fake("compare-split", &["static", "fault", "guaranteed"]);
    let scenario = qemu.dir.join("big.toml");
    fs::write(&scenario, SCENARIO.replace("threads = 4", "threads = 3000")).unwrap();
    let json = qemu.dir.join("out.json");
    let output = compare(
        &qemu,
        &["--scenario", path_str(&scenario), "--json", path_str(&json)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let plans = plans(&qemu);
    assert_eq!(plans.len(), 3);
    for (plan, policy) in plans.iter().zip(["static", "fault", "guaranteed"]) {
        assert!(plan.groups.iter().all(|g| g.policy == policy), "{plan:?}");
        assert_eq!(plan.groups.iter().map(|g| g.threads).sum::<u32>(), 3000);
    }
    let json: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json["workload_boots"], 3);
    assert_eq!(json["policies"].as_array().unwrap().len(), 3);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("one boot per policy (3 boots)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[workload small 2/3: fault] booting"),
        "{stderr}"
    );
}

/// Asserts that `output` is one error with `code`, naming `expected`, and that nothing was
/// written: no table, no JSON, no report.
fn assert_one_error(output: &Output, code: i32, expected: &[&str], json: &Path, report: &Path) {
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

#[test]
fn bad_scenarios_are_one_error_and_nothing_boots() {
    let qemu = fake("compare-bad", &["static", "fault", "guaranteed"]);
    let json = qemu.dir.join("out.json");
    let report = qemu.dir.join("report");
    for (name, contents, expected) in [
        (
            "unknown-key.toml",
            SCENARIO.replace("cpus = 2", "cpus = 2\ncpu_count = 2"),
            &["unknown-key.toml", "unknown field `cpu_count`", "`cpus`"][..],
        ),
        (
            "negative.toml",
            SCENARIO.replace("threads = 4", "threads = -4"),
            &[
                "negative.toml",
                "[[group]] #1 (\"deep\").threads",
                "-4 is out of range",
            ],
        ),
        (
            "too-deep.toml",
            SCENARIO.replace("fixed = 9000", "fixed = 17000"),
            &[
                "too-deep.toml",
                ".depth",
                "17000 bytes is beyond max_stack (16384 bytes)",
            ],
        ),
        (
            "policy.toml",
            SCENARIO.replace("policy = \"each\"", "policy = \"lazy\""),
            &["policy.toml", ".policy", "unknown policy \"lazy\""],
        ),
    ] {
        let scenario = qemu.dir.join(name);
        fs::write(&scenario, contents).unwrap();
        let output = compare(
            &qemu,
            &[
                "--scenario",
                path_str(&scenario),
                "--json",
                path_str(&json),
                "--report",
                path_str(&report),
            ],
        );
        assert_one_error(&output, 2, expected, &json, &report);
    }
    for (spec, expected) in [
        (
            qemu.dir.join("missing.toml"),
            &["missing.toml: cannot read it", "No such file"][..],
        ),
        (
            PathBuf::from("no-such-builtin"),
            &["no built-in scenario of that name", "linux-census, android"],
        ),
    ] {
        let output = compare(
            &qemu,
            &["--scenario", path_str(&spec), "--json", path_str(&json)],
        );
        assert_one_error(&output, 2, expected, &json, &report);
    }
    // --json into a folder that does not exist is refused before anything boots.
    let scenario = qemu.dir.join("small.toml");
    let output = compare(
        &qemu,
        &[
            "--scenario",
            path_str(&scenario),
            "--json",
            path_str(&qemu.dir.join("no/such/out.json")),
        ],
    );
    assert_one_error(&output, 2, &["--json", "does not exist"], &json, &report);
    assert!(appends(&qemu).is_empty(), "QEMU ran: {:?}", appends(&qemu));
}

#[test]
fn a_policy_the_kernel_lacks_is_refused_before_the_workload() {
    let qemu = fake("compare-lacking", &["static", "fault"]);
    let json = qemu.dir.join("out.json");
    let scenario = qemu.dir.join("small.toml");
    let output = compare(
        &qemu,
        &[
            "--scenario",
            path_str(&scenario),
            "--policies",
            "static,reclaim",
            "--json",
            path_str(&json),
        ],
    );
    assert_one_error(
        &output,
        2,
        &[
            "--policies: reclaim is not implemented by this kernel",
            "accepted: static, fault",
        ],
        &json,
        &qemu.dir.join("report"),
    );
    assert_eq!(
        appends(&qemu),
        ["bench=costs tsc=instructions max_stack=16K"]
    );
}

#[test]
fn a_workload_the_kernel_refuses_is_one_error_with_its_words_and_writes_nothing() {
    let qemu = fake("compare-refused", &["static", "fault"]);
    fs::write(
        qemu.dir.join("workload-end.txt"),
        r#"@dks/1 {"config_error":{"key":"workload","value":"initrd","problem":"policy fault is not implemented","accepted":"static"}}
@dks/1 {"exit":{"code":"config_error","reason":"bad command line"}}
"#,
    )
    .unwrap();
    fs::write(qemu.dir.join("status-workload.txt"), "37").unwrap();
    let json = qemu.dir.join("out.json");
    let report = qemu.dir.join("report");
    let log = qemu.dir.join("console.log");
    let scenario = qemu.dir.join("small.toml");
    let output = compare(
        &qemu,
        &[
            "--scenario",
            path_str(&scenario),
            "--json",
            path_str(&json),
            "--report",
            path_str(&report),
            "--log",
            path_str(&log),
        ],
    );
    assert_one_error(
        &output,
        4,
        &[
            "workload boot 1 of 1 (policies static, fault",
            "the kernel rejected its command line",
            "[config error] workload=initrd: policy fault is not implemented (accepted: static)",
        ],
        &json,
        &report,
    );
    // The console log is diagnostics: written even on failure, with both boots.
    let log = fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("# dks compare: cost boot: -append \"bench=costs"),
        "{log}"
    );
    assert!(log.contains("# dks compare: workload boot 1 of 1"), "{log}");
    assert!(log.contains("\"config_error\""), "{log}");
}

#[test]
fn a_failed_cost_boot_stops_everything() {
    let qemu = fake("compare-costs-panic", &["static"]);
    fs::write(
        qemu.dir.join("costs.txt"),
        r#"@dks/1 {"panic":{"cpu":0,"message":"bench exploded","file":"bench.rs","line":7}}
"#,
    )
    .unwrap();
    fs::write(qemu.dir.join("status-costs.txt"), "39").unwrap();
    let json = qemu.dir.join("out.json");
    let scenario = qemu.dir.join("small.toml");
    let output = compare(
        &qemu,
        &["--scenario", path_str(&scenario), "--json", path_str(&json)],
    );
    assert_one_error(
        &output,
        5,
        &[
            "the cost boot (bench=costs tsc=instructions max_stack=16K) failed",
            "bench exploded",
        ],
        &json,
        &qemu.dir.join("report"),
    );
    assert_eq!(appends(&qemu).len(), 1);
}

#[test]
fn a_kernel_that_leaves_out_a_policy_s_figures_is_inconsistent() {
    let qemu = fake("compare-missing-stat", &["static", "fault"]);
    fs::remove_file(qemu.dir.join("workload-fault.txt")).unwrap();
    let json = qemu.dir.join("out.json");
    let scenario = qemu.dir.join("small.toml");
    let output = compare(
        &qemu,
        &["--scenario", path_str(&scenario), "--json", path_str(&json)],
    );
    assert_one_error(
        &output,
        9,
        &["records are incomplete: no PolicyStat record for policy fault"],
        &json,
        &qemu.dir.join("report"),
    );
}

#[test]
fn compare_help_lists_its_options_and_the_builtins() {
    let output = common::dks().args(["compare", "--help"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--scenario",
        "--policies",
        "--cpus",
        "--json",
        "--report",
        "--kernel",
        "--timeout",
        "--log",
        "--inject-nmi",
        "--inject-mce",
        "linux-census, android, storage, adversarial",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

/// Issue 10, finding 12: links planted where `dks` once wrote with predictable names (the plan
/// in `$TMPDIR`, the temporary beside `--json`'s file), for the very process id `dks` gets
/// (`exec` keeps the shell's), change nothing outside the temporary folder.
#[test]
fn links_planted_at_predictable_names_redirect_nothing() {
    let qemu = fake("compare-links", &["static", "fault"]);
    let tmp = qemu.dir.join("tmp");
    let out = qemu.dir.join("out");
    fs::create_dir(&tmp).unwrap();
    fs::create_dir(&out).unwrap();
    let victims: Vec<PathBuf> = (0..2)
        .map(|i| qemu.dir.join(format!("victim-{i}")))
        .collect();
    for victim in &victims {
        fs::write(victim, "precious").unwrap();
    }
    let json = out.join("out.json");
    let script = format!(
        r#"ln -s '{v0}' "$TMPDIR/dks-plan-$$-small-0.json"
ln -s '{v1}' '{out}/.out.json.tmp-'$$
exec "$@""#,
        v0 = victims[0].display(),
        v1 = victims[1].display(),
        out = out.display(),
    );
    let command = qemu.dks();
    let dks = command.get_program().to_owned();
    let output = std::process::Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(dks)
        .envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("TMPDIR", &tmp)
        .arg("compare")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args(["--scenario", path_str(&qemu.dir.join("small.toml"))])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    for victim in &victims {
        assert_eq!(
            fs::read_to_string(victim).unwrap(),
            "precious",
            "{}",
            victim.display()
        );
    }
    // The plan went elsewhere in TMPDIR and is gone; only the planted link is left there.
    let left: Vec<String> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with("dks-plan-")
            && fs::symlink_metadata(tmp.join(&left[0]))
                .unwrap()
                .is_symlink()
    );
    let initrd = PathBuf::from(value_of(&args_of_call(&qemu, 2), "-initrd"));
    assert!(initrd.starts_with(&tmp), "{}", initrd.display());
    // The JSON is a new regular file; the link beside it is untouched.
    assert!(!fs::symlink_metadata(&json).unwrap().is_symlink());
    let json_value: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json_value["scenario"], "small");
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n == "out.json"), "{names:?}");
    let link = out.join(names.iter().find(|n| *n != "out.json").unwrap());
    assert_eq!(fs::read_link(&link).unwrap(), victims[1]);
}

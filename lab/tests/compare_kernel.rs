//! `dks compare` against the real kernel under the real QEMU.
//!
//! These need the kernel side of the workloads (`workload=initrd`, `bench=costs`): the plan
//! from the initrd, `Sample`/`PolicyStat`/`ThreadPages` records, and `Cost` records.
//!
//! - `a_small_scenario_gives_exact_figures`: 4 long-lived threads per policy, every path
//!   exactly 9,000 bytes deep, so every figure that does not depend on timing is known:
//!   `static` holds 4 threads × 16 KiB; a dynamic thread populates ceil(9000 / 4096) = 3 pages
//!   after 3 - 1 = 2 stack faults, so `fault` and `guaranteed` hold 4 × 12 KiB after 8 faults,
//!   75 % of `static`, with no refill failure and no fatal fault (nothing is injected);
//!   `switch` takes no stack fault at all, holds the same 3 pages per sleeping thread (the
//!   fourth, never touched, goes back at every switch-out with its Accessed bit clear), and
//!   its running threads hold at most 3 pages more per CPU.
//! - `the_default_comparison_runs_end_to_end`: `dks compare` as the README shows it (the
//!   `linux-census` scenario, every policy the kernel implements), with the figures every
//!   policy must show, e.g. no fatal fault under `guaranteed`.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{dks, scratch_dir, text};
use dks_lab::console::ConsoleLine;
use dks_protocol::record::Record;
use serde_json::Value;

/// The exact scenario: depths well inside one page of their bounds, so interrupt frames taken
/// at the deepest point stay in the third page.
const EXACT: &str = r#"
name = "exact"
description = "4 long-lived threads per policy, every path 9000 bytes deep, asleep 2048 bytes deep"
duration_ms = 1000
sample_ms = 100
max_stack = "16K"
memory = "256M"
cpus = 2
seed = 5

[[group]]
name = "deep"
policy = "each"
threads = 4
lifetime = "long"
calls = 2
depth = { fixed = 9000 }
sleep_depth = { fixed = 2048 }
sleep_ms = 20
wake = "timer"
"#;

fn policy<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == name)
        .unwrap_or_else(|| panic!("no {name} in {json:#}"))
}

#[test]
fn a_small_scenario_gives_exact_figures() {
    let kernel = dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = scratch_dir("compare-exact");
    let scenario = dir.join("exact.toml");
    fs::write(&scenario, EXACT).unwrap();
    let json_path = dir.join("exact.json");
    let log_path = dir.join("console.log");
    let output = dks()
        .arg("compare")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--scenario")
        .arg(&scenario)
        .args(["--policies", "static,fault,guaranteed,switch"])
        .arg("--json")
        .arg(&json_path)
        .arg("--log")
        .arg(&log_path)
        .output()
        .unwrap();
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    let context = format!("{}\n--- consoles\n{log}", text(&output));
    assert_eq!(output.status.code(), Some(0), "{context}");
    let json: Value = serde_json::from_str(&fs::read_to_string(&json_path).unwrap()).unwrap();
    let names: Vec<&str> = json["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["static", "fault", "guaranteed", "switch"],
        "{context}"
    );

    let s = policy(&json, "static");
    assert_eq!(s["threads_created"], 4, "static threads\n{context}");
    assert_eq!(
        s["stack_kib_peak"], 64,
        "static: 4 threads × 16 KiB\n{context}"
    );
    assert_eq!(s["faults"], 0, "{context}");
    assert_eq!(s["insns_per_fault"], Value::Null, "{context}");
    for name in ["fault", "guaranteed"] {
        let p = policy(&json, name);
        assert_eq!(p["threads_created"], 4, "{name} threads\n{context}");
        assert_eq!(
            p["stack_kib_peak"], 48,
            "{name}: 4 threads × 3 pages\n{context}"
        );
        assert_eq!(
            p["faults"], 8,
            "{name}: 2 faults per fresh thread\n{context}"
        );
        assert_eq!(p["stack_peak_vs_static"], 0.75, "{context}");
        assert_eq!(p["fatal_faults"], 0, "{name}\n{context}");
        assert_eq!(p["refill_failures"], 0, "{name}\n{context}");
        assert!(p["insns_per_fault"].as_f64().unwrap() > 0.0, "{context}");
    }
    let w = policy(&json, "switch");
    assert_eq!(w["threads_created"], 4, "switch threads\n{context}");
    assert_eq!(w["faults"], 0, "switch never faults\n{context}");
    assert_eq!(w["switch_faults"], 0, "{context}");
    assert_eq!(w["fatal_faults"], 0, "{context}");
    assert_eq!(w["insns_per_fault"], Value::Null, "{context}");
    // Every switch-out of a thread asleep 2048 bytes deep gives back its untouched fourth
    // page (and, before its first path, the second and third), with no flush.
    let returned = w["reclaimed_accessed_clear"].as_u64().unwrap();
    assert!(returned >= 4, "switch returned {returned} pages\n{context}");
    assert_eq!(w["reclaimed"].as_u64().unwrap(), returned, "{context}");
    assert!(w["flushes_avoided"].as_u64().unwrap() >= 4, "{context}");
    // Running threads hold at most 3 pages each beyond what they hold asleep, one per CPU.
    let extra = w["running_extra_kib_peak"].as_u64().unwrap();
    assert!(
        (4..=2 * 12).contains(&extra),
        "running extra {extra}\n{context}"
    );
    let peak = w["stack_kib_peak"].as_u64().unwrap();
    assert!(
        (48..=48 + 2 * 12).contains(&peak),
        "switch peak {peak}\n{context}"
    );
    for name in ["static", "fault", "guaranteed", "switch"] {
        let p = policy(&json, name);
        assert!(
            p["insns_per_switch_in"].as_f64().unwrap() > 0.0,
            "{name}\n{context}"
        );
        assert!(
            p["insns_per_switch_out"].as_f64().unwrap() > 0.0,
            "{name}\n{context}"
        );
    }
    for (name, end) in [
        ("static", 64),
        ("fault", 48),
        ("guaranteed", 48),
        ("switch", 48),
    ] {
        let p = policy(&json, name);
        // At the end of the run the four long-lived threads still hold their pages.
        assert_eq!(p["stack_kib_end"], end, "{name}\n{context}");
        // The live-data bound: at least one page per live thread at some sample, at most
        // the 3 pages a path touches.
        let live = p["live_bound_kib"].as_u64().unwrap();
        assert!((16..=48).contains(&live), "{name}: live {live}\n{context}");
        assert!(p["insns_per_create"].as_f64().unwrap() > 0.0, "{context}");
        assert!(p["insns_per_switch"].as_f64().is_some(), "{context}");
    }

    // Pages held per thread, from the raw console of the workload boot (the log holds the
    // cost boot's console first).
    let workload = log
        .split("# dks compare: workload boot")
        .nth(1)
        .unwrap_or_else(|| panic!("no workload boot in the log\n{context}"));
    let mut pages: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for line in workload.lines() {
        if let ConsoleLine::Record(Record::ThreadPages(t)) = ConsoleLine::parse(line) {
            *pages.entry((t.policy.to_string(), t.pages)).or_default() += t.threads;
        }
    }
    let expected: BTreeMap<(String, u32), u64> = [
        (("static".to_owned(), 4), 4),
        (("fault".to_owned(), 3), 4),
        (("guaranteed".to_owned(), 3), 4),
        // A `switch` thread holds all four pages while it runs.
        (("switch".to_owned(), 4), 4),
    ]
    .into_iter()
    .collect();
    assert_eq!(pages, expected, "{context}");

    // The table shows the same rows.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in ["static", "fault", "guaranteed", "switch"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} row\n{context}"
        );
    }
}

#[test]
fn the_default_comparison_runs_end_to_end() {
    let kernel = dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = scratch_dir("compare-default");
    let json_path = dir.join("census.json");
    let report = dir.join("report");
    let output = dks()
        .arg("compare")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--json")
        .arg(&json_path)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let json: Value = serde_json::from_str(&fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["scenario"], "linux-census");
    let policies = json["policies"].as_array().unwrap();
    assert!(policies.len() >= 2, "{json:#}");
    assert_eq!(policies[0]["policy"], "static", "{json:#}");
    for p in policies {
        assert!(p["stack_kib_peak"].as_u64().unwrap() > 0, "{p}");
        assert!(p["threads_created"].as_u64().unwrap() >= 85 + 24, "{p}");
        if p["policy"] != "fault" {
            assert_eq!(p["fatal_faults"], 0, "{p}");
        }
    }
    let switch = policies
        .iter()
        .find(|p| p["policy"] == "switch")
        .unwrap_or_else(|| panic!("switch is compared by default\n{json:#}"));
    assert_eq!(switch["faults"], 0, "{switch}");
    assert_eq!(switch["switch_faults"], 0, "{switch}");
    assert!(
        switch["reclaimed_accessed_clear"].as_u64().unwrap() > 0,
        "{switch}"
    );
    let page = fs::read_to_string(report.join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 3);
}

/// The exact scenario at 16, 32 and 64 KiB (`--max-stack`): `static` holds the full size for
/// each of its 4 threads, while `fault` and `guaranteed` hold the same 3 pages per thread at
/// every size; the table has one row per policy with every size, and the JSON holds the sweep
/// and each size's whole comparison.
#[test]
fn the_exact_scenario_at_every_stack_size() {
    let kernel = dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = scratch_dir("compare-max-stack");
    let scenario = dir.join("exact.toml");
    fs::write(&scenario, EXACT).unwrap();
    let json_path = dir.join("sweep.json");
    let output = dks()
        .arg("compare")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--scenario")
        .arg(&scenario)
        .args(["--policies", "static,fault,guaranteed"])
        .args(["--max-stack", "16K,32K,64K"])
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let context = text(&output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let json: Value = serde_json::from_str(&fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["max_stack_kib"], serde_json::json!([16, 32, 64]));
    let comparisons = json["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 3, "{context}");
    for (comparison, kib) in comparisons.iter().zip([16, 32, 64]) {
        assert_eq!(comparison["max_stack_kib"], kib, "{context}");
        assert_eq!(policy(comparison, "static")["stack_kib_peak"], 4 * kib);
        for name in ["fault", "guaranteed"] {
            assert_eq!(
                policy(comparison, name)["stack_kib_peak"],
                48,
                "{name} at {kib}K"
            );
        }
    }
    let memory = json["memory"].as_array().unwrap();
    let peaks: Vec<(&str, Vec<u64>)> = memory
        .iter()
        .map(|m| {
            let peaks = m["stack_kib_peak"].as_array().unwrap();
            (
                m["policy"].as_str().unwrap(),
                peaks.iter().map(|p| p.as_u64().unwrap()).collect(),
            )
        })
        .collect();
    assert_eq!(
        peaks,
        [
            ("static", vec![64, 128, 256]),
            ("fault", vec![48, 48, 48]),
            ("guaranteed", vec![48, 48, 48]),
        ]
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout
        .lines()
        .find(|l| {
            // The sweep's row (the comparisons' rows have 18 cells).
            l.starts_with("fault ") && l.split_whitespace().count() == 9
        })
        .unwrap_or_else(|| panic!("no sweep row for fault\n{context}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "fault", "48", "75.0%", "48", "37.5%", "1.00", "48", "18.8%", "1.00"
        ]
    );
}

//! `dks compare` refusing bad input and failing boots against a fake QEMU (see
//! `compare_fake`): one error naming what was wrong, the right exit code, and nothing written.

mod common;
mod compare_fake;

use std::fs;
use std::path::PathBuf;

use compare_fake::{SCENARIO, appends, assert_one_error, compare, fake, path_str};

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
            &[
                "no built-in scenario of that name",
                "linux-census, linux-census-sleepers, android",
            ],
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

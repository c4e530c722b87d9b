//! `dks compare` end to end against a fake QEMU (see `common` and `compare_fake`): the fake
//! plays the cost boot and the workload boots with records written here, so every figure of
//! the table and the JSON is known exactly, and the tests see what `dks` handed the kernel
//! (command lines, plans). Refusals and failures are in `compare_errors.rs`.
//!
//! The real kernel is in `compare_kernel.rs`.

mod common;
mod compare_fake;

use std::fs;
use std::path::PathBuf;

use common::text;
use compare_fake::{
    SCENARIO, appends, args_of_call, compare, expected_cells, fake, path_str, plans, table_rows,
    value_of,
};
use serde_json::Value;

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
            "workload=initrd max_stack=16K slots=268"
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
        .map(|g| (g.name.as_str(), g.policy.name(), g.threads))
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
    let policies: Vec<&str> = plans(&qemu)[0]
        .groups
        .iter()
        .map(|g| g.policy.name())
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
            "workload=initrd max_stack=32K slots=264 inject=atomic-window:5:10 reserve=32"
        ]
    );
    let rows = table_rows(&String::from_utf8_lossy(&output.stdout));
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["static", "guaranteed"]);
}

/// `pack` beside `static`: its settings reach the kernel, and its counters and costs reach the
/// table and the JSON (the table's cells equal to the JSON's).
#[test]
fn pack_s_settings_reach_the_kernel_and_its_figures_the_table() {
    let qemu = fake("compare-pack", &["static", "pack"]);
    let scenario = qemu.dir.join("pack.toml");
    fs::write(
        &scenario,
        SCENARIO.replace(
            "cpus = 2",
            "cpus = 2\npack_after_ms = 250\npack_guard = true",
        ),
    )
    .unwrap();
    let json = qemu.dir.join("out.json");
    let output = compare(
        &qemu,
        &["--scenario", path_str(&scenario), "--json", path_str(&json)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        appends(&qemu),
        [
            "bench=costs tsc=instructions max_stack=16K",
            "workload=initrd max_stack=16K slots=264 pack_after_ms=250 pack_guard=on"
        ]
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows = table_rows(&stdout);
    let json: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let policies = json["policies"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, entry) in rows.iter().zip(policies) {
        assert_eq!(*row, expected_cells(entry), "{stdout}\n{entry}");
    }
    let pack = &policies[1];
    assert_eq!(pack["policy"], "pack");
    assert_eq!(
        (
            &pack["packs"],
            &pack["restores"],
            &pack["restore_waits"],
            &pack["packed_threads_end"],
            &pack["packed_kib_end"]
        ),
        (&12.into(), &8.into(), &1.into(), &4.into(), &4.into())
    );
    assert_eq!(pack["insns_per_pack"], 3100.0);
    assert_eq!(pack["insns_per_restore"], 2250.0);
    assert_eq!(policies[0]["insns_per_pack"], Value::Null);

    // The same scenario on a kernel without `pack`: the other policies run, and the kernel is
    // not given settings it does not know.
    let without = fake("compare-pack-absent", &["static", "fault"]);
    let output = compare(&without, &["--scenario", path_str(&scenario)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        appends(&without)[1],
        "workload=initrd max_stack=16K slots=264"
    );
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
        assert!(
            plan.groups.iter().all(|g| g.policy.name() == policy),
            "{plan:?}"
        );
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
        "linux-census, linux-census-sleepers, android, storage, adversarial",
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

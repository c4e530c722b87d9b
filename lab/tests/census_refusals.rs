//! `dks census` refusals: bad flags, outputs and files, census files that do not go together,
//! a host without BTF or kernel support, a user without the capabilities, and the help text.
//! None of them needs BPF: they always run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use common::census::{assert_refused, bpf_unavailable, files_in, is_root, skip};
use common::{dks, scratch_dir, text};
use dks_lab::host_census::tsv;
use dks_lab::scenario;

#[test]
fn bad_flags_and_outputs_are_refused_before_anything_is_measured() {
    let dir = scratch_dir("census-refusals");
    let out = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let missing = out("no/such/folder/x.tsv");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["exits".into(), "--seconds".into(), "0".into()],
            vec!["--seconds", "1..=86400"],
        ),
        (
            vec!["exits".into(), "--seconds".into(), "86401".into()],
            vec!["--seconds", "1..=86400"],
        ),
        (
            vec!["exits".into(), "--seconds".into(), "-3".into()],
            vec!["--seconds"],
        ),
        (vec!["exits".into()], vec!["--seconds"]),
        (
            vec!["snapshot".into(), "--out".into(), missing.clone()],
            vec![
                "--out",
                "does not exist",
                "accepted: a file name ending in .tsv",
            ],
        ),
        (
            vec![
                "exits".into(),
                "--seconds".into(),
                "1".into(),
                "--out".into(),
                missing.clone(),
            ],
            vec!["does not exist"],
        ),
        (
            vec!["snapshot".into(), "--out".into(), out("x.csv")],
            vec!["not a .tsv file name"],
        ),
        (
            vec!["snapshot".into(), "--out".into(), "/proc/x.tsv".into()],
            vec!["the folder /proc is not writable"],
        ),
        (
            vec!["merge".into(), out("a.tsv"), "--out".into(), out("m.tsv")],
            vec!["FILE"],
        ),
        (
            vec![
                "merge".into(),
                out("a.tsv"),
                out("b.tsv"),
                "--out".into(),
                missing,
            ],
            vec!["does not exist"],
        ),
    ];
    for (args, expected) in cases {
        let output = dks().arg("census").args(&args).output().unwrap();
        assert_refused(&output, 2, &expected);
        assert!(
            files_in(&dir).is_empty(),
            "{args:?} left {:?}",
            files_in(&dir)
        );
    }
}

/// Writes census files for the merge tests.
fn write_census(dir: &Path, name: &str, stack: u32, rows: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "# t\n# kernel_release: 6.18\n# stack_bytes: {stack}\n# date: d\n\
             used_bytes\tsleeping_depth_bytes\tkthread\tcomm\n{rows}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn merge_joins_hosts_and_refuses_files_that_do_not_go_together() {
    let dir = scratch_dir("census-merge");
    let a = write_census(&dir, "a.tsv", 16384, "900\t500\t1\tk\n");
    let b = write_census(&dir, "b.tsv", 16384, "5000\t800\t0\tsh\n");
    let big = write_census(&dir, "big.tsv", 32768, "900\t500\t1\tk\n");
    let bad = write_census(&dir, "bad.tsv", 16384, "900\t500\t1\tk\n900\tx\t0\tsh\n");
    let exits = dir.join("e.tsv");
    std::fs::write(
        &exits,
        "# stack_bytes: 16384\nused_bytes\tthreads\tkthread\tcomm\n64\t1\t0\tsh\n",
    )
    .unwrap();
    let before = files_in(&dir);
    let merged = dir.join("fleet.tsv");
    for (inputs, expected) in [
        (
            vec![&a, &big],
            vec!["big.tsv: has 32768-byte stacks", "16384-byte stacks"],
        ),
        (
            vec![&a, &bad],
            vec!["bad.tsv: line 7: sleeping_depth_bytes \"x\""],
        ),
        (vec![&a, &exits], vec!["e.tsv: is a census of exits"]),
        (
            vec![&a, &dir.join("none.tsv")],
            vec!["none.tsv: cannot read it"],
        ),
    ] {
        let output = dks()
            .args(["census", "merge"])
            .args(&inputs)
            .arg("--out")
            .arg(&merged)
            .output()
            .unwrap();
        assert_refused(&output, 2, &expected);
        assert_eq!(files_in(&dir), before, "{inputs:?}");
    }

    let output = dks()
        .args(["census", "merge"])
        .args([&a, &b])
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let census = tsv::read(&merged).unwrap();
    assert_eq!(census.rows.threads(), 2);
    assert_eq!(census.header.get("sources"), Some("2"));
    // Static 2 x 16 KiB; fault 1 + 2 pages (37.5 %); reclaim 1 + 1 pages (25 %).
    let stdout = String::from_utf8_lossy(&output.stdout);
    for (policy, kib, percent) in [
        ("static ", "32", "100.0 %"),
        ("fault, guaranteed ", "12", "37.5 %"),
        ("reclaim, switch ", "8", "25.0 %"),
    ] {
        let line = stdout.lines().find(|l| l.starts_with(policy)).unwrap();
        assert!(
            line.ends_with(&format!("{kib:>10} {percent:>10}")),
            "{line}"
        );
    }
    let scenario = scenario::load(dir.join("fleet.toml").to_str().unwrap()).unwrap();
    assert_eq!(scenario.groups[0].threads(), 2);
}

/// A raw BTF blob holding one type, `int`: a kernel BTF without task iterators or typed
/// tracepoints.
fn tiny_btf(dir: &Path) -> PathBuf {
    let strings = b"\0int\0";
    let mut types = Vec::new();
    for word in [1u32, 1 << 24, 4, 32] {
        // name_off 1 ("int"), kind INT, size 4, 32 bits
        types.extend_from_slice(&word.to_le_bytes());
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    blob.extend_from_slice(&[1, 0]);
    for word in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        blob.extend_from_slice(&word.to_le_bytes());
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(strings);
    let path = dir.join("tiny.btf");
    std::fs::write(&path, blob).unwrap();
    path
}

#[test]
fn a_host_without_btf_or_kernel_support_is_refused_with_what_is_missing() {
    if !cfg!(feature = "bpf") || !is_root() {
        return skip(
            "a_host_without_btf_or_kernel_support_is_refused_with_what_is_missing",
            "needs root and the bpf feature to get past the capability check to the BTF",
        );
    }
    let btfs = scratch_dir("census-btf");
    let tiny = tiny_btf(&btfs);
    let garbage = btfs.join("garbage.btf");
    std::fs::write(&garbage, "not BTF").unwrap();
    let dir = scratch_dir("census-no-btf");
    for (args, btf, expected) in [
        (
            &["snapshot"][..],
            btfs.join("none"),
            vec!["has no BTF", "CONFIG_DEBUG_INFO_BTF=y"],
        ),
        (
            &["exits", "--seconds", "1"][..],
            btfs.join("none"),
            vec!["CONFIG_DEBUG_INFO_BTF=y"],
        ),
        (
            &["snapshot"][..],
            garbage,
            vec!["cannot read the kernel's BTF"],
        ),
        (
            &["snapshot"][..],
            tiny.clone(),
            vec!["too old for BPF task iterators", "Linux 5.8 or later"],
        ),
        (
            &["exits", "--seconds", "1"][..],
            tiny,
            vec!["no BTF-typed sched_switch", "Linux 5.5 or later"],
        ),
    ] {
        let output = dks()
            .arg("census")
            .args(args)
            .arg("--btf")
            .arg(&btf)
            .arg("--out")
            .arg(dir.join("c.tsv"))
            .output()
            .unwrap();
        assert_refused(&output, 1, &expected);
        assert!(files_in(&dir).is_empty(), "{args:?}");
    }
}

#[test]
fn a_user_without_capabilities_is_told_to_run_it_as_root() {
    let dir = scratch_dir("census-not-root");
    // The folder is writable by anyone, so only the capabilities can be missing.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut command = dks();
    command
        .args(["census", "snapshot", "--out"])
        .arg(dir.join("c.tsv"));
    if is_root() {
        // nobody: setuid drops every capability.
        command.uid(65534).gid(65534);
    } else if bpf_unavailable().is_none() {
        return skip(
            "a_user_without_capabilities_is_told_to_run_it_as_root",
            "this non-root user has the capabilities",
        );
    }
    let output = command.output().unwrap();
    if !cfg!(feature = "bpf") {
        assert_refused(&output, 1, &["built without its BPF part", "./dks"]);
    } else {
        assert_refused(
            &output,
            1,
            &["not permitted", "CAP_BPF and CAP_PERFMON", "run it as root"],
        );
    }
    assert!(files_in(&dir).is_empty());
}

#[test]
fn help_names_every_subcommand_its_flags_and_the_exit_codes() {
    let top = dks().args(["census", "--help"]).output().unwrap();
    assert!(top.status.success(), "{}", text(&top));
    let top = String::from_utf8_lossy(&top.stdout);
    for word in ["snapshot", "exits", "merge", "docs/census.md"] {
        assert!(top.contains(word), "{word} in\n{top}");
    }
    for (sub, flags) in [
        ("snapshot", &["--out"][..]),
        ("exits", &["--seconds", "--out", "1 to 86400"][..]),
        ("merge", &["--out", "<FILE> <FILE>..."][..]),
    ] {
        let help = dks().args(["census", sub, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in flags.iter().chain(&["Exit codes:", "  2  a bad flag"]) {
            assert!(help.contains(flag), "{sub}: {flag} in\n{help}");
        }
        // The test hooks stay out of the help.
        assert!(
            !help.contains("--btf") && !help.contains("--inject"),
            "{help}"
        );
    }
}

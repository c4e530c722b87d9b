//! `dks census` end to end: the BPF programs on this very host, and every refusal.
//!
//! The tests that load BPF need root (CAP_BPF, CAP_PERFMON), the kernel's BTF and a `dks` built
//! with the `bpf` feature (scripts/test builds it so). Where one of these is missing they say
//! which on the test's stderr, written past the test harness's capture so it shows in every
//! run, and skip: they never pass without having run. The refusals (bad flags, outputs and
//! files, a host without the capabilities or BTF) need no BPF and always run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{dks, scratch_dir, text};
use dks_lab::host_census::{Census, ExitRow, Kind, LiveRow, Rows, replay, summary, tsv};
use dks_lab::scenario::{self, PolicyChoice};

/// Why BPF cannot run here, if it cannot.
fn bpf_unavailable() -> Option<String> {
    if !cfg!(feature = "bpf") {
        return Some("dks was built without the `bpf` feature (scripts/test turns it on)".into());
    }
    if !is_root() {
        return Some("not root: loading the census programs needs CAP_BPF and CAP_PERFMON".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Says, past the harness's output capture, that `test` is skipped and why.
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED census::{test}: {why}");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn live_rows(census: &Census) -> &[LiveRow] {
    match &census.rows {
        Rows::Live(rows) => rows,
        Rows::Exits(_) => panic!("not a live snapshot"),
    }
}

fn header_number(census: &Census, key: &str) -> u64 {
    census
        .header
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {:?}", census.header))
        .parse()
        .unwrap()
}

fn assert_refused(output: &Output, code: i32, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    assert!(output.stdout.is_empty(), "{}", text(output));
    assert_eq!(stderr.matches("error:").count(), 1, "{}", text(output));
    for part in expected {
        assert!(stderr.contains(part), "{part:?} in\n{}", text(output));
    }
}

/// A short name for threads of this test process.
fn thread_name(tag: &str, i: usize) -> String {
    format!("{tag}{}-{i}", std::process::id() % 100_000)
}

#[test]
fn snapshot_finds_this_test_s_threads_with_plausible_values() {
    if let Some(why) = bpf_unavailable() {
        return skip(
            "snapshot_finds_this_test_s_threads_with_plausible_values",
            &why,
        );
    }
    let dir = scratch_dir("census-snapshot");
    const THREADS: usize = 3;
    let names: Vec<String> = (0..THREADS).map(|i| thread_name("dkc", i)).collect();
    let ready = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = names
        .iter()
        .map(|name| {
            let (ready, done) = (ready.clone(), done.clone());
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    // Some kernel work first, so the stack has a mark of its own.
                    let _ = std::fs::read_to_string("/proc/self/status");
                    ready.wait();
                    done.wait();
                })
                .unwrap()
        })
        .collect();
    ready.wait();
    let out = dir.join("live.tsv");
    let output = dks()
        .args(["census", "snapshot", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    done.wait();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(files_in(&dir), ["live.toml", "live.tsv"]);

    let census = tsv::read(&out).unwrap();
    assert_eq!(census.kind(), Kind::Live);
    let stack = census.stack_bytes().unwrap();
    assert!(
        [16384, 32768, 65536].contains(&stack),
        "a plausible x86_64 stack: {stack}"
    );
    let rows = live_rows(&census);
    assert!(rows.len() > THREADS, "only {} threads", rows.len());
    assert!(rows.iter().any(|r| r.kthread), "no kernel thread seen");
    for name in &names {
        let mine: Vec<&LiveRow> = rows
            .iter()
            .filter(|r| r.comm.as_deref() == Some(name.as_str()))
            .collect();
        assert_eq!(mine.len(), 1, "{name}: {mine:?}");
        let row = mine[0];
        assert!(!row.kthread, "{row:?}");
        // A thread that read a procfs file and waits on a futex goes a few KiB deep (the
        // deepest of 167,487 measured exits went 5,824 bytes): a mark in the far half of the
        // stack would be a misreading, e.g. the unused part taken for the used one.
        assert!(
            (1..=stack / 2).contains(&row.used_bytes),
            "{name}: high-water mark {} of a {stack}-byte stack",
            row.used_bytes
        );
        assert!(
            row.sleeping_depth_bytes >= 1 && row.sleeping_depth_bytes <= row.used_bytes,
            "{name}: sleeping {} deep, marked {}",
            row.sleeping_depth_bytes,
            row.used_bytes
        );
    }
    // The header accounts for every thread read.
    let skipped: u64 = [
        "skipped_exited",
        "skipped_unreadable",
        "skipped_blank",
        "skipped_no_stack_pointer",
    ]
    .iter()
    .map(|key| header_number(&census, key))
    .sum();
    assert_eq!(header_number(&census, "threads"), rows.len() as u64);
    assert_eq!(
        header_number(&census, "threads_seen"),
        rows.len() as u64 + skipped
    );
    for key in ["kernel_release", "stack_options", "date", "command"] {
        assert!(census.header.get(key).is_some(), "{key}");
    }

    // The summary on stdout is the one of the file.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = summary::render(&summary::summarize(&census, stack), &census);
    assert_eq!(stdout, expected);

    // The scenario beside it replays exactly these threads.
    let scenario = scenario::load(dir.join("live.toml").to_str().unwrap()).unwrap();
    assert_eq!(scenario.groups.len(), 1);
    assert_eq!(scenario.groups[0].policy, PolicyChoice::Each);
    assert_eq!(scenario.groups[0].threads() as usize, rows.len());
    assert_eq!(scenario.max_stack_bytes, stack);
    let mut replayed: Vec<(u32, u32, u32)> = scenario.groups[0]
        .plans
        .iter()
        .map(|p| (p.depth.max_bytes(), p.sleep_depth.max_bytes(), p.threads))
        .collect();
    replayed.sort_unstable();
    let expected: Vec<(u32, u32, u32)> = replay::population(&census)
        .unwrap()
        .into_iter()
        .map(|(t, n)| (t.used_bytes, t.sleeping_depth_bytes, n))
        .collect();
    assert_eq!(replayed, expected);
}

#[test]
fn exits_sees_the_threads_it_watched_exit_with_their_names() {
    if let Some(why) = bpf_unavailable() {
        return skip(
            "exits_sees_the_threads_it_watched_exit_with_their_names",
            &why,
        );
    }
    let dir = scratch_dir("census-exits");
    let out = dir.join("exits.tsv");
    let mut child = dks()
        .args(["census", "exits", "--seconds", "3", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the program watches.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("watching thread exits for 3 s"), "{line}");

    const THREADS: usize = 8;
    let names: Vec<String> = (0..THREADS).map(|i| thread_name("dkx", i)).collect();
    for name in &names {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(|| std::hint::black_box(std::fs::metadata("/proc/self").is_ok()))
            .unwrap()
            .join()
            .unwrap();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{line}{rest}");
    assert!(rest.contains("wrote"), "{rest}");

    let census = tsv::read(&out).unwrap();
    assert_eq!(census.kind(), Kind::Exits);
    let stack = census.stack_bytes().unwrap();
    let Rows::Exits(rows) = &census.rows else {
        panic!("not exits")
    };
    for name in &names {
        let mine: Vec<&ExitRow> = rows
            .iter()
            .filter(|r| r.comm.as_deref() == Some(name.as_str()))
            .collect();
        let exits: u64 = mine.iter().map(|r| r.threads).sum();
        assert_eq!(exits, 1, "{name}: {mine:?}");
        assert!((64..=stack).contains(&mine[0].used_bytes), "{mine:?}");
        assert_eq!(mine[0].kthread, Some(false));
    }
    assert!(census.rows.threads() >= THREADS as u64);
    assert_eq!(header_number(&census, "window_seconds"), 3);
    assert_eq!(header_number(&census, "dropped"), 0);
    assert_eq!(
        header_number(&census, "exits_seen"),
        header_number(&census, "threads_seen")
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("Exits of Linux "), "{stdout}");

    // The scenario beside it draws its depths from exactly these marks.
    let scenario = scenario::load(dir.join("exits.toml").to_str().unwrap()).unwrap();
    let group = &scenario.groups[0].plans[0];
    assert_eq!(group.threads, replay::EXIT_THREADS);
    assert_eq!(
        group.depth,
        replay::histogram(&census, "used_bytes").unwrap()
    );
}

/// Ctrl-C during the exits window ends it within a poll period, writes nothing, and ends
/// `dks` by the signal (as the other commands do).
#[test]
fn an_interrupted_exits_window_writes_nothing() {
    if let Some(why) = bpf_unavailable() {
        return skip("an_interrupted_exits_window_writes_nothing", &why);
    }
    let dir = scratch_dir("census-exits-interrupted");
    let out = dir.join("exits.tsv");
    let started = std::time::Instant::now();
    let mut child = dks()
        .args(["census", "exits", "--seconds", "600", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("watching thread exits for 600 s"), "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dks census exits went on after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(2), "{status:?}");
    assert_eq!(files_in(&dir), Vec::<String>::new());
}

#[test]
fn a_zombie_is_counted_as_exited_not_read() {
    if let Some(why) = bpf_unavailable() {
        return skip("a_zombie_is_counted_as_exited_not_read", &why);
    }
    let dir = scratch_dir("census-zombie");
    // A child that exits and is not waited for stays a zombie, whose stack is already freed.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let stat = format!("/proc/{}/stat", zombie.id());
    for _ in 0..100 {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        if state
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = dir.join("z.tsv");
    let output = dks()
        .args(["census", "snapshot", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    zombie.wait().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let census = tsv::read(&out).unwrap();
    assert!(
        header_number(&census, "skipped_exited") >= 1,
        "{:?}",
        census.header
    );
    assert!(
        live_rows(&census)
            .iter()
            .all(|r| r.comm.as_deref() != Some("true")),
        "the zombie has a row"
    );
}

#[test]
fn unreadable_stack_pages_are_skipped_and_counted() {
    if let Some(why) = bpf_unavailable() {
        return skip("unreadable_stack_pages_are_skipped_and_counted", &why);
    }
    let dir = scratch_dir("census-unreadable");
    let out = dir.join("u.tsv");
    let output = dks()
        .args([
            "census",
            "snapshot",
            "--inject-unreadable-every",
            "2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let census = tsv::read(&out).unwrap();
    let seen = header_number(&census, "threads_seen");
    let unreadable = header_number(&census, "skipped_unreadable");
    // Every other thread visited (the 1st, 3rd, ...) had its first page made unreadable.
    assert_eq!(unreadable, seen.div_ceil(2), "{:?}", census.header);
    assert_eq!(header_number(&census, "unreadable_pages"), unreadable);
    assert!(!live_rows(&census).is_empty());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("skipped_unreadable {unreadable}")),
        "{stdout}"
    );
}

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

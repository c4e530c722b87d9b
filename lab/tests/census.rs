//! `dks census` end to end: the BPF programs on this very host, and every refusal.
//!
//! The tests that load BPF need root (CAP_BPF, CAP_PERFMON), the kernel's BTF and a `dks` built
//! with the `bpf` feature (scripts/test builds it so). Where one of these is missing they say
//! which on the test's stderr, written past the test harness's capture so it shows in every
//! run, and skip: they never pass without having run. The refusals (bad flags, outputs and
//! files, a host without the capabilities or BTF) need no BPF and always run.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::census::{bpf_unavailable, files_in, skip};
use common::{dks, scratch_dir, text};
use dks_lab::host_census::{Census, ExitRow, Kind, LiveRow, Rows, replay, summary, tsv};
use dks_lab::scenario::{self, PolicyChoice};

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

//! Interrupting `dks` (issue 10, findings 9 and 10): a real signal to a real `dks` process stops
//! its QEMU (a fake that hangs, with a child of its own) and removes every temporary file; a
//! QEMU stopped by a signal from outside is reported as such, not as a triple fault.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{FakeQemu, text};
use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Cost, Exit, Record};
use dks_protocol::wire;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Returns whether process `pid` runs (a zombie does not).
fn alive(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits for `path` to exist.
fn wait_for_file(path: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dks ended before {} appeared: {status}", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to end (at most 60 s) and returns its output.
fn wait_end(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "dks did not end after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A fake QEMU that hangs with a child of its own, after writing both process ids (and the
/// plan it was given, if any, to `initrd.txt`).
fn hanging(name: &str) -> FakeQemu {
    let dir = common::scratch_dir(name);
    let body = format!(
        r#"prev=""
for a in "$@"; do [ "$prev" = -initrd ] && printf '%s\n' "$a" > '{d}/initrd.txt'; prev="$a"; done
case "$*" in *bench=costs*) cat '{d}/costs.txt'; exit 33;; esac
sleep 600 &
echo $! > '{d}/child.pid'
echo $$ > '{d}/qemu.pid'
echo 'the guest hangs'
wait"#,
        d = dir.display()
    );
    FakeQemu::new(name, &body)
}

/// Sends `signal` to `dks` once its QEMU runs, and checks the clean-up.
fn interrupt_and_check(qemu: &FakeQemu, tmp: &Path, mut dks: Child, signal: Signal) -> Output {
    let qemu_pid = wait_for_file(&qemu.dir.join("qemu.pid"), &mut dks);
    let child_pid = fs::read_to_string(qemu.dir.join("child.pid")).unwrap();
    assert!(alive(&qemu_pid) && alive(&child_pid));
    kill(Pid::from_raw(dks.id() as i32), signal).unwrap();
    let output = wait_end(dks);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(signal as i32),
        "dks ends by the signal\n{}",
        text(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("interrupted by {}", signal.as_str())),
        "{}",
        text(&output)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(&qemu_pid) || alive(&child_pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(&qemu_pid), "QEMU survived {signal}");
    assert!(!alive(&child_pid), "QEMU's child survived {signal}");
    assert_eq!(
        entries(tmp),
        Vec::<String>::new(),
        "temporary files left behind"
    );
    output
}

fn scratch_tmp(qemu: &FakeQemu) -> PathBuf {
    let tmp = qemu.dir.join("tmp");
    fs::create_dir(&tmp).unwrap();
    tmp
}

#[test]
fn an_interrupted_run_stops_qemu_and_removes_the_monitor_socket() {
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let qemu = hanging(&format!("interrupt-run-{}", signal.as_str()));
        let tmp = scratch_tmp(&qemu);
        let dks = qemu
            .dks()
            .env("TMPDIR", &tmp)
            .arg("run")
            .arg("--kernel")
            .arg(qemu.kernel())
            // The injection gives this boot a monitor socket folder in TMPDIR.
            .args([
                "--timeout",
                "600",
                "--inject-nmi",
                "10/s",
                "--",
                "workload=mixed",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        interrupt_and_check(&qemu, &tmp, dks, signal);
    }
}

fn line(record: &Record<'_>) -> String {
    let mut buf = [0u8; wire::MAX_LINE_BYTES];
    wire::encode(record, &mut buf).unwrap().to_owned()
}

#[test]
fn an_interrupted_compare_stops_qemu_removes_its_plan_and_writes_nothing() {
    let qemu = hanging("interrupt-compare");
    let tmp = scratch_tmp(&qemu);
    let mut costs = line(&Record::Cost(Cost {
        what: "create".into(),
        policy: Some(dks_core::Policy::Static),
        samples: 1,
        total: 1000,
        min: 1000,
        max: 1000,
        instructions: true,
        log2_histogram: [0; 24],
    }));
    costs += &line(&Record::Exit(Exit {
        code: ExitCode::Success,
        reason: "fake".into(),
    }));
    fs::write(qemu.dir.join("costs.txt"), costs).unwrap();
    let json = qemu.dir.join("out.json");
    let log = qemu.dir.join("console.log");
    let mut dks = qemu
        .dks()
        .env("TMPDIR", &tmp)
        .arg("compare")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args([
            "--scenario",
            "android",
            "--policies",
            "static",
            "--timeout",
            "600",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--log")
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&qemu.dir.join("qemu.pid"), &mut dks);
    let plan = fs::read_to_string(qemu.dir.join("initrd.txt")).unwrap();
    let plan = PathBuf::from(plan.trim());
    assert!(plan.starts_with(&tmp), "{}", plan.display());
    assert!(plan.exists());
    let output = interrupt_and_check(&qemu, &tmp, dks, Signal::SIGTERM);
    assert!(!plan.exists(), "the plan {} stayed", plan.display());
    assert!(!json.exists() && !log.exists(), "{}", text(&output));
    assert!(output.stdout.is_empty(), "{}", text(&output));
}

/// Finding 10 with the real QEMU: it catches SIGTERM and exits with status 0, which alone
/// reads as a triple fault.
#[test]
fn a_qemu_stopped_by_a_signal_is_reported_with_the_signal() {
    let real = dks_lab::qemu::find().unwrap();
    let dir = common::scratch_dir("qemu-stopped");
    let body = format!(
        "echo $$ > '{}/qemu.pid'\nexec '{}' -S -display none -monitor none -serial none -no-reboot",
        dir.display(),
        real.display()
    );
    let qemu = FakeQemu::new("qemu-stopped", &body);
    let mut dks = qemu
        .dks()
        .arg("run")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args(["--timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for_file(&qemu.dir.join("qemu.pid"), &mut dks);
    // Give the real QEMU time to install its signal handlers.
    std::thread::sleep(Duration::from_secs(2));
    kill(Pid::from_raw(pid.trim().parse().unwrap()), Signal::SIGTERM).unwrap();
    let output = wait_end(dks);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output));
    assert!(
        stderr.contains("QEMU was stopped by signal 15 (SIGTERM)"),
        "{}",
        text(&output)
    );
    assert!(
        !stderr.contains("triple fault or reset"),
        "{}",
        text(&output)
    );
}

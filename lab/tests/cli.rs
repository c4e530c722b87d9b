//! The `dks` CLI end to end: flags, help, exit codes, rendering.
//!
//! Most tests use a fake QEMU (see `common`), so they need neither QEMU nor a kernel; the last
//! two boot the real kernel under the real QEMU.

mod common;

use std::time::{Duration, Instant};

use common::{FakeQemu, dks, text};
use dks_lab::outcome::EXIT_CODES;

const EXIT_SUCCESS_RECORD: &str = r#"echo '@dks/1 {"exit":{"code":"success","reason":"fake"}}'"#;

#[test]
fn bad_flags_give_one_clear_error_naming_the_flag() {
    for (args, flag, accepted) in [
        (&["--cpus", "9"][..], "--cpus", "1..=4"),
        (&["--memory", "15Q"][..], "--memory", "suffix K, M or G"),
        (&["--memory", "8T"][..], "--memory", "from 32M to 16G"),
        (&["--accel", "hvf"][..], "--accel", "tcg, kvm"),
        (&["--timeout", "0"][..], "--timeout", "1.."),
        (&["--no-such-flag"][..], "--no-such-flag", "--help"),
    ] {
        let output = dks().arg("run").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}\n{}", text(&output));
        assert!(output.stdout.is_empty(), "{args:?}\n{}", text(&output));
        assert!(
            stderr.contains(flag) && stderr.contains(accepted),
            "{args:?}\n{}",
            text(&output)
        );
        assert_eq!(
            stderr.matches("error:").count(),
            1,
            "{args:?}\n{}",
            text(&output)
        );
    }
}

#[test]
fn help_describes_every_option_and_exit_code() {
    let top = dks().arg("--help").output().unwrap();
    assert!(top.status.success(), "{}", text(&top));
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(top.contains("run"), "{top}");

    let run = dks().args(["run", "--help"]).output().unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let run = String::from_utf8_lossy(&run.stdout);
    for option in [
        "--cpus",
        "--memory",
        "--accel",
        "--timeout",
        "--kernel",
        "--log",
        "--inject-nmi",
        "--inject-mce",
        "KERNEL ARGS",
    ] {
        assert!(run.contains(option), "{option} missing from:\n{run}");
    }
    for (code, meaning) in EXIT_CODES {
        let row = format!("{code}  {meaning}");
        assert!(top.contains(&row) && run.contains(&row), "{row}");
    }
    let interrupted = dks_lab::cli::INTERRUPTED_HELP;
    assert!(top.contains(interrupted) && run.contains(interrupted));
}

#[test]
fn flags_reach_qemu_s_command_line() {
    let qemu = FakeQemu::new("flags", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    let output = qemu.run_dks(&["--cpus", "2", "--memory", "1G", "--", "test=all", "x=1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let args = qemu.args();
    let value = |flag: &str| {
        let at = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {args:?}"));
        args[at + 1].clone()
    };
    assert_eq!(value("-kernel"), qemu.kernel().to_str().unwrap());
    assert_eq!(value("-append"), "test=all x=1");
    assert_eq!(value("-smp"), "2");
    assert_eq!(value("-m"), "1G");
    assert_eq!(value("-accel"), "tcg,thread=multi");
    assert_eq!(value("-device"), "isa-debug-exit,iobase=0xf4,iosize=0x04");
    assert!(args.iter().any(|a| a == "-no-reboot"), "{args:?}");
}

#[test]
fn records_are_rendered_and_malformed_lines_reported() {
    let qemu = FakeQemu::new(
        "render",
        r#"echo 'plain text from the kernel'
echo '@dks/1 {"test_plan":{"count":1}}'
echo '@dks/1 {"test_begin":{"name":"boot"}}'
echo '@dks/1 {"test_end":{"name":"boot","outcome":"pass","detail":""}}'
echo '@dks/1 {"exception":{"cpu":0,"vector":14,"error_code":2,"rip":4096,"rsp":8192,"rflags":514,"cr2":57005,"registers":{"rax":0,"rbx":0,"rcx":0,"rdx":0,"rsi":0,"rdi":0,"rbp":0,"r8":0,"r9":0,"r10":0,"r11":0,"r12":0,"r13":0,"r14":0,"r15":0}}}'
echo '@dks/1 {"broken":'
echo '@dks/1 {"exit":{"code":"exception","reason":"unhandled #PF"}}'
exit 41"#,
    );
    let log = qemu.dir.join("console.log");
    let output = qemu.run_dks(&["--log", log.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output));
    for expected in [
        "plain text from the kernel\n",
        "[test plan] 1 test(s)\n",
        "[test] boot ... pass\n",
        "[exception] #PF (page fault) cpu0 rip=0x1000 rsp=0x2000 rflags=0x202 cr2=0xdead error=0x2\n",
        "[malformed record] ",
        "[exit] exception: unhandled #PF\n",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing:\n{}",
            text(&output)
        );
    }
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(
        raw.starts_with("plain text from the kernel\n@dks/1 {\"test_plan\""),
        "{raw}"
    );
    assert!(raw.contains("\"registers\":{\"rax\":0"), "{raw}");
}

#[test]
fn every_boot_outcome_has_its_exit_code() {
    for (name, body, code, says) in [
        (
            "success",
            format!("{EXIT_SUCCESS_RECORD}\nexit 33"),
            0,
            "success",
        ),
        ("failure", "exit 35".to_owned(), 3, "reported failure"),
        (
            "config",
            "exit 37".to_owned(),
            4,
            "rejected its command line",
        ),
        ("panic", "exit 39".to_owned(), 5, "panicked"),
        ("exception", "exit 41".to_owned(), 6, "exception"),
        (
            "triple-fault",
            "echo '@dks/1 {\"log\":{\"text\":\"x\"}}'\nexit 0".to_owned(),
            7,
            "triple fault",
        ),
        (
            "exit-then-triple-fault",
            format!("{EXIT_SUCCESS_RECORD}\nexit 0"),
            7,
            "triple fault",
        ),
        (
            "qemu-error",
            "echo 'qemu: cannot load' >&2\nexit 1".to_owned(),
            7,
            "qemu: cannot load",
        ),
        ("signal", "kill -SEGV $$".to_owned(), 7, "signal 11"),
        ("no-exit-record", "exit 33".to_owned(), 9, "no records"),
    ] {
        let qemu = FakeQemu::new(&format!("outcome-{name}"), &body);
        let output = qemu.run_dks(&[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{name}\n{}",
            text(&output)
        );
        assert!(
            stderr.contains(says),
            "{name}: {says:?} missing\n{}",
            text(&output)
        );
    }
}

#[test]
fn a_hung_boot_is_killed_at_the_timeout() {
    let qemu = FakeQemu::new("timeout", "echo 'booting forever'\nexec sleep 600");
    let start = Instant::now();
    let output = qemu.run_dks(&["--timeout", "1"]);
    assert_eq!(output.status.code(), Some(8), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("timed out after 1 s"),
        "{}",
        text(&output)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn missing_qemu_is_one_clear_error() {
    let empty = common::scratch_dir("no-qemu");
    let kernel = empty.join("kernel.elf");
    std::fs::write(&kernel, b"x").unwrap();
    let output = dks()
        .arg("run")
        .arg("--kernel")
        .arg(&kernel)
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        stderr.contains("qemu-system-x86_64 is not on PATH"),
        "{}",
        text(&output)
    );
    assert!(
        stderr.contains("apt-get install qemu-system-x86"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_missing_kernel_file_is_one_clear_error() {
    let qemu = FakeQemu::new("no-kernel", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    std::fs::remove_file(qemu.kernel()).unwrap();
    let output = qemu.run_dks(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        stderr.contains(&format!(
            "kernel {} is not a readable file",
            qemu.kernel().display()
        )),
        "{}",
        text(&output)
    );
}

#[test]
fn kvm_is_refused_where_it_cannot_work() {
    let qemu = FakeQemu::new("kvm", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    let output = qemu.run_dks(&["--accel", "kvm"]);
    match dks_lab::qemu::kvm_usable() {
        Ok(()) => {
            assert_eq!(output.status.code(), Some(0), "{}", text(&output));
            assert!(qemu.args().iter().any(|a| a == "kvm"));
        }
        Err(why) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{}", text(&output));
            assert!(
                stderr.contains("--accel kvm is not usable") && stderr.contains(&why),
                "{}",
                text(&output)
            );
        }
    }
}

// The real kernel under the real QEMU from here on.

#[test]
fn the_default_boot_succeeds() {
    // No --kernel: this also covers building the kernel from the CLI.
    let output = dks().args(["run", "--timeout", "120"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("dks: success"),
        "{}",
        text(&output)
    );
}

#[test]
fn an_unknown_kernel_key_is_rejected() {
    let kernel = dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let output = dks()
        .arg("run")
        .arg("--kernel")
        .arg(kernel)
        .args(["--timeout", "120", "--", "no_such_key=1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("[config error] no_such_key"),
        "{}",
        text(&output)
    );
    assert!(stderr.contains("no_such_key"), "{}", text(&output));
}

/// Several `--max-stack` sizes are several comparisons, which one HTML report cannot hold:
/// refused before anything is built or booted, and nothing is written.
#[test]
fn a_report_with_several_stack_sizes_is_refused_before_anything_runs() {
    let dir = common::scratch_dir("max-stack-report");
    let report = dir.join("report");
    let json = dir.join("out.json");
    let output = dks()
        .args([
            "compare",
            "--max-stack",
            "16K,32K",
            "--kernel",
            "/nonexistent",
        ])
        .arg("--report")
        .arg(&report)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--report takes one comparison; accepted with --report: one --max-stack size"
        ),
        "{stderr}"
    );
    assert!(!report.exists() && !json.exists());
}

//! Bad input ends in one clear error before anything boots, and output files are all or
//! nothing (issue 10, findings 6, 7, 8 and 11). A fake QEMU (see `common`) records whether it
//! ran; the last test boots the real kernel with a line only the library can hand it.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{FakeQemu, text};
use dks_protocol::cmdline::MAX_CMDLINE_BYTES;

const EXIT_SUCCESS_RECORD: &str = r#"echo '@dks/1 {"exit":{"code":"success","reason":"fake"}}'"#;

/// Asserts one usage error (exit 2) naming `expected`, nothing on stdout, and that QEMU never
/// ran.
fn assert_refused_before_booting(qemu: &FakeQemu, output: &Output, expected: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{}", text(output));
    assert!(output.stdout.is_empty(), "{}", text(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for part in expected {
        assert!(stderr.contains(part), "{part:?} missing\n{}", text(output));
    }
    assert_eq!(stderr.matches("error:").count(), 1, "{}", text(output));
    assert!(
        !qemu.dir.join("args.txt").exists(),
        "QEMU ran:\n{}",
        text(output)
    );
}

#[test]
fn empty_or_spaced_kernel_arguments_are_usage_errors() {
    let qemu = FakeQemu::new("empty-arg", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    for (args, expected) in [
        (&["--", ""][..], "kernel argument \"\" is empty"),
        (&["--", "test=all", "a b"][..], "kernel argument \"a b\""),
        (&["--", "x=\"y\""][..], "kernel argument \"x=\\\"y\\\"\""),
        (&["--", "x=\u{e9}"][..], "accepted: printable ASCII"),
    ] {
        let output = qemu.run_dks(args);
        assert_refused_before_booting(&qemu, &output, &[expected]);
    }
}

#[test]
fn a_kernel_command_line_beyond_the_limit_is_refused_on_the_host() {
    let qemu = FakeQemu::new("long-cmdline", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    // Exactly the limit boots; one byte more, 2 KB and 5 KB are refused before booting.
    let at_limit = format!("x={}", "a".repeat(MAX_CMDLINE_BYTES - 2));
    let output = qemu.run_dks(&["--", &at_limit]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(qemu.args().iter().filter(|a| **a == at_limit).count(), 1);
    fs::remove_file(qemu.dir.join("args.txt")).unwrap();
    for bytes in [MAX_CMDLINE_BYTES + 1, 2000, 5000] {
        let line = format!("x={}", "a".repeat(bytes - 2));
        let output = qemu.run_dks(&["--", &line]);
        assert_refused_before_booting(
            &qemu,
            &output,
            &[
                &format!("the kernel command line is {bytes} bytes long"),
                &format!("at most {MAX_CMDLINE_BYTES} bytes"),
            ],
        );
    }
}

#[test]
fn an_unwritable_log_is_refused_before_booting() {
    let qemu = FakeQemu::new("log-check", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    let file = qemu.dir.join("a-file");
    fs::write(&file, "x").unwrap();
    for (log, expected) in [
        (qemu.dir.join("missing-dir/x.log"), "does not exist"),
        (file.join("x.log"), "is not a folder"),
        (qemu.dir.clone(), "not a file name"),
    ] {
        let output = qemu.run_dks(&["--log", log.to_str().unwrap(), "--", "workload=mixed"]);
        assert_refused_before_booting(&qemu, &output, &["--log", expected]);
    }
}

#[test]
fn a_log_that_cannot_be_written_after_the_boot_does_not_hide_a_failed_verdict() {
    // The fake removes the log's folder while it "runs", then panics (exit code 5).
    let logs = common::scratch_dir("log-late").join("logs");
    let body = format!(
        "rm -r '{}'\necho '@dks/1 {{\"panic\":{{\"cpu\":0,\"message\":\"boom\",\"file\":\"f.rs\",\"line\":1}}}}'\nexit 39",
        logs.display()
    );
    let qemu = FakeQemu::new("log-late-panic", &body);
    fs::create_dir(&logs).unwrap();
    let output = qemu.run_dks(&["--log", logs.join("x.log").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    assert!(
        stderr.contains("cannot write the console log"),
        "{}",
        text(&output)
    );
    assert!(
        stderr.contains("dks: FAILED: the kernel panicked"),
        "{}",
        text(&output)
    );

    // The same after a successful boot is a host error.
    let body = format!("rm -r '{}'\n{EXIT_SUCCESS_RECORD}\nexit 33", logs.display());
    let qemu = FakeQemu::new("log-late-success", &body);
    fs::create_dir(&logs).unwrap();
    let output = qemu.run_dks(&["--log", logs.join("x.log").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

/// A compare fake: prints the exit record for every boot (no figures: nothing may get that far).
fn compare_refused(qemu: &FakeQemu, args: &[&str]) -> Output {
    qemu.dks()
        .arg("compare")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args(args)
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn compare_checks_every_output_path_before_booting() {
    let qemu = FakeQemu::new(
        "compare-outputs",
        &format!("{EXIT_SUCCESS_RECORD}\nexit 33"),
    );
    let file = qemu.dir.join("X");
    fs::write(&file, "a regular file").unwrap();
    let json = qemu.dir.join("out.json");
    for (args, expected) in [
        (
            vec!["--json", path(&json), "--report", path(&file.join("rep"))],
            vec!["--report", "X is not a folder"],
        ),
        (
            vec!["--json", path(&json), "--report", path(&file)],
            vec!["--report", "exists and is not a folder"],
        ),
        (
            vec![
                "--json",
                path(&json),
                "--log",
                path(&qemu.dir.join("no/log")),
            ],
            vec!["--log", "does not exist"],
        ),
        (
            vec!["--json", path(&file.join("out.json"))],
            vec!["--json", "is not a folder"],
        ),
        (
            vec!["--inject-mce", "fatal"],
            vec!["--inject-mce fatal", "accepted here: corrected:COUNT"],
        ),
    ] {
        let output = compare_refused(&qemu, &args);
        assert_refused_before_booting(&qemu, &output, &expected);
        assert!(!json.exists(), "{} written", json.display());
    }
}

#[test]
fn bad_injection_flags_name_the_flag_and_what_is_accepted() {
    let qemu = FakeQemu::new("inject-flags", &format!("{EXIT_SUCCESS_RECORD}\nexit 33"));
    for (args, expected) in [
        (&["run", "--inject-nmi", "0"][..], "accepted: COUNT"),
        (&["run", "--inject-nmi", "5/min"][..], "accepted: COUNT"),
        (&["run", "--inject-nmi", "20000/s"][..], "10000/s"),
        (
            &["run", "--inject-mce", "corrected"][..],
            "accepted: corrected:COUNT",
        ),
        (
            &["run", "--inject-mce", "uncorrected:1"][..],
            "accepted: corrected:COUNT",
        ),
        (&["compare", "--inject-nmi", "x"][..], "accepted: COUNT"),
    ] {
        let output = qemu.dks().args(args).output().unwrap();
        let flag = args[1];
        assert_refused_before_booting(&qemu, &output, &[flag, expected]);
    }
}

/// The kernel's own check, for a line the host would refuse: the library hands QEMU any line.
#[test]
fn the_kernel_refuses_an_over_long_line_with_a_record_naming_it() {
    let kernel = dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let qemu = dks_lab::qemu::find().unwrap();
    let mut config = dks_lab::config::BootConfig::new(kernel);
    config.timeout = Duration::from_secs(120);
    config.kernel_args = vec![format!("x={}", "a".repeat(2000))];
    let outcome = dks_lab::boot::run_command(
        dks_lab::qemu::command(&qemu, &config, None),
        config.timeout,
        |_| {},
    )
    .unwrap();
    assert_eq!(outcome.verdict.exit_code(), 4, "{}", outcome.serial_log);
    let description = outcome.describe();
    assert!(
        description
            .contains("[config error] command line: 2002 bytes, longer than the kernel accepts"),
        "{description}\n{}",
        outcome.serial_log
    );
    assert!(
        description.contains(&format!("at most {MAX_CMDLINE_BYTES} bytes")),
        "{description}"
    );
}

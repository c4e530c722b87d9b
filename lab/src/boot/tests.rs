use dks_protocol::exit::ExitCode;

use super::*;

/// A command that prints `script`'s output on stdout like a kernel console.
fn shell(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    command
}

const SUCCESS_SCRIPT: &str = r#"
        echo 'free text'
        echo '@dks/1 {"log":{"text":"hi"}}'
        echo 'qemu warning' >&2
        echo '@dks/1 {"exit":{"code":"success","reason":"done"}}'
        exit 33
    "#;

#[test]
fn a_clean_exit_with_status_33_is_success_and_streams_lines() {
    assert_eq!(ExitCode::Success.qemu_status(), 33);
    let mut streamed = Vec::new();
    let outcome = run_command(shell(SUCCESS_SCRIPT), Duration::from_secs(20), |line| {
        streamed.push(line.clone())
    })
    .unwrap();
    assert_eq!(outcome.verdict, Verdict::Success, "{}", outcome.describe());
    assert_eq!(outcome.end, ProcessEnd::Exited(33));
    assert_eq!(streamed, outcome.lines);
    assert_eq!(outcome.lines.len(), 3);
    assert_eq!(outcome.records().count(), 2);
    assert_eq!(outcome.lines[0], ConsoleLine::Text("free text".into()));
    assert!(outcome.serial_log.starts_with("free text\n@dks/1 "));
    assert_eq!(outcome.qemu_stderr, "qemu warning\n");
}

#[test]
fn status_zero_without_exit_is_a_triple_fault() {
    let outcome = run_command(
        shell(r#"echo '@dks/1 {"log":{"text":"about to fault"}}'; exit 0"#),
        Duration::from_secs(20),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        outcome.verdict,
        Verdict::NoKernelExit(ProcessEnd::Exited(0))
    );
    assert!(outcome.describe().contains("triple fault"));
}

#[test]
fn a_qemu_stopped_by_a_signal_is_not_a_triple_fault() {
    let outcome = run_command(
        shell(
            r#"echo '@dks/1 {"log":{"text":"working"}}'
                   echo 'qemu-system-x86_64: terminating on signal 15 from pid 4242 (kill)' >&2
                   exit 0"#,
        ),
        Duration::from_secs(20),
        |_| {},
    )
    .unwrap();
    assert_eq!(outcome.end, ProcessEnd::StoppedBySignal(15));
    assert_eq!(outcome.verdict.exit_code(), 7);
    let description = outcome.describe();
    assert!(
        description.contains("stopped by signal 15 (SIGTERM)"),
        "{description}"
    );
    assert!(description.contains("from pid 4242"), "{description}");
    assert!(
        !description.contains("a triple fault or reset"),
        "{description}"
    );
    assert_eq!(stopping_signal("qemu: terminating on signal 2"), Some(2));
    assert_eq!(stopping_signal("qemu: warning: something"), None);
}

/// Returns whether `pid` runs (a zombie does not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn the_whole_process_group_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let outcome = run_command(
        shell(&format!(
            "sleep 600 & echo $! > '{}'; echo started; exec sleep 600",
            pid_file.display()
        )),
        Duration::from_secs(2),
        |_| {},
    )
    .unwrap();
    assert!(matches!(outcome.verdict, Verdict::TimedOut(_)));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid.trim()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid.trim()), "the stand-in's child {pid} survived");
}

#[test]
fn a_process_that_never_ends_is_killed_at_the_timeout() {
    let start = Instant::now();
    let outcome = run_command(
        shell("echo started; exec sleep 600"),
        Duration::from_secs(2),
        |_| {},
    )
    .unwrap();
    assert_eq!(outcome.verdict, Verdict::TimedOut(Duration::from_secs(2)));
    assert_eq!(outcome.lines, [ConsoleLine::Text("started".into())]);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_process_that_closes_its_output_and_hangs_is_killed_too() {
    let outcome = run_command(
        shell("exec >&- 2>&-; exec sleep 600"),
        Duration::from_secs(2),
        |_| {},
    )
    .unwrap();
    assert!(matches!(outcome.verdict, Verdict::TimedOut(_)));
}

#[test]
fn a_failure_status_is_reported_with_the_kernel_s_detail() {
    let outcome = run_command(
            shell(
                r#"echo '@dks/1 {"config_error":{"key":"no_such_key","value":"1","problem":"unknown key","accepted":"test"}}'
                   echo '@dks/1 {"exit":{"code":"config_error","reason":"bad command line"}}'
                   exit 37"#,
            ),
            Duration::from_secs(20),
            |_| {},
        )
        .unwrap();
    assert_eq!(outcome.verdict, Verdict::ConfigError);
    let description = outcome.describe();
    assert!(
        description.contains("no_such_key=1: unknown key"),
        "{description}"
    );
}

#[test]
fn a_missing_program_is_a_host_error() {
    let error = run_command(
        Command::new("/no/such/qemu"),
        Duration::from_secs(1),
        |_| {},
    )
    .unwrap_err();
    assert!(format!("{error:#}").contains("/no/such/qemu"));
}

//! The specs, the commands, and the driver against a fake QEMU monitor played by a thread.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use dks_protocol::record::{Boot, MachineCheck};
use serde_json::Value;

use super::spec::{MCG_MCIP, MCG_RIPV, MCI_PCC, MCI_S, MCI_UC, MCI_VAL};
use super::*;

#[test]
fn nmi_specs_parse_strictly() {
    for (text, spec) in [
        ("1", NmiSpec::Count(1)),
        ("10000", NmiSpec::Count(10_000)),
        ("1000000", NmiSpec::Count(MAX_NMI_COUNT)),
        ("1/s", NmiSpec::Rate(1)),
        ("50/s", NmiSpec::Rate(50)),
        ("10000/s", NmiSpec::Rate(MAX_NMI_RATE)),
    ] {
        assert_eq!(text.parse::<NmiSpec>(), Ok(spec), "{text}");
        assert_eq!(spec.to_string(), text);
    }
    for text in [
        "",
        "0",
        "0/s",
        "-1",
        "+5",
        "1000001",
        "10001/s",
        "5/m",
        "/s",
        "5 /s",
        "1e3",
        "x",
        "99999999999999999999",
    ] {
        let error = text.parse::<NmiSpec>().unwrap_err();
        assert!(error.contains(&format!("{text:?}")), "{error}");
        assert!(error.contains("accepted: COUNT"), "{error}");
    }
}

#[test]
fn mce_specs_parse_strictly() {
    for (text, kind, count) in [
        ("corrected:1", MceKind::Corrected, 1),
        ("corrected:100", MceKind::Corrected, 100),
        ("recoverable:10000", MceKind::Recoverable, MAX_MCE_COUNT),
        ("fatal", MceKind::Fatal, 1),
    ] {
        let spec: MceSpec = text.parse().unwrap();
        assert_eq!(spec, MceSpec { kind, count }, "{text}");
        assert_eq!(spec.to_string(), text);
    }
    for text in [
        "",
        "corrected",
        "corrected:",
        "corrected:0",
        "corrected:10001",
        "corrected:-1",
        "fatal:1",
        "Fatal",
        "uncorrected:1",
        "corrected:1:2",
        "recoverable: 1",
    ] {
        let error = text.parse::<MceSpec>().unwrap_err();
        assert!(error.contains(&format!("{text:?}")), "{error}");
        assert!(error.contains("accepted: corrected:COUNT"), "{error}");
    }
}

#[test]
fn machine_checks_carry_the_status_bits_of_their_kind() {
    let (corrected, mcg) = MceKind::Corrected.status();
    assert_eq!(corrected & MCI_UC, 0, "QEMU raises #MC only with UC");
    assert_eq!(corrected & MCI_VAL, MCI_VAL);
    assert_eq!(mcg, 0);
    let (recoverable, mcg) = MceKind::Recoverable.status();
    assert_eq!(recoverable & (MCI_UC | MCI_PCC | MCI_S), MCI_UC | MCI_S);
    assert_eq!(mcg, MCG_MCIP | MCG_RIPV);
    let (fatal, mcg) = MceKind::Fatal.status();
    assert_eq!(fatal & (MCI_UC | MCI_PCC), MCI_UC | MCI_PCC);
    assert_eq!(mcg & MCG_RIPV, 0, "a fatal error cannot resume");
    let (command, address) = MceKind::Corrected.command(2, 1);
    assert_eq!(command, "mce 1 1 0x940000000000008f 0x0 0x12342000 0");
    assert_eq!(address, MCE_ADDRESS + 2 * 4096);
    assert_eq!(
        MceKind::Fatal.command(0, 0).0,
        "mce 0 1 0xb60000000000008f 0x6 0x12340000 0"
    );
}

/// An answer that makes the fake monitor close the connection instead (QEMU exiting).
const HANG_UP: &str = "<hang up>";

/// A fake QEMU monitor: connects to the driver's socket, greets, and for every command sends
/// it (as JSON) to the test and answers with `answer(command)`.
fn fake_monitor(
    path: PathBuf,
    answer: impl Fn(&Value) -> String + Send + 'static,
) -> (std::thread::JoinHandle<()>, Receiver<Value>) {
    let (commands, received) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let stream = UnixStream::connect(path).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writeln!(
            writer,
            r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#
        )
        .unwrap();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let command: Value = serde_json::from_str(&line).unwrap();
            let reply = answer(&command);
            if commands.send(command).is_err()
                || reply == HANG_UP
                || writeln!(writer, "{reply}").is_err()
            {
                return;
            }
        }
    });
    (handle, received)
}

fn ok(_: &Value) -> String {
    r#"{"return": {}}"#.into()
}

/// Answers HMP with `said`, everything else with an empty return.
fn hmp_says(said: &'static str) -> impl Fn(&Value) -> String {
    move |command| {
        if command["execute"] == "human-monitor-command" {
            serde_json::json!({ "return": said }).to_string()
        } else {
            ok(command)
        }
    }
}

fn boot(cpus: u32) -> Record<'static> {
    Record::Boot(Boot {
        version: Cow::Borrowed("0.1.0"),
        cpus,
        memory_kib: 1,
        frames_total: 1,
        frames_free: 1,
        cmdline: Cow::Borrowed(""),
    })
}

fn machine_check(cpu: u32, bank: u32) -> Record<'static> {
    Record::MachineCheck(MachineCheck {
        cpu,
        bank,
        status: 0,
        address: 0,
        misc: 0,
        mcg_status: 0,
        severity: Cow::Borrowed("corrected"),
        found_by: Cow::Borrowed("poll"),
    })
}

fn start(
    plan: Plan,
    timing: Timing,
    answer: impl Fn(&Value) -> String + Send + 'static,
) -> (Driver, Receiver<Value>, std::thread::JoinHandle<()>) {
    let socket = MonitorSocket::new().unwrap();
    let path = socket.path().to_owned();
    let driver = Driver::start(plan, socket, timing).unwrap();
    let (monitor, commands) = fake_monitor(path, answer);
    (driver, commands, monitor)
}

fn next(commands: &Receiver<Value>) -> Value {
    commands
        .recv_timeout(Duration::from_secs(20))
        .expect("the driver sent a command")
}

fn quiet_for(commands: &Receiver<Value>, time: Duration) -> bool {
    matches!(
        commands.recv_timeout(time),
        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected)
    )
}

#[test]
fn nmis_wait_for_the_boot_record_and_stop_at_their_count() {
    let plan = Plan {
        nmi: Some(NmiSpec::Count(25)),
        mce: None,
    };
    let (driver, commands, monitor) = start(plan, Timing::default(), ok);
    assert_eq!(next(&commands)["execute"], "qmp_capabilities");
    assert!(
        quiet_for(&commands, Duration::from_millis(300)),
        "nothing may be injected before the kernel's Boot record"
    );
    driver.notify(&boot(2));
    for _ in 0..25 {
        assert_eq!(next(&commands)["execute"], "inject-nmi");
    }
    assert!(
        quiet_for(&commands, Duration::from_millis(200)),
        "more than 25 NMIs"
    );
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(injected.nmis, 25);
    assert_eq!(injected.shortfall, None);
    assert_eq!(injected.notes, Vec::<String>::new());
}

#[test]
fn each_machine_check_waits_for_the_report_of_the_previous_one() {
    let plan = Plan {
        nmi: None,
        mce: Some(MceSpec {
            kind: MceKind::Corrected,
            count: 3,
        }),
    };
    let (driver, commands, monitor) = start(plan, Timing::default(), hmp_says(""));
    assert_eq!(next(&commands)["execute"], "qmp_capabilities");
    driver.notify(&boot(2));
    for (index, cpu) in [(0u32, 0u32), (1, 1), (2, 0)] {
        let command = next(&commands);
        let (expected, _) = MceKind::Corrected.command(index, cpu);
        assert_eq!(command["arguments"]["command-line"], expected);
        assert!(
            quiet_for(&commands, Duration::from_millis(300)),
            "machine check {index} was followed before the kernel reported it"
        );
        // A report from another bank or CPU is not this one's.
        driver.notify(&machine_check(cpu, MCE_BANK + 1));
        driver.notify(&machine_check(cpu + 7, MCE_BANK));
        assert!(quiet_for(&commands, Duration::from_millis(200)));
        driver.notify(&machine_check(cpu, MCE_BANK));
    }
    assert!(
        quiet_for(&commands, Duration::from_millis(200)),
        "a fourth machine check"
    );
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(
        (injected.machine_checks, injected.machine_checks_reported),
        (3, 3)
    );
    assert_eq!(injected.shortfall, None);
}

#[test]
fn an_unreported_machine_check_stops_the_injection_with_a_shortfall() {
    let plan = Plan {
        nmi: None,
        mce: Some(MceSpec {
            kind: MceKind::Recoverable,
            count: 3,
        }),
    };
    let timing = Timing {
        report: Duration::from_millis(300),
        ..Timing::default()
    };
    let (driver, commands, monitor) = start(plan, timing, hmp_says(""));
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    let _first = next(&commands);
    assert!(quiet_for(&commands, Duration::from_millis(1000)));
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(
        (injected.machine_checks, injected.machine_checks_reported),
        (1, 0)
    );
    let shortfall = injected.shortfall.unwrap();
    assert!(
        shortfall.contains("did not report recoverable machine check 1 of 3 (cpu 0, bank 1)"),
        "{shortfall}"
    );
}

#[test]
fn what_qemu_says_about_a_machine_check_is_kept() {
    let fatal = Plan {
        nmi: None,
        mce: Some(MceSpec {
            kind: MceKind::Fatal,
            count: 1,
        }),
    };
    // A kernel without CR4.MCE: QEMU resets the machine, the injection happened.
    let said = "CPU 0: MCE capability is not enabled, raising triple fault";
    let (driver, commands, monitor) = start(fatal, Timing::default(), hmp_says(said));
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    assert!(
        next(&commands)["arguments"]["command-line"]
            .as_str()
            .unwrap()
            .starts_with("mce 0 1 0xb6")
    );
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(injected.machine_checks, 1);
    assert_eq!(injected.shortfall, None);
    assert!(injected.notes[0].contains(said), "{:?}", injected.notes);

    // A bank the guest disabled: nothing happened, the boot cannot be a success.
    let said = "CPU 0: Uncorrected error reporting disabled for bank 1";
    let (driver, commands, monitor) = start(fatal, Timing::default(), hmp_says(said));
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    let _mce = next(&commands);
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(injected.machine_checks, 0);
    assert!(injected.shortfall.unwrap().contains(said));

    // A command QEMU calls invalid is a host problem.
    let (driver, commands, monitor) = start(
        fatal,
        Timing::default(),
        hmp_says("Invalid MCE bank number"),
    );
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    let _mce = next(&commands);
    let deadline = Instant::now() + Duration::from_secs(20);
    while driver.failure().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        driver
            .failure()
            .unwrap()
            .contains("Invalid MCE bank number")
    );
    drop(driver);
    monitor.join().unwrap();
}

#[test]
fn a_qemu_that_never_connects_is_a_failure_and_the_folder_goes() {
    let socket = MonitorSocket::new().unwrap();
    let dir = socket.dir().to_owned();
    let timing = Timing {
        connect: Duration::from_millis(200),
        ..Timing::default()
    };
    let driver = Driver::start(
        Plan {
            nmi: Some(NmiSpec::Rate(10)),
            mce: None,
        },
        socket,
        timing,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while driver.failure().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let failure = driver.failure().unwrap();
    assert!(failure.contains("did not connect"), "{failure}");
    assert_eq!(driver.finish().nmis, 0);
    assert!(!dir.exists(), "the socket's folder is removed");
}

#[test]
fn the_end_of_the_boot_ends_a_rate_and_is_noted_for_a_count() {
    {
        let rate = 20;
        let plan = Plan {
            nmi: Some(NmiSpec::Rate(rate)),
            mce: None,
        };
        let (driver, commands, monitor) = start(plan, Timing::default(), ok);
        driver.notify(&boot(1));
        let _capabilities = next(&commands);
        let _first = next(&commands);
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let injected = driver.finish();
        let elapsed = start.elapsed();
        monitor.join().unwrap();
        assert!(injected.nmis >= 1);
        // Never faster than asked: 1 at the start, then one per 1/rate s.
        let allowed = 2 + (elapsed.as_secs_f64() * f64::from(rate)) as u64;
        assert!(
            injected.nmis <= allowed,
            "{} NMIs in {elapsed:?}",
            injected.nmis
        );
        // A rate has no count to fall short of.
        assert_eq!(injected.notes, Vec::<String>::new());
    }

    // A count the boot cut short says so.
    let plan = Plan {
        nmi: Some(NmiSpec::Count(1_000_000)),
        mce: None,
    };
    let slow = |command: &Value| {
        std::thread::sleep(Duration::from_millis(5));
        ok(command)
    };
    let (driver, commands, monitor) = start(plan, Timing::default(), slow);
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    let _first = next(&commands);
    let injected = driver.finish();
    monitor.join().unwrap();
    assert!(injected.nmis < 1_000_000);
    assert!(
        injected.notes[0].starts_with("the boot ended after "),
        "{:?}",
        injected.notes
    );
}

#[test]
fn handled_counts_come_from_the_last_trap_stat_and_the_machine_check_records() {
    use dks_protocol::record::TrapStat;
    let stat = |nmis| {
        Record::TrapStat(TrapStat {
            nmis,
            nmis_nested: 1,
            machine_check_exceptions: 2,
            mce_corrected: 0,
            mce_recoverable: 0,
        })
    };
    let records = [stat(5), machine_check(0, 1), machine_check(1, 1), stat(9)];
    let handled = Handled::from_records(&records);
    assert_eq!(handled.nmis, Some(9));
    assert_eq!(handled.machine_check_exceptions, Some(2));
    assert_eq!(handled.mce_corrected, 2);
    assert_eq!(Handled::from_records(&[]).nmis, None);
}

#[test]
fn a_fatal_machine_check_whose_answer_is_lost_counts_when_the_kernel_reports_it() {
    let fatal = Plan {
        nmi: None,
        mce: Some(MceSpec {
            kind: MceKind::Fatal,
            count: 1,
        }),
    };
    let hang_up_on_hmp = |command: &Value| {
        if command["execute"] == "human-monitor-command" {
            HANG_UP.to_owned()
        } else {
            ok(command)
        }
    };
    // The kernel reports the error and stops; QEMU exits before answering.
    let (driver, commands, monitor) = start(fatal, Timing::default(), hang_up_on_hmp);
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    let _mce = next(&commands);
    driver.notify(&machine_check(0, 1));
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(injected.machine_checks, 1, "{:?}", injected.notes);
    assert_eq!(injected.machine_checks_reported, 1);
    assert_eq!(injected.shortfall, None);
    assert!(
        injected
            .notes
            .iter()
            .any(|n| n.contains("QEMU exited before answering fatal machine check 1 of 1")),
        "{:?}",
        injected.notes
    );

    // No report: the command may never have arrived, so nothing counts as injected.
    let (driver, commands, monitor) = start(fatal, Timing::default(), hang_up_on_hmp);
    driver.notify(&boot(1));
    let _capabilities = next(&commands);
    let _mce = next(&commands);
    let injected = driver.finish();
    monitor.join().unwrap();
    assert_eq!(injected.machine_checks, 0, "{:?}", injected.notes);
    assert!(
        injected
            .notes
            .iter()
            .any(|n| n.contains("closed its monitor") || n.contains("monitor connection ended")),
        "{:?}",
        injected.notes
    );
}

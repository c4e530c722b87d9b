//! Fault injection end to end (issue 9): the `dks` binary against a fake QEMU written in Perl
//! (Debian's essential `perl-base` has Unix sockets) that connects to the monitor socket it is
//! given, answers QMP, and plays a kernel that reports what it received; then the real kernel
//! under the real QEMU, where an injected NMI or machine check must reach the guest.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{FakeQemu, text};
use serde_json::Value;

/// The Perl fake. Without a monitor (`-chardev`), it runs `fake.sh` beside it instead. With
/// one, it checks the socket's folder (mode and owner into `monitor.txt`), connects, greets,
/// prints a Boot record for `-smp` CPUs, answers every command: `inject-nmi` is counted, an
/// `mce` is reported as a MachineCheck record of its CPU and bank (severity from the UC bit).
/// After 1 s without a command (or 3 s in all) it prints a TrapStat record (NMIs × CPUs), then
/// runs `fake.sh` for the rest of the boot.
const PERL_FAKE: &str = r#"#!/usr/bin/perl
use strict;
use IO::Socket::UNIX;
use IO::Select;
use File::Basename;
$| = 1;
my $dir = dirname($0);
my ($path, $cpus) = (undef, 1);
for my $i (0 .. $#ARGV - 1) {
    if ($ARGV[$i] eq '-chardev') { ($path) = $ARGV[$i + 1] =~ /path=(.*)$/; $path =~ s/,,/,/g; }
    if ($ARGV[$i] eq '-smp') { $cpus = $ARGV[$i + 1]; }
}
exec("$dir/fake.sh", @ARGV) unless defined $path;
my @st = stat(dirname($path));
open(my $m, '>', "$dir/monitor.txt"); printf $m "%o %d %s\n", $st[2] & 07777, $st[4], dirname($path); close($m);
my $qmp = IO::Socket::UNIX->new(Peer => $path) or die "cannot connect to $path: $!";
$qmp->autoflush(1);
print $qmp qq({"QMP": {"version": {}, "capabilities": []}}\n);
print qq(\@dks/1 {"boot":{"version":"0.1.0","cpus":$cpus,"memory_kib":1,"frames_total":1,"frames_free":1,"cmdline":"fake"}}\n);
my $nmis = 0;
my $select = IO::Select->new($qmp);
my $end = time + 3;
while (time < $end && $select->can_read(1.0)) {
    my $line = <$qmp>;
    last unless defined $line;
    if ($line =~ /"inject-nmi"/) {
        $nmis++;
        print $qmp qq({"return": {}}\n);
    } elsif ($line =~ /"command-line":"mce (\d+) (\d+) 0x([0-9a-f])[0-9a-f]* /) {
        my $severity = (hex($3) & 2) ? "recoverable" : "corrected";
        print qq(\@dks/1 {"machine_check":{"cpu":$1,"bank":$2,"status":0,"address":0,"misc":0,"mcg_status":0,"severity":"$severity","found_by":"poll"}}\n);
        print $qmp qq({"return": ""}\n);
    } else {
        print $qmp qq({"return": {}}\n);
    }
}
my $handled = $nmis * $cpus;
print qq(\@dks/1 {"trap_stat":{"nmis":$handled,"nmis_nested":0,"machine_check_exceptions":0,"mce_corrected":0,"mce_recoverable":0}}\n);
exec("$dir/fake.sh", @ARGV);
"#;

const EXIT_SUCCESS: &str = r#"echo '@dks/1 {"exit":{"code":"success","reason":"fake"}}'
exit 33"#;

/// A fake QEMU folder: the Perl fake as `qemu-system-x86_64`, `sh_body` as `fake.sh`.
fn perl_fake(name: &str, sh_body: &str) -> FakeQemu {
    let qemu = FakeQemu::new(name, "");
    fs::write(qemu.dir.join("qemu-system-x86_64"), PERL_FAKE).unwrap();
    let fake_sh = qemu.dir.join("fake.sh");
    fs::write(
        &fake_sh,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n{sh_body}\n",
            qemu.dir.join("args.txt").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake_sh, fs::Permissions::from_mode(0o755)).unwrap();
    qemu
}

/// Checks what the fake saw of the monitor socket's folder, and that it is gone.
fn assert_private_monitor(qemu: &FakeQemu, tmp: &Path) {
    let seen = fs::read_to_string(qemu.dir.join("monitor.txt")).expect("the fake connected");
    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(fields[0], "700", "the monitor's folder mode: {seen}");
    assert_eq!(
        fields[1],
        nix::unistd::getuid().as_raw().to_string(),
        "owner: {seen}"
    );
    assert!(Path::new(fields[2]).starts_with(tmp), "{seen}");
    assert!(!Path::new(fields[2]).exists(), "the folder stayed: {seen}");
    assert_eq!(
        fs::read_dir(tmp).unwrap().count(),
        0,
        "files left in TMPDIR"
    );
}

fn run_dks(qemu: &FakeQemu, tmp: &Path, args: &[&str]) -> Output {
    qemu.dks()
        .env("TMPDIR", tmp)
        .arg("run")
        .arg("--kernel")
        .arg(qemu.kernel())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_injects_nmis_and_machine_checks_and_reports_both_counts() {
    let qemu = perl_fake("inject-run", EXIT_SUCCESS);
    let tmp = qemu.dir.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let output = run_dks(
        &qemu,
        &tmp,
        &[
            "--cpus",
            "2",
            "--inject-nmi",
            "40",
            "--inject-mce",
            "corrected:5",
            "--",
            "workload=mixed",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dks: injected 40 NMI(s) (asked: 40); the kernel handled 80 (0 nested; each NMI reaches every one of 2 CPU(s))"),
        "{}",
        text(&output)
    );
    assert!(
        stderr.contains(
            "dks: injected 5 corrected machine check(s) (asked: corrected:5); the kernel reported 5"
        ),
        "{}",
        text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("[machine check]").count(), 5, "{stdout}");
    assert_private_monitor(&qemu, &tmp);
}

#[test]
fn a_boot_without_injection_has_no_monitor() {
    let qemu = perl_fake("inject-none", EXIT_SUCCESS);
    let tmp = qemu.dir.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let output = run_dks(&qemu, &tmp, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(!qemu.args().iter().any(|a| a == "-chardev" || a == "-mon"));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("injected"));
}

#[test]
fn compare_injects_into_workload_boots_only_and_writes_the_counts() {
    // The cost boot and the rest of the workload boot come from this script (no monitor).
    let script = r#"case "$*" in
*bench=costs*) printf '%s\n' "$@" > "$(dirname "$0")/cost-args.txt"; cat "$(dirname "$0")/costs.txt"; exit 33;;
*) cat "$(dirname "$0")/workload.txt"; exit 33;;
esac"#;
    let qemu = perl_fake("inject-compare", script);
    let tmp = qemu.dir.join("tmp");
    fs::create_dir(&tmp).unwrap();
    fs::write(
        qemu.dir.join("costs.txt"),
        r#"@dks/1 {"cost":{"what":"create","policy":"static","samples":1,"total":1000,"min":1000,"median":1000,"max":1000,"instructions":true,"log2_histogram":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}
@dks/1 {"exit":{"code":"success","reason":"fake"}}
"#,
    )
    .unwrap();
    fs::write(
        qemu.dir.join("workload.txt"),
        r#"@dks/1 {"policy_stat":{"policy":"static","threads_created":4,"threads_live":0,"stack_kib_now":0,"stack_kib_peak":64,"faults":0,"fatal":0,"refills":0,"refill_failures":0,"guard_hits":0,"admit_waits":0,"admit_wait_us_total":0,"admit_wait_us_max":0,"killed":0,"reclaimed":0,"high_water_mean_bytes":0,"high_water_max_bytes":0}}
@dks/1 {"exit":{"code":"success","reason":"fake"}}
"#,
    )
    .unwrap();
    fs::write(
        qemu.dir.join("small.toml"),
        r#"name = "small"
description = "four threads"
duration_ms = 1000
sample_ms = 100
max_stack = "16K"
memory = "256M"
cpus = 2

[[group]]
name = "deep"
policy = "each"
threads = 4
lifetime = "long"
depth = { fixed = 9000 }
sleep_depth = { fixed = 512 }
"#,
    )
    .unwrap();
    let json = qemu.dir.join("out.json");
    let output = qemu
        .dks()
        .env("TMPDIR", &tmp)
        .arg("compare")
        .arg("--kernel")
        .arg(qemu.kernel())
        .arg("--scenario")
        .arg(qemu.dir.join("small.toml"))
        .args([
            "--inject-nmi",
            "30",
            "--inject-mce",
            "recoverable:3",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let value: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let injection = &value["injection"];
    assert_eq!(injection["nmi"], "30", "{injection}");
    assert_eq!(injection["mce"], "recoverable:3");
    let boots = injection["boots"].as_array().unwrap();
    assert_eq!(boots.len(), 1, "{injection}");
    assert_eq!(boots[0]["policies"], serde_json::json!(["static"]));
    assert_eq!(boots[0]["cpus"], 2);
    assert_eq!(boots[0]["nmis_injected"], 30);
    assert_eq!(boots[0]["nmis_handled"], 60);
    assert_eq!(boots[0]["machine_checks_injected"], 3);
    assert_eq!(boots[0]["machine_checks_reported"], 3);
    assert_eq!(boots[0]["shortfall"], Value::Null);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("injected into the boot of static: 30 NMIs injected (asked: 30), 60 handled; 3 machine checks injected (asked: recoverable:3), 3 reported"),
        "{stdout}"
    );
    assert_private_monitor(&qemu, &tmp);
    // The cost boot had no monitor; the workload boot had one.
    let cost_args = fs::read_to_string(qemu.dir.join("cost-args.txt")).unwrap();
    assert!(cost_args.contains("bench=costs") && !cost_args.contains("-chardev"));
    assert!(qemu.args().iter().any(|a| a == "-chardev"));
}

// The real kernel under the real QEMU from here on. Until the kernel handles NMIs and machine
// checks, an NMI ends the boot with an `exception` record for vector 2 and an uncorrected
// machine check makes QEMU reset the machine (CR4.MCE clear); once it does, the boot succeeds
// and the kernel counts them. Either way the fault must have reached the guest.

fn real_run(args: &[&str]) -> Output {
    let kernel = dks_lab::kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    common::dks()
        .arg("run")
        .arg("--kernel")
        .arg(kernel)
        .args(["--timeout", "300"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn an_injected_nmi_reaches_the_real_kernel() {
    let output = real_run(&["--inject-nmi", "1", "--", "workload=mixed"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dks: injected 1 NMI(s) (asked: 1)"),
        "{}",
        text(&output)
    );
    let stopped_on_it = output.status.code() == Some(6) && stdout.contains("[exception] NMI cpu0");
    let handled_it = output.status.code() == Some(0)
        && !stderr.contains("the kernel handled 0 ")
        && stderr.contains("the kernel handled ");
    assert!(
        stopped_on_it || handled_it,
        "the NMI did not reach the kernel\n{}",
        text(&output)
    );
}

#[test]
fn an_injected_fatal_machine_check_reaches_the_real_kernel() {
    let output = real_run(&["--inject-mce", "fatal", "--", "workload=mixed"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dks: injected 1 fatal machine check(s) (asked: fatal)"),
        "{}",
        text(&output)
    );
    let reset = output.status.code() == Some(7)
        && stderr.contains("MCE capability is not enabled, raising triple fault");
    let reported = output.status.code() != Some(0) && stdout.contains("[machine check]");
    assert!(
        reset || reported,
        "the machine check did not reach the kernel\n{}",
        text(&output)
    );
}

//! Many threads, and threads that cannot be made, against the real kernel (issue 14).
//!
//! - Every cause of a refused thread creation (no stack slot, no memory for the stack, no
//!   room in the kernel heap, the group's stack limit) ends the workload boot in a
//!   `spawn_failure` record naming the group, how many threads were created and why, and in a
//!   failed boot: never a panic, never a success with fewer threads than planned.
//! - 20,000 threads in one boot (beyond the 8,192 stack slots the kernel has by default and
//!   the 6,000 threads a plan was once limited to): every thread runs, and every frame, slot
//!   and stack page comes back when they have exited.
//! - `dks compare` on a scenario that says `out_of_memory = "report"` shows the policy that ran
//!   out of memory as a line saying how far it got, and compares the others; the same scenario
//!   without that key stops with exit 3 and names the group and the cause.
//!
//! Each plan is built from a scenario by the lab's own code (`scenario::parse`, `boots`,
//! `kernel_args`), so the boots get the `slots=` the lab computes.

mod common;

use std::fs;
use std::time::Duration;

use common::{dks, scratch_dir, text};
use dks_core::Policy;
use dks_lab::boot::{self, BootOutcome};
use dks_lab::config::{BootConfig, MemorySize};
use dks_lab::kernel;
use dks_lab::outcome::Verdict;
use dks_lab::scenario::{self, Origin};
use dks_protocol::exit::ExitCode;
use dks_protocol::record::{MemoryBalance, Record, SpawnFailure, WorkloadStat};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(300);

/// A scenario of one group of `threads` long-lived threads under `each` policy, asleep for
/// long between rounds (a stop wakes them).
fn scenario_text(name: &str, threads: u32, memory: &str, extra: &str) -> String {
    format!(
        r#"
name = "{name}"
duration_ms = 1000
sample_ms = 200
max_stack = "16K"
memory = "{memory}"
cpus = 2
seed = 3
{extra}

[[group]]
name = "crowd"
policy = "each"
threads = {threads}
lifetime = "long"
calls = 1
depth = "linux-census-live-used"
sleep_depth = "linux-census-live-sleeping"
sleep_ms = 60000
wake = "timer"
"#
    )
}

/// Boots the plan of `text` under `policy` with the lab's kernel arguments, `replace`d ones
/// (same key) and `extra` ones.
fn boot_plan(name: &str, text: &str, policy: Policy, replace: &[&str]) -> BootOutcome {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let s = scenario::parse(text, Origin::Builtin(name.into())).expect("a good scenario");
    let boots = s.boots(&[policy]).expect("its plan");
    assert_eq!(boots.len(), 1);
    let dir = scratch_dir(name);
    let plan = dir.join("plan.json");
    fs::write(&plan, serde_json::to_vec(&boots[0].plan).unwrap()).unwrap();
    let mut args = s.kernel_args(&boots[0].plan);
    for arg in replace {
        let key = arg.split('=').next().unwrap();
        args.retain(|a| a.split('=').next() != Some(key));
        args.push((*arg).to_owned());
    }
    let config = BootConfig {
        kernel_args: args,
        cpus: s.cpus,
        memory: s.memory,
        timeout: TIMEOUT,
        initrd: Some(plan),
        ..BootConfig::new(kernel)
    };
    boot::run(&config, |_| {}).unwrap_or_else(|e| panic!("{e:#}"))
}

fn panics(outcome: &BootOutcome) -> Vec<String> {
    outcome
        .records()
        .filter_map(|r| match r {
            Record::Panic(p) => Some(format!("{}:{}: {}", p.file, p.line, p.message)),
            _ => None,
        })
        .collect()
}

fn exit_code(outcome: &BootOutcome) -> Option<ExitCode> {
    outcome.records().find_map(|r| match r {
        Record::Exit(e) => Some(e.code),
        _ => None,
    })
}

/// The one `spawn_failure` record of a boot that must have failed for want of threads.
fn refused(outcome: &BootOutcome) -> SpawnFailure<'static> {
    let log = &outcome.serial_log;
    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert!(panics(outcome).is_empty(), "{:?}\n{tail}", panics(outcome));
    assert_eq!(outcome.verdict, Verdict::KernelFailure, "{log}");
    assert_eq!(exit_code(outcome), Some(ExitCode::Failure), "{log}");
    let failures: Vec<SpawnFailure<'static>> = outcome
        .records()
        .filter_map(|r| match r {
            Record::SpawnFailure(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "one group, one record\n{log}");
    let failure = failures.into_iter().next().unwrap();
    assert_eq!(failure.group, "crowd", "{log}");
    // The boot's one-line description names the cause (what `dks` prints).
    let described = outcome.describe();
    assert!(described.contains("group crowd"), "{described}");
    failure
}

#[test]
fn no_free_stack_slot_is_a_spawn_failure_naming_it() {
    let text = scenario_text("no-slot", 200, "256M", "");
    let outcome = boot_plan("no-slot", &text, Policy::Fault, &["slots=64"]);
    let f = refused(&outcome);
    let log = &outcome.serial_log;
    assert_eq!(f.policy, Policy::Fault);
    assert_eq!(f.planned, 200, "{log}");
    // The kernel's own threads hold a few of the 64 slots; every other one went to the group.
    assert!((48..64).contains(&f.created), "{f:?}\n{log}");
    assert_eq!(f.no_slot, 200 - f.created, "every other creation: {f:?}");
    assert_eq!((f.out_of_memory, f.group_limit), (0, 0), "{f:?}");
    assert!(outcome.describe().contains("with every stack slot in use"));
}

#[test]
fn no_memory_for_stacks_is_a_spawn_failure_saying_how_far_the_group_got() {
    // 3,000 static stacks need 47 MiB; the guest has 48.
    let text = scenario_text("no-frames", 3000, "48M", "");
    let outcome = boot_plan("no-frames", &text, Policy::Static, &[]);
    let f = refused(&outcome);
    let log = &outcome.serial_log;
    assert!(f.created > 1000 && f.created < 3000, "{f:?}\n{log}");
    assert!(f.out_of_memory >= 1, "{f:?}");
    assert_eq!(
        f.created + f.out_of_memory + f.not_attempted,
        3000,
        "created, refused, or not tried once memory ran out: {f:?}"
    );
    assert_eq!((f.no_slot, f.group_limit), (0, 0), "{f:?}");
    assert_eq!(f.out_of_heap, 0, "the stacks ran out first: {f:?}\n{log}");
    assert!(outcome.describe().contains("for want of memory"));
}

#[test]
fn no_room_in_the_kernel_heap_is_a_spawn_failure_not_a_panic() {
    // 40,000 dynamic threads need 160 MiB of stack pages (there are) and about 9 MiB of heap
    // (about 240 bytes each), beside 1.9 MiB of slot metadata: more than the 8 MiB heap may
    // grow to.
    let text = scenario_text("no-heap", 40_000, "256M", "");
    let outcome = boot_plan("no-heap", &text, Policy::Fault, &["heap_limit_mib=8"]);
    let f = refused(&outcome);
    let log = &outcome.serial_log;
    assert!(f.created > 5000 && f.created < 40_000, "{f:?}\n{log}");
    assert!(f.out_of_memory >= 1 && f.out_of_heap >= 1, "{f:?}\n{log}");
    assert_eq!(
        f.created + f.out_of_memory + f.not_attempted,
        40_000,
        "{f:?}"
    );
    assert!(outcome.describe().contains("kernel heap could not grow"));
}

#[test]
fn the_groups_stack_limit_is_a_spawn_failure_naming_it() {
    // A static stack charges 4 pages: 100 pages hold 25 of the 50 threads.
    let text = scenario_text("group-limit", 50, "256M", "");
    let outcome = boot_plan("group-limit", &text, Policy::Static, &["group_limit=100"]);
    let f = refused(&outcome);
    assert_eq!((f.created, f.group_limit), (25, 25), "{f:?}");
    assert_eq!((f.no_slot, f.out_of_memory), (0, 0), "{f:?}");
    assert!(outcome.describe().contains("25 over the group's limit"));
}

#[test]
fn twenty_thousand_threads_all_run_and_give_their_memory_back() {
    let text = scenario_text("twenty-thousand", 20_000, "512M", "");
    let outcome = boot_plan("twenty-thousand", &text, Policy::Guaranteed, &[]);
    let log = &outcome.serial_log;
    let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
    assert_eq!(outcome.verdict, Verdict::Success, "{tail}");
    assert!(
        outcome
            .records()
            .any(|r| matches!(r, Record::Boot(b) if b.cmdline.contains("slots=20256"))),
        "the lab sized the stack region for the plan\n{tail}"
    );
    let work: Vec<&WorkloadStat> = outcome
        .records()
        .filter_map(|r| match r {
            Record::WorkloadStat(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(work.len(), 1, "{tail}");
    let w = work[0];
    assert_eq!(
        w.threads_finished, 20_000,
        "every thread ran to its end: {w:?}"
    );
    assert_eq!(w.threads_idle, 0, "every thread ran a path: {w:?}");
    assert!(w.paths >= 20_000, "{w:?}");
    assert_eq!(w.frames_corrupted, 0, "{w:?}");
    let overhead = outcome
        .records()
        .find_map(|r| match r {
            Record::ThreadOverhead(o) => Some(o.clone()),
            _ => None,
        })
        .expect("a thread_overhead record");
    assert_eq!(overhead.threads, 20_000, "{overhead:?}");
    assert!(
        overhead.heap_bytes > 0 && overhead.slot_bytes > 0,
        "{overhead:?}"
    );
    assert!(overhead.page_table_bytes > 0, "{overhead:?}");
    let balance: Vec<MemoryBalance> = outcome
        .records()
        .filter_map(|r| match r {
            Record::MemoryBalance(b) => Some(*b),
            _ => None,
        })
        .collect();
    assert_eq!(balance.len(), 1, "{tail}");
    let b = balance[0];
    assert_eq!(
        b.frames_after + b.heap_grown_frames,
        b.frames_before,
        "every frame came back (the heap keeps what it grew by): {b:?}"
    );
    assert_eq!(b.slots_after, b.slots_before, "{b:?}");
    assert_eq!(b.stack_kib_after, b.stack_kib_before, "{b:?}");
    // Run queues keep the capacity of their longest backlog: at most a word per thread.
    assert!(
        b.heap_bytes_after <= b.heap_bytes_before + 64 * 1024 + 8 * 20_000,
        "the heap came back (within the capacity queues keep): {b:?}"
    );
}

fn compare(dir: &std::path::Path, scenario: &str, json: &std::path::Path) -> std::process::Output {
    let kernel = kernel::build_once().unwrap_or_else(|e| panic!("{e:#}"));
    let path = dir.join("s.toml");
    fs::write(&path, scenario).unwrap();
    dks()
        .arg("compare")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--scenario")
        .arg(&path)
        .args(["--policies", "static,guaranteed"])
        .arg("--json")
        .arg(json)
        .output()
        .unwrap()
}

#[test]
fn compare_reports_a_policy_that_ran_out_of_memory_only_when_the_scenario_says_so() {
    let dir = scratch_dir("compare-oom");
    let json = dir.join("out.json");
    // Static cannot hold 3,000 stacks in 48 MiB; guaranteed can.
    let reported = scenario_text("oom", 3000, "48M", "out_of_memory = \"report\"");
    let output = compare(&dir, &reported, &json);
    let context = text(&output);
    assert_eq!(output.status.code(), Some(0), "{context}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("static: could not run the scenario: out of memory after "),
        "{context}"
    );
    assert!(
        stdout.contains(" of 3000 threads (no figures)"),
        "{context}"
    );
    let json: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let incomplete = json["incomplete"].as_array().expect("incomplete");
    assert_eq!(incomplete.len(), 1, "{json:#}");
    assert_eq!(incomplete[0]["policy"], "static");
    assert_eq!(incomplete[0]["threads_planned"], 3000);
    assert_eq!(incomplete[0]["cause"], "out_of_memory");
    let created = incomplete[0]["threads_created"].as_u64().unwrap();
    assert!(created > 1000 && created < 3000, "{json:#}");
    let policies = json["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "only guaranteed has figures: {json:#}");
    let g = &policies[0];
    assert_eq!(g["policy"], "guaranteed");
    assert_eq!(g["threads_at_end"], 3000, "{json:#}");
    let stack = g["stack_kib_per_thread"].as_f64().unwrap();
    let total = g["total_kib_per_thread"].as_f64().unwrap();
    assert!(stack >= 4.0 && total > stack, "{g:#}");
    assert_eq!(g["stack_peak_vs_static"], Value::Null, "no static figures");

    // Without the key, the same scenario is a failed comparison naming the group and cause.
    let _ = fs::remove_file(dir.join("out.json"));
    let strict = scenario_text("oom", 3000, "48M", "");
    let output = compare(&dir, &strict, &dir.join("out.json"));
    let context = text(&output);
    assert_eq!(output.status.code(), Some(3), "{context}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("group crowd (policy static)") && stderr.contains("for want of memory"),
        "{context}"
    );
    assert!(!dir.join("out.json").exists(), "no figures written");
}

#[test]
fn memory_sizes_of_the_largest_scenarios_are_accepted() {
    // 16 GiB and 1,000,000 threads per policy are within bounds; one more thread is not.
    let ok = scenario_text("big", 1_000_000, "16G", "");
    let s = scenario::parse(&ok, Origin::Builtin("big".into())).expect("accepted");
    assert_eq!(s.memory, MemorySize::from_mib(16 * 1024).unwrap());
    let boots = s.boots(&[Policy::Fault.to_owned()]).unwrap();
    // Long-lived threads only: the plan's threads and the kernel's own, no margin for churn.
    assert!(
        s.kernel_args(&boots[0].plan)
            .contains(&"slots=1000256".to_owned())
    );
    let too_many = scenario_text("big", 1_000_001, "16G", "");
    let error = scenario::parse(&too_many, Origin::Builtin("big".into())).unwrap_err();
    assert!(error.to_string().contains("from 1 to 1000000"), "{error}");
}

use dks_protocol::scenario::{Lifetime, Wake};

use super::*;
use crate::census;

const GOOD: &str = r#"
name = "t"
description = "a test"
duration_ms = 1000
sample_ms = 50
max_stack = "32K"
memory = "1G"
cpus = 1
inject = "percent:10:7"
reserve = 64
seed = 9

[[group]]
name = "a"
policy = "each"
threads = 3
lifetime = "long"
calls = 2
depth = { fixed = 9000 }
sleep_depth = [[512, 1], [1024, 1]]
block_percent = 10
irqoff_percent = 20
sleep_ms = 5
wake = "peer"

[[group]]
name = "b"
policy = "static"
threads = 2
lifetime = "short"
respawn = true
depth = "linux-census-exits"
"#;

fn origin() -> Origin {
    Origin::File("x/t.toml".into())
}

fn policies(names: &[&str]) -> Vec<Policy> {
    names.iter().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn a_full_file_parses_with_every_field() {
    let s = parse(GOOD, origin()).unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(s.description, "a test");
    assert_eq!((s.duration_ms, s.sample_ms), (1000, 50));
    assert_eq!(s.max_stack_bytes, 32 * 1024);
    assert_eq!(s.memory.mib(), 1024);
    assert_eq!(s.cpus, 1);
    assert_eq!(s.inject.as_deref(), Some("percent:10:7"));
    assert_eq!(s.reserve, Some(64));
    assert_eq!(s.seed, 9);
    assert_eq!(s.groups.len(), 2);
    let a = &s.groups[0].plans[0];
    assert_eq!(s.groups[0].policy, PolicyChoice::Each);
    assert_eq!((a.threads, a.calls, a.lifetime), (3, 2, Lifetime::Long));
    assert_eq!(a.depth, census::exact_histogram([(9000, 1)]));
    assert_eq!(a.sleep_depth.buckets.len(), 2);
    assert_eq!((a.block_percent, a.sleep_ms, a.wake), (10, 5, Wake::Peer));
    assert_eq!(a.irqoff_percent, 20);
    let b = &s.groups[1].plans[0];
    assert_eq!(s.groups[1].policy, PolicyChoice::One(Policy::Static));
    assert_eq!((b.lifetime, b.respawn, b.calls), (Lifetime::Short, true, 1));
    assert_eq!(b.depth, census::exits_histogram());
    let boots = s.boots(&policies(&["fault"])).unwrap();
    assert_eq!(
        s.kernel_args(&boots[0].plan),
        [
            "workload=initrd",
            "max_stack=32K",
            "slots=4357",
            "inject=percent:10:7",
            "reserve=64"
        ]
    );
}

#[test]
fn defaults_fill_what_a_file_leaves_out() {
    let s = parse(
        r#"
name = "d"
duration_ms = 500
[[group]]
name = "g"
policy = "fault"
threads = 1
lifetime = "short"
depth = { fixed = 100 }
"#,
        origin(),
    )
    .unwrap();
    assert_eq!(s.sample_ms, 100);
    assert_eq!(s.max_stack_bytes, 16 * 1024);
    assert_eq!(s.memory, MemorySize::DEFAULT);
    assert_eq!(
        (s.cpus, s.seed, s.inject.clone(), s.reserve),
        (2, 1, None, None)
    );
    let g = &s.groups[0].plans[0];
    assert_eq!((g.calls, g.respawn, g.block_percent), (1, false, 0));
    assert_eq!(
        g.irqoff_percent, 0,
        "absent: no path runs with interrupts off"
    );
    assert_eq!((g.sleep_ms, g.wake), (10, Wake::Timer));
    let boots = s.boots(&policies(&["fault"])).unwrap();
    assert_eq!(
        s.kernel_args(&boots[0].plan),
        ["workload=initrd", "max_stack=16K", "slots=257"]
    );
}

#[test]
fn each_expands_into_one_group_per_policy_in_one_boot() {
    let s = parse(GOOD, origin()).unwrap();
    let boots = s
        .boots(&policies(&["guaranteed", "fault", "static"]))
        .unwrap();
    assert_eq!(boots.len(), 1);
    let boot = &boots[0];
    assert_eq!(boot.policies, policies(&["static", "fault", "guaranteed"]));
    let groups: Vec<(&str, &str)> = boot
        .plan
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.policy.name()))
        .collect();
    assert_eq!(
        groups,
        [
            ("a", "static"),
            ("b", "static"),
            ("a", "fault"),
            ("a", "guaranteed")
        ]
    );
    assert_eq!(boot.plan.max_stack_bytes, 32 * 1024);
    assert_eq!((boot.plan.seed, boot.plan.name.as_str()), (9, "t"));
    boot.plan.check().unwrap();
}

#[test]
fn a_fixed_policy_group_runs_even_when_each_does_not_name_it() {
    let s = parse(GOOD, origin()).unwrap();
    let boots = s.boots(&policies(&["fault"])).unwrap();
    assert_eq!(boots[0].policies, policies(&["static", "fault"]));
    assert_eq!(s.fixed_policies(), [Policy::Static]);
}

#[test]
fn threads_beyond_one_plan_split_into_one_boot_per_policy() {
    let android = load("android").unwrap();
    assert_eq!(android.groups.iter().map(Group::threads).sum::<u32>(), 3000);
    let boots = android
        .boots(&policies(&["static", "fault", "guaranteed"]))
        .unwrap();
    assert_eq!(boots.len(), 3);
    for (boot, policy) in boots
        .iter()
        .zip([Policy::Static, Policy::Fault, Policy::Guaranteed])
    {
        assert_eq!(boot.policies, [policy]);
        assert!(boot.plan.groups.iter().all(|g| g.policy == policy));
        let threads: u32 = boot.plan.groups.iter().map(|g| g.threads).sum();
        assert_eq!(threads, 3000);
    }
    // Two policies of 3,000 threads fit one plan exactly.
    assert_eq!(
        android
            .boots(&policies(&["static", "fault"]))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn every_builtin_parses_and_its_plans_pass_the_kernel_s_checks() {
    let all = Policy::ALL;
    for name in builtin::NAMES {
        let s = load(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, name);
        assert_eq!(s.origin, Origin::Builtin(name.to_owned()));
        assert!(!s.description.is_empty(), "{name}");
        let boots = s.boots(&all).unwrap_or_else(|e| panic!("{e}"));
        for boot in boots {
            boot.plan.check().unwrap_or_else(|e| panic!("{name}: {e}"));
            // The plan travels as JSON and comes back the same.
            let json = serde_json::to_string(&boot.plan).unwrap();
            assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), boot.plan);
        }
    }
    assert_eq!(builtin::DEFAULT, "linux-census");
}

#[test]
fn the_census_builtin_replays_the_snapshot_thread_by_thread() {
    let s = load("linux-census").unwrap();
    let live = &s.groups[0];
    assert_eq!(live.threads(), 85);
    assert_eq!(live.plans.len(), 66);
    for plan in &live.plans {
        // Every path reaches the thread's mark; it sleeps at its own depth.
        let used = plan.depth.max_bytes();
        let sleeping = plan.sleep_depth.max_bytes();
        assert_eq!(plan.depth, census::exact_histogram([(used, 1)]));
        assert_eq!(plan.name, format!("live:{used}/{sleeping}"));
        assert_eq!(plan.lifetime, Lifetime::Long);
    }
    let exits = &s.groups[1].plans[0];
    assert_eq!(exits.depth, census::exits_histogram());
    assert!(exits.respawn);
}

#[test]
fn the_android_builtin_has_3000_threads_and_the_others_stay_moderate() {
    let threads = |name| {
        load(name)
            .unwrap()
            .groups
            .iter()
            .map(Group::threads)
            .sum::<u32>()
    };
    assert_eq!(threads("android"), 3000);
    assert!(threads("linux-census") <= 200);
    assert!(threads("storage") <= 600);
    assert!(threads("adversarial") <= 600);
    let storage = load("storage").unwrap();
    let io = &storage.groups[0].plans[0];
    assert_eq!(io.depth.buckets.first().unwrap().up_to_bytes, 6144);
    assert_eq!(io.depth.max_bytes(), 12 * 1024);
    let adversarial = load("adversarial").unwrap();
    assert!(adversarial.inject.is_some() && adversarial.reserve.is_some());
    let deepest = adversarial
        .groups
        .iter()
        .flat_map(|g| &g.plans)
        .map(|p| p.depth.max_bytes())
        .max()
        .unwrap();
    assert!(deepest > 3 * 4096, "{deepest}");
    // The same worst case, with part of every group's paths under a spin lock.
    let irqoff = load("adversarial-irqoff").unwrap();
    assert_eq!(
        (&irqoff.inject, irqoff.reserve),
        (&adversarial.inject, adversarial.reserve)
    );
    assert!(
        irqoff
            .groups
            .iter()
            .flat_map(|g| &g.plans)
            .all(|p| p.irqoff_percent > 0),
        "every group runs some paths with interrupts off"
    );
}

/// Replaces `from` by `to` in [`GOOD`] (which must contain it) and returns the error.
fn error_after(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    parse(&GOOD.replacen(from, to, 1), origin())
        .map(|s| s.name)
        .expect_err(to)
        .to_string()
}

#[test]
fn every_bad_entry_is_one_error_naming_the_file_the_key_and_what_is_accepted() {
    let group_a = "[[group]] #1 (\"a\")";
    for (from, to, expected) in [
        // Unknown keys, at the top and in a group.
        (
            "seed = 9",
            "seed = 9\nsede = 3",
            &["unknown field `sede`", "expected one of", "`duration_ms`"][..],
        ),
        (
            "calls = 2",
            "calls = 2\nthread = 3",
            &["unknown field `thread`", "`threads`"],
        ),
        // Negative and zero counts.
        (
            "threads = 3",
            "threads = -3",
            &[
                &format!("{group_a}.threads"),
                "-3 is out of range",
                "from 1 to 1000000",
            ],
        ),
        (
            "threads = 3",
            "threads = 0",
            &[&format!("{group_a}.threads"), "0 is out of range"],
        ),
        (
            "calls = 2",
            "calls = -1",
            &[&format!("{group_a}.calls"), "from 1 to"],
        ),
        (
            "duration_ms = 1000",
            "duration_ms = -1000",
            &["duration_ms: -1000 is out of range", "from 1 to 600000"],
        ),
        (
            "sample_ms = 50",
            "sample_ms = 5000",
            &["sample_ms: 5000 is out of range", "from 1 to 1000"],
        ),
        (
            "block_percent = 10",
            "block_percent = 101",
            &["block_percent", "from 0 to 100"],
        ),
        (
            "irqoff_percent = 20",
            "irqoff_percent = -5",
            &["irqoff_percent", "-5 is out of range", "from 0 to 100"],
        ),
        ("cpus = 1", "cpus = 5", &["cpus: 5", "from 1 to 4"]),
        ("reserve = 64", "reserve = -1", &["reserve: -1"]),
        // Depths beyond max_stack, in every form.
        (
            "depth = { fixed = 9000 }",
            "depth = { fixed = 40000 }",
            &[
                &format!("{group_a}.depth"),
                "40000 bytes is beyond max_stack (32768 bytes)",
            ],
        ),
        (
            "sleep_depth = [[512, 1], [1024, 1]]",
            "sleep_depth = [[512, 1], [33000, 1]]",
            &[
                &format!("{group_a}.sleep_depth"),
                "bucket 2",
                "33000 bytes is beyond max_stack",
            ],
        ),
        (
            "depth = { fixed = 9000 }",
            "depth = [[4096, 1], [32769, 1]]",
            &[
                &format!("{group_a}.depth"),
                "bucket 2",
                "32769 bytes is beyond max_stack (32768 bytes)",
            ],
        ),
        // Unknown names.
        (
            "policy = \"each\"",
            "policy = \"lazy\"",
            &[
                &format!("{group_a}.policy"),
                "unknown policy \"lazy\"",
                "\"each\", \"static\", \"fault\"",
            ],
        ),
        (
            "depth = \"linux-census-exits\"",
            "depth = \"gaussian\"",
            &[
                "[[group]] #2 (\"b\").depth",
                "unknown distribution \"gaussian\"",
                "linux-census-live-used",
            ],
        ),
        (
            "lifetime = \"long\"",
            "lifetime = \"forever\"",
            &["lifetime", "\"long\" or \"short\""],
        ),
        (
            "wake = \"peer\"",
            "wake = \"alarm\"",
            &["wake", "\"timer\" or \"peer\""],
        ),
        (
            "max_stack = \"32K\"",
            "max_stack = \"15K\"",
            &["max_stack", "\"16K\", \"32K\" or \"64K\""],
        ),
        (
            "memory = \"1G\"",
            "memory = \"1T\"",
            &["memory", "suffix K, M or G"],
        ),
        (
            "inject = \"percent:10:7\"",
            "inject = \"sometimes\"",
            &["inject", "atomic-window:START:LEN"],
        ),
        (
            "inject = \"percent:10:7\"",
            "inject = \"percent:101:7\"",
            &["inject", "P 0 to 100"],
        ),
        (
            "name = \"t\"",
            "name = \"two words\"",
            &["name: \"two words\" is not a name"],
        ),
        // Keys that do not go together.
        (
            "name = \"b\"",
            "name = \"a\"",
            &["[[group]] #2 (\"a\").name", "another group has this name"],
        ),
        (
            "wake = \"peer\"",
            "wake = \"peer\"\nrespawn = true",
            &[&format!("{group_a}.respawn"), "short-lived groups only"],
        ),
        (
            "respawn = true",
            "respawn = true\nsleep_depth = { fixed = 10 }",
            &["[[group]] #2 (\"b\").sleep_depth", "long-lived groups only"],
        ),
        (
            "threads = 3",
            "threads = 3\npopulation = \"linux-census-live\"",
            &[&format!("{group_a}.threads"), "population alone"],
        ),
        (
            "threads = 2",
            "population = \"linux-census-live\"",
            &["[[group]] #2 (\"b\").depth", "population alone"],
        ),
        (
            "sleep_depth = [[512, 1], [1024, 1]]",
            "",
            &[&format!("{group_a}.sleep_depth"), "missing"],
        ),
        (
            "threads = 2",
            "",
            &["[[group]] #2 (\"b\").threads", "missing"],
        ),
        (
            "threads = 3",
            "threads = 1000000",
            &[
                "group: 1000002 threads at once under policy static",
                "at most 1000000",
            ],
        ),
        // Syntax and required keys.
        ("seed = 9", "seed = ", &["TOML parse error", "line 11"]),
        ("duration_ms = 1000", "", &["missing field `duration_ms`"]),
    ] {
        let error = error_after(from, to);
        assert!(
            error.starts_with("scenario file x/t.toml: "),
            "{to}: {error}"
        );
        for part in expected {
            assert!(
                error.contains(part),
                "{to:?}: {part:?} missing from: {error}"
            );
        }
    }
}

#[test]
fn a_population_must_be_known_and_long_lived() {
    let text = |population: &str, lifetime: &str| {
        format!(
            "name = \"p\"\nduration_ms = 100\n[[group]]\nname = \"g\"\npolicy = \"each\"\n\
             population = \"{population}\"\nlifetime = \"{lifetime}\"\n"
        )
    };
    let error = parse(&text("nobody", "long"), origin())
        .unwrap_err()
        .to_string();
    assert!(
        error
            .contains("population: unknown population \"nobody\"; accepted: \"linux-census-live\""),
        "{error}"
    );
    let error = parse(&text("linux-census-live", "short"), origin())
        .unwrap_err()
        .to_string();
    assert!(error.contains("lifetime = \"long\" only"), "{error}");
    let s = parse(&text("linux-census-live", "long"), origin()).unwrap();
    assert_eq!(s.groups[0].threads(), 85);
}

#[test]
fn an_empty_group_list_is_refused() {
    let error = parse("name = \"e\"\nduration_ms = 10\ngroup = []\n", origin())
        .unwrap_err()
        .to_string();
    assert!(error.contains("group: no groups"), "{error}");
}

#[test]
fn unreadable_files_and_unknown_names_are_one_error() {
    let error = load("no-such-scenario").unwrap_err().to_string();
    assert!(
        error.starts_with("--scenario no-such-scenario: no built-in scenario of that name"),
        "{error}"
    );
    assert!(
        error.contains("linux-census, linux-census-sleepers, android, storage, adversarial"),
        "{error}"
    );

    let error = load("/no/such/dir/s.toml").unwrap_err().to_string();
    assert!(
        error.starts_with("scenario file /no/such/dir/s.toml: cannot read it: "),
        "{error}"
    );
    assert!(error.contains("No such file"), "{error}");

    let dir = std::env::temp_dir().join(format!("dks-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let error = load(dir.to_str().unwrap()).unwrap_err().to_string();
    assert!(error.contains("cannot read it"), "{error}");
    let file = dir.join("ok.toml");
    std::fs::write(&file, GOOD).unwrap();
    let s = load(file.to_str().unwrap()).unwrap();
    assert_eq!(s.origin, Origin::File(file.clone()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_selected_policy_means_nothing_to_run() {
    let s = parse(
        &GOOD.replace("policy = \"static\"", "policy = \"each\""),
        origin(),
    )
    .unwrap();
    let error = s.boots(&[]).unwrap_err().to_string();
    assert!(
        error.contains("no group runs under any selected policy"),
        "{error}"
    );
}

/// Writes a live snapshot and an exits census into a fresh folder, for the file forms.
fn census_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("live.tsv"),
        "# stack_bytes: 16384\nused_bytes\tsleeping_depth_bytes\tkthread\tcomm\n\
         900\t500\t1\ta\n900\t500\t0\tb\n9000\t800\t0\tc\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/exits.tsv"),
        "# stack_bytes: 16384\nused_bytes\tthreads\tkthread\tcomm\n832\t3\t0\tsh\n1024\t1\t0\tcc\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("big.tsv"),
        "# stack_bytes: 32768\nused_bytes\tthreads\tkthread\tcomm\n20032\t1\t0\tsh\n",
    )
    .unwrap();
    dir
}

fn with_groups(groups: &str) -> String {
    format!("name = \"f\"\nduration_ms = 100\n{groups}")
}

#[test]
fn census_files_are_read_relative_to_the_scenario_file() {
    let dir = census_folder();
    let text = with_groups(
        "[[group]]\nname = \"live\"\npolicy = \"each\"\npopulation = { file = \"live.tsv\" }\n\
         lifetime = \"long\"\n\
         [[group]]\nname = \"drawn\"\npolicy = \"each\"\nthreads = 2\nlifetime = \"long\"\n\
         depth = { file = \"live.tsv\" }\n\
         sleep_depth = { file = \"live.tsv\", column = \"sleeping_depth_bytes\" }\n\
         [[group]]\nname = \"exits\"\npolicy = \"each\"\nthreads = 4\nlifetime = \"short\"\n\
         depth = { file = \"sub/exits.tsv\", column = \"used_bytes\" }\n",
    );
    let s = parse(&text, Origin::File(dir.path().join("s.toml"))).unwrap();
    // The population: two distinct threads, one of them twice.
    let live = &s.groups[0];
    assert_eq!(live.threads(), 3);
    assert_eq!(live.plans.len(), 2);
    assert_eq!(
        live.plans[0].depth,
        census::exact_histogram([(900, 1)]),
        "each thread reaches its own mark"
    );
    assert_eq!(live.plans[0].threads, 2);
    assert_eq!(
        live.plans[1].sleep_depth,
        census::exact_histogram([(800, 1)])
    );
    let drawn = &s.groups[1].plans[0];
    assert_eq!(drawn.depth, census::exact_histogram([(900, 2), (9000, 1)]));
    assert_eq!(
        drawn.sleep_depth,
        census::exact_histogram([(500, 2), (800, 1)])
    );
    let exits = &s.groups[2].plans[0];
    let weights: Vec<(u32, u64)> = exits
        .depth
        .buckets
        .iter()
        .map(|b| (b.up_to_bytes, b.weight))
        .collect();
    assert_eq!(weights, [(768, 0), (832, 3), (960, 0), (1024, 1)]);
    let all = Policy::ALL;
    for boot in s.boots(&all).unwrap() {
        boot.plan.check().unwrap();
    }
    // An absolute path works from anywhere; a relative one is not read from the cwd.
    let absolute = text
        .replace(
            "\"sub/exits.tsv\"",
            &format!("{:?}", dir.path().join("sub/exits.tsv")),
        )
        .replace(
            "\"live.tsv\"",
            &format!("{:?}", dir.path().join("live.tsv")),
        );
    parse(&absolute, Origin::File("elsewhere/s.toml".into())).unwrap();
    let error = parse(&text, Origin::File("elsewhere/s.toml".into()))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("population: census elsewhere/live.tsv: cannot read it"),
        "{error}"
    );
}

#[test]
fn every_bad_census_reference_is_one_error() {
    let dir = census_folder();
    let origin = Origin::File(dir.path().join("s.toml"));
    let long = |line: &str| {
        with_groups(&format!(
            "[[group]]\nname = \"g\"\npolicy = \"each\"\nthreads = 1\nlifetime = \"long\"\n\
             sleep_depth = {{ fixed = 100 }}\n{line}\n"
        ))
    };
    let population = |line: &str, lifetime: &str| {
        with_groups(&format!(
            "[[group]]\nname = \"g\"\npolicy = \"each\"\nlifetime = \"{lifetime}\"\n{line}\n"
        ))
    };
    for (text, expected) in [
        (
            long("depth = { file = \"none.tsv\" }"),
            "(\"g\").depth: census ",
        ),
        (
            long("depth = { file = \"none.tsv\" }"),
            "none.tsv: cannot read it",
        ),
        (
            long("depth = { file = \"\" }"),
            "file must be a census file's path",
        ),
        (
            long("depth = { file = 3 }"),
            "file must be a census file's path",
        ),
        (
            long("depth = { file = \"live.tsv\", column = \"threads\" }"),
            "a live snapshot has no column \"threads\"",
        ),
        (
            long("depth = { file = \"live.tsv\", column = 4 }"),
            "column = 4 is not a column name",
        ),
        (
            long("depth = { file = \"sub/exits.tsv\", column = \"sleeping_depth_bytes\" }"),
            "an exits census has no column",
        ),
        (
            long("depth = { file = \"live.tsv\", fixed = 3 }"),
            "may only hold `file` and `column` (found `fixed`)",
        ),
        (
            long("depth = { file = \"big.tsv\" }"),
            "depth: reaches 20032 bytes, beyond max_stack (16384 bytes)",
        ),
        (
            long("depth = { file = \"s.toml\" }"),
            "s.toml: line 1: \"not a census\" is not a census's column line",
        ),
        (
            population("population = { file = \"sub/exits.tsv\" }", "long"),
            "population: \"sub/exits.tsv\": is an exits census",
        ),
        (
            population("population = { file = \"live.tsv\", x = 1 }", "long"),
            "population: unknown key `x`",
        ),
        (
            population("population = 7", "long"),
            "population: integer is not a population; accepted: \"linux-census-live\" or a \
             live snapshot { file = \"SNAPSHOT.tsv\" }",
        ),
        (
            population("population = { file = \"live.tsv\" }", "short"),
            "lifetime = \"long\" only",
        ),
    ] {
        std::fs::write(dir.path().join("s.toml"), "not a census").unwrap();
        let error = parse(&text, origin.clone()).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}\n{error}");
    }
    // A built-in has no folder: it may not name files.
    let error = parse(
        &long("depth = { file = \"live.tsv\" }"),
        Origin::Builtin("b".to_owned()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("a built-in scenario names no census files"),
        "{error}"
    );
}

#[test]
fn max_stack_can_be_overridden_and_depths_are_checked_against_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.toml");
    std::fs::write(
        &path,
        "name = \"deep\"\nduration_ms = 100\nmax_stack = \"32K\"\n\n[[group]]\nname = \"g\"\n\
         policy = \"each\"\nthreads = 2\nlifetime = \"short\"\ndepth = { fixed = 20000 }\n",
    )
    .unwrap();
    let spec = path.to_str().unwrap();
    assert_eq!(load(spec).unwrap().max_stack_bytes, 32 * 1024);
    assert_eq!(
        load_at_max_stack(spec, "64K").unwrap().max_stack_bytes,
        64 * 1024
    );
    let error = load_at_max_stack(spec, "16K").unwrap_err().to_string();
    assert!(
        error.contains("at --max-stack 16K")
            && error.contains("20000 bytes is beyond max_stack (16384 bytes)"),
        "{error}"
    );
    assert_eq!(
        load_at_max_stack("storage", "64K").unwrap().max_stack_bytes,
        64 * 1024
    );
}

#[test]
fn pack_settings_go_only_to_boots_with_pack_threads() {
    let s = parse(
        &GOOD.replacen(
            "seed = 9",
            "seed = 9\npack_after_ms = 250\npack_guard = true",
            1,
        ),
        origin(),
    )
    .unwrap();
    assert_eq!((s.pack_after_ms, s.pack_guard), (Some(250), true));
    let args = |each: &[&str]| -> Vec<Vec<String>> {
        s.boots(&policies(each))
            .unwrap()
            .iter()
            .map(|boot| s.kernel_args(&boot.plan))
            .collect()
    };
    let pack_args = ["pack_after_ms=250".to_owned(), "pack_guard=on".to_owned()];
    let has_pack_args = |args: &Vec<String>| pack_args.iter().all(|a| args.contains(a));
    let has_any = |args: &Vec<String>| args.iter().any(|a| a.starts_with("pack_"));
    // No pack thread, no pack argument: the scenario runs on a kernel without `pack`.
    assert!(!args(&["fault"]).iter().any(has_any));
    // A boot with pack threads gets both, after the other arguments.
    let with_pack = args(&["fault", "pack"]);
    assert_eq!(with_pack.len(), 1, "side by side");
    assert!(has_pack_args(&with_pack[0]), "{with_pack:?}");
    assert_eq!(with_pack[0][..2], ["workload=initrd", "max_stack=32K"]);
    assert_eq!(with_pack[0][with_pack[0].len() - 2..], pack_args);

    // Absent: the kernel's defaults, so nothing is passed.
    let d = parse(GOOD, origin()).unwrap();
    assert_eq!((d.pack_after_ms, d.pack_guard), (None, false));
    let boots = d.boots(&policies(&["pack"])).unwrap();
    assert!(!has_any(&d.kernel_args(&boots[0].plan)));
    // Guard mode off, said explicitly, passes nothing either.
    let off = parse(
        &GOOD.replacen("seed = 9", "seed = 9\npack_guard = false", 1),
        origin(),
    )
    .unwrap();
    let boots = off.boots(&policies(&["pack"])).unwrap();
    assert!(!has_any(&off.kernel_args(&boots[0].plan)));
}

#[test]
fn bad_pack_settings_are_one_error_naming_the_key_and_the_range() {
    for (to, expected) in [
        (
            "pack_after_ms = 0",
            "scenario file x/t.toml: pack_after_ms: 0 is out of range; accepted: a whole number \
             from 1 to 60000",
        ),
        (
            "pack_after_ms = 60001",
            "scenario file x/t.toml: pack_after_ms: 60001 is out of range; accepted: a whole \
             number from 1 to 60000",
        ),
        (
            "pack_after_ms = -5",
            "scenario file x/t.toml: pack_after_ms: -5 is out of range; accepted: a whole number \
             from 1 to 60000",
        ),
        (
            "pack_guard = \"on\"",
            "scenario file x/t.toml: pack_guard: \"on\" is not a choice; accepted: true or false",
        ),
        (
            "pack_guard = 1",
            "scenario file x/t.toml: pack_guard: 1 is not a choice; accepted: true or false",
        ),
    ] {
        assert_eq!(
            error_after("seed = 9", &format!("seed = 9\n{to}")),
            expected
        );
    }
    // The bounds themselves are accepted.
    for ms in [1, 60_000] {
        let s = parse(
            &GOOD.replacen("seed = 9", &format!("seed = 9\npack_after_ms = {ms}"), 1),
            origin(),
        )
        .unwrap();
        assert_eq!(s.pack_after_ms, Some(ms));
    }
}

/// `linux-census-sleepers` is `linux-census` with long sleeps for the live threads, and its
/// threshold packs them early in every sleep while never packing a short-lived blocker: what
/// its file says it is.
#[test]
fn the_sleepers_builtin_is_the_census_with_long_sleeps_and_a_threshold_between() {
    let census = load("linux-census").unwrap();
    let sleepers = load("linux-census-sleepers").unwrap();
    assert_eq!(sleepers.groups.len(), census.groups.len());
    assert_eq!(
        (
            sleepers.duration_ms,
            sleepers.max_stack_bytes,
            sleepers.cpus
        ),
        (census.duration_ms, census.max_stack_bytes, census.cpus)
    );
    let threshold = u64::from(sleepers.pack_after_ms.expect("a threshold"));
    assert!(!sleepers.pack_guard);
    // The live threads: the same plans but for their sleep. The kernel draws a sleep of mean
    // m from m/2 to 3m/2.
    let (live, census_live) = (&sleepers.groups[0], &census.groups[0]);
    assert_eq!(live.plans.len(), census_live.plans.len());
    for (plan, census_plan) in live.plans.iter().zip(&census_live.plans) {
        let shortest_sleep = u64::from(plan.sleep_ms / 2);
        assert!(threshold * 10 <= shortest_sleep, "{threshold} ms");
        assert!(u64::from(plan.sleep_ms) < u64::from(sleepers.duration_ms));
        assert_eq!(
            GroupPlan {
                sleep_ms: census_plan.sleep_ms,
                ..plan.clone()
            },
            *census_plan
        );
    }
    // The short-lived threads: the same, and their longest block is far below the threshold.
    assert_eq!(sleepers.groups[1], census.groups[1]);
    for plan in &sleepers.groups[1].plans {
        assert!(u64::from(plan.sleep_ms) * 3 / 2 * 5 <= threshold);
    }
}

/// `million` runs every policy (`pack` too) and its sleepers are due for a pack within the run:
/// the threshold (the kernel's default, as the file sets none) is below the shortest sleep and
/// leaves most of the run after it.
#[test]
fn the_million_builtin_runs_pack_and_its_sleepers_are_due_within_the_run() {
    let s = load("million").unwrap();
    assert!(s.groups.iter().all(|g| g.policy == PolicyChoice::Each));
    let boots = s.boots(&Policy::ALL).unwrap();
    assert!(boots.iter().any(|b| b.policies == [Policy::Pack]));
    let threshold = s
        .pack_after_ms
        .map_or(dks_core::pack::DEFAULT_PACK_THRESHOLD_MS, u64::from);
    for plan in s.groups.iter().flat_map(|g| &g.plans) {
        assert_eq!(plan.lifetime, Lifetime::Long);
        assert!(threshold < u64::from(plan.sleep_ms / 2), "{threshold} ms");
    }
    assert!(threshold * 5 <= u64::from(s.duration_ms), "{threshold} ms");
}

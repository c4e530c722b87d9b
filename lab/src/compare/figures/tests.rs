use super::*;

pub(crate) fn cost(what: &str, policy: &str, samples: u64, total: u64) -> Cost<'static> {
    let mut log2_histogram = [0; 24];
    if let Some(per_op) = total.checked_div(samples) {
        log2_histogram[per_op.max(1).ilog2() as usize] = samples;
    }
    Cost {
        what: what.to_owned().into(),
        policy: (!policy.is_empty()).then(|| policy.parse().unwrap()),
        samples,
        total,
        min: total / samples.max(1),
        median: total / samples.max(1),
        max: total / samples.max(1),
        instructions: true,
        log2_histogram,
    }
}

pub(crate) fn stat(policy: &str, now: u64, peak: u64, faults: u64) -> PolicyStat {
    PolicyStat {
        policy: policy.parse().unwrap(),
        threads_created: 4,
        threads_live: 0,
        stack_kib_now: now,
        stack_kib_peak: peak,
        faults,
        fatal: 0,
        refills: faults / 2,
        refill_failures: 0,
        guard_hits: 0,
        admit_waits: 0,
        admit_wait_us_total: 0,
        admit_wait_us_max: 0,
        killed: 0,
        kernel_stops: 0,
        reclaimed: 0,
        reclaimed_dead: 0,
        reclaimed_accessed_clear: 0,
        flushes_avoided: 0,
        switch_faults: 0,
        running_extra_kib_peak: None,
        high_water_mean_bytes: 0,
        high_water_max_bytes: 0,
        packs: 0,
        restores: 0,
        restore_waits: 0,
        pack_checksum_failures: 0,
        pack_guard_catches: 0,
        packed_threads: 0,
        packed_kib: 0,
    }
}

pub(crate) fn sample(t_ms: u64, policy: &str, stack_kib: u64, live_kib: u64) -> Sample {
    Sample {
        t_ms,
        policy: policy.parse().unwrap(),
        stack_kib,
        live_kib,
        threads: 4,
    }
}

pub(crate) fn setup() -> Setup {
    Setup {
        scenario: "s".into(),
        description: "d".into(),
        cpus: 2,
        max_stack_kib: 16,
        workload_boots: 1,
        injection: None,
    }
}

/// Static holds 4 threads × 16 KiB, fault 4 threads × 3 pages; costs for both.
pub(crate) fn measurements() -> Measurements {
    Measurements {
        costs: vec![
            cost(what::CREATE, "static", 10, 20_000),
            cost(what::CREATE, "fault", 10, 5_000),
            cost(what::SWITCH, "static", 100, 100_000),
            cost(what::SWITCH, "fault", 100, 110_000),
            cost(what::STACK_FAULT, "fault", 8, 12_000),
            cost(what::DIRECT_FAULT, "", 4, 4_000),
            cost(what::BOUNCE_FAULT, "", 4, 6_000),
        ],
        samples: vec![
            sample(200, "static", 64, 40),
            sample(100, "static", 64, 20),
            sample(100, "fault", 40, 20),
            sample(200, "fault", 48, 44),
        ],
        stats: vec![stat("static", 0, 64, 0), stat("fault", 16, 48, 8)],
        thread_pages: vec![],
        stack_faults: vec![],
        workload_stats: vec![],
        injections: vec![],
        overheads: vec![ThreadOverhead {
            policy: Policy::Fault,
            threads: 4,
            stack_bytes: 4 * 12_288,
            heap_bytes: 4 * 700,
            fpu_bytes: 544,
            fpu_areas: 1,
            slot_bytes: 4 * 52,
            page_table_bytes: 4 * 40,
        }],
        incomplete: vec![],
    }
}

/// `static` and `pack` side by side: `pack`'s counters and its pack and restore costs.
pub(crate) fn pack_measurements() -> Measurements {
    let mut m = measurements();
    m.costs.extend([
        cost(what::CREATE, "pack", 10, 6_000),
        cost(what::SWITCH, "pack", 100, 120_000),
        cost(what::STACK_FAULT, "pack", 8, 12_000),
        cost(what::PACK, "pack", 20, 62_000),
        cost(what::RESTORE, "pack", 20, 45_000),
    ]);
    let mut pack = stat("pack", 49, 64, 8);
    pack.packs = 90;
    pack.restores = 80;
    pack.restore_waits = 2;
    pack.packed_threads = 10;
    pack.packed_kib = 9;
    m.stats.push(pack);
    m.samples.push(sample(100, "pack", 40, 20));
    m
}

#[test]
fn pack_figures_come_from_its_stat_and_its_costs_and_are_absent_for_the_others() {
    let c = compare(
        &setup(),
        &policies(&["static", "pack"]),
        &pack_measurements(),
    )
    .unwrap();
    let (s, p) = (&c.policies[0], &c.policies[1]);
    assert_eq!(p.policy, Policy::Pack);
    assert_eq!(
        (
            p.packs,
            p.restores,
            p.restore_waits,
            p.pack_checksum_failures,
            p.pack_guard_catches
        ),
        (90, 80, 2, 0, 0)
    );
    assert_eq!((p.packed_threads_end, p.packed_kib_end), (10, 9));
    assert_eq!(p.stack_kib_end, 49, "buffers are in the stack memory");
    assert_eq!(p.insns_per_pack, Some(3100.0));
    assert_eq!(p.insns_per_restore, Some(2250.0));
    assert_eq!((s.insns_per_pack, s.insns_per_restore), (None, None));
    assert_eq!((s.packs, s.packed_threads_end), (0, 0));
    // Without the kernel's pack costs there is no figure, not a zero.
    let mut m = pack_measurements();
    m.costs.retain(|c| c.what != what::RESTORE);
    let c = compare(&setup(), &policies(&["static", "pack"]), &m).unwrap();
    assert_eq!(c.policies[1].insns_per_pack, Some(3100.0));
    assert_eq!(c.policies[1].insns_per_restore, None);
    let json = serde_json::to_value(&c).unwrap();
    let pack = &json["policies"][1];
    assert_eq!(pack["insns_per_pack"], 3100.0);
    assert!(pack["insns_per_restore"].is_null(), "{pack}");
    for (key, value) in [
        ("packs", 90),
        ("restores", 80),
        ("restore_waits", 2),
        ("pack_checksum_failures", 0),
        ("pack_guard_catches", 0),
        ("packed_threads_end", 10),
        ("packed_kib_end", 9),
    ] {
        assert_eq!(pack[key], value, "{key} in {pack}");
    }
    assert!(json["policies"][0]["insns_per_pack"].is_null());
    // The spread of both costs is in the cost list.
    let whats: Vec<&str> = c.costs.iter().map(|c| c.what.as_str()).collect();
    assert!(
        whats.contains(&"pack") && !whats.contains(&"restore"),
        "{whats:?}"
    );
}

#[test]
fn per_thread_totals_add_every_overhead_to_the_stack() {
    let c = compare(&setup(), &policies(&["static", "fault"]), &measurements()).unwrap();
    let (s, f) = (&c.policies[0], &c.policies[1]);
    assert_eq!(
        (
            s.threads_at_end,
            s.stack_kib_per_thread,
            s.total_kib_per_thread
        ),
        (None, None, None),
        "no ThreadOverhead record for static"
    );
    assert_eq!(f.threads_at_end, Some(4));
    assert_eq!(f.stack_kib_per_thread, Some(12.0));
    let total_bytes = 4 * 12_288 + 4 * 700 + 544 + 4 * 52 + 4 * 40;
    assert_eq!(
        f.total_kib_per_thread,
        Some(f64::from(total_bytes) / 4.0 / 1024.0)
    );
    assert_eq!(
        f.overhead.as_ref().map(OverheadFigures::beyond_stack_bytes),
        Some(4 * 700 + 544 + 4 * 52 + 4 * 40)
    );
}

#[test]
fn a_policy_that_ran_out_of_memory_has_no_figures_and_no_ratio_is_made_of_it() {
    let mut m = measurements();
    m.incomplete.push(IncompletePolicy {
        policy: Policy::Static,
        threads_created: 450_000,
        threads_planned: 1_000_000,
        cause: "out_of_memory".into(),
    });
    // Its boot's statistics never count.
    m.stats.retain(|s| s.policy != Policy::Static);
    let c = compare(&setup(), &policies(&["static", "fault"]), &m).unwrap();
    assert_eq!(c.policies.len(), 1);
    assert_eq!(c.policies[0].policy, Policy::Fault);
    assert_eq!(c.policies[0].stack_peak_vs_static, None);
    assert_eq!(c.incomplete.len(), 1);
    assert_eq!(
        super::super::table::incomplete_words(&c.incomplete[0]),
        "out of memory after 450000 of 1000000 threads (no figures)"
    );
    let table = super::super::table::render(&c);
    assert!(
        table.contains("static: could not run the scenario: out of memory after 450000"),
        "{table}"
    );
}

#[test]
fn only_out_of_memory_makes_a_policy_incomplete() {
    let failure = |no_slot, out_of_memory, group_limit| SpawnFailure {
        group: "g".into(),
        policy: Policy::Static,
        created: 10,
        no_slot,
        out_of_memory,
        group_limit,
        planned: 20,
        not_attempted: 9,
        out_of_heap: 0,
    };
    let oom = failure(0, 1, 0);
    assert_eq!(
        IncompletePolicy::out_of_memory(Policy::Static, &[&oom], 20).map(|i| i.threads_created),
        Some(10)
    );
    for other in [failure(1, 1, 0), failure(0, 0, 1)] {
        assert_eq!(
            IncompletePolicy::out_of_memory(Policy::Static, &[&other], 20),
            None
        );
    }
    assert_eq!(
        IncompletePolicy::out_of_memory(Policy::Static, &[], 20),
        None
    );
}

fn policies(names: &[&str]) -> Vec<Policy> {
    names.iter().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn figures_come_from_the_records_and_ratios_from_static() {
    let c = compare(&setup(), &policies(&["static", "fault"]), &measurements()).unwrap();
    assert_eq!(c.policies.len(), 2);
    let (s, f) = (&c.policies[0], &c.policies[1]);
    assert_eq!((s.policy.name(), f.policy.name()), ("static", "fault"));
    assert_eq!((s.stack_kib_peak, f.stack_kib_peak), (64, 48));
    assert_eq!((s.stack_kib_end, f.stack_kib_end), (0, 16));
    assert_eq!(s.stack_peak_vs_static, Some(1.0));
    assert_eq!(f.stack_peak_vs_static, Some(0.75));
    // Static ended at 0 KiB: no ratio to it.
    assert_eq!(f.stack_end_vs_static, None);
    assert_eq!((s.live_bound_kib, f.live_bound_kib), (Some(40), Some(44)));
    assert_eq!(f.stack_peak_vs_live_bound, Some(48.0 / 44.0));
    assert_eq!(f.faults, 8);
    assert_eq!(f.refills, 4);
    assert_eq!(s.insns_per_fault, None);
    assert_eq!(f.insns_per_fault, Some(1500.0));
    assert_eq!(s.insns_per_switch, Some(1000.0));
    assert_eq!(f.insns_per_switch_vs_static, Some(1.1));
    assert_eq!(s.insns_per_create_vs_static, Some(1.0));
    assert_eq!(f.insns_per_create_vs_static, Some(0.25));
    assert_eq!(c.fault_paths.insns_direct, Some(1000.0));
    assert_eq!(c.fault_paths.insns_bounce, Some(1500.0));
}

#[test]
fn without_static_there_are_no_ratios_and_missing_costs_stay_missing() {
    let mut m = measurements();
    m.costs.retain(|c| c.what != what::SWITCH);
    let c = compare(&setup(), &policies(&["fault"]), &m).unwrap();
    let f = &c.policies[0];
    assert_eq!(f.stack_peak_vs_static, None);
    // Costs come from the cost boot, which measured static even though it is not compared.
    assert_eq!(f.insns_per_create_vs_static, Some(0.25));
    assert_eq!(f.insns_per_switch, None);
    assert_eq!(f.insns_per_create, Some(500.0));
}

#[test]
fn a_policy_without_exactly_one_stat_is_an_error() {
    let error = compare(
        &setup(),
        &policies(&["static", "guaranteed"]),
        &measurements(),
    )
    .unwrap_err();
    assert_eq!(error, "no PolicyStat record for policy guaranteed");
    let mut m = measurements();
    m.stats.push(stat("fault", 0, 0, 0));
    let error = compare(&setup(), &policies(&["fault"]), &m).unwrap_err();
    assert_eq!(error, "several PolicyStat records for policy fault");
}

#[test]
fn a_workload_boot_contributes_only_the_policies_it_ran() {
    let records = [
        Record::PolicyStat(stat("static", 48, 48, 0)),
        Record::PolicyStat(stat("fault", 0, 48, 8)),
        Record::Sample(sample(100, "static", 48, 48)),
        Record::Sample(sample(100, "fault", 40, 20)),
    ];
    let mut m = Measurements::default();
    m.add_workload_boot(&records, &[Policy::Fault]);
    assert_eq!(m.stats, [stat("fault", 0, 48, 8)]);
    assert_eq!(m.samples, [sample(100, "fault", 40, 20)]);
}

#[test]
fn work_figures_come_from_the_policys_workload_stat() {
    let work = |policy: &str, paths: u64| WorkloadStat {
        policy: policy.parse().unwrap(),
        threads_finished: 4,
        threads_idle: 0,
        paths,
        frames_checked: paths * 2,
        frames_corrupted: 0,
        checksum: paths * 7,
    };
    let mut m = measurements();
    m.add_workload_boot(
        &[
            Record::WorkloadStat(work("static", 10)),
            Record::WorkloadStat(work("fault", 20)),
        ],
        &[Policy::Fault],
    );
    let c = compare(&setup(), &policies(&["static", "fault"]), &m).unwrap();
    assert_eq!(c.policies[0].work, None, "static's boot was not this one");
    assert_eq!(
        c.policies[1].work,
        Some(WorkFigures {
            threads_finished: 4,
            threads_idle: 0,
            paths: 20,
            frames_checked: 40,
            frames_corrupted: 0,
            checksum: 140,
        })
    );
}

#[test]
fn implemented_policies_are_those_with_a_create_cost() {
    assert_eq!(
        measurements().implemented_policies(),
        [Policy::Static, Policy::Fault]
    );
    assert_eq!(
        measurements()
            .samples_of(Policy::Static)
            .iter()
            .map(|s| s.t_ms)
            .collect::<Vec<_>>(),
        [100, 200]
    );
}

#[test]
fn the_json_has_the_documented_fields_and_nulls() {
    let c = compare(&setup(), &policies(&["static", "fault"]), &measurements()).unwrap();
    let json = serde_json::to_value(&c).unwrap();
    for key in ["scenario", "policies", "fault_paths", "cpus", "cost_unit"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let s = &json["policies"][0];
    for key in [
        "policy",
        "stack_kib_peak",
        "stack_kib_end",
        "live_bound_kib",
        "faults",
        "refill_failures",
        "fatal_faults",
        "kernel_stops",
        "admission_waits",
        "insns_per_fault",
        "insns_per_switch",
        "insns_per_create",
    ] {
        assert!(s.get(key).is_some(), "{key} missing from {s}");
    }
    assert!(s["insns_per_fault"].is_null());
    assert_eq!(json["policies"][1]["insns_per_fault"], 1500.0);
}

#[test]
fn injection_figures_come_per_boot_from_the_driver_and_the_kernel() {
    use crate::inject::{Handled, Injected, MceKind, MceSpec, NmiSpec, Plan, Report};
    let plan = Plan {
        nmi: Some(NmiSpec::Rate(50)),
        mce: Some(MceSpec {
            kind: MceKind::Corrected,
            count: 3,
        }),
    };
    let report = |nmis, handled| Report {
        plan,
        cpus: Some(2),
        injected: Injected {
            nmis,
            machine_checks: 3,
            machine_checks_reported: 3,
            shortfall: None,
            notes: vec![],
        },
        handled: Handled {
            nmis: handled,
            nmis_nested: handled.map(|_| 1),
            machine_check_exceptions: Some(0),
            mce_corrected: 3,
            mce_recoverable: 0,
            mce_fatal: 0,
        },
    };
    let mut m = measurements();
    m.injections = vec![
        (policies(&["static"]), report(10, Some(20))),
        (policies(&["fault"]), report(12, None)),
    ];
    let none = compare(&setup(), &policies(&["static", "fault"]), &m).unwrap();
    assert_eq!(none.injection, None, "no plan, no injection figures");
    let with = Setup {
        injection: Some(plan),
        ..setup()
    };
    let c = compare(&with, &policies(&["static", "fault"]), &m).unwrap();
    let json = serde_json::to_value(&c).unwrap();
    let injection = &json["injection"];
    assert_eq!(injection["nmi"], "50/s");
    assert_eq!(injection["mce"], "corrected:3");
    assert_eq!(injection["boots"][0]["policies"][0], "static");
    assert_eq!(injection["boots"][0]["nmis_injected"], 10);
    assert_eq!(injection["boots"][0]["nmis_handled"], 20);
    assert_eq!(injection["boots"][0]["machine_checks_reported"], 3);
    assert_eq!(
        injection["boots"][1]["nmis_handled"],
        serde_json::Value::Null
    );
    let no_injection = serde_json::to_value(&none).unwrap();
    assert_eq!(no_injection["injection"], serde_json::Value::Null);
}

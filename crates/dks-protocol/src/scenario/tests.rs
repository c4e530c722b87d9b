use super::*;

extern crate std;

fn histogram(bounds: &[(u32, u64)]) -> Histogram {
    Histogram {
        buckets: bounds
            .iter()
            .map(|&(up_to_bytes, weight)| Bucket {
                up_to_bytes,
                weight,
            })
            .collect(),
    }
}

fn plan() -> Plan {
    Plan {
        version: PLAN_VERSION,
        name: "t".into(),
        seed: 1,
        duration_ms: 1000,
        sample_ms: 100,
        max_stack_bytes: 16 * 1024,
        groups: alloc::vec![GroupPlan {
            name: "g".into(),
            policy: Policy::Fault,
            threads: 10,
            lifetime: Lifetime::Long,
            calls: 3,
            respawn: false,
            depth: histogram(&[(1024, 1), (4096, 2)]),
            sleep_depth: histogram(&[(600, 1)]),
            block_percent: 50,
            irqoff_percent: 0,
            sleep_ms: 5,
            wake: Wake::Peer,
        }],
    }
}

#[test]
fn a_good_plan_passes_and_every_bad_field_is_named() {
    assert_eq!(plan().check(), Ok(()));
    type Spoil = fn(&mut Plan);
    let cases: std::vec::Vec<(Spoil, &str)> = std::vec![
        (|p| p.version = 2, "version"),
        (|p| p.max_stack_bytes = 15 * 1024, "max_stack_bytes"),
        (|p| p.duration_ms = 0, "duration_ms"),
        (|p| p.sample_ms = 5000, "sample_ms"),
        (|p| p.groups.clear(), "groups"),
        (|p| p.groups[0].threads = 0, "groups[0].threads"),
        (|p| p.groups[0].threads = MAX_PLAN_THREADS + 1, "groups"),
        (|p| p.groups[0].calls = 0, "groups[0].calls"),
        (
            |p| p.groups[0].block_percent = 101,
            "groups[0].block_percent"
        ),
        (
            |p| p.groups[0].irqoff_percent = 101,
            "groups[0].irqoff_percent"
        ),
        (|p| p.groups[0].depth = histogram(&[]), "groups[0].depth"),
        (
            |p| p.groups[0].depth = histogram(&[(4096, 1), (4096, 1)]),
            "groups[0].depth.buckets[1]"
        ),
        (
            |p| p.groups[0].depth = histogram(&[(20_000, 1)]),
            "groups[0].depth.buckets[0]"
        ),
        (
            |p| p.groups[0].sleep_depth = histogram(&[(100, 0)]),
            "groups[0].sleep_depth"
        ),
    ];
    for (spoil, field) in cases {
        let mut p = plan();
        spoil(&mut p);
        let e = p.check().expect_err(field);
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn a_plan_naming_an_unknown_policy_does_not_parse() {
    let json = serde_json::to_string(&plan()).unwrap();
    assert!(json.contains("\"policy\":\"fault\""), "{json}");
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan());
    let bad = json.replace("\"policy\":\"fault\"", "\"policy\":\"lazy\"");
    let error = std::format!("{}", serde_json::from_str::<Plan>(&bad).unwrap_err());
    assert!(error.contains("unknown variant `lazy`"), "{error}");
    // The kernel's parser refuses it the same way.
    assert!(serde_json_core::from_str::<Plan>(&bad).is_err());
    assert!(serde_json_core::from_str::<Plan>(&json).is_ok());
}

#[test]
fn slots_follow_the_plan_with_a_margin_only_for_churn() {
    // Long-lived threads need their own slots and the kernel's; replaced threads need room for
    // stacks that wait to be reused.
    assert_eq!(slots_for(1_000, false), 1_000 + KERNEL_SLOTS);
    assert_eq!(slots_for(1_000, true), 1_000 + KERNEL_SLOTS + CHURN_SLOTS);
    assert_eq!(slots_for(MAX_PLAN_THREADS, true), MAX_SLOTS);
    assert_eq!(slots_for(u32::MAX, false), MAX_SLOTS);
}

//! The built-in `mixed` workload (`workload=mixed`): a little of everything, under every
//! implemented policy.

use alloc::vec::Vec;

use dks_protocol::scenario::{Bucket, GroupPlan, Histogram, Lifetime, PLAN_VERSION, Plan, Wake};

fn fixed(bytes: u32) -> Histogram {
    Histogram {
        buckets: alloc::vec![
            Bucket {
                up_to_bytes: bytes - 1,
                weight: 0
            },
            Bucket {
                up_to_bytes: bytes,
                weight: 1
            }
        ],
    }
}

/// The built-in `mixed` workload: for every implemented policy, long-lived threads that
/// sleep shallow and sometimes go deep, and short-lived ones.
pub fn mixed(max_stack_bytes: u32) -> Plan {
    let mut groups = Vec::new();
    for policy in crate::stacks::IMPLEMENTED {
        groups.push(GroupPlan {
            name: alloc::format!("sleepers-{}", policy.name()),
            policy,
            threads: 24,
            lifetime: Lifetime::Long,
            calls: 3,
            respawn: false,
            depth: Histogram {
                buckets: alloc::vec![
                    Bucket {
                        up_to_bytes: 2048,
                        weight: 70
                    },
                    Bucket {
                        up_to_bytes: 6000,
                        weight: 25
                    },
                    Bucket {
                        up_to_bytes: 11_000,
                        weight: 5
                    },
                ],
            },
            sleep_depth: fixed(700),
            block_percent: 20,
            irqoff_percent: 0,
            sleep_ms: 5,
            wake: Wake::Timer,
        });
        groups.push(GroupPlan {
            name: alloc::format!("short-{}", policy.name()),
            policy,
            threads: 8,
            lifetime: Lifetime::Short,
            calls: 4,
            respawn: true,
            depth: Histogram {
                buckets: alloc::vec![Bucket {
                    up_to_bytes: 3000,
                    weight: 1
                }],
            },
            sleep_depth: fixed(700),
            block_percent: 10,
            irqoff_percent: 0,
            sleep_ms: 2,
            wake: Wake::Peer,
        });
    }
    Plan {
        version: PLAN_VERSION,
        name: "mixed".into(),
        seed: 1,
        duration_ms: 1500,
        sample_ms: 100,
        max_stack_bytes,
        groups,
    }
}

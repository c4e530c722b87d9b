//! Property tests: random sequences of create, grow (fault), switch, sleep,
//! wake, reclaim, pack, stop and exit on several CPUs, under each policy and all of them
//! mixed, with random allocation failures and memory pressure, on 1 to 4 CPUs
//! (a woken thread may land on another CPU: migration). After every
//! step the invariants of DESIGN §10 are checked ([`World::check`]); after
//! the last, every thread exits and memory must return to its baseline.

mod world;

use dks_core::emulated::FailurePattern;
use dks_core::{Account, Counter, Policy};
use proptest::prelude::*;
use world::{Depth, Op, World, WorldConfig};

fn failures() -> impl Strategy<Value = FailurePattern> {
    prop_oneof![
        Just(FailurePattern::Never),
        (2u32..6).prop_map(FailurePattern::EveryNth),
        (0u16..=900).prop_map(|per_mille| FailurePattern::Fraction { per_mille }),
        Just(FailurePattern::AllAtomic),
    ]
}

fn config() -> impl Strategy<Value = WorldConfig> {
    (
        1u32..=4,
        prop::sample::select(vec![0x4000u64, 0x8000, 0x1_0000]),
        24u32..160,
        0u32..8,
        failures(),
        any::<u64>(),
        prop::option::of(1u64..24),
    )
        .prop_map(
            |(cpus, max_stack_bytes, frames, reserve, failures, seed, limit)| WorldConfig {
                cpus,
                slots: 12,
                max_stack_bytes,
                frames,
                atomic_reserve_frames: reserve,
                failures,
                seed,
                groups: 2,
                group_limit_pages: limit,
            },
        )
}

fn depth() -> impl Strategy<Value = Depth> {
    prop_oneof![
        (0u16..=1000).prop_map(Depth::PerMille),
        (any::<u8>(), 1u8..=128).prop_map(|(page, offset)| Depth::NearPageEnd { page, offset }),
    ]
}

/// Half the time a depth within the top page (as most sleepers in the Linux census: the
/// ones `pack` packs), else any depth.
fn shallow_or_any_depth() -> impl Strategy<Value = Depth> {
    prop_oneof![depth(), (0u16..40).prop_map(Depth::PerMille)]
}

fn op() -> impl Strategy<Value = Op> {
    op_on(4)
}

/// An operation on one of `cpus` CPUs.
fn op_on(cpus: usize) -> impl Strategy<Value = Op> {
    let cpu = 0usize..cpus;
    prop_oneof![
        3 => (cpu.clone(), 0usize..Policy::COUNT, 0usize..2)
            .prop_map(|(cpu, policy, group)| Op::Create { cpu, policy, group }),
        6 => (cpu.clone(), depth()).prop_map(|(cpu, depth)| Op::Grow { cpu, depth }),
        2 => (cpu.clone(), shallow_or_any_depth()).prop_map(|(cpu, depth)| Op::Shrink { cpu, depth }),
        6 => cpu.clone().prop_map(|cpu| Op::Switch { cpu }),
        3 => cpu.clone().prop_map(|cpu| Op::Sleep { cpu }),
        3 => (any::<usize>(), cpu.clone()).prop_map(|(pick, cpu)| Op::Wake { pick, cpu }),
        2 => cpu.clone().prop_map(|cpu| Op::Pressure { cpu }),
        2 => cpu.clone().prop_map(|cpu| Op::Exit { cpu }),
        1 => cpu.clone().prop_map(|cpu| Op::Overflow { cpu }),
        1 => (1u32..16).prop_map(|frames| Op::Squeeze { frames }),
        1 => (1u32..16).prop_map(|frames| Op::Unsqueeze { frames }),
        6 => (cpu.clone(), any::<bool>()).prop_map(|(cpu, guard)| Op::Pack { cpu, guard }),
        1 => any::<usize>().prop_map(|pick| Op::Stop { pick }),
        2 => (any::<usize>(), cpu).prop_map(|(pick, cpu)| Op::ForeignTouch { pick, cpu }),
        2 => any::<usize>().prop_map(|pick| Op::Corrupt { pick }),
    ]
}

/// Runs `ops` under `policies` and checks everything after every step.
fn run(config: WorldConfig, policies: &[Policy], ops: &[Op]) -> World {
    let mut world = World::new(config, policies);
    world.check();
    for &op in ops {
        world.apply(op);
        world.check();
    }
    world.tear_down();
    world
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn static_policy(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        run(config, &[Policy::Static], &ops);
    }

    #[test]
    fn fault_policy(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        run(config, &[Policy::Fault], &ops);
    }

    #[test]
    fn guaranteed_policy_never_faults_fatally(
        config in config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(config, &[Policy::Guaranteed], &ops);
    }

    #[test]
    fn reclaim_policy_never_faults_fatally(
        config in config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(config, &[Policy::Reclaim], &ops);
    }

    #[test]
    fn switch_policy_never_faults(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let world = run(config, &[Policy::Switch], &ops);
        prop_assert_eq!(world.seen.served_faults, 0);
    }

    /// Pack, restore (at wake and before switch-in), wake onto another CPU, stop, with
    /// foreign touches and corrupted buffers: never switched in packed, bytes restored equal
    /// bytes packed (checked at every switch-in), every page and buffer accounted.
    #[test]
    fn pack_policy_restores_every_byte_and_never_runs_packed(
        config in config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(config, &[Policy::Pack], &ops);
    }

    #[test]
    fn all_policies_side_by_side(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let world = run(config, &Policy::ALL, &ops);
        // `switch` maps every page before its thread runs, wherever it runs: no stack fault,
        // even beside the other policies and migrating between CPUs.
        let totals = world.totals();
        let switch = totals.account(Account::Policy(Policy::Switch));
        prop_assert_eq!(switch.events(Counter::Faults), 0);
        prop_assert_eq!(switch.events(Counter::Fatal), 0);
        prop_assert_eq!(totals.get(Counter::SwitchFaults), 0);
    }

    #[test]
    fn policies_without_the_fault_policy_never_fault_fatally(
        config in config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let world = run(
            config,
            &[Policy::Static, Policy::Guaranteed, Policy::Reclaim, Policy::Switch, Policy::Pack],
            &ops,
        );
        prop_assert_eq!(world.seen.fatal_faults, 0);
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Four CPUs (the kernel's most), every policy side by side, tasks woken on any CPU (so
    /// they migrate) and trimmed under pressure while asleep: every invariant holds after
    /// every step, and only `fault` faults fatally.
    #[test]
    fn all_policies_on_four_cpus_with_migration_and_trims(
        config in config().prop_map(|config| WorldConfig { cpus: 4, ..config }),
        ops in prop::collection::vec(op_on(4), 1..120),
    ) {
        let world = run(config, &Policy::ALL, &ops);
        let totals = world.totals();
        for policy in Policy::ALL.into_iter().filter(|&p| p != Policy::Fault) {
            // The only fatal faults of `pack` are the foreign touches of packed stacks the run
            // made on purpose (refused, never served).
            let expected = if policy == Policy::Pack { world.seen.packed_touches } else { 0 };
            prop_assert_eq!(
                totals.account(Account::Policy(policy)).events(Counter::Fatal),
                expected,
                "{}",
                policy
            );
        }
    }
}

/// The generators reach the events the properties are about: without this,
/// a property could pass because nothing interesting ever happened.
#[test]
fn the_generated_runs_reach_every_interesting_event() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let events = [
        Counter::Faults,
        Counter::Fatal,
        Counter::Reclaimed,
        Counter::AdmitWait,
        Counter::RefillFail,
        Counter::GuardHits,
        Counter::ReclaimedAccessedClear,
        Counter::FlushesAvoided,
        Counter::Packs,
        Counter::Restores,
        Counter::RestoreWait,
        Counter::PackChecksumFail,
        Counter::PackGuardCatches,
    ];
    let mut totals = [0i64; 13];
    let mut restored_bytes_checked = 0;
    let mut shootdowns = 0;
    let mut create_failures = 0;
    for policies in [
        &[Policy::Fault][..],
        &[Policy::Reclaim],
        &[Policy::Switch],
        &[Policy::Pack],
        &Policy::ALL,
    ] {
        // A restore wait or a corrupted restore needs several steps to line up (a sleeper
        // packed, then memory short or its buffer hit, then a wake-up): more `pack` runs.
        let runs = if policies == [Policy::Pack] { 256 } else { 64 };
        for _ in 0..runs {
            let config = config().new_tree(&mut runner).unwrap().current();
            let ops = prop::collection::vec(op(), 40..80)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let mut world = World::new(config, policies);
            for op in ops {
                world.apply(op);
            }
            let counted = world.totals();
            for (total, event) in totals.iter_mut().zip(events) {
                *total += counted.get(event);
            }
            shootdowns += world.platform.stats().shootdowns;
            create_failures += world.seen.create_failures;
            restored_bytes_checked += world.seen.restored_bytes_checked;
            world.tear_down();
        }
    }
    for (total, event) in totals.into_iter().zip(events) {
        assert!(total > 0, "no {} in any run", event.name());
    }
    assert!(shootdowns > 0);
    assert!(create_failures > 0);
    assert!(restored_bytes_checked > 0);
}

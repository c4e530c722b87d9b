//! Every interleaving, up to a depth, of pack, restore (wake), wake onto either CPU (a
//! migration), switch, sleep, stop, growth and memory running out and coming back, for two `pack`
//! threads on two CPUs: the bounded, exhaustive counterpart of the property tests. After
//! every step the world's invariants hold ([`World::check`]: no thread runs packed, every
//! buffer owned by exactly one packed stack, every page and frame accounted, counters agree)
//! and every switch-in finds the bytes its thread left; after the last, everything is torn
//! down and memory is back at its baseline.

mod world;

use dks_core::Policy;
use dks_core::emulated::FailurePattern;
use world::{Depth, Op, World, WorldConfig};

/// The steps each position of an interleaving chooses from.
const STEPS: [Op; 13] = [
    Op::Switch { cpu: 0 },
    Op::Switch { cpu: 1 },
    Op::Sleep { cpu: 0 },
    Op::Sleep { cpu: 1 },
    Op::Wake { pick: 0, cpu: 0 },
    Op::Wake { pick: 0, cpu: 1 },
    Op::Wake { pick: 1, cpu: 1 },
    Op::Pack {
        cpu: 0,
        guard: false,
    },
    Op::Pack {
        cpu: 1,
        guard: true,
    },
    Op::Stop { pick: 0 },
    Op::Squeeze { frames: 64 },
    Op::Unsqueeze { frames: 64 },
    // The thread on CPU 0 grows to its whole stack: every fault must find a page.
    Op::Grow {
        cpu: 0,
        depth: Depth::PerMille(1000),
    },
];

fn config() -> WorldConfig {
    WorldConfig {
        cpus: 2,
        slots: 4,
        max_stack_bytes: 0x4000,
        frames: 24,
        atomic_reserve_frames: 0,
        failures: FailurePattern::Never,
        seed: 0,
        groups: 1,
        group_limit_pages: None,
    }
}

/// Two `pack` threads, one running on each CPU, each with a live stack of some bytes.
fn start() -> World {
    let mut world = World::new(config(), &[Policy::Pack]);
    for cpu in 0..2 {
        world.apply(Op::Create {
            cpu,
            policy: 0,
            group: 0,
        });
        world.apply(Op::Switch { cpu });
        world.apply(Op::Grow {
            cpu,
            depth: Depth::PerMille(20 + 300 * cpu as u16),
        });
        world.apply(Op::Shrink {
            cpu,
            depth: Depth::PerMille(40),
        });
    }
    world.check();
    world
}

fn run(steps: &[Op]) -> World {
    let mut world = start();
    for &op in steps {
        world.apply(op);
        world.check();
    }
    world
}

#[test]
fn every_interleaving_of_pack_restore_wake_migrate_and_stop_keeps_the_invariants() {
    const DEPTH: u32 = 4;
    let mut seen = world::Seen::default();
    let mut steps = vec![STEPS[0]; DEPTH as usize];
    for n in 0..STEPS.len().pow(DEPTH) {
        let mut rest = n;
        for step in &mut steps {
            *step = STEPS[rest % STEPS.len()];
            rest /= STEPS.len();
        }
        let mut world = run(&steps);
        seen.packs += world.seen.packs;
        seen.restores += world.seen.restores;
        seen.restore_waits += world.seen.restore_waits;
        seen.restored_bytes_checked += world.seen.restored_bytes_checked;
        world.tear_down();
    }
    // The interleavings reach what they are about.
    assert!(seen.packs > 0);
    assert!(seen.restores > 0);
    assert!(seen.restore_waits > 0);
    assert!(seen.restored_bytes_checked > 0);
}

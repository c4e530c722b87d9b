//! The maintainers' objection 1, shown on the emulated machine: under the
//! RFC's `fault` policy a failed atomic refill makes the next stack fault
//! fatal; the same sequence under `guaranteed` delays the task instead.

mod world;

use dks_core::emulated::FailurePattern;
use dks_core::layout::PAGE_SIZE_IN_BYTES;
use dks_core::switch::{self, Admission};
use dks_core::{Counter, FatalReason, FaultOutcome, Policy, Tally};
use world::{World, WorldConfig};

fn world(policy: Policy) -> World {
    World::new(
        WorldConfig {
            cpus: 1,
            slots: 4,
            max_stack_bytes: 0x4000,
            frames: 64,
            atomic_reserve_frames: 0,
            failures: FailurePattern::Never,
            seed: 0,
            groups: 1,
            group_limit_pages: None,
        },
        &[policy],
    )
}

#[test]
fn under_fault_a_failed_refill_makes_the_next_stack_fault_fatal() {
    let mut world = world(Policy::Fault);
    let slot = world.create(0, Policy::Fault, 0).expect("created");
    // Atomic allocations fail from now on (memory is tight at switch time).
    world.platform.set_failures(FailurePattern::AllAtomic);
    // The switch succeeds: `fault` admits anyone, and refills afterwards...
    world.schedule(0);
    assert_eq!(world.cpus[0].running, Some(slot.as_u32()));
    let totals = world.totals();
    // ...and that refill failed.
    assert_eq!(
        (
            totals.get(Counter::Refills),
            totals.get(Counter::RefillFail)
        ),
        (1, 1)
    );
    assert!(world.cpus[0].percpu.magazine.is_empty());

    // The thread grows into its second page: the fault finds no frame.
    let addr = world.layout.page_addr(slot, dks_core::StackPage::new(1));
    assert!(world.platform.touch(addr).is_err());
    let outcome = world.fault(0, addr);
    assert_eq!(
        outcome,
        FaultOutcome::Fatal {
            slot,
            addr,
            depth_in_bytes: 2 * PAGE_SIZE_IN_BYTES,
            reason: FatalReason::MagazineEmpty,
        }
    );
    let totals = world.totals();
    assert_eq!(totals.get(Counter::Fatal), 1);
}

#[test]
fn under_guaranteed_the_same_failure_delays_the_task_instead() {
    let mut world = world(Policy::Guaranteed);
    let slot = world.create(0, Policy::Guaranteed, 0).expect("created");
    world.platform.set_failures(FailurePattern::AllAtomic);
    // Admission refuses: the magazine cannot cover need(T) = 3.
    {
        let World {
            platform,
            layout,
            cpus,
            groups,
            tasks,
            ledger,
            ..
        } = &mut world;
        let cpu = &mut cpus[0];
        let task = tasks.get_mut(&slot.as_u32()).expect("task");
        let admission = switch::prepare(
            platform,
            layout,
            &mut cpu.percpu.magazine,
            Tally::new(&cpu.counters, ledger),
            &groups[0],
            &mut task.stack,
        );
        assert_eq!(admission, Admission::Wait { need: 3, have: 0 });
    }
    world.seen.admit_waits += 1;
    world.schedule(0);
    assert_eq!(
        world.cpus[0].running, None,
        "the task waits; it does not run"
    );

    // Memory comes back (the reclaim thread did its work): the task is
    // admitted and grows to the bottom of its stack without a fatal fault.
    world.platform.set_failures(FailurePattern::Never);
    world.schedule(0);
    assert_eq!(world.cpus[0].running, Some(slot.as_u32()));
    world.platform.set_failures(FailurePattern::AllAtomic);
    world.grow(0, 0x4000 - 128);
    world.check();
    let totals = world.totals();
    assert_eq!(
        (totals.get(Counter::Faults), totals.get(Counter::Fatal)),
        (3, 0)
    );
    assert_eq!(totals.get(Counter::AdmitWait), 2);
    world.tear_down();
}

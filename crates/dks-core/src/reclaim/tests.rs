use super::*;
use crate::counters::Counter;
use crate::layout::{SlotIndex, StackPage};
use crate::policy::Policy;
use crate::switch::{self, SwitchOut, SwitchOutReason};
use crate::test_fixture::Fixture;

/// A stack of `policy` in slot 0 that faulted in its whole 16 KiB.
fn deep_stack(fx: &mut Fixture, policy: Policy) -> Stack {
    let mut stack = fx.create(policy, 0);
    fx.refill();
    fx.touch_to_depth(&mut stack, 0x4000);
    stack
}

fn sleep(fx: &mut Fixture, stack: &mut Stack, depth: u64) {
    let saved_sp = fx.sp(stack, depth);
    let given_back = switch::switch_out(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        stack,
        SwitchOut {
            saved_sp,
            reason: SwitchOutReason::Asleep,
        },
    );
    assert_eq!(given_back, Ok(0));
}

#[test]
fn dead_pages_are_the_populated_pages_below_the_red_zone() {
    let mut fx = Fixture::new();
    let stack = deep_stack(&mut fx, Policy::Reclaim);
    let dead = |depth: u64| dead_pages(&fx.layout, &stack, fx.sp(&stack, depth)).unwrap();
    assert_eq!(dead(64), PageSet::from_bits(0b1110));
    assert_eq!(dead(0x1000 - 128), PageSet::from_bits(0b1110));
    // The red zone reaches into page 1.
    assert_eq!(dead(0x1000 - 127), PageSet::from_bits(0b1100));
    assert_eq!(dead(0x4000), PageSet::EMPTY);
    let below = fx.layout.guard_page_addr(stack.slot(), 0);
    assert_eq!(
        dead_pages(&fx.layout, &stack, below),
        Err(LayoutError::SpOutsideStack {
            slot: stack.slot(),
            sp: below
        })
    );
}

#[test]
fn the_plan_sorts_dead_pages_by_their_accessed_bit() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Switch, 0);
    // Map pages 1..3 without touching them, then touch page 2.
    fx.refill();
    for page in 1..4 {
        let frame = fx.cpu.magazine.take().unwrap();
        let addr = fx.page_addr(&stack, page);
        let flush = fx.platform.map_stack_page(addr, frame);
        assert_eq!(flush.need(), FlushNeed::NotCached);
        stack.note_populated(StackPage::new(page));
    }
    fx.platform.touch(fx.page_addr(&stack, 2)).unwrap();
    let plan = switch_out_plan(&fx.platform, &fx.layout, &stack, fx.sp(&stack, 100)).unwrap();
    assert_eq!(
        plan,
        SwitchOutPlan {
            unmap_without_flush: PageSet::from_bits(0b1010),
            unmap_with_shootdown: PageSet::from_bits(0b0100),
            keep: PageSet::from_bits(0b0001),
        }
    );
    assert!(switch_out_plan(&fx.platform, &fx.layout, &stack, VirtAddr::new(0)).is_err());
}

#[test]
fn a_sleeping_reclaim_task_gives_back_its_dead_pages_with_one_shootdown() {
    let mut fx = Fixture::new();
    let mut stack = deep_stack(&mut fx, Policy::Reclaim);
    let free_before = fx.platform.free_frames();
    sleep(&mut fx, &mut stack, 0x1100);
    let reclaimed = reclaim_asleep(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        &mut stack,
    );
    assert_eq!(reclaimed, 2);
    assert_eq!(stack.populated(), PageSet::top(2));
    assert_eq!(stack.peak_populated_pages(), 4);
    // Touched pages: freed after a shootdown, not put in the magazine.
    assert_eq!(fx.platform.stats().shootdowns, 1);
    assert_eq!(fx.platform.stats().shot_down_pages, 2);
    assert_eq!(fx.platform.free_frames(), free_before + 2);
    fx.platform.check_tlbs().unwrap();
    fx.platform
        .check_slot(&fx.layout, stack.slot(), Some(PageSet::top(2)))
        .unwrap();
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::Reclaimed),
            counters.get(Counter::NrKernelStackKb)
        ),
        (2, 8)
    );
    assert_eq!(fx.group.charged_pages(), 2);
    // Nothing more to take; the pages fault back in after a wake.
    assert_eq!(
        reclaim_asleep(
            &mut fx.platform,
            &fx.layout,
            &mut fx.cpu.magazine,
            fx.counters.tally(),
            &fx.group,
            &mut stack
        ),
        0
    );
    stack.wake();
    fx.refill();
    fx.touch_to_depth(&mut stack, 0x4000);
    assert_eq!(stack.populated(), PageSet::top(4));
}

#[test]
fn only_sleeping_tasks_of_reclaiming_policies_give_pages_back() {
    for policy in [
        Policy::Static,
        Policy::Fault,
        Policy::Guaranteed,
        Policy::Reclaim,
    ] {
        let mut fx = Fixture::new();
        let mut stack = if policy == Policy::Static {
            fx.create(policy, 0)
        } else {
            deep_stack(&mut fx, policy)
        };
        let reclaim = |fx: &mut Fixture, stack: &mut Stack| {
            reclaim_asleep(
                &mut fx.platform,
                &fx.layout,
                &mut fx.cpu.magazine,
                fx.counters.tally(),
                &fx.group,
                stack,
            )
        };
        // Never switched out.
        assert_eq!(reclaim(&mut fx, &mut stack), 0);
        let saved_sp = fx.sp(&stack, 64);
        let _ = switch::switch_out(
            &mut fx.platform,
            &fx.layout,
            &mut fx.cpu.magazine,
            fx.counters.tally(),
            &fx.group,
            &mut stack,
            SwitchOut {
                saved_sp,
                reason: SwitchOutReason::Preempted,
            },
        );
        // Switched out but runnable.
        assert_eq!(reclaim(&mut fx, &mut stack), 0);
        sleep(&mut fx, &mut stack, 64);
        let expected = if policy == Policy::Reclaim { 3 } else { 0 };
        assert_eq!(reclaim(&mut fx, &mut stack), expected, "{policy}");
    }
}

#[test]
fn untouched_dead_pages_go_back_to_the_magazine_without_a_flush() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Reclaim, 0);
    fx.refill();
    // Fault page 1 in but never write it (as populate_span may).
    let top = fx.layout.stack_top(SlotIndex::new(0));
    let mut table = crate::emulated::OneStack::new(&mut fx.cpu.magazine, &mut stack, &fx.group);
    let mapped = crate::fault::populate_span(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut table,
        VirtAddr::new(top.as_u64() - 0x1800),
        top,
    );
    assert_eq!(mapped, Ok(()));
    assert_eq!(fx.cpu.magazine.len(), 2);
    sleep(&mut fx, &mut stack, 64);
    let reclaimed = reclaim_asleep(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        &mut stack,
    );
    assert_eq!(reclaimed, 1);
    assert_eq!(fx.cpu.magazine.len(), 3);
    assert_eq!(fx.platform.stats().shootdowns, 0);
    assert!(
        fx.cpu
            .magazine
            .frames()
            .all(|f| fx.platform.is_clean(f.phys_addr()))
    );
}

#[test]
fn a_trim_counts_its_pages_under_its_cause_and_nothing_for_an_awake_task() {
    let mut fx = Fixture::new();
    let mut stack = deep_stack(&mut fx, Policy::Reclaim);
    sleep(&mut fx, &mut stack, 0x1100);
    let trimmed = trim_asleep(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        &mut stack,
        TrimCause::LongSleep,
    );
    assert_eq!(trimmed, 2);
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::Reclaimed),
            counters.get(Counter::ReclaimedDeadAsleep),
            counters.get(Counter::ReclaimedDeadPressure),
        ),
        (2, 2, 0)
    );
    // Woken before the trim: nothing is taken, nothing counted.
    stack.wake();
    fx.refill();
    fx.touch_to_depth(&mut stack, 0x4000);
    let trimmed = trim_asleep(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        &mut stack,
        TrimCause::Pressure,
    );
    assert_eq!(trimmed, 0);
    assert_eq!(stack.populated(), PageSet::top(4));
    assert_eq!(fx.counters.totals().get(Counter::ReclaimedDeadPressure), 0);
}

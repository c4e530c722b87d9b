use super::*;
use crate::account::Account;
use crate::counters::Counter;
use crate::emulated::FailurePattern;
use crate::fault::FaultOutcome;
use crate::page_set::PageSet;
use crate::policy::Policy;
use crate::test_fixture::Fixture;

fn prepare_next(fx: &mut Fixture, next: &mut Stack) -> Admission {
    prepare(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        next,
    )
}

fn switch_out_at(
    fx: &mut Fixture,
    prev: &mut Stack,
    depth: u64,
    reason: SwitchOutReason,
) -> Result<u8, LayoutError> {
    let saved_sp = fx.sp(prev, depth);
    switch_out(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        prev,
        SwitchOut { saved_sp, reason },
    )
}

#[test]
fn policies_without_admission_are_admitted_without_a_refill() {
    for policy in [Policy::Static, Policy::Fault] {
        let mut fx = Fixture::new();
        let mut next = fx.create(policy, 0);
        assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
        assert!(fx.cpu.magazine.is_empty());
        assert_eq!(fx.count(Counter::Refills), 0);
    }
}

#[test]
fn admission_refills_until_the_need_is_covered() {
    for policy in [Policy::Guaranteed, Policy::Reclaim] {
        let mut fx = Fixture::new();
        let mut next = fx.create(policy, 0);
        assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
        assert_eq!(fx.cpu.magazine.len(), 3);
        let counters = fx.counters.totals();
        assert_eq!(
            (
                counters.get(Counter::Refills),
                counters.get(Counter::RefillFail)
            ),
            (1, 0)
        );
        // Covered already: no refill.
        assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
        assert_eq!(fx.count(Counter::Refills), 1);
        assert_eq!(next.populated(), PageSet::top(1), "{policy}");
    }
}

#[test]
fn admission_waits_when_the_atomic_refill_cannot_cover_the_need() {
    let mut fx = Fixture::new();
    let mut next = fx.create(Policy::Guaranteed, 0);
    fx.platform.set_failures(FailurePattern::AllAtomic);
    assert_eq!(
        prepare_next(&mut fx, &mut next),
        Admission::Wait { need: 3, have: 0 }
    );
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::AdmitWait),
            counters.get(Counter::Refills),
            counters.get(Counter::RefillFail)
        ),
        (1, 1, 1)
    );
    // A partial refill is not enough either.
    fx.platform.set_failures(FailurePattern::EveryNth(2));
    assert_eq!(
        prepare_next(&mut fx, &mut next),
        Admission::Wait { need: 3, have: 1 }
    );
    fx.platform.set_failures(FailurePattern::Never);
    assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
    // A task that needs less is admitted with what there is.
    let mut deep = fx.create(Policy::Reclaim, 1);
    fx.touch_to_depth(&mut deep, 0x3000);
    fx.platform.set_failures(FailurePattern::AllAtomic);
    assert_eq!(fx.cpu.magazine.len(), 1);
    assert_eq!(prepare_next(&mut fx, &mut deep), Admission::Admitted);
}

#[test]
fn switch_maps_every_page_before_the_task_runs_and_never_faults() {
    let mut fx = Fixture::new();
    let mut next = fx.create(Policy::Switch, 0);
    assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
    assert_eq!(next.populated(), PageSet::top(4));
    assert!(fx.cpu.magazine.is_empty());
    assert_eq!(fx.group.charged_pages(), 4);
    assert_eq!(fx.count(Counter::NrKernelStackKb), 16);
    assert_eq!(
        finish(
            &mut fx.platform,
            &mut fx.cpu.magazine,
            fx.counters.tally(),
            &mut next
        ),
        None
    );
    // The task touches two pages; it cannot fault.
    for page in 0..2 {
        fx.platform.touch(fx.page_addr(&next, page)).unwrap();
    }
    assert_eq!(fx.count(Counter::Faults), 0);
    // At switch-out the two untouched dead pages go back, with no flush, to
    // the magazine.
    assert_eq!(
        switch_out_at(&mut fx, &mut next, 0x1200, SwitchOutReason::Preempted),
        Ok(2)
    );
    assert_eq!(next.populated(), PageSet::top(2));
    assert_eq!(fx.cpu.magazine.len(), 2);
    assert_eq!(fx.platform.stats().shootdowns, 0);
    fx.platform.check_tlbs().unwrap();
    fx.platform
        .check_slot(&fx.layout, next.slot(), Some(PageSet::top(2)))
        .unwrap();
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::Reclaimed),
            counters.get(Counter::NrKernelStackKb)
        ),
        (2, 8)
    );
    assert_eq!(
        (
            counters.get(Counter::ReclaimedAccessedClear),
            counters.get(Counter::FlushesAvoided)
        ),
        (2, 1),
        "pages returned for a clear Accessed bit, and the one shootdown that was not needed"
    );
    assert_eq!(fx.group.charged_pages(), 2);
    // Touched dead pages stay (unmapping them would need a shootdown).
    assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
    let _ = finish(
        &mut fx.platform,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &mut next,
    );
    assert_eq!(
        switch_out_at(&mut fx, &mut next, 64, SwitchOutReason::Asleep),
        Ok(2)
    );
    assert_eq!(next.populated(), PageSet::top(2));
    assert!(next.is_asleep());
    let counters = fx.counters.totals();
    assert_eq!(counters.get(Counter::ReclaimedAccessedClear), 4);
    assert_eq!(counters.get(Counter::FlushesAvoided), 2);
    assert_eq!(counters.get(Counter::SwitchFaults), 0);
}

#[test]
fn a_switch_out_that_gives_nothing_back_avoids_no_flush() {
    let mut fx = Fixture::new();
    let mut next = fx.create(Policy::Switch, 0);
    assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
    // Every page touched: nothing is dead and clear, nothing goes back.
    for page in 0..4 {
        fx.platform.touch(fx.page_addr(&next, page)).unwrap();
    }
    assert_eq!(
        switch_out_at(&mut fx, &mut next, 0x100, SwitchOutReason::Preempted),
        Ok(0)
    );
    let counters = fx.counters.totals();
    assert_eq!(counters.get(Counter::ReclaimedAccessedClear), 0);
    assert_eq!(counters.get(Counter::FlushesAvoided), 0);
}

#[test]
fn a_stack_fault_of_a_switch_thread_is_served_and_counted_as_a_bug() {
    let mut fx = Fixture::new();
    let mut next = fx.create(Policy::Switch, 0);
    assert_eq!(prepare_next(&mut fx, &mut next), Admission::Admitted);
    fx.platform.touch(fx.page_addr(&next, 0)).unwrap();
    assert_eq!(
        switch_out_at(&mut fx, &mut next, 0x100, SwitchOutReason::Preempted),
        Ok(3)
    );
    // Touching a page it gave back without being admitted again (the kernel never lets it
    // run so) is a stack fault: served from the magazine, and counted as a bug.
    let addr = fx.page_addr(&next, 2);
    assert!(fx.platform.touch(addr).is_err(), "the page went back");
    let outcome = fx.fault(&mut next, addr);
    assert!(
        matches!(outcome, FaultOutcome::Served { .. }),
        "{outcome:?}"
    );
    let counters = fx.counters.totals();
    assert_eq!(counters.get(Counter::Faults), 1);
    assert_eq!(counters.get(Counter::SwitchFaults), 1);
}

#[test]
fn the_fault_policy_refills_after_the_switch_and_may_fail() {
    let mut fx = Fixture::new();
    let mut next = fx.create(Policy::Fault, 0);
    let refill = finish(
        &mut fx.platform,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &mut next,
    );
    assert_eq!(refill.map(|r| r.is_complete()), Some(true));
    let _ = fx.cpu.magazine.take().map(|f| fx.platform.free_frame(f));
    fx.platform.set_failures(FailurePattern::AllAtomic);
    let refill = finish(
        &mut fx.platform,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &mut next,
    );
    assert_eq!(refill.map(|r| (r.added, r.len)), Some((0, 2)));
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::Refills),
            counters.get(Counter::RefillFail)
        ),
        (2, 1)
    );
    // Full magazine: nothing counted.
    fx.platform.set_failures(FailurePattern::Never);
    let _ = refill_full(&mut fx);
    let _ = finish(
        &mut fx.platform,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &mut next,
    );
    assert_eq!(fx.count(Counter::Refills), 3);
}

fn refill_full(fx: &mut Fixture) -> Refill {
    refill(
        &mut fx.platform,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        Account::Policy(Policy::Fault),
    )
}

#[test]
fn switching_out_records_the_pointer_and_switching_in_clears_it() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 0);
    assert_eq!(
        switch_out_at(&mut fx, &mut stack, 100, SwitchOutReason::Asleep),
        Ok(0)
    );
    assert_eq!(stack.saved_sp(), Some(fx.sp(&stack, 100)));
    assert!(stack.is_asleep());
    let _ = finish(
        &mut fx.platform,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &mut stack,
    );
    assert_eq!((stack.saved_sp(), stack.is_asleep()), (None, false));
}

#[test]
fn a_pointer_outside_the_stack_is_refused_and_changes_nothing() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Switch, 0);
    assert_eq!(prepare_next(&mut fx, &mut stack), Admission::Admitted);
    let error = switch_out_at(&mut fx, &mut stack, 0x4001, SwitchOutReason::Asleep);
    assert!(matches!(error, Err(LayoutError::SpOutsideStack { .. })));
    assert_eq!(stack.saved_sp(), None);
    assert_eq!(stack.populated(), PageSet::top(4));
}

/// Whatever a switch may change, as numbers: the magazine, every counter, the group's charge,
/// the stack's pages.
fn books(fx: &Fixture, stack: &Stack) -> (u8, crate::counters::Totals, u64, PageSet) {
    (
        fx.cpu.magazine.len(),
        fx.counters.totals(),
        fx.group.charged_pages(),
        stack.populated(),
    )
}

#[test]
fn a_switch_the_predicates_skip_changes_nothing() {
    // For every policy, every need and every magazine fill: when the scheduler may skip the
    // mechanism, running it anyway admits and changes nothing it counts or holds.
    let mut skipped = [0usize; 2];
    for policy in Policy::ALL {
        let stack_pages = Fixture::new().layout.stack_pages();
        for depth_pages in 1..=stack_pages {
            for fill in 0..=Fixture::new().cpu.magazine.capacity() {
                let mut fx = Fixture::new();
                let mut stack = fx.create(policy, 0);
                if policy.grows_by_fault() {
                    fx.refill();
                    fx.touch_to_depth(&mut stack, u64::from(depth_pages) * 4096 - 64);
                }
                fx.refill();
                while fx.cpu.magazine.len() > fill {
                    let frame = fx.cpu.magazine.take().unwrap();
                    fx.platform.free_frame(frame);
                }
                let (len, capacity) = (fx.cpu.magazine.len(), fx.cpu.magazine.capacity());
                let need = stack.need(&fx.layout);
                if !switch_in_needs_mechanism(policy, need, len, capacity) {
                    skipped[0] += 1;
                    let before = books(&fx, &stack);
                    assert_eq!(prepare_next(&mut fx, &mut stack), Admission::Admitted);
                    let refill = finish(
                        &mut fx.platform,
                        &mut fx.cpu.magazine,
                        fx.counters.tally(),
                        &mut stack,
                    );
                    assert!(refill.is_none_or(|r| r.added == 0 && r.is_complete()));
                    assert_eq!(
                        books(&fx, &stack),
                        before,
                        "{policy:?} need {need} fill {len}"
                    );
                }
                for reason in [SwitchOutReason::Preempted, SwitchOutReason::Asleep] {
                    if !switch_out_needs_mechanism(policy, reason) {
                        skipped[1] += 1;
                        let before = books(&fx, &stack);
                        let given_back = switch_out_at(&mut fx, &mut stack, 64, reason);
                        assert_eq!(given_back, Ok(0));
                        assert_eq!(books(&fx, &stack), before, "{policy:?} switch-out");
                    }
                }
            }
        }
    }
    // static always, fault with a full magazine, guaranteed and reclaim whenever their need
    // is covered (reclaim only while no trim touched the stack); switch never. Switching out:
    // reclaim only when it was preempted, switch never.
    assert!(skipped[0] > 0 && skipped[1] > 0, "{skipped:?}");
    assert!(switch_in_needs_mechanism(Policy::Switch, 0, 15, 15));
    assert!(!switch_in_needs_mechanism(Policy::Reclaim, 0, 15, 15));
    for reason in [SwitchOutReason::Preempted, SwitchOutReason::Asleep] {
        assert!(switch_out_needs_mechanism(Policy::Switch, reason));
    }
    assert!(switch_out_needs_mechanism(
        Policy::Reclaim,
        SwitchOutReason::Asleep
    ));
    assert!(!switch_out_needs_mechanism(
        Policy::Reclaim,
        SwitchOutReason::Preempted
    ));
    assert!(!switch_in_needs_mechanism(Policy::Static, 3, 0, 15));
    assert!(switch_in_needs_mechanism(Policy::Fault, 0, 14, 15));
    assert!(switch_in_needs_mechanism(Policy::Guaranteed, 3, 2, 15));
}

use super::*;
use crate::cache;
use crate::counters::Counter;
use crate::deferred::DeferredFree;
use crate::emulated::FailurePattern;
use crate::test_fixture::Fixture;

fn fresh(fx: &mut Fixture, policy: Policy, slot: u32) -> Result<Created, CreateError> {
    create(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &fx.group,
        Fixture::spec(policy),
        StackSource::Fresh(SlotIndex::new(slot)),
    )
}

#[test]
fn creation_populates_what_the_policy_asks_and_marks_the_rest() {
    for policy in Policy::ALL {
        let mut fx = Fixture::new();
        let created = fresh(&mut fx, policy, 2).unwrap();
        let stack = &created.stack;
        let expected = policy.initial_pages(&fx.layout);
        assert_eq!(stack.populated(), expected, "{policy}");
        assert_eq!(created.pages_to_zero, PageSet::EMPTY);
        assert_eq!((stack.slot(), stack.policy()), (SlotIndex::new(2), policy));
        assert_eq!(stack.group(), GroupId::new(0));
        assert_eq!(stack.peak_populated_pages(), expected.len());
        assert_eq!(stack.need(&fx.layout), 4 - expected.len());
        assert_eq!((stack.saved_sp(), stack.is_asleep()), (None, false));
        let counts = fx
            .platform
            .check_slot(&fx.layout, stack.slot(), Some(expected))
            .unwrap();
        assert_eq!(counts.total(), fx.layout.slot_size_in_pages());
        assert_eq!(counts.populated, u64::from(expected.len()));
        assert_eq!(
            fx.count(Counter::NrKernelStackKb),
            4 * i64::from(expected.len())
        );
        assert_eq!(fx.group.charged_pages(), u64::from(expected.len()));
        assert_eq!(stack.page_state(StackPage::TOP), PageState::Populated);
        assert_eq!(
            stack.page_state(StackPage::new(3)),
            if policy == Policy::Static {
                PageState::Populated
            } else {
                PageState::Unpopulated {
                    owner: SlotIndex::new(2),
                }
            }
        );
        // Neighbouring slots are untouched.
        fx.platform
            .check_slot(&fx.layout, SlotIndex::new(1), None)
            .unwrap();
        fx.platform
            .check_slot(&fx.layout, SlotIndex::new(3), None)
            .unwrap();
    }
}

#[test]
fn a_group_limit_fails_creation_and_leaves_nothing_behind() {
    let mut fx = Fixture::new();
    fx.group.set_limit(Some(3));
    let error = fresh(&mut fx, Policy::Static, 1).unwrap_err();
    assert_eq!(
        error.failure,
        CreateFailure::GroupLimit(ChargeError {
            pages: 4,
            charged_pages: 0,
            limit_pages: 3
        })
    );
    assert_eq!(error.source, StackSource::Fresh(SlotIndex::new(1)));
    assert_eq!(fx.group.charged_pages(), 0);
    assert_eq!(fx.platform.free_frames(), 64);
    assert_eq!(
        fx.counters.totals(),
        crate::emulated::OneCpuCounters::new().totals()
    );
    fx.platform
        .check_slot(&fx.layout, SlotIndex::new(1), None)
        .unwrap();
    // A dynamic stack still fits.
    assert!(fresh(&mut fx, Policy::Guaranteed, 1).is_ok());
}

#[test]
fn an_allocation_failure_midway_gives_every_frame_back() {
    let mut fx = Fixture::new();
    fx.platform.set_failures(FailurePattern::EveryNth(3));
    let error = fresh(&mut fx, Policy::Static, 5).unwrap_err();
    assert_eq!(
        error.failure,
        CreateFailure::OutOfMemory {
            needed: 4,
            allocated: 2
        }
    );
    assert_eq!(error.source.slot(), SlotIndex::new(5));
    assert_eq!(fx.platform.free_frames(), 64);
    assert_eq!(fx.group.charged_pages(), 0);
    assert_eq!(fx.count(Counter::NrKernelStackKb), 0);
    fx.platform
        .check_slot(&fx.layout, SlotIndex::new(5), None)
        .unwrap();
}

#[test]
fn lean_stacks_are_cached_and_reused_and_grown_ones_are_freed() {
    let mut fx = Fixture::new();
    let release_one = |fx: &mut Fixture, stack: Stack| {
        release(
            &mut fx.platform,
            &fx.layout,
            &mut fx.cpu.cache,
            fx.counters.tally(),
            &fx.group,
            exit(stack),
            0,
        )
    };
    let reuse = |fx: &mut Fixture, policy: Policy| {
        let cached = fx.cpu.cache.take().unwrap();
        create(
            &mut fx.platform,
            &fx.layout,
            fx.counters.tally(),
            &fx.group,
            Fixture::spec(policy),
            StackSource::Cached(cached),
        )
        .unwrap()
    };

    // A stack that grew beyond its top page is freed, not passed on.
    let mut grown = fx.create(Policy::Guaranteed, 4);
    fx.refill();
    fx.touch_to_depth(&mut grown, 9000);
    assert_eq!(grown.populated(), PageSet::top(3));
    assert_eq!(
        release_one(&mut fx, grown),
        Released::Freed(SlotIndex::new(4))
    );
    assert!(fx.cpu.cache.is_empty());
    fx.platform
        .check_slot(&fx.layout, SlotIndex::new(4), None)
        .unwrap();
    assert_eq!(fx.count(Counter::NrKernelStackKb), 0);
    assert_eq!(fx.group.charged_pages(), 0);

    // A lean one is cached, still mapped (the cache owns its frame), and reused with only its
    // populated page to zero.
    let lean = fx.create(Policy::Fault, 5);
    assert_eq!(release_one(&mut fx, lean), Released::Cached);
    fx.platform
        .check_slot(&fx.layout, SlotIndex::new(5), Some(PageSet::top(1)))
        .unwrap();
    let created = reuse(&mut fx, Policy::Fault);
    assert_eq!(created.stack.slot(), SlotIndex::new(5));
    assert_eq!(created.stack.populated(), PageSet::top(1));
    assert_eq!(created.pages_to_zero, PageSet::top(1));
    assert_eq!(fx.group.charged_pages(), 1);
    assert_eq!(fx.count(Counter::NrKernelStackKb), 4);

    // A static stack is lean at four pages: cached whole, and every page needs zeroing.
    let whole = fx.create(Policy::Static, 6);
    assert_eq!(release_one(&mut fx, whole), Released::Cached);
    let created = reuse(&mut fx, Policy::Static);
    assert_eq!(created.stack.slot(), SlotIndex::new(6));
    assert_eq!(created.stack.populated(), PageSet::top(4));
    assert_eq!(created.pages_to_zero, PageSet::top(4));

    // A static thread on a cached one-page stack populates the rest, and only the old page
    // needs zeroing.
    assert_eq!(release_one(&mut fx, created.stack), Released::Cached);
    let lean = fx.create(Policy::Fault, 7);
    assert_eq!(release_one(&mut fx, lean), Released::Cached);
    let cached = fx.cpu.cache.take().unwrap();
    let cached = if cached.slot() == SlotIndex::new(7) {
        cached
    } else {
        fx.cpu.cache.take().unwrap()
    };
    let created = create(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &fx.group,
        Fixture::spec(Policy::Static),
        StackSource::Cached(cached),
    )
    .unwrap();
    assert_eq!(created.stack.populated(), PageSet::top(4));
    assert_eq!(created.pages_to_zero, PageSet::top(1));
    let fresh_page = fx.layout.page_addr(SlotIndex::new(7), StackPage::new(3));
    assert!(
        fx.platform
            .is_clean(fx.platform.frame_at(fresh_page).unwrap())
    );
}

#[test]
fn a_failed_creation_on_a_cached_stack_gives_the_cached_stack_back() {
    let mut fx = Fixture::new();
    let stack = fx.create(Policy::Fault, 0);
    let _ = release(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.cache,
        fx.counters.tally(),
        &fx.group,
        exit(stack),
        0,
    );
    let cached = fx.cpu.cache.take().unwrap();
    fx.platform.set_failures(FailurePattern::EveryNth(1));
    let error = create(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &fx.group,
        Fixture::spec(Policy::Static),
        StackSource::Cached(cached),
    )
    .unwrap_err();
    assert_eq!(
        error.failure,
        CreateFailure::OutOfMemory {
            needed: 3,
            allocated: 0
        }
    );
    let StackSource::Cached(cached) = error.source else {
        panic!("the cached stack was not given back");
    };
    assert_eq!(cached.populated(), PageSet::top(1));
    assert_eq!(fx.group.charged_pages(), 0);
}

#[test]
fn with_the_cache_full_a_release_frees_everything() {
    let mut fx = Fixture::new();
    let mut slots = Vec::new();
    for slot in 0..3 {
        let stack = fx.create(Policy::Static, slot);
        fx.platform
            .touch(fx.layout.page_addr(stack.slot(), StackPage::new(2)))
            .unwrap();
        slots.push(release(
            &mut fx.platform,
            &fx.layout,
            &mut fx.cpu.cache,
            fx.counters.tally(),
            &fx.group,
            exit(stack),
            0,
        ));
    }
    assert_eq!(
        slots,
        [
            Released::Cached,
            Released::Cached,
            Released::Freed(SlotIndex::new(2))
        ]
    );
    fx.platform
        .check_slot(&fx.layout, SlotIndex::new(2), None)
        .unwrap();
    assert_eq!(fx.platform.free_frames(), 64 - 8);
    // The touched page needed a shootdown before its frame was freed.
    assert_eq!(fx.platform.stats().shootdowns, 1);
    fx.platform.check_tlbs().unwrap();

    let freed = cache::free_all(&mut fx.platform, &fx.layout, &mut fx.cpu.cache);
    assert_eq!(freed, [Some(SlotIndex::new(0)), Some(SlotIndex::new(1))]);
    assert!(fx.cpu.cache.is_empty());
    assert_eq!(fx.platform.free_frames(), 64);
    assert_eq!(fx.platform.mapped_pages(), 0);
    for slot in 0..3 {
        fx.platform
            .check_slot(&fx.layout, SlotIndex::new(slot), None)
            .unwrap();
    }
    fx.platform.check_tlbs().unwrap();
    assert_eq!(fx.count(Counter::NrKernelStackKb), 0);
    assert_eq!(fx.group.charged_pages(), 0);
    assert_eq!(fx.group.peak_pages(), 4);
}

#[test]
fn the_deferred_queue_is_a_bounded_fifo_that_gives_back_when_full() {
    let mut fx = Fixture::new();
    let mut queue: DeferredFree<2> = DeferredFree::default();
    assert!(queue.is_empty() && queue.pop().is_none());
    for slot in 0..2 {
        let stack = fx.create(Policy::Fault, slot);
        queue.push(exit(stack)).unwrap();
    }
    let third = exit(fx.create(Policy::Fault, 2));
    let third = queue.push(third).unwrap_err();
    assert_eq!(third.slot(), SlotIndex::new(2));
    assert_eq!(queue.len(), 2);
    let slots: Vec<u32> = queue.iter().map(|s| s.slot().as_u32()).collect();
    assert_eq!(slots, [0, 1]);
    let first = queue.pop().unwrap();
    assert_eq!(
        (first.slot(), first.group()),
        (SlotIndex::new(0), GroupId::new(0))
    );
    assert_eq!(first.populated(), PageSet::top(1));
    queue.push(third).unwrap();
    let slots: Vec<u32> = queue.iter().map(|s| s.slot().as_u32()).collect();
    assert_eq!(slots, [1, 2]);
}

#[test]
fn wake_clears_sleep_and_switching_in_clears_the_saved_pointer() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Reclaim, 0);
    let sp = fx.sp(&stack, 100);
    stack.note_switched_out(sp, true);
    assert_eq!((stack.saved_sp(), stack.is_asleep()), (Some(sp), true));
    stack.wake();
    assert_eq!((stack.saved_sp(), stack.is_asleep()), (Some(sp), false));
    stack.note_switched_in();
    assert_eq!(stack.saved_sp(), None);
}

#[test]
fn a_stack_that_is_not_packed_pays_one_pointer_for_pack() {
    // The kernel keeps one `Stack` per slot of its region, live or not (a million slots in
    // the `million` scenario): pack's state lives out of line. 40 bytes without it.
    assert_eq!(core::mem::size_of::<Stack>(), 48);
    assert_eq!(core::mem::size_of::<Option<Stack>>(), 48);
}

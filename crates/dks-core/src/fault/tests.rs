use super::*;
use crate::counters::Counter;
use crate::layout::DEFAULT_STACK_REGION_BASE;
use crate::magazine::Magazine;
use crate::page_set::PageSet;
use crate::policy::Policy;
use crate::pte::{AbsentPte, bits};
use crate::test_fixture::Fixture;

#[test]
fn a_fault_on_an_unpopulated_page_is_served_from_the_magazine() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 3);
    fx.refill();
    let addr = VirtAddr::new(fx.page_addr(&stack, 2).as_u64() + 0x123);
    let outcome = fx.fault(&mut stack, addr);
    assert_eq!(
        outcome,
        FaultOutcome::Served {
            slot: SlotIndex::new(3),
            page: StackPage::new(2)
        }
    );
    assert_eq!(stack.populated(), PageSet::from_bits(0b101));
    assert_eq!(stack.peak_populated_pages(), 2);
    assert_eq!(fx.cpu.magazine.len(), 2);
    assert_eq!(fx.group.charged_pages(), 2);
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::Faults),
            counters.get(Counter::NrKernelStackKb)
        ),
        (1, 8)
    );
    fx.platform
        .check_slot(&fx.layout, stack.slot(), Some(stack.populated()))
        .unwrap();
    // The mapped frame came from the magazine, so it is zeroed.
    assert!(fx.platform.is_clean(fx.platform.frame_at(addr).unwrap()));
    fx.platform.touch(addr).unwrap();
}

#[test]
fn an_empty_magazine_makes_the_fault_fatal_and_counts_it() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Fault, 0);
    let addr = fx.page_addr(&stack, 1);
    let outcome = fx.fault(&mut stack, addr);
    assert_eq!(
        outcome,
        FaultOutcome::Fatal {
            slot: SlotIndex::new(0),
            addr,
            depth_in_bytes: 0x2000,
            reason: FatalReason::MagazineEmpty
        }
    );
    assert_eq!(fx.count(Counter::Fatal), 1);
    assert_eq!(stack.populated(), PageSet::top(1));
    fx.platform
        .check_slot(&fx.layout, stack.slot(), Some(stack.populated()))
        .unwrap();
}

#[test]
fn a_guard_page_fault_is_always_reported_with_its_depth() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 1);
    fx.refill();
    let addr = VirtAddr::new(fx.layout.stack_bottom(stack.slot()).as_u64() - 8);
    assert_eq!(
        fx.fault(&mut stack, addr),
        FaultOutcome::GuardHit {
            slot: SlotIndex::new(1),
            addr,
            depth_in_bytes: 0x4000 + 8
        }
    );
    // Also for a slot that is not in use.
    let unused = fx.layout.guard_page_addr(SlotIndex::new(6), 0);
    assert!(matches!(
        fx.fault(&mut stack, unused),
        FaultOutcome::GuardHit { slot, .. } if slot == SlotIndex::new(6)
    ));
    let counters = fx.counters.totals();
    assert_eq!(
        (
            counters.get(Counter::GuardHits),
            counters.get(Counter::Fatal)
        ),
        (2, 0)
    );
    assert_eq!(fx.cpu.magazine.len(), 3);
}

#[test]
fn faults_that_are_not_stack_faults_are_left_to_the_kernel() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 1);
    fx.refill();
    let outside = [
        VirtAddr::new(0x1000),
        VirtAddr::new(DEFAULT_STACK_REGION_BASE - 1),
        fx.layout.region_end(),
    ];
    // A present page (say, a spurious fault) and a page of an unused slot.
    let present = fx.page_addr(&stack, 0);
    let unused_slot = fx.layout.page_addr(SlotIndex::new(7), StackPage::new(1));
    for addr in outside.into_iter().chain([present, unused_slot]) {
        assert_eq!(
            fx.fault(&mut stack, addr),
            FaultOutcome::NotAStackPage,
            "{addr}"
        );
    }
    for counter in Counter::ALL {
        let expected = if counter == Counter::NrKernelStackKb {
            4
        } else {
            0
        };
        assert_eq!(fx.count(counter), expected, "{}", counter.name());
    }
}

#[test]
fn the_owner_comes_from_the_entry_and_must_match_the_slot() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    let addr = fx.page_addr(&stack, 1);
    fx.platform
        .write_raw_entry(addr, AbsentPte::unpopulated(SlotIndex::new(5)).raw());
    assert!(matches!(
        fx.fault(&mut stack, addr),
        FaultOutcome::Fatal {
            reason: FatalReason::OwnerMismatch { owner },
            ..
        } if owner == SlotIndex::new(5)
    ));
    assert_eq!(fx.cpu.magazine.len(), 3);
}

#[test]
fn an_owner_without_a_live_stack_is_fatal() {
    let mut fx = Fixture::new();
    let stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    let addr = fx.page_addr(&stack, 1);
    let mut nobody = crate::emulated::OneStack {
        magazine: &mut fx.cpu.magazine,
        stack: None,
    };
    let outcome = handle(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut nobody,
        addr,
    );
    assert!(matches!(
        outcome,
        FaultOutcome::Fatal { reason: FatalReason::NoSuchStack { owner }, .. } if owner == SlotIndex::new(2)
    ));
    // A table that hands out the wrong stack is caught too.
    let mut other = fx.create(Policy::Guaranteed, 4);
    let mut wrong = WrongStack(&mut fx.cpu.magazine, &mut other, &fx.group);
    let outcome = handle(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut wrong,
        addr,
    );
    assert!(matches!(
        outcome,
        FaultOutcome::Fatal {
            reason: FatalReason::NoSuchStack { .. },
            ..
        }
    ));
    assert_eq!(other.populated(), PageSet::top(1));
    assert_eq!(fx.count(Counter::Fatal), 2);
}

#[test]
fn a_foreign_entry_in_a_stack_slot_is_fatal() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    let addr = fx.page_addr(&stack, 3);
    fx.platform.write_raw_entry(addr, 0x0bad_0000);
    assert!(matches!(
        fx.fault(&mut stack, addr),
        FaultOutcome::Fatal {
            reason: FatalReason::ForeignEntry { entry: 0x0bad_0000 },
            ..
        }
    ));
}

#[test]
fn a_magazine_of_another_cpu_is_refused() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    fx.platform.set_current_cpu(crate::cpu::CpuId::new(1));
    let addr = fx.page_addr(&stack, 1);
    assert!(matches!(
        fx.fault(&mut stack, addr),
        FaultOutcome::Fatal {
            reason: FatalReason::WrongCpu { .. },
            ..
        }
    ));
    assert_eq!(fx.cpu.magazine.len(), 3);
}

#[test]
fn a_stack_whose_state_disagrees_with_its_entry_is_fatal() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    // The top page is populated; pretend its entry says otherwise.
    let addr = fx.page_addr(&stack, 0);
    let frame = fx.platform.frame_at(addr).unwrap();
    fx.platform
        .write_raw_entry(addr, AbsentPte::unpopulated(stack.slot()).raw());
    assert!(matches!(
        fx.fault(&mut stack, addr),
        FaultOutcome::Fatal {
            reason: FatalReason::AlreadyPopulated,
            ..
        }
    ));
    fx.platform.write_raw_entry(addr, frame | bits::PRESENT);
}

/// A table that hands out one stack whatever owner is asked for.
struct WrongStack<'a>(&'a mut Magazine, &'a mut Stack, &'a GroupCharge);

impl StackTable for WrongStack<'_> {
    fn account(&self, _: SlotIndex) -> Account {
        self.1.account()
    }

    fn with_stack<R>(
        &mut self,
        _: SlotIndex,
        serve: impl FnOnce(&mut Magazine, Option<(&mut Stack, &GroupCharge)>) -> R,
    ) -> Result<R, Busy> {
        Ok(serve(self.0, Some((self.1, self.2))))
    }
}

/// A table whose magazine or stack is always taken.
struct BusyTable(Busy);

impl StackTable for BusyTable {
    fn account(&self, _: SlotIndex) -> Account {
        Account::Policy(Policy::Fault)
    }

    fn with_stack<R>(
        &mut self,
        _: SlotIndex,
        _: impl FnOnce(&mut Magazine, Option<(&mut Stack, &GroupCharge)>) -> R,
    ) -> Result<R, Busy> {
        Err(self.0)
    }
}

#[test]
fn a_busy_magazine_or_stack_is_fatal_never_waited_for() {
    let mut fx = Fixture::new();
    let stack = fx.create(Policy::Fault, 2);
    let addr = fx.page_addr(&stack, 1);
    for (busy, name) in [
        (Busy::Magazine, "magazine_busy"),
        (Busy::Stack, "stack_busy"),
    ] {
        let outcome = handle(
            &mut fx.platform,
            &fx.layout,
            fx.counters.tally(),
            &mut BusyTable(busy),
            addr,
        );
        let FaultOutcome::Fatal { reason, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!((reason, reason.name()), (FatalReason::Busy(busy), name));
    }
    assert_eq!(fx.count_of(Policy::Fault, Counter::Fatal), 2);
    assert_eq!(stack.populated(), PageSet::top(1));
}

#[test]
fn populate_span_serves_every_missing_page_of_the_span_from_the_top() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    // A gap: page 2 touched, page 1 not.
    let deep = fx.page_addr(&stack, 2);
    assert!(matches!(
        fx.fault(&mut stack, deep),
        FaultOutcome::Served { .. }
    ));
    let top = fx.sp(&stack, 0x0f00);
    let lowest = fx.sp(&stack, 0x2100);
    let mut table = Fixture::table(&mut fx.cpu.magazine, &mut stack, &fx.group);
    let span = populate_span(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut table,
        lowest,
        top,
    );
    assert_eq!(span, Ok(()));
    assert_eq!(stack.populated(), PageSet::top(3));
    assert_eq!(fx.count(Counter::Faults), 2);
    // Already there: nothing to do.
    let mut table = Fixture::table(&mut fx.cpu.magazine, &mut stack, &fx.group);
    let again = populate_span(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut table,
        lowest,
        top,
    );
    assert_eq!(again, Ok(()));
    assert_eq!(fx.count(Counter::Faults), 2);
    // The magazine has one frame left; page 3 needs it, and the guard below comes next.
    let bottom = fx.layout.stack_bottom(stack.slot());
    let below = VirtAddr::new(bottom.as_u64() - 8);
    let mut table = Fixture::table(&mut fx.cpu.magazine, &mut stack, &fx.group);
    let overflow = populate_span(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut table,
        below,
        top,
    );
    assert_eq!(
        overflow,
        Err(FaultOutcome::GuardHit {
            slot: SlotIndex::new(2),
            addr: below,
            depth_in_bytes: 0x4008,
        })
    );
    assert_eq!(stack.populated(), PageSet::top(4));
    assert_eq!(fx.count(Counter::GuardHits), 1);
    // A page that cannot be served ends the span with its fatal outcome.
    let mut short = fx.create(Policy::Fault, 3);
    let lowest = fx.sp(&short, 0x1800);
    let mut table = Fixture::table(&mut fx.cpu.magazine, &mut short, &fx.group);
    let failed = populate_span(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut table,
        lowest,
        fx.layout.stack_top(SlotIndex::new(3)),
    );
    assert!(
        matches!(
            failed,
            Err(FaultOutcome::Fatal {
                reason: FatalReason::MagazineEmpty,
                addr,
                ..
            }) if addr == lowest
        ),
        "{failed:?}"
    );
    assert_eq!(fx.count(Counter::Fatal), 1);
    fx.platform
        .check_slot(&fx.layout, stack.slot(), Some(stack.populated()))
        .unwrap();
}

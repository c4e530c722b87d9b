use super::*;
use crate::counters::CounterSnapshot;
use crate::layout::DEFAULT_STACK_REGION_BASE;
use crate::page_set::PageSet;
use crate::policy::Policy;
use crate::pte::{AbsentPte, PTE_PRESENT};
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
    let counters = fx.counters.snapshot();
    assert_eq!((counters.dks_faults, counters.nr_kernel_stack_kb), (1, 8));
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
    assert_eq!(fx.counters.snapshot().dks_fatal, 1);
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
    let counters = fx.counters.snapshot();
    assert_eq!((counters.dks_guard_hits, counters.dks_fatal), (2, 0));
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
    assert_eq!(
        fx.counters.snapshot(),
        CounterSnapshot {
            nr_kernel_stack_kb: 4,
            ..CounterSnapshot::default()
        }
    );
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
    let outcome = handle(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        &fx.counters,
        addr,
        |_| None,
    );
    assert!(matches!(
        outcome,
        FaultOutcome::Fatal { reason: FatalReason::NoSuchStack { owner }, .. } if owner == SlotIndex::new(2)
    ));
    // A lookup that returns the wrong stack is caught too.
    let mut other = fx.create(Policy::Guaranteed, 4);
    let group = &fx.group;
    let outcome = handle(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        &fx.counters,
        addr,
        |_| Some((&mut other, group)),
    );
    assert!(matches!(
        outcome,
        FaultOutcome::Fatal {
            reason: FatalReason::NoSuchStack { .. },
            ..
        }
    ));
    assert_eq!(other.populated(), PageSet::top(1));
    assert_eq!(fx.counters.snapshot().dks_fatal, 2);
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
    fx.platform.write_raw_entry(addr, frame | PTE_PRESENT);
}

#[test]
fn populate_down_to_maps_the_area_below_the_interrupted_pointer() {
    let mut fx = Fixture::new();
    let mut stack = fx.create(Policy::Guaranteed, 2);
    fx.refill();
    let lowest = fx.sp(&stack, 0x2100);
    let mapped = populate_down_to(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        &fx.counters,
        &mut stack,
        &fx.group,
        lowest,
    );
    assert_eq!(mapped, Ok(2));
    assert_eq!(stack.populated(), PageSet::top(3));
    // Already there: nothing to do.
    let again = populate_down_to(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        &fx.counters,
        &mut stack,
        &fx.group,
        lowest,
    );
    assert_eq!(again, Ok(0));
    // The magazine has one frame left; the whole stack needs one more page.
    let _ = fx.cpu.magazine.take().map(|f| fx.platform.free_frame(f));
    let bottom = fx.layout.stack_bottom(stack.slot());
    let short = populate_down_to(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        &fx.counters,
        &mut stack,
        &fx.group,
        bottom,
    );
    assert_eq!(short, Err(FatalReason::MagazineEmpty));
    assert_eq!(fx.counters.snapshot().dks_fatal, 1);
    fx.platform
        .check_slot(&fx.layout, stack.slot(), Some(stack.populated()))
        .unwrap();
}

use super::*;
use crate::addr::VirtAddr;
use crate::emulated::FailurePattern;
use crate::fault::{self, FaultOutcome};
use crate::policy::Policy;
use crate::switch;
use crate::test_fixture::Fixture;

#[test]
fn every_event_is_counted_per_cpu_and_account_and_summed_on_read() {
    let cpus = [CpuCounters::new(), CpuCounters::new()];
    let ledger = Ledger::new();
    let fault = Account::Policy(Policy::Fault);
    Tally::new(&cpus[0], &ledger).count(fault, Counter::Faults, 2);
    Tally::new(&cpus[1], &ledger).count(fault, Counter::Faults, 1);
    Tally::new(&cpus[1], &ledger).count(Account::System, Counter::Faults, 4);
    let events = Counter::ALL.into_iter().filter(|c| c.is_event());
    for (n, event) in events.clone().enumerate().skip(1) {
        cpus[1].count(Account::Policy(Policy::Guaranteed), event, n as u64);
    }
    ledger.add_pages(fault, 3);
    ledger.add_pages(Account::System, -1);
    let totals = sum(&cpus, &ledger);
    for account in Account::ALL {
        assert_eq!(
            sum_account(&cpus, &ledger, account),
            *totals.account(account),
            "{account:?}"
        );
    }
    assert_eq!(totals.get(Counter::Faults), 7);
    assert_eq!(totals.account(fault).get(Counter::Faults), 3);
    assert_eq!(totals.account(Account::System).get(Counter::Faults), 4);
    assert_eq!(totals.get(Counter::NrKernelStackKb), 8);
    assert_eq!(totals.account(fault).get(Counter::NrKernelStackKb), 12);
    for (n, event) in events.enumerate().skip(1) {
        let guaranteed = totals.account(Account::Policy(Policy::Guaranteed));
        assert_eq!(guaranteed.events(event), n as u64, "{}", event.name());
        assert_eq!(totals.get(event), n as i64, "{}", event.name());
    }
}

#[test]
fn the_list_names_every_counter_once_in_record_order() {
    let names = Counter::ALL.map(Counter::name);
    assert_eq!(
        names,
        [
            "nr_kernel_stack_kb",
            "dks_faults",
            "dks_refills",
            "dks_refill_fail",
            "dks_fatal",
            "dks_reclaimed",
            "dks_reclaimed_dead_pressure",
            "dks_reclaimed_dead_asleep",
            "dks_admit_wait",
            "dks_guard_hits",
            "dks_reclaimed_accessed_clear",
            "dks_flushes_avoided",
            "dks_switch_faults",
            "dks_packs",
            "dks_restores",
            "dks_restore_wait",
            "dks_pack_csum_fail",
            "dks_pack_guard_catches",
            "nr_packed_threads",
            "nr_packed_bytes"
        ]
    );
    let levels = ["nr_kernel_stack_kb", "nr_packed_threads", "nr_packed_bytes"];
    for (i, counter) in Counter::ALL.into_iter().enumerate() {
        assert_eq!(counter.index(), i);
        assert_eq!(counter.is_event(), !levels.contains(&counter.name()));
    }
}

#[test]
#[should_panic(expected = "not an event")]
fn populated_memory_is_not_an_event() {
    CpuCounters::new().count(Account::System, Counter::NrKernelStackKb, 1);
}

/// Every event count of every account.
fn events(fx: &Fixture) -> [[u64; Counter::COUNT]; Account::COUNT] {
    let totals = fx.counters.totals();
    Account::ALL.map(|account| {
        Counter::ALL.map(|counter| {
            if counter.is_event() {
                totals.account(account).events(counter)
            } else {
                0
            }
        })
    })
}

/// Runs `event` and checks that the counts of `account` moved by exactly `moved` (each by
/// one), and nothing else in any account.
fn assert_counted_once(
    fx: &mut Fixture,
    what: &str,
    account: Account,
    moved: &[Counter],
    event: impl FnOnce(&mut Fixture),
) {
    let before = events(fx);
    event(fx);
    let after = events(fx);
    let mut expected = before;
    for &counter in moved {
        expected[account.index()][counter.index()] += 1;
    }
    for other in Account::ALL {
        for counter in Counter::ALL {
            assert_eq!(
                after[other.index()][counter.index()],
                expected[other.index()][counter.index()],
                "{what}: {} of {other:?}",
                counter.name()
            );
        }
    }
}

/// DESIGN §7: each event is counted once, where it happens, in its own counter, under the
/// account of the stack it concerns. A refill that falls short is a refill and a failed one
/// (`dks_refill_fail` counts a subset of `dks_refills`); a refused admission first tries a
/// refill, which can only have fallen short.
#[test]
fn each_event_moves_its_own_counter_by_one_and_nothing_else() {
    let mut fx = Fixture::new();
    let guaranteed = Account::Policy(Policy::Guaranteed);
    let fault = Account::Policy(Policy::Fault);
    let static_ = Account::Policy(Policy::Static);
    let mut served = fx.create(Policy::Guaranteed, 1);
    let mut starved = fx.create(Policy::Fault, 2);
    let mut full = fx.create(Policy::Static, 3);

    assert_counted_once(&mut fx, "refill", fault, &[Counter::Refills], |fx| {
        let refill = switch::refill(
            &mut fx.platform,
            &mut fx.cpu.magazine,
            fx.counters.tally(),
            fault,
        );
        assert!(refill.is_complete() && refill.added > 0, "{refill:?}");
    });
    assert_counted_once(
        &mut fx,
        "stack fault",
        guaranteed,
        &[Counter::Faults],
        |fx| {
            let addr = fx.page_addr(&served, 1);
            let outcome = fx.fault(&mut served, addr);
            assert!(
                matches!(outcome, FaultOutcome::Served { .. }),
                "{outcome:?}"
            );
        },
    );
    assert_counted_once(
        &mut fx,
        "guard hit",
        guaranteed,
        &[Counter::GuardHits],
        |fx| {
            let below = VirtAddr::new(fx.layout.stack_bottom(served.slot()).as_u64() - 8);
            let outcome = fx.fault(&mut served, below);
            assert!(
                matches!(outcome, FaultOutcome::GuardHit { .. }),
                "{outcome:?}"
            );
        },
    );
    assert_counted_once(
        &mut fx,
        "guard hit while populating a span",
        static_,
        &[Counter::GuardHits],
        |fx| {
            let below = VirtAddr::new(fx.layout.stack_bottom(full.slot()).as_u64() - 8);
            let top = fx.sp(&full, 0);
            let mut table = Fixture::table(&mut fx.cpu.magazine, &mut full, &fx.group);
            let span = fault::populate_span(
                &mut fx.platform,
                &fx.layout,
                fx.counters.tally(),
                &mut table,
                below,
                top,
            );
            assert!(
                matches!(span, Err(FaultOutcome::GuardHit { .. })),
                "{span:?}"
            );
        },
    );

    // From here on every allocation fails, and the magazine is emptied.
    fx.platform.set_failures(FailurePattern::EveryNth(1));
    while fx.cpu.magazine.take().is_some() {}
    assert_counted_once(
        &mut fx,
        "refill that fell short",
        fault,
        &[Counter::Refills, Counter::RefillFail],
        |fx| {
            let refill = switch::refill(
                &mut fx.platform,
                &mut fx.cpu.magazine,
                fx.counters.tally(),
                fault,
            );
            assert!(!refill.is_complete(), "{refill:?}");
        },
    );
    assert_counted_once(
        &mut fx,
        "fatal stack fault",
        fault,
        &[Counter::Fatal],
        |fx| {
            let addr = fx.page_addr(&starved, 1);
            let outcome = fx.fault(&mut starved, addr);
            assert!(matches!(outcome, FaultOutcome::Fatal { .. }), "{outcome:?}");
        },
    );
    assert_counted_once(
        &mut fx,
        "refused admission",
        guaranteed,
        &[Counter::Refills, Counter::RefillFail, Counter::AdmitWait],
        |fx| {
            let admission = switch::prepare(
                &mut fx.platform,
                &fx.layout,
                &mut fx.cpu.magazine,
                fx.counters.tally(),
                &fx.group,
                &mut served,
            );
            assert!(
                matches!(admission, switch::Admission::Wait { .. }),
                "{admission:?}"
            );
        },
    );
}

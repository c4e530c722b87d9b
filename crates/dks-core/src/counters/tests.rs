use super::*;
use crate::policy::Policy;

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
            "dks_admit_wait",
            "dks_guard_hits"
        ]
    );
    for (i, counter) in Counter::ALL.into_iter().enumerate() {
        assert_eq!(counter.index(), i);
        assert_eq!(counter.is_event(), i > 0);
    }
}

#[test]
#[should_panic(expected = "not an event")]
fn populated_memory_is_not_an_event() {
    CpuCounters::new().count(Account::System, Counter::NrKernelStackKb, 1);
}

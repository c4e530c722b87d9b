use super::*;
use crate::counters::{CpuCounters, sum};

#[test]
fn accounts_are_the_policies_then_the_kernels_own() {
    assert_eq!(Account::COUNT, Policy::COUNT + 1);
    for (i, account) in Account::ALL.into_iter().enumerate() {
        assert_eq!(account.index(), i);
    }
    assert_eq!(
        Account::ALL[..Policy::COUNT],
        Policy::ALL.map(Account::Policy)
    );
    assert_eq!(Account::ALL[Policy::COUNT], Account::System);
}

#[test]
fn the_ledger_keeps_levels_peaks_and_thread_lives_per_account() {
    let ledger = Ledger::new();
    let fault = Account::Policy(Policy::Fault);
    ledger.note_created(fault, 3);
    ledger.note_created(fault, 2);
    ledger.add_pages(fault, -4);
    ledger.note_released(fault, 5, 9000);
    ledger.note_released(fault, 40, 100);
    ledger.note_stopped(fault);
    ledger.note_kernel_stop(fault);
    ledger.note_admit_wait(fault, 30);
    ledger.note_admit_wait(fault, 10);
    let totals = sum(&[CpuCounters::new()], &ledger);
    let figures = totals.account(fault);
    assert_eq!((figures.pages_now, figures.pages_peak), (1, 5));
    assert_eq!((figures.threads_created, figures.threads_released), (2, 2));
    assert_eq!(figures.threads_live(), 0);
    assert_eq!((figures.threads_stopped, figures.kernel_stops), (1, 1));
    assert_eq!(
        (figures.high_water_total_bytes, figures.high_water_max_bytes),
        (9100, 9000)
    );
    assert_eq!(
        (figures.admit_wait_ticks_total, figures.admit_wait_ticks_max),
        (40, 30)
    );
    // A peak beyond the largest stack lands in the last bucket.
    assert_eq!(figures.peak_pages[5], 1);
    assert_eq!(figures.peak_pages[PEAK_PAGE_BUCKETS - 1], 1);
    assert_eq!(
        *totals.account(Account::System),
        sum(&[CpuCounters::new()], &Ledger::new())
            .account(Account::System)
            .clone()
    );
}

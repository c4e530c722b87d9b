//! The `vmstat`-like report of stack memory (DESIGN §7): printed on request (a workload asks
//! for it) and at the end of every boot that ends normally. Every `vmstat` record comes with
//! a `trap_stat` record (NMIs and machine checks), after the machine-check records still
//! queued (see `mce`).

use alloc::borrow::Cow;
use core::sync::atomic::Ordering;

use dks_core::{Account, Counter};
use dks_protocol::record::{PolicyStat, Record, ThreadPages, TrapStat, Vmstat};

use crate::hw::apic;
use crate::mm::frames;
use crate::stacks::{self, Policy};
use crate::{mce, report, sched, trap_handlers};

const KIB_PER_PAGE: u64 = dks_core::layout::PAGE_SIZE_IN_BYTES / 1024;

/// Prints everything: [`emit_counters`], then [`emit_thread_pages`].
pub fn emit(reason: &str) {
    emit_counters(reason);
    emit_thread_pages();
}

/// Prints one `vmstat` record, then a `policy_stat` for every policy that created a thread.
pub fn emit_counters(reason: &str) {
    let stacks = stacks::stats();
    let totals = stacks.counters;
    let frames = frames::stats();
    let mut vmstat = Vmstat {
        reason: Cow::Borrowed(reason),
        frames_free: frames.free,
        frames_total: frames.total,
        magazine_frames: stacks.magazine_frames,
        cached_stacks: u64::from(stacks.cached_stacks),
        cached_pages: stacks.cached_pages,
        quarantined_frames: stacks.quarantined.0 as u64,
        slots_in_use: u64::from(stacks.slots_in_use),
        ..Vmstat::default()
    };
    for counter in Counter::ALL {
        vmstat.set_counter(counter, totals.get(counter));
    }
    report::emit(&Record::Vmstat(vmstat));
    mce::drain();
    emit_trap_stat();
    let per_us = apic::tsc_per_us();
    // Waits for admission still in progress count too: a thread refused for the whole run
    // would otherwise show no wait at all.
    let mut waiting = [(0u64, 0u64); Policy::ALL.len()];
    sched::for_each_admission_wait(|policy, ticks| {
        if let Some(index) = Policy::ALL.iter().position(|&p| p == policy) {
            waiting[index].0 += ticks;
            waiting[index].1 = waiting[index].1.max(ticks);
        }
    });
    for (index, policy) in Policy::ALL.into_iter().enumerate() {
        let (waiting_total, waiting_max) = waiting[index];
        let c = totals.account(Account::Policy(policy));
        if c.threads_created == 0 {
            continue;
        }
        let pages = |v: i64| v.max(0) as u64 * KIB_PER_PAGE;
        let level = |v: i64| v.max(0) as u64;
        // Populated pages and pack buffers (`nr_kernel_stack_kb`). The ledger keeps the peak of
        // the pages alone, so the peak is that, or the figure now when it is higher (`pack`).
        let stack_kib_now = level(c.stack_kib_now());
        report::emit(&Record::PolicyStat(PolicyStat {
            policy,
            threads_created: c.threads_created,
            threads_live: c.threads_live(),
            stack_kib_now,
            stack_kib_peak: pages(c.pages_peak).max(stack_kib_now),
            faults: c.events(Counter::Faults),
            fatal: c.events(Counter::Fatal),
            refills: c.events(Counter::Refills),
            refill_failures: c.events(Counter::RefillFail),
            guard_hits: c.events(Counter::GuardHits),
            admit_waits: c.events(Counter::AdmitWait),
            admit_wait_us_total: (c.admit_wait_ticks_total + waiting_total) / per_us,
            admit_wait_us_max: c.admit_wait_ticks_max.max(waiting_max) / per_us,
            killed: c.threads_stopped,
            kernel_stops: c.kernel_stops,
            reclaimed: c.events(Counter::Reclaimed),
            reclaimed_dead: c.events(Counter::ReclaimedDeadPressure)
                + c.events(Counter::ReclaimedDeadAsleep),
            reclaimed_accessed_clear: c.events(Counter::ReclaimedAccessedClear),
            flushes_avoided: c.events(Counter::FlushesAvoided),
            switch_faults: c.events(Counter::SwitchFaults),
            running_extra_kib_peak: policy
                .maps_all_while_running()
                .then(|| stacks::running_extra_peak_pages() * KIB_PER_PAGE),
            high_water_mean_bytes: c.high_water_total_bytes / c.threads_released.max(1),
            high_water_max_bytes: c.high_water_max_bytes,
            packs: c.events(Counter::Packs),
            restores: c.events(Counter::Restores),
            restore_waits: c.events(Counter::RestoreWait),
            pack_checksum_failures: c.events(Counter::PackChecksumFail),
            pack_guard_catches: c.events(Counter::PackGuardCatches),
            packed_threads: level(c.packed_threads_now),
            packed_kib: level(c.packed_bytes_now).div_ceil(1024),
        }));
    }
}

/// Prints the `trap_stat` record: NMIs and machine checks since boot, over all CPUs.
pub fn emit_trap_stat() {
    let sum = |per_cpu: &[core::sync::atomic::AtomicU64]| {
        per_cpu.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    };
    report::emit(&Record::TrapStat(TrapStat {
        nmis: sum(&trap_handlers::NMIS),
        nmis_nested: sum(&trap_handlers::NMIS_NESTED),
        machine_check_exceptions: mce::EXCEPTIONS.load(Ordering::Relaxed),
        mce_corrected: mce::CORRECTED.load(Ordering::Relaxed),
        mce_recoverable: mce::RECOVERABLE.load(Ordering::Relaxed),
    }));
}

/// Prints, for every policy that created a thread, how many of its exited threads peaked at
/// each number of populated pages (`thread_pages` records).
pub fn emit_thread_pages() {
    let totals = stacks::totals();
    for policy in Policy::ALL {
        let c = totals.account(Account::Policy(policy));
        if c.threads_created == 0 {
            continue;
        }
        for (pages, &threads) in c.peak_pages.iter().enumerate() {
            if threads > 0 {
                report::emit(&Record::ThreadPages(ThreadPages {
                    policy,
                    pages: pages as u32,
                    threads,
                }));
            }
        }
    }
}

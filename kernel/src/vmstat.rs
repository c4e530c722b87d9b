//! The `vmstat`-like report of stack memory (DESIGN §7): printed on request (a workload asks
//! for it) and at the end of every boot that ends normally. Every `vmstat` record comes with
//! a `trap_stat` record (NMIs and machine checks), after the machine-check records still
//! queued (see `mce`).

use alloc::borrow::Cow;
use core::sync::atomic::Ordering;

use dks_protocol::record::{PolicyStat, Record, ThreadPages, TrapStat, Vmstat};

use crate::hw::apic;
use crate::mm::frames;
use crate::stacks::{self, Policy};
use crate::{mce, report, sched, trap_handlers};

const KIB_PER_PAGE: u64 = 4;

/// Prints everything: [`emit_counters`], then [`emit_thread_pages`].
pub fn emit(reason: &str) {
    emit_counters(reason);
    emit_thread_pages();
}

/// Prints one `vmstat` record, then a `policy_stat` for every policy that created a thread.
pub fn emit_counters(reason: &str) {
    let stacks = stacks::stats();
    let counters = stacks.counters;
    let frames = frames::stats();
    report::emit(&Record::Vmstat(Vmstat {
        reason: Cow::Borrowed(reason),
        nr_kernel_stack_kb: counters.nr_kernel_stack_kb,
        dks_faults: counters.dks_faults,
        dks_refills: counters.dks_refills,
        dks_refill_fail: counters.dks_refill_fail,
        dks_fatal: counters.dks_fatal,
        dks_reclaimed: counters.dks_reclaimed,
        dks_admit_wait: counters.dks_admit_wait,
        dks_guard_hits: counters.dks_guard_hits,
        frames_free: frames.free,
        frames_total: frames.total,
        magazine_frames: stacks.magazine_frames,
        cached_stacks: u64::from(stacks.cached_stacks),
        cached_pages: stacks.cached_pages,
        quarantined_frames: stacks.quarantined.0 as u64,
        slots_in_use: u64::from(stacks.slots_in_use),
    }));
    mce::drain();
    emit_trap_stat();
    let per_us = apic::tsc_per_us();
    let load = |a: &core::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
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
        let c = stacks::policy_counters(policy);
        if load(&c.threads_created) == 0 {
            continue;
        }
        let pages = |v: i64| v.max(0) as u64 * KIB_PER_PAGE;
        report::emit(&Record::PolicyStat(PolicyStat {
            policy: Cow::Borrowed(policy.name()),
            threads_created: load(&c.threads_created),
            threads_live: c.threads_live.load(Ordering::Relaxed).max(0) as u64,
            stack_kib_now: pages(c.pages_now.load(Ordering::Relaxed)),
            stack_kib_peak: pages(c.pages_peak.load(Ordering::Relaxed)),
            faults: load(&c.faults),
            fatal: load(&c.fatal),
            refills: load(&c.refills),
            refill_failures: load(&c.refill_failures),
            guard_hits: load(&c.guard_hits),
            admit_waits: load(&c.admit_waits),
            admit_wait_us_total: (load(&c.admit_wait_ticks_total) + waiting_total) / per_us,
            admit_wait_us_max: load(&c.admit_wait_ticks_max).max(waiting_max) / per_us,
            killed: load(&c.killed),
            kernel_stops: load(&c.kernel_stops),
            reclaimed: load(&c.reclaimed),
            high_water_mean_bytes: load(&c.high_water_total) / load(&c.released).max(1),
            high_water_max_bytes: load(&c.high_water_max),
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
    let load = |a: &core::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    for policy in Policy::ALL {
        let c = stacks::policy_counters(policy);
        if load(&c.threads_created) == 0 {
            continue;
        }
        for (pages, threads) in c.peak_pages.iter().enumerate() {
            let threads = load(threads);
            if threads > 0 {
                report::emit(&Record::ThreadPages(ThreadPages {
                    policy: Cow::Borrowed(policy.name()),
                    pages: pages as u32,
                    threads,
                }));
            }
        }
    }
}

//! The comparison as a text table: one row per policy, aligned columns, `n/a` where a figure
//! does not exist. The cells come from the same [`Comparison`] as the JSON ([`cells`]), so the
//! two cannot disagree; the HTML report shows the same cells.

use dks_core::Policy;

use super::figures::{Comparison, CostSpread, PolicyFigures};

/// The column headers, in order; every row has one cell per header.
pub const HEADERS: [&str; 37] = [
    "policy",
    "end KiB",
    "peak KiB",
    "threads",
    "stack KiB/thr",
    "total KiB/thr",
    "end/static",
    "peak/static",
    "live KiB",
    "peak/live",
    "faults",
    "refills",
    "refill fails",
    "fatal",
    "kernel stops",
    "admit waits",
    "dead reclaimed",
    "A-clear back",
    "flushes avoided",
    "run extra KiB",
    "packs",
    "restores",
    "restore waits",
    "packed",
    "packed KiB",
    "csum fails",
    "guard catches",
    "insns/fault",
    "insns/switch",
    "switch/static",
    "insns/sw-in",
    "insns/sw-out",
    "insns/create",
    "create/static",
    "insns/trim",
    "insns/pack",
    "insns/restore",
];

/// What the columns mean, printed under the table.
pub const LEGEND: &str = "\
end, peak: populated stack memory of the policy's threads when the run ended and at its peak;
threads: the policy's threads alive when the run ended; stack KiB/thr: their populated stack
memory per thread then; total KiB/thr: that plus everything else a thread costs (its share of
the kernel heap, FPU save area, stack-slot metadata and stack page tables) per thread;
live: the live-data bound, the most that the policy's live stacks touched at one sample;
faults, refills, refill fails, fatal: stack faults served, magazine refills, refills that fell
short, stack faults that could not be served; kernel stops: of those, faults with interrupts
off, each of which would have stopped a real kernel (the testbed stops only the thread);
admit waits: switches refused by admission; dead reclaimed: pages dead below a sleeping
thread's saved stack pointer given back before it woke (reclaim; docs/reclaim.md);
A-clear back: pages given back at switch-out because their Accessed bit was clear (switch);
flushes avoided: switch-outs that gave pages back with no TLB shootdown (switch);
run extra: the most stack memory running threads held at once beyond what they held switched
out (switch maps every page while a thread runs; at most max_stack less a page per CPU);
packs, restores: sleeping threads' live stack bytes moved into a buffer and their pages given
back, and moved back into a page at wake-up (pack; docs/pack.md); restore waits: restores that
found no page, so the thread waited; packed, packed KiB: stacks packed when the run ended and
their buffers (in end KiB too); csum fails: restores whose bytes did not match their checksum;
guard catches: touches of a stack packed in guard mode (both bugs, 0 in a sound run);
insns: guest instructions per operation (cost boot under -icount shift=0, 1 CPU); sw-in, sw-out:
the policy's own part of switching a thread in (admission, mapping) and out (Accessed scan);
trim: giving back the dead pages of one sleeping thread, its TLB flush requested (reclaim);
pack, restore: packing one sleeping thread's stack and restoring it on the wake path (pack).";

/// Writes a ratio as a percentage, or `n/a`.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// Writes a ratio with two decimals, or `n/a`.
pub fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"))
}

/// Writes an instruction count rounded to a whole number, or `n/a`.
pub fn insns(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"))
}

/// Writes KiB per thread with two decimals, or `n/a`.
pub fn kib(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

/// Writes the names of `policies`, comma-separated.
pub fn joined(policies: &[Policy]) -> String {
    let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
    names.join(", ")
}

/// Writes a count that may be missing.
pub fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// Returns the cells of one policy's row, in [`HEADERS`] order.
pub fn cells(p: &PolicyFigures) -> Vec<String> {
    vec![
        p.policy.to_string(),
        p.stack_kib_end.to_string(),
        p.stack_kib_peak.to_string(),
        count(p.threads_at_end),
        kib(p.stack_kib_per_thread),
        kib(p.total_kib_per_thread),
        percent(p.stack_end_vs_static),
        percent(p.stack_peak_vs_static),
        count(p.live_bound_kib),
        percent(p.stack_peak_vs_live_bound),
        p.faults.to_string(),
        p.refills.to_string(),
        p.refill_failures.to_string(),
        p.fatal_faults.to_string(),
        p.kernel_stops.to_string(),
        p.admission_waits.to_string(),
        p.reclaimed_dead.to_string(),
        p.reclaimed_accessed_clear.to_string(),
        p.flushes_avoided.to_string(),
        count(p.running_extra_kib_peak),
        p.packs.to_string(),
        p.restores.to_string(),
        p.restore_waits.to_string(),
        p.packed_threads_end.to_string(),
        p.packed_kib_end.to_string(),
        p.pack_checksum_failures.to_string(),
        p.pack_guard_catches.to_string(),
        insns(p.insns_per_fault),
        insns(p.insns_per_switch),
        times(p.insns_per_switch_vs_static),
        insns(p.insns_per_switch_in),
        insns(p.insns_per_switch_out),
        insns(p.insns_per_create),
        times(p.insns_per_create_vs_static),
        insns(p.insns_per_trim),
        insns(p.insns_per_pack),
        insns(p.insns_per_restore),
    ]
}

/// Returns `rows` (the first is the header) as lines of columns two spaces apart: the first
/// column aligned left, the others right.
pub fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| match i {
                0 => format!("{cell:<width$}"),
                _ => format!("{cell:>width$}"),
            })
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Says why a policy could not run the scenario, e.g. `out of memory after 458000 of
/// 1000000 threads (no figures)`.
pub fn incomplete_words(incomplete: &super::figures::IncompletePolicy) -> String {
    let cause = match incomplete.cause.as_str() {
        "out_of_memory" => "out of memory",
        other => other,
    };
    format!(
        "{cause} after {} of {} threads (no figures)",
        incomplete.threads_created, incomplete.threads_planned
    )
}

/// Returns the cost boot's operations with their spread, one aligned row each under a title
/// line (nothing when there are none).
pub fn spreads(costs: &[CostSpread]) -> String {
    if costs.is_empty() {
        return String::new();
    }
    let mut rows = vec![
        ["operation", "policy", "n", "mean", "min", "median", "max"]
            .map(str::to_owned)
            .to_vec(),
    ];
    rows.extend(costs.iter().map(|c| {
        vec![
            c.what.clone(),
            if c.policy.is_empty() {
                "-".to_owned()
            } else {
                c.policy.clone()
            },
            c.samples.to_string(),
            insns(Some(c.mean)),
            c.min.to_string(),
            c.median.to_string(),
            c.max.to_string(),
        ]
    }));
    format!(
        "costs (guest instructions per operation, cost boot):\n{}",
        aligned(&rows)
    )
}

/// Returns the table: a title line, the header, one row per policy, the non-stack fault costs
/// and the legend.
pub fn render(comparison: &Comparison) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADERS.iter().map(|h| (*h).to_owned()).collect()];
    rows.extend(comparison.policies.iter().map(cells));
    let boots = match comparison.workload_boots {
        1 => "all policies in one boot".to_owned(),
        n => format!("one boot per policy ({n} boots)"),
    };
    let mut text = format!(
        "dks compare: scenario {} ({} CPU(s), max_stack {}K, {boots})\n",
        comparison.scenario, comparison.cpus, comparison.max_stack_kib
    );
    text.push_str(&aligned(&rows));
    for incomplete in &comparison.incomplete {
        text.push_str(&format!(
            "{}: could not run the scenario: {}\n",
            incomplete.policy,
            incomplete_words(incomplete)
        ));
    }
    for p in comparison.policies.iter().filter(|p| p.switch_faults > 0) {
        text.push_str(&format!(
            "BUG: {} stack fault(s) of {} threads, which map every page while they run \
             (dks_switch_faults)\n",
            p.switch_faults, p.policy
        ));
    }
    for p in comparison
        .policies
        .iter()
        .filter(|p| p.pack_checksum_failures > 0)
    {
        text.push_str(&format!(
            "BUG: {} restore(s) of {} stacks whose bytes did not match their pack's checksum \
             (dks_pack_csum_fail)\n",
            p.pack_checksum_failures, p.policy
        ));
    }
    for p in comparison
        .policies
        .iter()
        .filter(|p| p.pack_guard_catches > 0)
    {
        text.push_str(&format!(
            "BUG: {} touch(es) of a {} stack packed in guard mode: some thread used another's \
             sleeping stack (dks_pack_guard_catches)\n",
            p.pack_guard_catches, p.policy
        ));
    }
    let paths = &comparison.fault_paths;
    text.push_str(&format!(
        "non-stack page fault: {} insns handled on the IST stack, {} moved to the interrupted stack\n",
        insns(paths.insns_direct),
        insns(paths.insns_bounce)
    ));
    text.push_str(&spreads(&comparison.costs));
    if let Some(injection) = &comparison.injection {
        for boot in &injection.boots {
            let mut parts = Vec::new();
            if let Some(nmi) = &injection.nmi {
                parts.push(format!(
                    "{} NMIs injected (asked: {nmi}), {} handled",
                    boot.nmis_injected,
                    boot.nmis_handled
                        .map_or("? (no TrapStat record)".into(), |n| n.to_string())
                ));
            }
            if let Some(mce) = &injection.mce {
                parts.push(format!(
                    "{} machine checks injected (asked: {mce}), {} reported",
                    boot.machine_checks_injected, boot.machine_checks_reported
                ));
            }
            text.push_str(&format!(
                "injected into the boot of {}: {}\n",
                joined(&boot.policies),
                parts.join("; ")
            ));
        }
    }
    text.push_str(LEGEND);
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;

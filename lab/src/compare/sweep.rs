//! `dks compare --max-stack 16K,32K,64K`: one scenario at several stack sizes, a whole
//! comparison at each, and each policy's stack memory at every size in one table. It shows the
//! RFC's second promise: stacks may grow past 16 KiB at no memory cost for the threads that do
//! not need it, while `static` pays the full size for every thread.

use dks_core::Policy;
use serde::Serialize;

use super::figures::Comparison;
use super::table::{aligned, percent, times};

/// The comparisons of one scenario at several `max_stack` sizes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sweep {
    /// The scenario's name.
    pub scenario: String,
    /// The sizes, KiB, in the order asked for.
    pub max_stack_kib: Vec<u32>,
    /// Each policy's memory at every size, in report order.
    pub memory: Vec<PolicyMemory>,
    /// The whole comparison at each size, in `max_stack_kib` order.
    pub comparisons: Vec<Comparison>,
}

/// One policy's stack memory at every size of a [`Sweep`]; each list is in `max_stack_kib`
/// order, `null` where the policy did not run at that size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyMemory {
    /// The policy.
    pub policy: Policy,
    /// The most its populated stack memory ever was, KiB.
    pub stack_kib_peak: Vec<Option<u64>>,
    /// Its populated stack memory when the run ended, KiB.
    pub stack_kib_end: Vec<Option<u64>>,
    /// `stack_kib_peak` / `static`'s at the same size.
    pub stack_peak_vs_static: Vec<Option<f64>>,
    /// `stack_kib_peak` / its own at the first size.
    pub stack_peak_vs_first: Vec<Option<f64>>,
}

/// Gathers `comparisons` (one per size, in the order asked for) into a sweep.
pub fn sweep(comparisons: Vec<Comparison>) -> Sweep {
    let mut policies: Vec<Policy> = Vec::new();
    for c in &comparisons {
        for p in &c.policies {
            if !policies.contains(&p.policy) {
                policies.push(p.policy);
            }
        }
    }
    let memory = policies
        .into_iter()
        .map(|policy| {
            let figures: Vec<_> = comparisons
                .iter()
                .map(|c| c.policies.iter().find(|p| p.policy == policy))
                .collect();
            let first = figures.first().copied().flatten().map(|f| f.stack_kib_peak);
            PolicyMemory {
                stack_kib_peak: figures
                    .iter()
                    .map(|f| f.map(|f| f.stack_kib_peak))
                    .collect(),
                stack_kib_end: figures.iter().map(|f| f.map(|f| f.stack_kib_end)).collect(),
                stack_peak_vs_static: figures
                    .iter()
                    .map(|f| f.and_then(|f| f.stack_peak_vs_static))
                    .collect(),
                stack_peak_vs_first: figures
                    .iter()
                    .map(|f| match (f, first) {
                        (Some(f), Some(first)) if first > 0 => {
                            Some(f.stack_kib_peak as f64 / first as f64)
                        }
                        _ => None,
                    })
                    .collect(),
                policy,
            }
        })
        .collect();
    Sweep {
        scenario: comparisons
            .first()
            .map(|c| c.scenario.clone())
            .unwrap_or_default(),
        max_stack_kib: comparisons.iter().map(|c| c.max_stack_kib).collect(),
        memory,
        comparisons,
    }
}

/// Returns the table of a sweep: per size, each policy's peak stack memory, its fraction of
/// `static`'s at that size, and its ratio to its own peak at the first size.
pub fn render(sweep: &Sweep) -> String {
    let first = sweep.max_stack_kib.first().copied().unwrap_or(0);
    let mut header = vec!["policy".to_owned()];
    for (i, kib) in sweep.max_stack_kib.iter().enumerate() {
        header.push(format!("{kib}K peak KiB"));
        header.push(format!("{kib}K /static"));
        if i > 0 {
            header.push(format!("{kib}K /{first}K"));
        }
    }
    let mut rows = vec![header];
    for m in &sweep.memory {
        let mut row = vec![m.policy.to_string()];
        for i in 0..sweep.max_stack_kib.len() {
            row.push(m.stack_kib_peak[i].map_or_else(|| "n/a".to_owned(), |k| k.to_string()));
            row.push(percent(m.stack_peak_vs_static[i]));
            if i > 0 {
                row.push(times(m.stack_peak_vs_first[i]));
            }
        }
        rows.push(row);
    }
    let mut text = format!(
        "dks compare: scenario {}, stack memory by max_stack\n",
        sweep.scenario
    );
    text.push_str(&aligned(&rows));
    text.push_str(&format!(
        "peak KiB: the most the policy's populated stack memory ever was at that max_stack; \
         /static: its fraction of static's at that size;\n/{first}K: its ratio to its own peak \
         at {first}K (static's grows with the size, a dynamic policy's should not).\n"
    ));
    text
}

#[cfg(test)]
mod tests;

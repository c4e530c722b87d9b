//! `dks census merge`: one census from many hosts' files, a fleet's view.
//!
//! The files must be of one kind, written by `dks census` (with the `kthread` and `comm`
//! columns and a `stack_bytes` line) and with the same stack size: a fleet whose hosts run
//! different stack sizes has no single `static` to compare with. Live snapshots are joined
//! row by row; exits are counted again per mark, kind of thread and name. The header lists
//! every source with its kernel, date and threads, and sums their skip counts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::tsv::{self, Header};
use super::{Census, ExitRow, Kind, Rows, take};

/// Header keys whose values add up across sources (`window_seconds` becomes host-seconds).
const SUMMED: [&str; 9] = [
    "threads_seen",
    "skipped_exited",
    "skipped_unreadable",
    "unreadable_pages",
    "skipped_blank",
    "skipped_no_stack_pointer",
    "dropped",
    "exits_seen",
    "window_seconds",
];

/// Merges `inputs` (each with the path it was read from) into one census taken at `date` by
/// `command`; the error names the file at fault and what is accepted.
pub fn merge(inputs: &[(PathBuf, Census)], date: &str, command: &str) -> Result<Census, String> {
    let Some((first_path, first)) = inputs.first() else {
        return Err("no census to merge; accepted: two or more census files".to_owned());
    };
    let kind = first.kind();
    let mut stack_bytes = None;
    for (path, census) in inputs {
        let at = |problem: String| format!("census {}: {problem}", path.display());
        let size = census.stack_bytes().ok_or_else(|| {
            at(
                "says no stack size (no `# stack_bytes:` line); accepted: censuses written by \
                dks census"
                    .to_owned(),
            )
        })?;
        let named = match &census.rows {
            Rows::Live(rows) => rows.iter().all(|r| r.comm.is_some()),
            Rows::Exits(rows) => rows.iter().all(|r| r.comm.is_some() && r.kthread.is_some()),
        };
        if !named {
            return Err(at(
                "has no kthread and comm columns; accepted: censuses written by \
                           dks census"
                    .to_owned(),
            ));
        }
        if census.kind() != kind {
            return Err(at(format!(
                "is a {}, {} a {kind}; accepted: files of one kind",
                census.kind(),
                first_path.display()
            )));
        }
        match stack_bytes {
            None => stack_bytes = Some(size),
            Some(expected) if expected != size => {
                return Err(at(format!(
                    "has {size}-byte stacks, {} {expected}-byte stacks; accepted: censuses of \
                     hosts with the same stack size",
                    first_path.display()
                )));
            }
            Some(_) => {}
        }
    }
    let rows = match kind {
        Kind::Live => Rows::Live(
            inputs
                .iter()
                .flat_map(|(_, census)| match &census.rows {
                    Rows::Live(rows) => rows.clone(),
                    Rows::Exits(_) => Vec::new(),
                })
                .collect(),
        ),
        Kind::Exits => {
            let mut counts: BTreeMap<(u32, Option<bool>, Option<String>), u64> = BTreeMap::new();
            for (_, census) in inputs {
                if let Rows::Exits(rows) = &census.rows {
                    for row in rows {
                        *counts
                            .entry((row.used_bytes, row.kthread, row.comm.clone()))
                            .or_default() += row.threads;
                    }
                }
            }
            Rows::Exits(
                counts
                    .into_iter()
                    .map(|((used_bytes, kthread, comm), threads)| ExitRow {
                        used_bytes,
                        threads,
                        kthread,
                        comm,
                    })
                    .collect(),
            )
        }
    };
    let mut header = Header {
        title: format!(
            "dks census merge: {} {} in one, a fleet's view",
            inputs.len(),
            match kind {
                Kind::Live => "live snapshots",
                Kind::Exits => "censuses of exits",
            }
        ),
        keys: Vec::new(),
        notes: take::column_notes(kind),
    };
    header.set(
        "stack_bytes",
        stack_bytes.expect("at least one input has a size"),
    );
    header.set("date", date);
    header.set("command", command);
    header.set("sources", inputs.len());
    for (i, (path, census)) in inputs.iter().enumerate() {
        // Values read from a file are escaped already; the path is not.
        let get = |key: &str| census.header.get(key).unwrap_or("unknown").to_owned();
        header.set_escaped(
            &format!("source_{}", i + 1),
            format!(
                "{} (kernel_release {}, date {}, threads {})",
                tsv::escape_text(&path.display().to_string()),
                get("kernel_release"),
                get("date"),
                census.rows.threads()
            ),
        );
    }
    header.set("threads", rows.threads());
    for key in SUMMED {
        let values: Vec<u64> = inputs
            .iter()
            .filter_map(|(_, census)| census.header.get(key)?.parse().ok())
            .collect();
        if !values.is_empty() {
            header.set(key, values.iter().sum::<u64>());
        }
    }
    Ok(Census { header, rows })
}

#[cfg(test)]
mod tests;

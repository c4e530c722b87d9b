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
mod tests {
    use super::*;
    use crate::host_census::tsv;

    fn census(text: &str) -> Census {
        tsv::parse(text).unwrap()
    }

    fn live(stack: u32, release: &str, rows: &str) -> Census {
        census(&format!(
            "# t\n# kernel_release: {release}\n# stack_bytes: {stack}\n# date: d\n\
             # skipped_exited: 2\n# skipped_unreadable: 1\n\
             used_bytes\tsleeping_depth_bytes\tkthread\tcomm\n{rows}"
        ))
    }

    fn exits(stack: u32, rows: &str) -> Census {
        census(&format!(
            "# stack_bytes: {stack}\n# dropped: 3\nused_bytes\tthreads\tkthread\tcomm\n{rows}"
        ))
    }

    fn inputs(censuses: Vec<Census>) -> Vec<(PathBuf, Census)> {
        censuses
            .into_iter()
            .enumerate()
            .map(|(i, c)| (PathBuf::from(format!("host{}.tsv", i + 1)), c))
            .collect()
    }

    #[test]
    fn live_snapshots_are_joined_with_every_source_named() {
        let merged = merge(
            &inputs(vec![
                live(16384, "6.18", "900\t500\t1\ta\n"),
                live(16384, "6.12", "4100\t800\t0\tb\n900\t500\t1\ta\n"),
            ]),
            "now",
            "dks census merge host1.tsv host2.tsv",
        )
        .unwrap();
        assert_eq!(merged.rows.threads(), 3);
        assert_eq!(merged.stack_bytes(), Some(16384));
        let h = &merged.header;
        assert_eq!(h.get("sources"), Some("2"));
        assert_eq!(
            h.get("source_2"),
            Some("host2.tsv (kernel_release 6.12, date d, threads 2)")
        );
        assert_eq!(h.get("threads"), Some("3"));
        assert_eq!(h.get("skipped_exited"), Some("4"));
        assert_eq!(h.get("skipped_unreadable"), Some("2"));
        assert_eq!(h.get("dropped"), None);
        assert_eq!(
            h.get("command"),
            Some("dks census merge host1.tsv host2.tsv")
        );
        // Escaped values are taken over as they are, not escaped twice.
        let odd = live(16384, "6.18\\x09odd", "900\t500\t1\ta\n");
        let twice = merge(&inputs(vec![odd.clone(), odd]), "now", "c").unwrap();
        assert_eq!(
            twice.header.get("source_1"),
            Some("host1.tsv (kernel_release 6.18\\x09odd, date d, threads 1)")
        );
        // What is written reads back the same.
        assert_eq!(tsv::parse(&tsv::render(&merged)).unwrap(), merged);
    }

    #[test]
    fn exits_are_counted_again_per_mark_and_name() {
        let merged = merge(
            &inputs(vec![
                exits(16384, "832\t3\t0\tsh\n1024\t1\t1\tk\n"),
                exits(16384, "832\t2\t0\tsh\n832\t1\t0\tcc\n"),
            ]),
            "now",
            "c",
        )
        .unwrap();
        let row = |used, threads, kthread, comm: &str| ExitRow {
            used_bytes: used,
            threads,
            kthread: Some(kthread),
            comm: Some(comm.to_owned()),
        };
        assert_eq!(
            merged.rows,
            Rows::Exits(vec![
                row(832, 1, false, "cc"),
                row(832, 5, false, "sh"),
                row(1024, 1, true, "k")
            ])
        );
        assert_eq!(merged.header.get("dropped"), Some("6"));
        assert_eq!(merged.header.get("threads"), Some("7"));
    }

    #[test]
    fn files_that_do_not_go_together_are_refused() {
        let cases = [
            (
                vec![
                    live(16384, "a", "900\t500\t1\ta\n"),
                    live(32768, "b", "900\t500\t1\ta\n"),
                ],
                "census host2.tsv: has 32768-byte stacks, host1.tsv 16384-byte stacks",
            ),
            (
                vec![
                    live(16384, "a", "900\t500\t1\ta\n"),
                    exits(16384, "64\t1\t0\tx\n"),
                ],
                "census host2.tsv: is a census of exits, host1.tsv a live snapshot",
            ),
            (
                vec![census("used_bytes\tthreads\n64\t1\n")],
                "census host1.tsv: says no stack size",
            ),
            (
                vec![census("# stack_bytes: 16384\nused_bytes\tthreads\n64\t1\n")],
                "census host1.tsv: has no kthread and comm columns",
            ),
            (vec![], "no census to merge"),
        ];
        for (censuses, expected) in cases {
            let error = merge(&inputs(censuses), "now", "c").unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}

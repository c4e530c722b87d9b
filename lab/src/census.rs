//! The Linux 6.18 kernel-stack census (`data/linux-6.18-census/`), embedded and parsed.
//!
//! Two tab-separated files, copied unchanged with their `#` comment headers (provenance in
//! `data/linux-6.18-census/PROVENANCE.md`):
//!
//! - `exits-mixed.tsv`: `used_bytes threads`, the stack high-water marks of 167,487 threads
//!   read at their exit, rounded up to 64 bytes;
//! - `live-snapshot.tsv`: `used_bytes sleeping_depth_bytes kthread`, one row per live thread
//!   of an idle-ish system (85 threads).
//!
//! From them come the named depth distributions scenarios may use ([`named`]) and the
//! per-thread population of the live snapshot ([`live_population`]). A histogram bucket
//! covers `(previous bound, bound]`, so each measured value keeps its own range: an exit mark
//! `v` covers `(v - 64, v]` (the measurement's rounding), an exact live value `v` covers
//! `(v - 1, v]`; zero-weight buckets fill the gaps between measured values.

use std::collections::BTreeMap;

use dks_protocol::scenario::{Bucket, Histogram};

/// `data/linux-6.18-census/exits-mixed.tsv`, as shipped.
pub const EXITS_TSV: &str = include_str!("../../data/linux-6.18-census/exits-mixed.tsv");
/// `data/linux-6.18-census/live-snapshot.tsv`, as shipped.
pub const LIVE_TSV: &str = include_str!("../../data/linux-6.18-census/live-snapshot.tsv");

/// The granularity of the exit marks: `used_bytes` is rounded up to this.
pub const EXIT_ROUNDING_BYTES: u32 = 64;

/// The named distributions, with what each is.
pub const NAMED: [(&str, &str); 3] = [
    (
        "linux-census-exits",
        "stack high-water marks of 167,487 Linux threads at exit",
    ),
    (
        "linux-census-live-used",
        "high-water marks of the 85 live threads of the snapshot",
    ),
    (
        "linux-census-live-sleeping",
        "sleeping depths (saved stack pointer) of the 85 live threads of the snapshot",
    ),
];

/// The named populations a group may replay thread by thread.
pub const POPULATIONS: [(&str, &str); 1] = [(
    "linux-census-live",
    "the 85 threads of the live snapshot, each with its own high-water mark and sleeping depth",
)];

/// One live thread of the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveThread {
    /// Its stack high-water mark since it started, bytes.
    pub used_bytes: u32,
    /// How deep its saved stack pointer sits while it sleeps, bytes.
    pub sleeping_depth_bytes: u32,
}

/// Returns the histogram called `name`, or `None` for an unknown name.
pub fn named(name: &str) -> Option<Histogram> {
    match name {
        "linux-census-exits" => Some(exits_histogram()),
        "linux-census-live-used" => Some(exact_histogram(
            live_threads().iter().map(|t| (t.used_bytes, 1)),
        )),
        "linux-census-live-sleeping" => Some(exact_histogram(
            live_threads().iter().map(|t| (t.sleeping_depth_bytes, 1)),
        )),
        _ => None,
    }
}

/// Returns the population called `name`: each distinct live thread with how many threads of
/// the snapshot are exactly like it, in increasing order; `None` for an unknown name.
pub fn live_population(name: &str) -> Option<Vec<(LiveThread, u32)>> {
    if name != POPULATIONS[0].0 {
        return None;
    }
    let mut counts: BTreeMap<LiveThread, u32> = BTreeMap::new();
    for thread in live_threads() {
        *counts.entry(thread).or_default() += 1;
    }
    Some(counts.into_iter().collect())
}

/// Returns the exit histogram: each mark `v` covers `(v - 64, v]`.
pub fn exits_histogram() -> Histogram {
    let rows = data_rows(EXITS_TSV, "exits-mixed.tsv", &["used_bytes", "threads"]);
    let mut buckets = Vec::new();
    let mut previous = 0;
    for row in rows {
        let (used, threads) = (row[0], row[1]);
        assert!(
            used > previous && used % EXIT_ROUNDING_BYTES == 0,
            "exits-mixed.tsv: marks must increase in steps of {EXIT_ROUNDING_BYTES} bytes"
        );
        if used - EXIT_ROUNDING_BYTES > previous {
            buckets.push(Bucket {
                up_to_bytes: used - EXIT_ROUNDING_BYTES,
                weight: 0,
            });
        }
        buckets.push(Bucket {
            up_to_bytes: used,
            weight: u64::from(threads),
        });
        previous = used;
    }
    Histogram { buckets }
}

/// Returns the threads of the live snapshot, in file order.
pub fn live_threads() -> Vec<LiveThread> {
    data_rows(
        LIVE_TSV,
        "live-snapshot.tsv",
        &["used_bytes", "sleeping_depth_bytes", "kthread"],
    )
    .into_iter()
    .map(|row| LiveThread {
        used_bytes: row[0],
        sleeping_depth_bytes: row[1],
    })
    .collect()
}

/// Returns a histogram that produces exactly the given values, each with its weight: value
/// `v` gets the bucket `(v - 1, v]`. Used for the live snapshot and for `{ fixed = N }`.
pub fn exact_histogram(values: impl IntoIterator<Item = (u32, u64)>) -> Histogram {
    let mut weights: BTreeMap<u32, u64> = BTreeMap::new();
    for (value, weight) in values {
        assert!(value > 0, "an exact value must be above 0 bytes");
        *weights.entry(value).or_default() += weight;
    }
    let mut buckets = Vec::new();
    let mut previous = 0;
    for (value, weight) in weights {
        if value - 1 > previous {
            buckets.push(Bucket {
                up_to_bytes: value - 1,
                weight: 0,
            });
        }
        buckets.push(Bucket {
            up_to_bytes: value,
            weight,
        });
        previous = value;
    }
    Histogram { buckets }
}

/// Returns the data rows of a shipped TSV: `#` lines are comments, the first other line must
/// be `header`, every later line has as many unsigned numbers. The files are part of the
/// build, so a malformed one is a bug that the unit tests catch: it panics.
fn data_rows(text: &str, file: &str, header: &[&str]) -> Vec<Vec<u32>> {
    let mut lines = text.lines().filter(|line| !line.starts_with('#'));
    let found: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    assert_eq!(found, header, "{file}: header");
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<u32> = line
                .split('\t')
                .map(|field| {
                    field
                        .parse()
                        .unwrap_or_else(|_| panic!("{file}: {field:?} is not a number"))
                })
                .collect();
            assert_eq!(fields.len(), header.len(), "{file}: row {line:?}");
            fields
        })
        .collect()
}

#[cfg(test)]
mod tests;

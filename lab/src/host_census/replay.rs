//! Replaying a census under `dks compare`: the depth distributions and populations a scenario
//! file may take from a census file, and the scenario file `dks census` writes beside each
//! census.
//!
//! A scenario names a census by its path, relative to the scenario file:
//!
//! - `depth = { file = "exits.tsv" }` (or `sleep_depth`): the census's high-water marks as a
//!   histogram; an exit mark `v` covers `(v - 64, v]` (the rounding), a live value exactly
//!   `v`. `column = "sleeping_depth_bytes"` takes a live snapshot's sleeping depths instead;
//! - `population = { file = "live-snapshot.tsv" }`: a live snapshot replayed thread by thread,
//!   as `population = "linux-census-live"` replays the shipped one.
//!
//! The scenario written for a live snapshot replays its threads one by one (like the built-in
//! `linux-census`: every path of a thread reaches its mark, between paths it sleeps 100 ms at
//! its sleeping depth); one with more threads than a plan holds draws that many threads from
//! its two distributions instead. The scenario of an exits census runs 24 short-lived threads,
//! replaced as they exit, each one path deep as drawn from the marks, half of them blocking
//! 10 ms at their deepest point (the `exits` group of `linux-census`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use dks_protocol::scenario::{Histogram, MAX_PLAN_THREADS};

use super::{Census, EXIT_ROUNDING_BYTES, Kind, Rows};
use crate::census::{self, LiveThread};
use crate::config::MemorySize;

/// The most threads of a live snapshot a scenario replays one by one (a plan group per
/// distinct thread); a bigger snapshot's threads draw from its distributions.
const REPLAY_ONE_BY_ONE_THREADS: u64 = 6000;

/// The columns a distribution may be taken from.
pub const COLUMNS: [&str; 2] = ["used_bytes", "sleeping_depth_bytes"];

/// Short-lived threads alive at once when an exits census is replayed.
pub const EXIT_THREADS: u32 = 24;

/// The histogram of `column` of `census`; the error says what is wrong.
pub fn histogram(census: &Census, column: &str) -> Result<Histogram, String> {
    if census.rows.threads() == 0 {
        return Err("holds no thread; accepted: a census with at least one row".to_owned());
    }
    match (&census.rows, column) {
        (Rows::Live(rows), "used_bytes") => Ok(census::exact_histogram(
            rows.iter().map(|r| (r.used_bytes, 1)),
        )),
        (Rows::Live(rows), "sleeping_depth_bytes") => Ok(census::exact_histogram(
            rows.iter().map(|r| (r.sleeping_depth_bytes, 1)),
        )),
        (Rows::Exits(rows), "used_bytes") => Ok(rounded_histogram(
            rows.iter().map(|r| (r.used_bytes, r.threads)),
        )),
        (Rows::Exits(_), other) => Err(format!(
            "an exits census has no column {other:?}; accepted: \"used_bytes\""
        )),
        (Rows::Live(_), other) => Err(format!(
            "a live snapshot has no column {other:?}; accepted: {}",
            COLUMNS
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    }
}

/// A histogram of exit marks: each mark `v` (a multiple of 64) covers `(v - 64, v]`, with
/// zero-weight buckets between marks.
fn rounded_histogram(marks: impl IntoIterator<Item = (u32, u64)>) -> Histogram {
    let mut weights: BTreeMap<u32, u64> = BTreeMap::new();
    for (mark, threads) in marks {
        *weights.entry(mark).or_default() += threads;
    }
    let mut buckets = Vec::new();
    let mut previous = 0;
    for (mark, weight) in weights {
        let low = mark - EXIT_ROUNDING_BYTES;
        if low > previous {
            buckets.push(dks_protocol::scenario::Bucket {
                up_to_bytes: low,
                weight: 0,
            });
        }
        buckets.push(dks_protocol::scenario::Bucket {
            up_to_bytes: mark,
            weight,
        });
        previous = mark;
    }
    Histogram { buckets }
}

/// The threads of a live snapshot, each distinct one with how many are exactly like it, in
/// increasing order.
pub fn population(census: &Census) -> Result<Vec<(LiveThread, u32)>, String> {
    let Rows::Live(rows) = &census.rows else {
        return Err(
            "is an exits census, whose threads have no sleeping depth; accepted: a live \
             snapshot (dks census snapshot)"
                .to_owned(),
        );
    };
    if rows.is_empty() {
        return Err("holds no thread; accepted: a census with at least one row".to_owned());
    }
    let mut counts: BTreeMap<LiveThread, u32> = BTreeMap::new();
    for row in rows {
        let thread = LiveThread {
            used_bytes: row.used_bytes,
            sleeping_depth_bytes: row.sleeping_depth_bytes,
        };
        *counts.entry(thread).or_default() += 1;
    }
    Ok(counts.into_iter().collect())
}

/// The `max_stack` of a scenario replaying stacks of `bytes`.
fn max_stack(bytes: u32) -> Result<&'static str, String> {
    dks_core::MaxStack::try_from_bytes(u64::from(bytes))
        .map(dks_core::MaxStack::name)
        .map_err(|_| {
            format!(
                "its stacks are {bytes} bytes, and the testbed kernel runs 16, 32 or 64 KiB stacks"
            )
        })
}

/// A scenario name from a census file's stem: `census-STEM`, other characters as `-`.
pub fn scenario_name(stem: &str) -> String {
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("census-{clean}");
    name.truncate(64);
    name
}

/// A TOML string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The scenario that replays `census`, which is the file `tsv_name` beside it; the error says
/// why there is none (nothing to replay, a stack size the testbed does not run).
pub fn scenario(census: &Census, tsv_name: &str, name: &str) -> Result<String, String> {
    let stack_bytes = census
        .stack_bytes()
        .ok_or("the census does not say its stack size")?;
    let max_stack = max_stack(stack_bytes)?;
    let threads = census.rows.threads();
    if threads == 0 {
        return Err(format!(
            "the census holds no {}",
            match census.kind() {
                Kind::Live => "thread",
                Kind::Exits => "exit",
            }
        ));
    }
    let header = &census.header;
    let origin = match (header.get("kernel_release"), header.get("date")) {
        (Some(release), Some(date)) => format!("Linux {release}, {date}"),
        _ => header
            .get("sources")
            .map(|n| format!("merged from {n} censuses"))
            .unwrap_or_else(|| "unknown origin".to_owned()),
    };
    let file = quoted(tsv_name);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Replays the census {tsv_name} ({origin}) under every policy:\n\
         #   dks compare --scenario THIS-FILE\n\
         # Written by dks census; the format is in docs/compare.md, the census in docs/census.md."
    );
    let description = match census.kind() {
        Kind::Live => format!(
            "the live snapshot {tsv_name} ({origin}): {threads} threads, each reaching its own \
             high-water mark and sleeping at its own depth"
        ),
        Kind::Exits => format!(
            "the exits census {tsv_name} ({origin}): short-lived threads whose depths follow \
             the high-water marks of {threads} exits"
        ),
    };
    // Static stacks of the threads of one boot, with room for the kernel itself.
    let plan_threads = threads.min(u64::from(MAX_PLAN_THREADS));
    let needed_mib = 256 + (plan_threads * u64::from(stack_bytes)).div_ceil(1 << 20);
    let memory_mib = (needed_mib.div_ceil(256).max(2) * 256).min(MemorySize::MAX.mib());
    let _ = writeln!(
        text,
        "name = {}\ndescription = {}\nduration_ms = 3000\nsample_ms = 100\n\
         max_stack = \"{max_stack}\"\nmemory = \"{memory_mib}M\"\ncpus = 2\nseed = 1\n",
        quoted(name),
        quoted(&description)
    );
    match census.kind() {
        Kind::Live if threads <= REPLAY_ONE_BY_ONE_THREADS => {
            let _ = writeln!(
                text,
                "# Every thread of the snapshot, one by one: each path reaches the thread's \
                 mark,\n# and between paths it sleeps at its own sleeping depth.\n\
                 [[group]]\nname = \"live\"\npolicy = \"each\"\n\
                 population = {{ file = {file} }}\nlifetime = \"long\"\ncalls = 1\n\
                 sleep_ms = 100\nwake = \"timer\""
            );
        }
        Kind::Live => {
            let _ = writeln!(
                text,
                "# {threads} threads are more than are replayed one by one \
                 ({REPLAY_ONE_BY_ONE_THREADS}): {plan_threads}\n# threads draw their marks and \
                 sleeping depths from the snapshot's distributions.\n\
                 [[group]]\nname = \"live\"\npolicy = \"each\"\nthreads = {plan_threads}\n\
                 lifetime = \"long\"\ncalls = 1\nsleep_ms = 100\nwake = \"timer\"\n\
                 depth = {{ file = {file} }}\n\
                 sleep_depth = {{ file = {file}, column = \"sleeping_depth_bytes\" }}"
            );
        }
        Kind::Exits => {
            let _ = writeln!(
                text,
                "# Short-lived threads, replaced as they exit: one path each, as deep as \
                 drawn from\n# the marks; half of them block 10 ms at their deepest point.\n\
                 [[group]]\nname = \"exits\"\npolicy = \"each\"\nthreads = {EXIT_THREADS}\n\
                 lifetime = \"short\"\ncalls = 1\nrespawn = true\ndepth = {{ file = {file} }}\n\
                 block_percent = 50\nsleep_ms = 10\nwake = \"timer\""
            );
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests;

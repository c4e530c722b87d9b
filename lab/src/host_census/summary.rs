//! What a census says at a glance, without booting anything: how many threads, how deep their
//! stacks went and sleep, and what each policy would hold from these numbers alone.
//!
//! Every policy holds whole 4 KiB pages of each thread's stack:
//!
//! - `static` (Linux today): every stack full, `threads x stack_bytes`;
//! - `fault` and `guaranteed`: the pages the thread's high-water mark populated,
//!   `ceil(used_bytes / 4096)` each (a dynamic stack populates on the way down and keeps what
//!   it populated until the thread exits);
//! - `reclaim` and `switch`: while the thread sleeps, only the pages that hold its live stack,
//!   `ceil(sleeping_depth_bytes / 4096)` each (Linux is built without a red zone, so nothing
//!   below the saved stack pointer is live). Exits carry no sleeping depth: n/a.
//!
//! Fractions are of `static`. A live snapshot counts each thread once; an exits census counts
//! each exit once (what the stacks held at their deepest, summed over the exits).

use std::fmt::Write as _;

use super::{Census, Kind, PAGE_BYTES, Rows};

/// Buckets of each histogram: the stack in 16 equal slices.
pub const BUCKETS: u32 = 16;

/// One slice of the stack, `(up_to_bytes - stack_bytes / 16, up_to_bytes]` from the top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Its deepest byte.
    pub up_to_bytes: u32,
    /// Threads whose high-water mark falls in it.
    pub high_water: u64,
    /// Threads whose sleeping depth falls in it (live snapshots only).
    pub sleeping: Option<u64>,
}

/// The summary of a census.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Its kind.
    pub kind: Kind,
    /// The stack size it was taken with.
    pub stack_bytes: u32,
    /// Threads (live) or exits counted.
    pub threads: u64,
    /// How many of them were kernel threads, when the census says.
    pub kernel_threads: Option<u64>,
    /// The histograms, from the top of the stack down.
    pub buckets: Vec<Bucket>,
    /// What `static` holds, bytes.
    pub static_bytes: u64,
    /// What `fault` and `guaranteed` hold, bytes.
    pub populated_bytes: u64,
    /// What `reclaim` and `switch` hold while the threads sleep, bytes (live only).
    pub sleeping_bytes: Option<u64>,
}

impl Summary {
    /// `bytes` as a fraction of `static`; `None` without threads.
    pub fn fraction(&self, bytes: u64) -> Option<f64> {
        (self.static_bytes > 0).then(|| bytes as f64 / self.static_bytes as f64)
    }
}

fn pages_bytes(depth: u32) -> u64 {
    u64::from(depth.div_ceil(PAGE_BYTES)) * u64::from(PAGE_BYTES)
}

/// Summarizes `census`, whose stacks are `stack_bytes` (every depth of it must be within).
pub fn summarize(census: &Census, stack_bytes: u32) -> Summary {
    let width = stack_bytes / BUCKETS;
    let slot = |depth: u32| ((depth.max(1) - 1) / width).min(BUCKETS - 1) as usize;
    let live = census.kind() == Kind::Live;
    let mut buckets: Vec<Bucket> = (1..=BUCKETS)
        .map(|i| Bucket {
            up_to_bytes: i * width,
            high_water: 0,
            sleeping: live.then_some(0),
        })
        .collect();
    let threads = census.rows.threads();
    let mut populated_bytes = 0;
    let (kernel_threads, sleeping_bytes) = match &census.rows {
        Rows::Live(rows) => {
            let mut sleeping_bytes = 0;
            for row in rows {
                buckets[slot(row.used_bytes)].high_water += 1;
                if let Some(n) = &mut buckets[slot(row.sleeping_depth_bytes)].sleeping {
                    *n += 1;
                }
                populated_bytes += pages_bytes(row.used_bytes);
                sleeping_bytes += pages_bytes(row.sleeping_depth_bytes);
            }
            let kernel = rows.iter().filter(|r| r.kthread).count() as u64;
            (Some(kernel), Some(sleeping_bytes))
        }
        Rows::Exits(rows) => {
            for row in rows {
                buckets[slot(row.used_bytes)].high_water += row.threads;
                populated_bytes += pages_bytes(row.used_bytes) * row.threads;
            }
            let kernel = rows
                .iter()
                .map(|r| r.kthread.map(|k| if k { r.threads } else { 0 }))
                .sum::<Option<u64>>();
            (kernel, None)
        }
    };
    Summary {
        kind: census.kind(),
        stack_bytes,
        threads,
        kernel_threads,
        buckets,
        static_bytes: threads * u64::from(stack_bytes),
        populated_bytes,
        sleeping_bytes,
    }
}

fn kib(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        (bytes / 1024).to_string()
    } else {
        format!("{:.1}", bytes as f64 / 1024.0)
    }
}

fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "n/a".to_owned(), |f| format!("{:.1} %", f * 100.0))
}

/// The summary as text: one line about the census, the histograms, the policies.
pub fn render(summary: &Summary, census: &Census) -> String {
    let mut text = String::new();
    let header = &census.header;
    let what = match summary.kind {
        Kind::Live => "threads",
        Kind::Exits => "exits",
    };
    let kernel = summary
        .kernel_threads
        .map(|k| format!(" ({k} kernel, {} user)", summary.threads - k))
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "{} of {}, {} KiB stacks: {} {what}{kernel}",
        match summary.kind {
            Kind::Live => "Live snapshot",
            Kind::Exits => "Exits",
        },
        header
            .get("kernel_release")
            .map(|r| format!("Linux {r}"))
            .or_else(|| header.get("sources").map(|n| format!("{n} censuses")))
            .unwrap_or_else(|| "an unnamed host".to_owned()),
        summary.stack_bytes / 1024,
        summary.threads,
    );
    let skipped: Vec<String> = header
        .keys
        .iter()
        .filter(|(key, value)| {
            (key.starts_with("skipped_") || key == "dropped" || key == "unreadable_pages")
                && value != "0"
        })
        .map(|(key, value)| format!("{key} {value}"))
        .collect();
    let _ = writeln!(
        text,
        "skipped: {}",
        if skipped.is_empty() {
            "none".to_owned()
        } else {
            skipped.join(", ")
        }
    );
    let _ = writeln!(text);
    let sleeping = summary.kind == Kind::Live;
    let _ = writeln!(
        text,
        "{:<18} {:>16}{}",
        "depth from the top",
        "high-water marks",
        if sleeping { "   sleeping depths" } else { "" }
    );
    let width = summary.stack_bytes / BUCKETS;
    for bucket in &summary.buckets {
        let range = format!(
            "{:>5} - {:>5} B",
            bucket.up_to_bytes - width + 1,
            bucket.up_to_bytes
        );
        let _ = write!(text, "{range:<18} {:>16}", bucket.high_water);
        if let Some(n) = bucket.sleeping {
            let _ = write!(text, "   {n:>15}");
        }
        text.push('\n');
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "{:<19} {:<36} {:>10} {:>10}",
        "policy", "would hold (from these numbers alone)", "KiB", "of static"
    );
    let row = |text: &mut String, policy: &str, what: &str, bytes: Option<u64>| {
        let _ = writeln!(
            text,
            "{policy:<19} {what:<36} {:>10} {:>10}",
            bytes.map_or_else(|| "n/a".to_owned(), kib),
            percent(bytes.and_then(|b| summary.fraction(b)))
        );
    };
    row(
        &mut text,
        "static",
        "every stack full",
        Some(summary.static_bytes),
    );
    row(
        &mut text,
        "fault, guaranteed",
        "the pages the marks populated",
        Some(summary.populated_bytes),
    );
    match summary.sleeping_bytes {
        Some(bytes) => row(
            &mut text,
            "reclaim, switch",
            "the pages that sleeping stacks keep",
            Some(bytes),
        ),
        None => row(
            &mut text,
            "reclaim, switch",
            "n/a: exits carry no sleeping depth",
            None,
        ),
    }
    text
}

#[cfg(test)]
mod tests;

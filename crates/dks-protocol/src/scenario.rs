//! The workload plan the host hands the kernel: what threads to run and how they behave.
//!
//! A scenario file (TOML, in the repository's `scenarios/`) is the human-facing form; the host
//! parses and checks it, expands "each policy" into one group per policy, and writes this
//! plan as JSON into a boot module (`-initrd`). The kernel parses it with the same types.
//! Everything here is already validated by the host; the kernel still checks the bounds it
//! relies on ([`Plan::check`]) and refuses a plan it cannot run.
//!
//! A thread's life: it runs `calls` *kernel paths*. A path recurses through real frames to a
//! depth drawn from `depth`, touching its locals, and at its deepest point may block
//! (`block_percent`): it then sleeps for a time drawn around `sleep_ms` (woken by a timer) or
//! waits for a peer of its group to wake it. A share of paths (`irqoff_percent`) instead runs
//! its whole descent with interrupts off, holding a spin lock of its group, as kernel code
//! deep under a spin lock does; such a path never blocks. Between paths a long-lived thread
//! sleeps at the
//! depth drawn from `sleep_depth` (its live stack while asleep). A short-lived thread exits
//! after its calls; with `respawn` a new one takes its place until the run ends.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// The plan format's version; the kernel refuses any other.
pub const PLAN_VERSION: u32 = 1;

/// The most threads a plan may ask for at once. The host boots the kernel with stack slots,
/// heap and memory for the plan it hands over (`slots=` is [`slots_for`]), so this is a bound
/// on what the testbed is asked to do, not a kernel default.
pub const MAX_PLAN_THREADS: u32 = 1_000_000;

/// Stack slots the kernel needs beside a plan's threads for its own threads (per-CPU workers
/// and reapers, stack reclaim, the machine-check logger, the main thread) and the stacks the
/// cost and test code makes: always needed.
pub const KERNEL_SLOTS: u32 = 256;

/// Stack slots a plan that replaces threads as they exit (`respawn`) needs beside its threads:
/// the stacks of exited threads wait in per-CPU caches, the reapers' queues and the TLB
/// quarantine for a while, so short-lived threads replaced as they exit need a margin.
pub const CHURN_SLOTS: u32 = 4096;

/// The kernel's default `slots=` (a boot without a plan: tests, the cost boot).
pub const DEFAULT_SLOTS: u32 = 8192;

/// The most stack slots the kernel accepts (`slots=`).
pub const MAX_SLOTS: u32 = MAX_PLAN_THREADS + KERNEL_SLOTS + CHURN_SLOTS;

/// The `slots=` a boot running `threads` plan threads at once needs; `churn`: some of them are
/// replaced as they exit. Only what the plan can use: slot metadata and the stack region's
/// page tables are made at boot for every slot, so slots never used would be charged to the
/// threads that run (`ThreadOverhead`).
pub fn slots_for(threads: u32, churn: bool) -> u32 {
    let margin = if churn {
        KERNEL_SLOTS + CHURN_SLOTS
    } else {
        KERNEL_SLOTS
    };
    threads.saturating_add(margin).min(MAX_SLOTS)
}

/// The largest stack a plan may ask for, bytes.
pub const MAX_STACK_BYTES: u32 = 64 * 1024;

/// A whole workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Must be [`PLAN_VERSION`].
    pub version: u32,
    /// The scenario's name, for records.
    pub name: String,
    /// Seeds every random draw of the run.
    pub seed: u64,
    /// How long the workload runs, milliseconds; then every thread finishes its path and
    /// exits.
    pub duration_ms: u32,
    /// How often the kernel prints a `Sample` per policy, milliseconds.
    pub sample_ms: u32,
    /// The largest stack, bytes (the kernel's `max_stack`); depths never exceed it.
    pub max_stack_bytes: u32,
    /// The thread groups.
    pub groups: Vec<GroupPlan>,
}

/// Threads that behave alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPlan {
    /// For records.
    pub name: String,
    /// The stack policy of its threads, by name (`static`, `fault`, `guaranteed`, `reclaim`,
    /// `switch`); any other name is a parse error.
    pub policy: Policy,
    /// Threads alive at once.
    pub threads: u32,
    /// Long-lived (run until the end) or short-lived (exit after `calls`).
    pub lifetime: Lifetime,
    /// Paths per thread: in all (short-lived) or between two sleeps (long-lived).
    pub calls: u32,
    /// Short-lived only: start a new thread when one exits, until the run ends.
    pub respawn: bool,
    /// Stack bytes a path uses.
    pub depth: Histogram,
    /// Long-lived only: how deep a thread sleeps between its rounds of paths.
    pub sleep_depth: Histogram,
    /// Percent of paths that block at their deepest point.
    pub block_percent: u8,
    /// Percent of paths that run with interrupts off, holding a spin lock, from their start to
    /// their deepest byte (and never block). 0 when absent.
    #[serde(default)]
    pub irqoff_percent: u8,
    /// Mean time asleep (a block, or a long-lived thread between rounds), milliseconds.
    pub sleep_ms: u32,
    /// Who ends a block.
    pub wake: Wake,
}

/// How long a group's threads live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifetime {
    /// Until the run ends.
    Long,
    /// For `calls` paths.
    Short,
}

/// Who wakes a blocked thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    /// A timer, after the drawn time.
    Timer,
    /// Another thread of the group, when it finishes a path (or a timer as a fallback, so
    /// the last thread of a group cannot sleep forever).
    Peer,
}

/// A distribution of byte counts: a bucket is drawn by weight, then a value uniformly in
/// `(previous bucket's up_to_bytes, up_to_bytes]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// Buckets in increasing `up_to_bytes`.
    pub buckets: Vec<Bucket>,
}

/// One bucket of a [`Histogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// The bucket's upper bound, bytes.
    pub up_to_bytes: u32,
    /// Its relative weight.
    pub weight: u64,
}

/// Why a plan cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// Where (e.g. `groups[2].depth`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// The policies a plan may name (by name, in JSON), in report order: `Policy::ALL`.
pub use dks_core::Policy;

fn error(field: impl Into<String>, problem: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Histogram {
    /// Checks the buckets: at least one, increasing bounds within `max_bytes`, some weight.
    pub fn check(&self, field: &str, max_bytes: u32) -> Result<(), PlanError> {
        if self.buckets.is_empty() {
            return Err(error(field, "no buckets"));
        }
        let mut previous = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            if bucket.up_to_bytes <= previous {
                return Err(error(
                    alloc::format!("{field}.buckets[{i}]"),
                    "bounds must increase and be above 0",
                ));
            }
            if bucket.up_to_bytes > max_bytes {
                return Err(error(
                    alloc::format!("{field}.buckets[{i}]"),
                    alloc::format!(
                        "{} bytes is beyond max_stack ({max_bytes} bytes)",
                        bucket.up_to_bytes
                    ),
                ));
            }
            previous = bucket.up_to_bytes;
        }
        if self.buckets.iter().all(|b| b.weight == 0) {
            return Err(error(field, "every weight is 0"));
        }
        Ok(())
    }

    /// The largest value the histogram can produce.
    pub fn max_bytes(&self) -> u32 {
        self.buckets.last().map_or(0, |b| b.up_to_bytes)
    }
}

impl Plan {
    /// Checks every bound the kernel relies on.
    pub fn check(&self) -> Result<(), PlanError> {
        if self.version != PLAN_VERSION {
            return Err(error(
                "version",
                alloc::format!("{} (this kernel runs version {PLAN_VERSION})", self.version),
            ));
        }
        if ![16 * 1024, 32 * 1024, 64 * 1024].contains(&self.max_stack_bytes) {
            return Err(error("max_stack_bytes", "must be 16, 32 or 64 KiB"));
        }
        if self.duration_ms == 0 || self.duration_ms > 600_000 {
            return Err(error("duration_ms", "must be 1 to 600000"));
        }
        if self.sample_ms == 0 || self.sample_ms > self.duration_ms {
            return Err(error("sample_ms", "must be 1 to duration_ms"));
        }
        if self.groups.is_empty() {
            return Err(error("groups", "no groups"));
        }
        let mut threads: u32 = 0;
        for (i, group) in self.groups.iter().enumerate() {
            let at = |f: &str| alloc::format!("groups[{i}].{f}");
            if group.threads == 0 {
                return Err(error(at("threads"), "must be at least 1"));
            }
            threads = threads.saturating_add(group.threads);
            if group.calls == 0 {
                return Err(error(at("calls"), "must be at least 1"));
            }
            if group.block_percent > 100 {
                return Err(error(at("block_percent"), "must be 0 to 100"));
            }
            if group.irqoff_percent > 100 {
                return Err(error(at("irqoff_percent"), "must be 0 to 100"));
            }
            group.depth.check(&at("depth"), self.max_stack_bytes)?;
            group
                .sleep_depth
                .check(&at("sleep_depth"), self.max_stack_bytes)?;
        }
        if threads > MAX_PLAN_THREADS {
            return Err(error(
                "groups",
                alloc::format!("{threads} threads at once; at most {MAX_PLAN_THREADS}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

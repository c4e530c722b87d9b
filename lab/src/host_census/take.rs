//! Taking a census: the BPF readings of the host's threads turned into rows, with what was
//! skipped counted.
//!
//! The readings come from the `dks-census-bpf` crate when the lab is built with its `bpf`
//! feature ([`snapshot`], [`exits`]); without it those two say how to get a build that has
//! it. Everything after the readings ([`live_rows`], [`exit_rows`], [`census`]) is plain
//! code, tested on made-up readings: a thread that exited while it was read, a page that could
//! not be read, a blank stack, a sleeping thread whose saved stack pointer is elsewhere are
//! each skipped and counted, never guessed; threads whose stacks differ in size stop the
//! census, since no single stack size would describe it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::tsv::{self, Header};
use super::{Census, EXIT_ROUNDING_BYTES, ExitRow, Kind, LiveRow, PAGE_BYTES, Rows, Skipped};

/// How the reading of one thread's stack ended (the BPF crate's `Reading`, mirrored so this
/// module builds and is tested without BPF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read: the high-water mark and, for the snapshot, the sleeping depth (`None` when the
    /// saved stack pointer was not in the stack).
    Measured {
        /// Bytes from the stack top to the first non-zero word from the far end.
        used_bytes: u32,
        /// Bytes from the stack top to the saved stack pointer.
        sleeping_depth_bytes: Option<u32>,
    },
    /// No stack, or lost while it was read.
    Exited,
    /// A page could not be read.
    Unreadable {
        /// How many.
        pages: u32,
    },
    /// Every word zero.
    Blank,
    /// Larger than the programs scan.
    TooLarge,
}

/// One thread as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// A kernel thread.
    pub kthread: bool,
    /// Its name as the kernel holds it.
    pub comm: Vec<u8>,
    /// Pages of its stack (0 when unknown: a thread without a stack).
    pub stack_pages: u32,
    /// What was read.
    pub outcome: Outcome,
}

/// What a census program is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The kernel BTF to check and load against.
    pub btf: PathBuf,
    /// The stack size to assume where a thread's own cannot be read (no `VMAP_STACK`).
    pub default_stack_bytes: u32,
    /// Test hook: every N-th thread of the snapshot gets an unreadable first page.
    pub inject_unreadable_every: u32,
}

/// Rows taken from readings, with the stack size they share and what was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The rows.
    pub rows: Rows,
    /// The stack size of every thread read.
    pub stack_bytes: u32,
    /// Threads read, rows and skipped together.
    pub seen: u64,
    /// What was skipped.
    pub skipped: Skipped,
}

/// The stack size the observations share: `default` when none says, an error when they
/// disagree or one is larger than a census can hold.
fn stack_bytes(observations: &[Observation], default: u32) -> Result<u32, String> {
    let mut sizes: Vec<u32> = observations
        .iter()
        .filter(|o| o.stack_pages > 0)
        .map(|o| o.stack_pages.saturating_mul(PAGE_BYTES))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    match sizes.as_slice() {
        [] => Ok(default),
        [size] if *size <= tsv::MAX_STACK_BYTES => Ok(*size),
        [size] => Err(format!(
            "this host's kernel stacks are {size} bytes; a census holds stacks of at most \
             {} bytes",
            tsv::MAX_STACK_BYTES
        )),
        several => Err(format!(
            "this host's threads have kernel stacks of different sizes ({} bytes); a census \
             describes one stack size",
            several
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Counts an observation that was not measured; returns the measurement otherwise.
fn count(observation: &Observation, skipped: &mut Skipped) -> Option<(u32, Option<u32>)> {
    match observation.outcome {
        Outcome::Measured {
            used_bytes,
            sleeping_depth_bytes,
        } => Some((used_bytes, sleeping_depth_bytes)),
        Outcome::Exited => {
            skipped.exited += 1;
            None
        }
        Outcome::Unreadable { pages } => {
            skipped.unreadable += 1;
            skipped.unreadable_pages += u64::from(pages);
            None
        }
        Outcome::Blank => {
            skipped.blank += 1;
            None
        }
        // Refused by `stack_bytes` before anything is counted.
        Outcome::TooLarge => None,
    }
}

/// Refuses readings that would not fit the census (a program error, not a host's).
fn check_reading(used: u32, sleeping: Option<u32>, stack: u32) -> Result<(), String> {
    let fine = (1..=stack).contains(&used) && sleeping.is_none_or(|s| (1..=stack).contains(&s));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "a reading of {used} bytes used, {sleeping:?} sleeping does not fit a {stack}-byte \
             stack"
        ))
    }
}

/// The rows of a live snapshot from its readings, in the order read.
pub fn live_rows(observations: &[Observation], default_stack_bytes: u32) -> Result<Taken, String> {
    if let Some(o) = observations.iter().find(|o| o.outcome == Outcome::TooLarge) {
        return Err(format!(
            "this host's kernel stacks are {} pages; a census holds stacks of at most {} bytes",
            o.stack_pages,
            tsv::MAX_STACK_BYTES
        ));
    }
    let stack = stack_bytes(observations, default_stack_bytes)?;
    let mut skipped = Skipped::default();
    let mut rows = Vec::new();
    for observation in observations {
        let Some((used, sleeping)) = count(observation, &mut skipped) else {
            continue;
        };
        check_reading(used, sleeping, stack)?;
        let Some(sleeping) = sleeping else {
            skipped.no_stack_pointer += 1;
            continue;
        };
        rows.push(LiveRow {
            used_bytes: used,
            sleeping_depth_bytes: sleeping,
            kthread: observation.kthread,
            comm: Some(tsv::escape_comm(&observation.comm)),
        });
    }
    Ok(Taken {
        rows: Rows::Live(rows),
        stack_bytes: stack,
        seen: observations.len() as u64,
        skipped,
    })
}

/// The rows of an exits census from its readings: marks rounded up to 64 bytes, counted per
/// mark, kind of thread and name, in increasing order. `dropped` is the ring buffer's loss.
pub fn exit_rows(
    observations: &[Observation],
    default_stack_bytes: u32,
    dropped: u64,
) -> Result<Taken, String> {
    if observations.iter().any(|o| o.outcome == Outcome::TooLarge) {
        return Err(format!(
            "this host's kernel stacks are larger than the {} bytes a census holds",
            tsv::MAX_STACK_BYTES
        ));
    }
    let stack = stack_bytes(observations, default_stack_bytes)?;
    let mut skipped = Skipped {
        dropped,
        ..Skipped::default()
    };
    let mut counts: BTreeMap<(u32, bool, String), u64> = BTreeMap::new();
    for observation in observations {
        let Some((used, _)) = count(observation, &mut skipped) else {
            continue;
        };
        check_reading(used, None, stack)?;
        let mark = used.div_ceil(EXIT_ROUNDING_BYTES) * EXIT_ROUNDING_BYTES;
        let key = (
            mark,
            observation.kthread,
            tsv::escape_comm(&observation.comm),
        );
        *counts.entry(key).or_default() += 1;
    }
    let rows = counts
        .into_iter()
        .map(|((used_bytes, kthread, comm), threads)| ExitRow {
            used_bytes,
            threads,
            kthread: Some(kthread),
            comm: Some(comm),
        })
        .collect();
    Ok(Taken {
        rows: Rows::Exits(rows),
        stack_bytes: stack,
        seen: observations.len() as u64,
        skipped,
    })
}

/// Where and how a census was taken, for its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// `uname -r`.
    pub kernel_release: String,
    /// [`super::kernel::stack_options`].
    pub stack_options: String,
    /// When, RFC 3339 UTC.
    pub date: String,
    /// The command line that took it.
    pub command: String,
    /// Exits only: the window, seconds, and the exits the program saw.
    pub window: Option<(u64, u64)>,
}

/// The free-text lines that explain a kind's columns.
pub fn column_notes(kind: Kind) -> Vec<String> {
    let common = "Columns: kthread is 1 for kernel threads; comm is the thread's name \
                  (bytes outside printable ASCII, and tab, as \\xNN; backslash as \\\\).";
    match kind {
        Kind::Live => vec![
            "Columns: used_bytes is the high-water mark since the thread started (the first \
             non-zero word from the stack's far end, the rule of Linux's stack_not_used()); \
             sleeping_depth_bytes is how deep its saved stack pointer sits below the stack \
             top (its live stack while it sleeps)."
                .to_owned(),
            common.to_owned(),
        ],
        Kind::Exits => vec![
            "Columns: used_bytes is the high-water mark read at the thread's last context \
             switch (prev is TASK_DEAD), by the rule of Linux's stack_not_used(), rounded up \
             to 64 bytes; threads is how many exits had that mark and name."
                .to_owned(),
            common.to_owned(),
        ],
    }
}

/// The census of `taken` with its header.
pub fn census(taken: Taken, provenance: &Provenance) -> Census {
    let kind = taken.rows.kind();
    let mut header = Header {
        title: match kind {
            Kind::Live => "dks census snapshot: the kernel stacks of every thread of a live \
                           Linux host at one moment (BPF iter/task)"
                .to_owned(),
            Kind::Exits => "dks census exits: the kernel stack high-water marks of the \
                            threads that exited during a window (BPF tp_btf/sched_switch)"
                .to_owned(),
        },
        keys: Vec::new(),
        notes: column_notes(kind),
    };
    header.set("kernel_release", &provenance.kernel_release);
    header.set("machine", std::env::consts::ARCH);
    header.set("stack_bytes", taken.stack_bytes);
    header.set("stack_options", &provenance.stack_options);
    header.set("date", &provenance.date);
    header.set("command", &provenance.command);
    if let Some((seconds, seen)) = provenance.window {
        header.set("window_seconds", seconds);
        header.set("exits_seen", seen);
    }
    header.set("threads_seen", taken.seen);
    header.set("threads", taken.rows.threads());
    for (key, value) in taken.skipped.keys(kind) {
        header.set(key, value);
    }
    Census {
        header,
        rows: taken.rows,
    }
}

/// Why the BPF part cannot run in a build without it.
#[cfg(not(feature = "bpf"))]
const NO_BPF: &str = "this dks was built without its BPF part (the `bpf` feature of dks-lab, \
                      which needs clang and libelf); run it through ./dks, which installs them \
                      from Debian's packages and builds it with the feature";

/// Reads every thread of the host once.
pub fn snapshot(request: &Request) -> Result<Vec<Observation>, String> {
    #[cfg(feature = "bpf")]
    {
        let records = dks_census_bpf::snapshot(&bpf_options(request)).map_err(|e| e.to_string())?;
        Ok(records.into_iter().map(observation).collect())
    }
    #[cfg(not(feature = "bpf"))]
    {
        let _ = request;
        Err(NO_BPF.to_owned())
    }
}

/// Reads the threads that exit during `window`; `attached` runs once the program watches.
/// Returns the readings, the exits seen and the exits dropped.
pub fn exits(
    request: &Request,
    window: Duration,
    attached: impl FnOnce(),
) -> Result<(Vec<Observation>, u64, u64), String> {
    #[cfg(feature = "bpf")]
    {
        let exits = dks_census_bpf::watch_exits(&bpf_options(request), window, attached, || {
            crate::interrupt::pending().is_some()
        })
        .map_err(|e| e.to_string())?;
        let observations = exits.records.into_iter().map(observation).collect();
        Ok((observations, exits.seen, exits.dropped))
    }
    #[cfg(not(feature = "bpf"))]
    {
        let _ = (request, window, attached);
        Err(NO_BPF.to_owned())
    }
}

#[cfg(feature = "bpf")]
fn bpf_options(request: &Request) -> dks_census_bpf::Options {
    dks_census_bpf::Options {
        btf: request.btf.clone(),
        default_stack_pages: request.default_stack_bytes / PAGE_BYTES,
        inject_unreadable_every: request.inject_unreadable_every,
    }
}

#[cfg(feature = "bpf")]
fn observation(record: dks_census_bpf::Record) -> Observation {
    use dks_census_bpf::Reading;
    Observation {
        kthread: record.kthread,
        comm: record.comm,
        stack_pages: record.stack_pages,
        outcome: match record.reading {
            Reading::Measured {
                used_bytes,
                sleeping_depth_bytes,
            } => Outcome::Measured {
                used_bytes,
                sleeping_depth_bytes,
            },
            Reading::Exited => Outcome::Exited,
            Reading::Unreadable { pages } => Outcome::Unreadable { pages },
            Reading::Blank => Outcome::Blank,
            Reading::TooLarge => Outcome::TooLarge,
        },
    }
}

#[cfg(test)]
mod tests;

//! `dks census`: measure the kernel stacks of a live Linux host, write them down, replay them.
//!
//! A *census* is one TSV file with a provenance header, of one of two kinds ([`Kind`]):
//!
//! - a **live snapshot** (`dks census snapshot`): one row per thread of the host at one
//!   moment: its stack high-water mark, how deep it sleeps, whether it is a kernel thread, its
//!   command name;
//! - **exits** (`dks census exits --seconds N`): the high-water marks of the threads that
//!   exited during a window, rounded up to 64 bytes and counted per mark and name.
//!
//! The format ([`tsv`]) is the one of `data/linux-6.18-census/` with two more columns
//! (`kthread`, `comm`) and machine-readable `# key: value` provenance lines; the reader also
//! takes the shipped files as they are. From a census come a summary of what each policy would
//! hold ([`summary`]), a scenario file that replays it under `dks compare` ([`replay`]), and
//! fleet views of many ([`merge`]). The readings themselves come from the BPF programs of the
//! `dks-census-bpf` crate ([`take`], with the lab's `bpf` feature); what the host is
//! ([`kernel`]) goes into the provenance. Files are written whole or not at all ([`output`]).

pub mod command;
pub mod kernel;
pub mod merge;
pub mod output;
pub mod replay;
pub mod summary;
pub mod take;
pub mod tsv;

use std::fmt;

/// Bytes of a page: stacks are populated, and held, in pages.
pub const PAGE_BYTES: u32 = 4096;

/// Exit marks are rounded up to this many bytes (as in `data/linux-6.18-census/`).
pub const EXIT_ROUNDING_BYTES: u32 = 64;

/// The two kinds of census.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every thread of a host at one moment.
    Live,
    /// The threads that exited during a window.
    Exits,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Live => "live snapshot",
            Kind::Exits => "census of exits",
        })
    }
}

/// One thread of a live snapshot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveRow {
    /// Its stack high-water mark since it started, bytes.
    pub used_bytes: u32,
    /// How deep its saved stack pointer sits below the stack top, bytes.
    pub sleeping_depth_bytes: u32,
    /// Whether it is a kernel thread.
    pub kthread: bool,
    /// Its command name, escaped ([`tsv::escape_comm`]); `None` in files without the column.
    pub comm: Option<String>,
}

/// Exits that share a mark (and a name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExitRow {
    /// Their high-water mark, rounded up to [`EXIT_ROUNDING_BYTES`].
    pub used_bytes: u32,
    /// How many exits had it.
    pub threads: u64,
    /// Whether they were kernel threads; `None` in files without the column.
    pub kthread: Option<bool>,
    /// Their command name, escaped; `None` in files without the column.
    pub comm: Option<String>,
}

/// The rows of a census.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rows {
    /// A live snapshot's threads.
    Live(Vec<LiveRow>),
    /// An exits census's marks.
    Exits(Vec<ExitRow>),
}

impl Rows {
    /// The kind of census these rows make.
    pub fn kind(&self) -> Kind {
        match self {
            Rows::Live(_) => Kind::Live,
            Rows::Exits(_) => Kind::Exits,
        }
    }

    /// The threads they count.
    pub fn threads(&self) -> u64 {
        match self {
            Rows::Live(rows) => rows.len() as u64,
            Rows::Exits(rows) => rows.iter().map(|r| r.threads).sum(),
        }
    }
}

/// A census: where it came from, and its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Census {
    /// The provenance header.
    pub header: tsv::Header,
    /// The rows.
    pub rows: Rows,
}

impl Census {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.rows.kind()
    }

    /// The stack size of the host(s) it was taken on, when the header says.
    pub fn stack_bytes(&self) -> Option<u32> {
        self.header.get("stack_bytes")?.parse().ok()
    }
}

/// What was skipped while reading, and why: the counts go into the provenance header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Threads that had no stack (zombies) or lost it while being read.
    pub exited: u64,
    /// Threads with a stack page that could not be read.
    pub unreadable: u64,
    /// Pages that could not be read.
    pub unreadable_pages: u64,
    /// Threads whose stack held no non-zero word.
    pub blank: u64,
    /// Snapshot only: threads whose saved stack pointer was not in their stack.
    pub no_stack_pointer: u64,
    /// Exits only: exits lost because the ring buffer was full.
    pub dropped: u64,
}

impl Skipped {
    /// The header keys of the counts, in order, with their values.
    pub fn keys(&self, kind: Kind) -> Vec<(&'static str, u64)> {
        let mut keys = vec![
            ("skipped_exited", self.exited),
            ("skipped_unreadable", self.unreadable),
            ("unreadable_pages", self.unreadable_pages),
            ("skipped_blank", self.blank),
        ];
        match kind {
            Kind::Live => keys.push(("skipped_no_stack_pointer", self.no_stack_pointer)),
            Kind::Exits => keys.push(("dropped", self.dropped)),
        }
        keys
    }

    /// Threads skipped in all (pages and drops are not threads skipped while reading).
    pub fn threads(&self) -> u64 {
        self.exited + self.unreadable + self.blank + self.no_stack_pointer
    }
}

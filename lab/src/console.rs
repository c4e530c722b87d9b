//! The kernel's serial console, line by line.
//!
//! Every line is one of three things ([`ConsoleLine`]): a record (the line carries
//! [`dks_protocol::wire::PREFIX`] and parses), free text for humans, or a malformed record (it
//! carries a record prefix and does not parse, or is of another protocol version). Only records
//! carry meaning; free text is shown and otherwise ignored, and a malformed record keeps a boot
//! from counting as a success (see [`crate::outcome::judge`]).
//!
//! Records come out of [`dks_protocol::wire::parse_line`] borrowing from the line; the lab keeps
//! them past the line, so [`owned`] copies their text.

use std::borrow::Cow;
use std::io::BufRead;

use dks_protocol::record::{
    AdmissionStall, Boot, ConfigError, Cost, Exit, GuardHit, Log, MachineCheck, Panic, Record,
    SpawnFailure, StackFault, TestBegin, TestEnd, Vmstat,
};
use dks_protocol::wire;

/// One line of the serial console, classified.
// reason: a record (a `Cost` holds a 24-bucket histogram) is larger than a text line; a boot
// has thousands of lines at most, and unboxed records keep matching on them simple.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleLine {
    /// A record.
    Record(Record<'static>),
    /// Free text (without its line ending).
    Text(String),
    /// A line with a record prefix that is not a valid record.
    Malformed {
        /// The line as received (without its line ending).
        line: String,
        /// What was wrong with it.
        error: String,
    },
}

impl ConsoleLine {
    /// Classifies one line (its line ending, if any, is dropped).
    pub fn parse(line: &str) -> ConsoleLine {
        let line = line.trim_end_matches(['\n', '\r']);
        match wire::parse_line(line) {
            None => ConsoleLine::Text(line.to_owned()),
            Some(Ok(record)) => ConsoleLine::Record(owned(record)),
            Some(Err(error)) => ConsoleLine::Malformed {
                line: line.to_owned(),
                error: error.to_string(),
            },
        }
    }

    /// Returns the record, if this line is one.
    pub fn record(&self) -> Option<&Record<'static>> {
        match self {
            ConsoleLine::Record(record) => Some(record),
            _ => None,
        }
    }
}

/// Reads `reader` to its end and calls `on_line` with each line, including a last one without
/// a line ending. Bytes that are not UTF-8 are replaced (a console may garble), never fatal.
pub fn read_lines(
    mut reader: impl BufRead,
    mut on_line: impl FnMut(String),
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        on_line(String::from_utf8_lossy(&buf).into_owned());
    }
}

fn own(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

/// Returns `record` with all its text owned, so it outlives the line it was parsed from.
pub fn owned(record: Record<'_>) -> Record<'static> {
    match record {
        Record::Boot(b) => Record::Boot(Boot {
            version: own(b.version),
            cpus: b.cpus,
            memory_kib: b.memory_kib,
            frames_total: b.frames_total,
            frames_free: b.frames_free,
            cmdline: own(b.cmdline),
        }),
        Record::ConfigError(c) => Record::ConfigError(ConfigError {
            key: own(c.key),
            value: own(c.value),
            problem: own(c.problem),
            accepted: own(c.accepted),
        }),
        Record::TestPlan(plan) => Record::TestPlan(plan),
        Record::TestBegin(t) => Record::TestBegin(TestBegin { name: own(t.name) }),
        Record::TestEnd(t) => Record::TestEnd(TestEnd {
            name: own(t.name),
            outcome: t.outcome,
            detail: own(t.detail),
        }),
        Record::Exception(e) => Record::Exception(e),
        Record::TrapStat(t) => Record::TrapStat(t),
        Record::WorkloadStat(w) => Record::WorkloadStat(w),
        Record::AdmissionStall(a) => Record::AdmissionStall(AdmissionStall {
            task: own(a.task),
            when: own(a.when),
            ..a
        }),
        Record::ThreadOverhead(o) => Record::ThreadOverhead(o),
        Record::MemoryBalance(b) => Record::MemoryBalance(b),
        Record::SpawnFailure(f) => Record::SpawnFailure(SpawnFailure {
            group: own(f.group),
            ..f
        }),
        Record::MachineCheck(m) => Record::MachineCheck(MachineCheck {
            severity: own(m.severity),
            found_by: own(m.found_by),
            ..m
        }),
        Record::GuardHit(g) => Record::GuardHit(GuardHit {
            cpu: g.cpu,
            task: own(g.task),
            address: g.address,
            depth_bytes: g.depth_bytes,
            rip: g.rip,
        }),
        Record::Panic(p) => Record::Panic(Panic {
            cpu: p.cpu,
            message: own(p.message),
            file: own(p.file),
            line: p.line,
        }),
        Record::Log(l) => Record::Log(Log { text: own(l.text) }),
        Record::StackFault(f) => Record::StackFault(StackFault {
            task: own(f.task),
            reason: own(f.reason),
            ..f
        }),
        Record::Vmstat(v) => Record::Vmstat(Vmstat {
            reason: own(v.reason),
            ..v
        }),
        Record::PolicyStat(p) => Record::PolicyStat(p),
        Record::Cost(c) => Record::Cost(Cost {
            what: own(c.what),
            ..c
        }),
        Record::Sample(s) => Record::Sample(s),
        Record::ThreadPages(t) => Record::ThreadPages(t),
        Record::Exit(e) => Record::Exit(Exit {
            code: e.code,
            reason: own(e.reason),
        }),
    }
}

#[cfg(test)]
mod tests;

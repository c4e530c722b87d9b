//! The census file format: tab-separated values under a `#` provenance header.
//!
//! ```text
//! # dks census snapshot: ...                 <- a title (free text); <TAB> is a tab
//! # kernel_release: 6.18.44                  <- `# key: value` lines: the provenance
//! # stack_bytes: 16384
//! # Columns: ...                             <- free text (starts with a capital)
//! used_bytes<TAB>sleeping_depth_bytes<TAB>kthread<TAB>comm
//! 2296<TAB>552<TAB>1<TAB>kworker/0:1
//! ```
//!
//! Comment lines come before the column line only. A comment is a key line when it reads
//! `# key: value` with a key of lowercase letters, digits and `_`; each key appears once. The
//! column line is one of four: the two written by `dks census` (live: `used_bytes
//! sleeping_depth_bytes kthread comm`; exits: `used_bytes threads kthread comm`) and the two of
//! `data/linux-6.18-census/` (the same without `kthread`/`comm` for exits, without `comm` for
//! live). Every row has every column: numbers are plain decimal digits, `kthread` is 0 or 1,
//! `comm` is printable ASCII (a thread's name is escaped: [`escape_comm`]). Depths lie in
//! `1..=stack_bytes` (64 KiB when the header gives no stack size); exit marks are multiples of
//! 64 bytes and their counts at least 1.
//!
//! [`parse`] refuses anything else with the line and what is accepted; [`render`] writes what
//! [`parse`] reads back unchanged.

use std::fmt::Write as _;

use super::{Census, EXIT_ROUNDING_BYTES, ExitRow, LiveRow, PAGE_BYTES, Rows};

/// The largest stack a census may describe (the testbed's largest `max_stack`).
pub const MAX_STACK_BYTES: u32 = 64 * 1024;

/// The longest file read, bytes: a million threads fit in a tenth of it.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The columns of a live snapshot written by `dks census`.
pub const LIVE_COLUMNS: [&str; 4] = ["used_bytes", "sleeping_depth_bytes", "kthread", "comm"];
/// The columns of an exits census written by `dks census`.
pub const EXITS_COLUMNS: [&str; 4] = ["used_bytes", "threads", "kthread", "comm"];
/// The columns of `data/linux-6.18-census/live-snapshot.tsv`.
const SHIPPED_LIVE_COLUMNS: [&str; 3] = ["used_bytes", "sleeping_depth_bytes", "kthread"];
/// The columns of `data/linux-6.18-census/exits-mixed.tsv`.
const SHIPPED_EXITS_COLUMNS: [&str; 2] = ["used_bytes", "threads"];

/// The longest `comm` field (15 bytes, each escaped as `\xNN`).
const MAX_COMM_CHARS: usize = 60;

/// The comment lines above the columns: a title, the provenance keys, free notes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The first line, free text (one line).
    pub title: String,
    /// `key: value` lines, in order.
    pub keys: Vec<(String, String)>,
    /// Other comment lines, in order (one line each).
    pub notes: Vec<String>,
}

impl Header {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Adds `key: value` (or replaces the value of an existing key), escaping the value.
    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.set_escaped(key, escape_text(&value.to_string()));
    }

    /// Adds `key: value` with a value already escaped (built from values read from a file,
    /// which are).
    pub fn set_escaped(&mut self, key: &str, value: String) {
        debug_assert!(is_key(key), "{key:?} is not a header key");
        debug_assert!(!value.contains(['\n', '\r']), "{value:?}");
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.keys.push((key.to_owned(), value)),
        }
    }
}

/// Returns a thread's name as a `comm` field: printable ASCII but `\` stays as it is, `\` is
/// written `\\` and every other byte (tab, newline, non-ASCII) `\xNN`, so no name can break a
/// row or the file's encoding.
pub fn escape_comm(comm: &[u8]) -> String {
    let mut text = String::with_capacity(comm.len());
    for &byte in comm {
        match byte {
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(byte as char),
            _ => {
                let _ = write!(text, "\\x{byte:02x}");
            }
        }
    }
    text
}

/// Returns `text` with control characters and non-ASCII escaped like [`escape_comm`], for
/// header values (a command line may hold anything).
pub fn escape_text(text: &str) -> String {
    escape_comm(text.as_bytes())
}

fn is_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Writes `census` in the format [`parse`] reads: the header, then the four columns of its
/// kind. Only censuses with every column are written (`dks census` takes them so and `merge`
/// requires them); a row without `kthread` or `comm` would be written as 0 and an empty name.
pub fn render(census: &Census) -> String {
    let mut text = String::new();
    let header = &census.header;
    // Keys hold escaped values ([`Header::set`]); the title and notes are our own sentences,
    // or read from a file line, and never hold a line break.
    for line in std::iter::once(&header.title).chain(&header.notes) {
        debug_assert!(!line.contains(['\n', '\r']), "{line:?}");
    }
    let _ = writeln!(text, "# {}", header.title);
    for (key, value) in &header.keys {
        let _ = writeln!(text, "# {key}: {value}");
    }
    for note in &header.notes {
        let _ = writeln!(text, "# {note}");
    }
    match &census.rows {
        Rows::Live(rows) => {
            text.push_str(&LIVE_COLUMNS.join("\t"));
            text.push('\n');
            for row in rows {
                let _ = writeln!(
                    text,
                    "{}\t{}\t{}\t{}",
                    row.used_bytes,
                    row.sleeping_depth_bytes,
                    u8::from(row.kthread),
                    row.comm.as_deref().unwrap_or("")
                );
            }
        }
        Rows::Exits(rows) => {
            text.push_str(&EXITS_COLUMNS.join("\t"));
            text.push('\n');
            for row in rows {
                let _ = writeln!(
                    text,
                    "{}\t{}\t{}\t{}",
                    row.used_bytes,
                    row.threads,
                    u8::from(row.kthread.unwrap_or(false)),
                    row.comm.as_deref().unwrap_or("")
                );
            }
        }
    }
    text
}

/// Why a census cannot be read: the line (1-based; 0 for the whole file) and the problem,
/// with what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line at fault.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.problem)
        } else {
            write!(f, "line {}: {}", self.line, self.problem)
        }
    }
}

impl std::error::Error for ParseError {}

fn error(line: usize, problem: impl Into<String>) -> ParseError {
    ParseError {
        line,
        problem: problem.into(),
    }
}

/// Reads a census file at `path` (see [`parse`]); the error names the file.
pub fn read(path: &std::path::Path) -> Result<Census, String> {
    let at = |problem: String| format!("census {}: {problem}", path.display());
    let metadata = std::fs::metadata(path).map_err(|e| at(format!("cannot read it: {e}")))?;
    if !metadata.is_file() {
        return Err(at("is not a file; accepted: a census TSV file".to_owned()));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(at(format!(
            "is {} bytes; accepted: at most {MAX_FILE_BYTES} bytes",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| at(format!("cannot read it: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| at("is not text (UTF-8); accepted: a census TSV file".to_owned()))?;
    parse(&text).map_err(|e| at(e.to_string()))
}

/// Parses the text of a census (format in the module documentation).
pub fn parse(text: &str) -> Result<Census, ParseError> {
    let mut header = Header::default();
    let mut lines = text.split('\n').enumerate().map(|(i, line)| (i + 1, line));
    let no_columns = |line: usize| {
        error(
            line,
            "no column line; accepted: comment lines, then the columns of a census \
             (e.g. used_bytes\tsleeping_depth_bytes\tkthread\tcomm)",
        )
    };
    let (columns_at, columns) = loop {
        let Some((number, line)) = lines.next() else {
            return Err(no_columns(0));
        };
        if line.is_empty() {
            return Err(no_columns(number));
        }
        let Some(comment) = line.strip_prefix('#') else {
            break (number, line);
        };
        let comment = comment.strip_prefix(' ').unwrap_or(comment);
        match comment.split_once(": ") {
            Some((key, value)) if is_key(key) => {
                if header.get(key).is_some() {
                    return Err(error(
                        number,
                        format!("the key {key:?} appears twice; accepted: each key once"),
                    ));
                }
                header.keys.push((key.to_owned(), value.to_owned()));
            }
            _ if header.title.is_empty() && header.keys.is_empty() => {
                header.title = comment.to_owned();
            }
            _ => header.notes.push(comment.to_owned()),
        }
    };
    let stack_bytes = match header.get("stack_bytes") {
        Some(value) => {
            let bytes = number(value)
                .filter(|b| (PAGE_BYTES..=MAX_STACK_BYTES).contains(b) && b % PAGE_BYTES == 0);
            bytes.ok_or_else(|| {
                error(
                    0,
                    format!(
                        "stack_bytes: {value:?}; accepted: a whole number of 4096-byte pages \
                         from {PAGE_BYTES} to {MAX_STACK_BYTES}"
                    ),
                )
            })?
        }
        None => MAX_STACK_BYTES,
    };
    let found: Vec<&str> = columns.split('\t').collect();
    let kind_columns = if found == LIVE_COLUMNS || found == SHIPPED_LIVE_COLUMNS {
        Columns::Live {
            comm: found.len() == LIVE_COLUMNS.len(),
        }
    } else if found == EXITS_COLUMNS || found == SHIPPED_EXITS_COLUMNS {
        Columns::Exits {
            named: found.len() == EXITS_COLUMNS.len(),
        }
    } else {
        return Err(error(
            columns_at,
            format!(
                "{columns:?} is not a census's column line; accepted: {:?}, {:?} \
                 (dks census), {:?} or {:?} (data/linux-6.18-census/)",
                LIVE_COLUMNS.join("\t"),
                EXITS_COLUMNS.join("\t"),
                SHIPPED_LIVE_COLUMNS.join("\t"),
                SHIPPED_EXITS_COLUMNS.join("\t"),
            ),
        ));
    };
    let mut live = Vec::new();
    let mut exits = Vec::new();
    let mut rows: Vec<(usize, &str)> = lines.collect();
    if rows.last().is_some_and(|(_, line)| line.is_empty()) {
        // The newline that ends the last row.
        rows.pop();
    }
    for (at_line, line) in rows {
        if line.is_empty() {
            return Err(error(at_line, "an empty line; accepted: rows only"));
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let expected = found.len();
        if fields.len() != expected {
            return Err(error(
                at_line,
                format!(
                    "{} fields; accepted: {expected} tab-separated fields ({})",
                    fields.len(),
                    found.join(", ")
                ),
            ));
        }
        let at = |problem: String| error(at_line, problem);
        let depth = |column: &str, text: &str| -> Result<u32, ParseError> {
            number(text)
                .filter(|b| (1..=stack_bytes).contains(b))
                .ok_or_else(|| {
                    at(format!(
                        "{column} {text:?}; accepted: a whole number of bytes from 1 to \
                         {stack_bytes}"
                    ))
                })
        };
        let kthread = |text: &str| match text {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(at(format!("kthread {text:?}; accepted: 0 or 1"))),
        };
        let comm = |text: &str| {
            if text.len() <= MAX_COMM_CHARS && text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                Ok(text.to_owned())
            } else {
                Err(at(format!(
                    "comm {text:?}; accepted: up to {MAX_COMM_CHARS} printable ASCII \
                     characters (other bytes written as \\xNN)"
                )))
            }
        };
        match kind_columns {
            Columns::Live { comm: has_comm } => live.push(LiveRow {
                used_bytes: depth("used_bytes", fields[0])?,
                sleeping_depth_bytes: depth("sleeping_depth_bytes", fields[1])?,
                kthread: kthread(fields[2])?,
                comm: if has_comm {
                    Some(comm(fields[3])?)
                } else {
                    None
                },
            }),
            Columns::Exits { named } => {
                let used_bytes = depth("used_bytes", fields[0])?;
                if used_bytes % EXIT_ROUNDING_BYTES != 0 {
                    return Err(at(format!(
                        "used_bytes {used_bytes}; accepted: a multiple of \
                         {EXIT_ROUNDING_BYTES} (exit marks are rounded up to it)"
                    )));
                }
                let threads = fields[1]
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1 && fields[1].bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        at(format!(
                            "threads {:?}; accepted: a whole number from 1",
                            fields[1]
                        ))
                    })?;
                let (kthread, comm) = if named {
                    (Some(kthread(fields[2])?), Some(comm(fields[3])?))
                } else {
                    (None, None)
                };
                exits.push(ExitRow {
                    used_bytes,
                    threads,
                    kthread,
                    comm,
                });
            }
        }
    }
    let rows = match kind_columns {
        Columns::Live { .. } => Rows::Live(live),
        Columns::Exits { .. } => Rows::Exits(exits),
    };
    Ok(Census { header, rows })
}

#[derive(Clone, Copy)]
enum Columns {
    Live { comm: bool },
    Exits { named: bool },
}

/// A whole number written with digits only (no sign, no spaces).
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests;

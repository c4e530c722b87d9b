//! The line format: `PREFIX` + one JSON object + `\n`.
//!
//! [`encode`] needs no heap and never panics: a record that does not fit the caller's buffer is
//! an error the caller can report in a shorter way. [`parse_line`] (feature `host`) ignores lines
//! without the prefix, so a kernel's free text and a record can share one console.

use crate::record::Record;

/// The protocol version. It is part of [`PREFIX`]; a host refuses lines of another version.
pub const VERSION: u32 = 1;

/// Every record line starts with this.
pub const PREFIX: &str = "@dks/1 ";

/// The start of a record line of any version, to recognise a version mismatch.
pub const PREFIX_ANY_VERSION: &str = "@dks/";

/// A buffer size that holds every record the kernel emits, including the longest text fields
/// it produces (messages are truncated to fit).
pub const MAX_LINE_BYTES: usize = 1024;

/// A record that could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer was too small for this record.
    TooLong,
}

/// Writes `record` as one line (prefix, JSON, newline) into `buf` and returns the line.
pub fn encode<'b>(record: &Record<'_>, buf: &'b mut [u8]) -> Result<&'b str, EncodeError> {
    let prefix = PREFIX.as_bytes();
    if buf.len() < prefix.len() + 1 {
        return Err(EncodeError::TooLong);
    }
    buf[..prefix.len()].copy_from_slice(prefix);
    let body_end = buf.len() - 1;
    let json_len = serde_json_core::to_slice(record, &mut buf[prefix.len()..body_end])
        .map_err(|_| EncodeError::TooLong)?;
    let end = prefix.len() + json_len;
    buf[end] = b'\n';
    core::str::from_utf8(&buf[..=end]).map_err(|_| EncodeError::TooLong)
}

/// A line that carries the record prefix but is not a valid record.
#[cfg(feature = "host")]
#[derive(Debug)]
pub enum ParseError {
    /// The line is a record of another protocol version.
    Version(alloc::string::String),
    /// The JSON did not parse as a record.
    Json(serde_json::Error),
}

#[cfg(feature = "host")]
impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParseError::Version(found) => write!(
                f,
                "record of protocol version {found:?}, this host understands {VERSION}"
            ),
            ParseError::Json(e) => write!(f, "malformed record: {e}"),
        }
    }
}

#[cfg(feature = "host")]
impl core::error::Error for ParseError {}

/// Parses one console line (with or without its line ending). Returns `None` for free text,
/// `Some(Err)` for a line that has the record prefix but is not a valid record.
#[cfg(feature = "host")]
pub fn parse_line(line: &str) -> Option<Result<Record<'_>, ParseError>> {
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(json) = line.strip_prefix(PREFIX) {
        return Some(serde_json::from_str(json).map_err(ParseError::Json));
    }
    let rest = line.strip_prefix(PREFIX_ANY_VERSION)?;
    let version = rest.split(' ').next().unwrap_or_default();
    Some(Err(ParseError::Version(version.into())))
}

#[cfg(test)]
mod tests;

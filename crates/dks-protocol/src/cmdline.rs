//! What a kernel command line may be: one definition for the host that builds it and the
//! kernel that reads it.
//!
//! Three limits meet here, and [`MAX_CMDLINE_BYTES`] is the least of them:
//!
//! - the kernel echoes its command line in the [`crate::record::Boot`] record, and every record
//!   must fit in [`crate::wire::MAX_LINE_BYTES`]; with the largest numbers the other fields can
//!   hold, a line of [`MAX_CMDLINE_BYTES`] still fits (a test below pins this);
//! - the kernel copies the line into a fixed buffer while it reads the PVH start info (4 KiB,
//!   pinned to be larger than [`MAX_CMDLINE_BYTES`] in the kernel);
//! - QEMU 7.2's PVH loader puts its `hvm_start_info` 4,128 bytes after the start of the command
//!   line, so a line of 4,128 bytes or more overwrites the start info's magic, and the kernel
//!   can only say "unusable boot information" (measured; see `docs/lab.md`).
//!
//! Only printable ASCII is accepted, and not `"` or `\`: those are the characters JSON writes
//! as themselves, so the echo in the `Boot` record is exactly as long as the line. No key of
//! the kernel accepts anything else.

/// The longest kernel command line, in bytes. The host refuses a longer one before it boots,
/// and the kernel refuses it with a `ConfigError` record.
pub const MAX_CMDLINE_BYTES: usize = 768;

/// The characters a command line may contain, for error messages.
pub const ACCEPTED_CHARACTERS: &str =
    "printable ASCII other than '\"' and '\\', words separated by spaces";

const _: () = assert!(MAX_CMDLINE_BYTES < crate::wire::MAX_LINE_BYTES);

/// Why a command line is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// The line has this many bytes, more than [`MAX_CMDLINE_BYTES`].
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// The byte at this offset is not accepted.
    BadByte {
        /// Its offset in the line.
        at: usize,
        /// The byte.
        byte: u8,
    },
}

impl core::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CmdlineError::TooLong { bytes } => write!(
                f,
                "the kernel command line is {bytes} bytes long; accepted: at most \
                 {MAX_CMDLINE_BYTES} bytes of {ACCEPTED_CHARACTERS}"
            ),
            CmdlineError::BadByte { at, byte } => write!(
                f,
                "byte {at} of the kernel command line is {:?}; accepted: {ACCEPTED_CHARACTERS}",
                char::from(*byte)
            ),
        }
    }
}

/// Returns whether `byte` may appear in a command line (a space or printable ASCII other than
/// `"` and `\`).
pub const fn is_accepted_byte(byte: u8) -> bool {
    matches!(byte, b' '..=b'~') && byte != b'"' && byte != b'\\'
}

/// Checks `line` against [`MAX_CMDLINE_BYTES`] and the accepted characters.
pub fn check(line: &str) -> Result<(), CmdlineError> {
    if line.len() > MAX_CMDLINE_BYTES {
        return Err(CmdlineError::TooLong { bytes: line.len() });
    }
    match line.bytes().position(|b| !is_accepted_byte(b)) {
        Some(at) => Err(CmdlineError::BadByte {
            at,
            byte: line.as_bytes()[at],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;

//! The record both programs write, one per thread: `struct census_record` of
//! `bpf/census.bpf.c`, read here field by field (little-endian, x86_64), so no `unsafe`
//! reinterpretation of bytes is needed.

/// Bytes of one record (`sizeof(struct census_record)`).
pub const RECORD_BYTES: usize = 48;

/// How the reading of one thread's stack ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// The stack was read: its high-water mark and, from the snapshot, how deep the thread
    /// sleeps (`None` when its saved stack pointer does not lie in its stack).
    Measured {
        /// Bytes from the stack top to the first non-zero word seen from the far end.
        used_bytes: u32,
        /// Bytes from the stack top to the saved stack pointer.
        sleeping_depth_bytes: Option<u32>,
    },
    /// The thread had no stack (a zombie, or its stack already freed) or lost it while it was
    /// read.
    Exited,
    /// A page of its stack could not be read.
    Unreadable {
        /// Pages that failed.
        pages: u32,
    },
    /// Every word after the canary was zero.
    Blank,
    /// The stack is larger than the programs scan (64 KiB).
    TooLarge,
}

/// One thread as a program saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its thread id (the kernel's `pid`).
    pub tid: u32,
    /// Its process id (the kernel's `tgid`).
    pub tgid: u32,
    /// Whether it is a kernel thread (`PF_KTHREAD`).
    pub kthread: bool,
    /// Its command name, up to 15 bytes, as the kernel holds it (`task->comm`).
    pub comm: Vec<u8>,
    /// Pages of its stack (from its `vm_struct` under `VMAP_STACK`, else the default given).
    pub stack_pages: u32,
    /// What was read.
    pub reading: Reading,
}

/// Why bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one record of exactly [`RECORD_BYTES`].
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() != RECORD_BYTES {
        return Err(DecodeError(format!(
            "a census record of {} bytes; expected {RECORD_BYTES}",
            bytes.len()
        )));
    }
    let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let (status, used, sleeping, unreadable) = (word(2), word(3), word(4), word(6));
    let reading = match status {
        0 => Reading::Measured {
            used_bytes: used,
            sleeping_depth_bytes: (sleeping > 0).then_some(sleeping),
        },
        1 => Reading::Exited,
        2 => Reading::Unreadable { pages: unreadable },
        3 => Reading::Blank,
        4 => Reading::TooLarge,
        other => {
            return Err(DecodeError(format!(
                "a census record with unknown status {other}"
            )));
        }
    };
    let comm = &bytes[32..48];
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    Ok(Record {
        tid: word(0),
        tgid: word(1),
        kthread: word(7) != 0,
        comm: comm[..end].to_vec(),
        stack_pages: word(5),
        reading,
    })
}

/// Decodes a run of records (the iterator's output); the length must be a whole number of
/// records.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DecodeError(format!(
            "{} bytes of census records is not a whole number of {RECORD_BYTES}-byte records",
            bytes.len()
        )));
    }
    bytes.chunks(RECORD_BYTES).map(decode).collect()
}

#[cfg(test)]
mod tests;

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
mod tests {
    use super::*;

    fn raw(words: [u32; 8], comm: &[u8]) -> Vec<u8> {
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut name = [0u8; 16];
        name[..comm.len()].copy_from_slice(comm);
        bytes.extend_from_slice(&name);
        bytes
    }

    #[test]
    fn every_status_decodes() {
        let measured = decode(&raw([7, 5, 0, 2296, 552, 4, 0, 1], b"kworker/0:1")).unwrap();
        assert_eq!(
            measured,
            Record {
                tid: 7,
                tgid: 5,
                kthread: true,
                comm: b"kworker/0:1".to_vec(),
                stack_pages: 4,
                reading: Reading::Measured {
                    used_bytes: 2296,
                    sleeping_depth_bytes: Some(552)
                }
            }
        );
        let no_sp = decode(&raw([1, 1, 0, 900, 0, 4, 0, 0], b"a")).unwrap();
        assert_eq!(
            no_sp.reading,
            Reading::Measured {
                used_bytes: 900,
                sleeping_depth_bytes: None
            }
        );
        for (status, reading) in [
            (1, Reading::Exited),
            (2, Reading::Unreadable { pages: 3 }),
            (3, Reading::Blank),
            (4, Reading::TooLarge),
        ] {
            let record = decode(&raw([1, 1, status, 0, 0, 4, 3, 0], b"")).unwrap();
            assert_eq!(record.reading, reading);
        }
        // A full 16-byte name has no terminator.
        let full = decode(&raw([1, 1, 0, 8, 8, 4, 0, 0], b"0123456789abcdef")).unwrap();
        assert_eq!(full.comm, b"0123456789abcdef");
    }

    #[test]
    fn bad_bytes_are_refused() {
        assert!(decode(&[0; 47]).unwrap_err().0.contains("expected 48"));
        let error = decode(&raw([1, 1, 9, 0, 0, 4, 0, 0], b"")).unwrap_err();
        assert!(error.0.contains("unknown status 9"), "{error}");
        assert!(decode_all(&[0; 50]).unwrap_err().0.contains("whole number"));
        assert_eq!(decode_all(&[]).unwrap(), []);
        assert_eq!(
            decode_all(&raw([1, 1, 3, 0, 0, 4, 0, 0], b"x").repeat(3))
                .unwrap()
                .len(),
            3
        );
    }
}

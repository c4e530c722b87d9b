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

use alloc::borrow::Cow;
use alloc::string::String;

use super::*;
use crate::record::{Boot, Record};
use crate::wire::{self, MAX_LINE_BYTES};

/// The longest line, of the widest accepted bytes, in the widest `Boot` record: it fits.
#[test]
fn the_boot_record_of_the_longest_line_fits_a_record_line() {
    let line: String = (0..MAX_CMDLINE_BYTES)
        .map(|i| if i % 7 == 6 { ' ' } else { '~' })
        .collect();
    check(&line).unwrap();
    let boot = Record::Boot(Boot {
        version: Cow::Borrowed("255.255.65535-rc.65535+abcdefgh"),
        cpus: u32::MAX,
        memory_kib: u64::MAX,
        frames_total: u64::MAX,
        frames_free: u64::MAX,
        cmdline: Cow::Borrowed(&line),
    });
    let mut buf = [0u8; MAX_LINE_BYTES];
    let encoded = wire::encode(&boot, &mut buf).expect("the Boot record fits");
    assert!(encoded.contains(&line));
    // And not by accident: 64 more bytes would not fit, so the limit is near the real one.
    let longer = Record::Boot(Boot {
        cmdline: Cow::Owned(alloc::format!("{line}{}", "~".repeat(64))),
        ..match boot {
            Record::Boot(b) => b,
            _ => unreachable!(),
        }
    });
    assert!(wire::encode(&longer, &mut buf).is_err());
}

#[test]
fn lines_are_refused_by_length_and_by_character() {
    check("").unwrap();
    check("test=all max_stack=16K").unwrap();
    check(&"a".repeat(MAX_CMDLINE_BYTES)).unwrap();
    assert_eq!(
        check(&"a".repeat(MAX_CMDLINE_BYTES + 1)),
        Err(CmdlineError::TooLong {
            bytes: MAX_CMDLINE_BYTES + 1
        })
    );
    for (line, at) in [
        ("a=\"b\"", 2),
        ("a=b\\c", 3),
        ("a=b\tc", 3),
        ("x\n", 1),
        ("a=\u{e9}", 2),
        ("\u{7f}", 0),
    ] {
        match check(line) {
            Err(CmdlineError::BadByte { at: found, .. }) => assert_eq!(found, at, "{line:?}"),
            other => panic!("{line:?}: {other:?}"),
        }
    }
    let message = alloc::format!("{}", check(&"a".repeat(2000)).unwrap_err());
    assert!(message.contains("2000 bytes") && message.contains("at most 768"));
}

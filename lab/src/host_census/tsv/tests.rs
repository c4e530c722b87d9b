use super::*;
use crate::census;
use crate::host_census::Kind;

fn live_census() -> Census {
    let mut header = Header {
        title: "dks census snapshot: a test".to_owned(),
        ..Header::default()
    };
    header.set("kernel_release", "6.18.0");
    header.set("stack_bytes", 16384);
    header.set("command", "dks census\tsnapshot\n--out x.tsv");
    header.notes.push("Columns: whatever".to_owned());
    Census {
        header,
        rows: Rows::Live(vec![
            LiveRow {
                used_bytes: 2296,
                sleeping_depth_bytes: 552,
                kthread: true,
                comm: Some(escape_comm(b"kworker/0:1")),
            },
            LiveRow {
                used_bytes: 16384,
                sleeping_depth_bytes: 1,
                kthread: false,
                comm: Some(escape_comm(b"we\tird\n\\\xff")),
            },
        ]),
    }
}

#[test]
fn names_are_escaped_so_no_name_breaks_a_row() {
    assert_eq!(escape_comm(b"kworker/u8:3"), "kworker/u8:3");
    assert_eq!(escape_comm(b"Web Content"), "Web Content");
    assert_eq!(
        escape_comm(b"a\tb\nc\\d\x7f\xc3\xa9"),
        "a\\x09b\\x0ac\\\\d\\x7f\\xc3\\xa9"
    );
    assert_eq!(escape_comm(b""), "");
}

#[test]
fn a_written_census_reads_back_unchanged() {
    let census = live_census();
    let text = render(&census);
    assert!(text.starts_with("# dks census snapshot: a test\n# kernel_release: 6.18.0\n"));
    assert!(text.contains("# command: dks census\\x09snapshot\\x0a--out x.tsv\n"));
    assert!(text.contains("\nused_bytes\tsleeping_depth_bytes\tkthread\tcomm\n"));
    assert!(text.ends_with("16384\t1\t0\twe\\x09ird\\x0a\\\\\\xff\n"));
    assert_eq!(parse(&text).unwrap(), census);

    let exits = Census {
        header: census.header.clone(),
        rows: Rows::Exits(vec![
            ExitRow {
                used_bytes: 832,
                threads: 471,
                kthread: Some(false),
                comm: Some("sh".to_owned()),
            },
            ExitRow {
                used_bytes: 5824,
                threads: 1,
                kthread: Some(true),
                comm: Some(String::new()),
            },
        ]),
    };
    let parsed = parse(&render(&exits)).unwrap();
    assert_eq!(parsed, exits);
    assert_eq!(parsed.kind(), Kind::Exits);
    assert_eq!(parsed.stack_bytes(), Some(16384));
    assert_eq!(parsed.rows.threads(), 472);
}

#[test]
fn the_shipped_files_are_read_as_they_are() {
    let exits = parse(census::EXITS_TSV).unwrap();
    assert_eq!(exits.kind(), Kind::Exits);
    assert_eq!(exits.rows.threads(), 167_487);
    assert_eq!(exits.stack_bytes(), None);
    assert!(
        exits
            .header
            .title
            .starts_with("Kernel stack high-water marks")
    );
    let live = parse(census::LIVE_TSV).unwrap();
    assert_eq!(live.kind(), Kind::Live);
    let Rows::Live(rows) = &live.rows else {
        panic!("not live")
    };
    assert_eq!(rows.len(), 85);
    assert_eq!(
        rows[0],
        LiveRow {
            used_bytes: 2296,
            sleeping_depth_bytes: 552,
            kthread: true,
            comm: None
        }
    );
}

#[test]
fn every_malformed_file_names_its_line_and_what_is_accepted() {
    let live = "# stack_bytes: 16384\nused_bytes\tsleeping_depth_bytes\tkthread\tcomm\n";
    let exits = "# stack_bytes: 16384\nused_bytes\tthreads\tkthread\tcomm\n";
    for (text, expected) in [
        ("", "no column line"),
        ("# only a comment\n", "no column line"),
        (
            "used\tthreads\n",
            "line 1: \"used\\tthreads\" is not a census's column line",
        ),
        (
            "# a: 1\n# a: 2\nused_bytes\tthreads\n",
            "line 2: the key \"a\" appears twice",
        ),
        (
            "# stack_bytes: 12000\nused_bytes\tthreads\n",
            "stack_bytes: \"12000\"",
        ),
        (
            "# stack_bytes: 131072\nused_bytes\tthreads\n",
            "from 4096 to 65536",
        ),
        (
            &format!("{live}100\t50\t1\n"),
            "line 3: 3 fields; accepted: 4",
        ),
        (&format!("{live}100\t50\t1\tx\ty\n"), "5 fields"),
        (
            &format!("{live}0\t50\t1\tx\n"),
            "used_bytes \"0\"; accepted: a whole number of bytes from 1 to 16384",
        ),
        (&format!("{live}16385\t50\t1\tx\n"), "used_bytes \"16385\""),
        (&format!("{live}-5\t50\t1\tx\n"), "used_bytes \"-5\""),
        (&format!("{live}+5\t50\t1\tx\n"), "used_bytes \"+5\""),
        (&format!("{live} 5\t50\t1\tx\n"), "used_bytes \" 5\""),
        (
            &format!("{live}5\tfifty\t1\tx\n"),
            "sleeping_depth_bytes \"fifty\"",
        ),
        (&format!("{live}5\t0\t1\tx\n"), "sleeping_depth_bytes \"0\""),
        (
            &format!("{live}5\t5\t2\tx\n"),
            "kthread \"2\"; accepted: 0 or 1",
        ),
        (&format!("{live}5\t5\t1\tcaf\u{e9}\n"), "printable ASCII"),
        (&format!("{live}5\t5\t1\t{}\n", "x".repeat(61)), "up to 60"),
        (
            &format!("{live}5\t5\t1\tx\n\n5\t5\t1\tx\n"),
            "line 4: an empty line",
        ),
        (&format!("{live}# a late comment\n"), "line 3: 1 fields"),
        (
            &format!("{live}# late\t5\t1\tx\n"),
            "line 3: used_bytes \"# late\"",
        ),
        (
            &format!("{exits}100\t1\t0\tsh\n"),
            "used_bytes 100; accepted: a multiple of 64",
        ),
        (
            &format!("{exits}128\t0\t0\tsh\n"),
            "threads \"0\"; accepted: a whole number from 1",
        ),
        (&format!("{exits}128\tmany\t0\tsh\n"), "threads \"many\""),
        ("used_bytes\tthreads\n65600\t1\n", "from 1 to 65536"),
    ] {
        let problem = parse(text).expect_err(text).to_string();
        assert!(problem.contains(expected), "{text:?}: {problem}");
    }
    // Exactly one trailing newline, or none, is fine.
    assert_eq!(
        parse(&format!("{live}5\t5\t1\tx")).unwrap().rows.threads(),
        1
    );
    assert_eq!(
        parse(&format!("{live}5\t5\t1\tx\n"))
            .unwrap()
            .rows
            .threads(),
        1
    );
    assert_eq!(parse(live).unwrap().rows.threads(), 0);
}

#[test]
fn files_are_read_with_their_name_in_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.tsv");
    std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
    assert!(read(&path).unwrap_err().contains("c.tsv: is not text"));
    std::fs::write(&path, "used_bytes\tthreads\n64\t1\nzz\t1\n").unwrap();
    let problem = read(&path).unwrap_err();
    assert!(
        problem.contains("c.tsv: line 3: used_bytes \"zz\""),
        "{problem}"
    );
    assert!(read(dir.path()).unwrap_err().contains("is not a file"));
    assert!(
        read(&dir.path().join("none.tsv"))
            .unwrap_err()
            .contains("cannot read it")
    );
}

use super::*;

fn seen(comm: &str, kthread: bool, outcome: Outcome) -> Observation {
    Observation {
        kthread,
        comm: comm.as_bytes().to_vec(),
        stack_pages: 4,
        outcome,
    }
}

fn measured(used: u32, sleeping: Option<u32>) -> Outcome {
    Outcome::Measured {
        used_bytes: used,
        sleeping_depth_bytes: sleeping,
    }
}

#[test]
fn a_snapshot_keeps_measured_threads_and_counts_every_skip() {
    let observations = [
        seen("kworker/0:1", true, measured(2296, Some(552))),
        seen("bash", false, measured(4088, Some(1280))),
        Observation {
            stack_pages: 0,
            ..seen("zombie", false, Outcome::Exited)
        },
        seen("gone", false, Outcome::Exited),
        seen("bad", false, Outcome::Unreadable { pages: 1 }),
        seen("worse", false, Outcome::Unreadable { pages: 2 }),
        seen("blank", false, Outcome::Blank),
        seen("elsewhere", false, measured(900, None)),
        seen("tab\there", false, measured(16384, Some(16384))),
    ];
    let taken = live_rows(&observations, 8192).unwrap();
    assert_eq!(taken.stack_bytes, 16384, "the threads' own size wins");
    assert_eq!(
        taken.skipped,
        Skipped {
            exited: 2,
            unreadable: 2,
            unreadable_pages: 3,
            blank: 1,
            no_stack_pointer: 1,
            dropped: 0
        }
    );
    let Rows::Live(rows) = &taken.rows else {
        panic!("not live")
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        LiveRow {
            used_bytes: 2296,
            sleeping_depth_bytes: 552,
            kthread: true,
            comm: Some("kworker/0:1".to_owned())
        }
    );
    assert_eq!(rows[2].comm.as_deref(), Some("tab\\x09here"));
    assert_eq!(taken.skipped.threads() + 3, observations.len() as u64);
    assert_eq!(taken.seen, observations.len() as u64);
}

#[test]
fn exits_are_rounded_and_counted_per_mark_and_name() {
    let observations = [
        seen("sh", false, measured(800, None)),
        seen("sh", false, measured(832, None)),
        seen("sh", false, measured(833, None)),
        seen("sh", true, measured(64, None)),
        seen("cc1", false, measured(1, None)),
        seen("cc1", false, Outcome::Unreadable { pages: 1 }),
    ];
    let taken = exit_rows(&observations, 16384, 7).unwrap();
    assert_eq!(taken.skipped.dropped, 7);
    assert_eq!(taken.skipped.unreadable, 1);
    let row = |used, threads, kthread, comm: &str| ExitRow {
        used_bytes: used,
        threads,
        kthread: Some(kthread),
        comm: Some(comm.to_owned()),
    };
    assert_eq!(
        taken.rows,
        Rows::Exits(vec![
            row(64, 1, false, "cc1"),
            row(64, 1, true, "sh"),
            row(832, 2, false, "sh"),
            row(896, 1, false, "sh"),
        ])
    );
    assert_eq!(taken.rows.threads(), 5);
}

#[test]
fn stacks_of_different_or_unknown_sizes_are_handled() {
    let mixed = [
        seen("a", false, measured(100, Some(50))),
        Observation {
            stack_pages: 8,
            ..seen("b", false, measured(100, Some(50)))
        },
    ];
    let error = live_rows(&mixed, 16384).unwrap_err();
    assert!(
        error.contains("different sizes (16384, 32768 bytes)"),
        "{error}"
    );
    let huge = [Observation {
        stack_pages: 32,
        ..seen("a", false, Outcome::TooLarge)
    }];
    assert!(live_rows(&huge, 16384).unwrap_err().contains("32 pages"));
    assert!(
        exit_rows(&huge, 16384, 0)
            .unwrap_err()
            .contains("larger than")
    );
    // Nobody with a stack: the default stands.
    let none = [Observation {
        stack_pages: 0,
        ..seen("z", false, Outcome::Exited)
    }];
    assert_eq!(live_rows(&none, 32768).unwrap().stack_bytes, 32768);
    // A reading beyond its stack is a program error, not a row.
    let beyond = [seen("a", false, measured(20000, Some(5)))];
    assert!(
        live_rows(&beyond, 16384)
            .unwrap_err()
            .contains("does not fit")
    );
}

#[test]
fn the_header_carries_the_provenance_and_the_skips() {
    let taken = live_rows(
        &[
            seen("a", false, measured(100, Some(50))),
            seen("b", false, Outcome::Exited),
        ],
        16384,
    )
    .unwrap();
    let census = census(
        taken,
        &Provenance {
            kernel_release: "6.18.44".to_owned(),
            stack_options: "VMAP_STACK=y (from /proc/config.gz)".to_owned(),
            date: "2026-05-01T10:00:00Z".to_owned(),
            command: "dks census snapshot".to_owned(),
            window: None,
        },
    );
    let text = tsv::render(&census);
    for line in [
        "# kernel_release: 6.18.44\n",
        "# stack_bytes: 16384\n",
        "# stack_options: VMAP_STACK=y (from /proc/config.gz)\n",
        "# date: 2026-05-01T10:00:00Z\n",
        "# command: dks census snapshot\n",
        "# threads_seen: 2\n",
        "# threads: 1\n",
        "# skipped_exited: 1\n",
        "# skipped_unreadable: 0\n",
        "# unreadable_pages: 0\n",
        "# skipped_no_stack_pointer: 0\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert_eq!(tsv::parse(&text).unwrap(), census);
}

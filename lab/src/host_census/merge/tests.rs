use super::*;
use crate::host_census::tsv;

fn census(text: &str) -> Census {
    tsv::parse(text).unwrap()
}

fn live(stack: u32, release: &str, rows: &str) -> Census {
    census(&format!(
        "# t\n# kernel_release: {release}\n# stack_bytes: {stack}\n# date: d\n\
             # skipped_exited: 2\n# skipped_unreadable: 1\n\
             used_bytes\tsleeping_depth_bytes\tkthread\tcomm\n{rows}"
    ))
}

fn exits(stack: u32, rows: &str) -> Census {
    census(&format!(
        "# stack_bytes: {stack}\n# dropped: 3\nused_bytes\tthreads\tkthread\tcomm\n{rows}"
    ))
}

fn inputs(censuses: Vec<Census>) -> Vec<(PathBuf, Census)> {
    censuses
        .into_iter()
        .enumerate()
        .map(|(i, c)| (PathBuf::from(format!("host{}.tsv", i + 1)), c))
        .collect()
}

#[test]
fn live_snapshots_are_joined_with_every_source_named() {
    let merged = merge(
        &inputs(vec![
            live(16384, "6.18", "900\t500\t1\ta\n"),
            live(16384, "6.12", "4100\t800\t0\tb\n900\t500\t1\ta\n"),
        ]),
        "now",
        "dks census merge host1.tsv host2.tsv",
    )
    .unwrap();
    assert_eq!(merged.rows.threads(), 3);
    assert_eq!(merged.stack_bytes(), Some(16384));
    let h = &merged.header;
    assert_eq!(h.get("sources"), Some("2"));
    assert_eq!(
        h.get("source_2"),
        Some("host2.tsv (kernel_release 6.12, date d, threads 2)")
    );
    assert_eq!(h.get("threads"), Some("3"));
    assert_eq!(h.get("skipped_exited"), Some("4"));
    assert_eq!(h.get("skipped_unreadable"), Some("2"));
    assert_eq!(h.get("dropped"), None);
    assert_eq!(
        h.get("command"),
        Some("dks census merge host1.tsv host2.tsv")
    );
    // Escaped values are taken over as they are, not escaped twice.
    let odd = live(16384, "6.18\\x09odd", "900\t500\t1\ta\n");
    let twice = merge(&inputs(vec![odd.clone(), odd]), "now", "c").unwrap();
    assert_eq!(
        twice.header.get("source_1"),
        Some("host1.tsv (kernel_release 6.18\\x09odd, date d, threads 1)")
    );
    // What is written reads back the same.
    assert_eq!(tsv::parse(&tsv::render(&merged)).unwrap(), merged);
}

#[test]
fn exits_are_counted_again_per_mark_and_name() {
    let merged = merge(
        &inputs(vec![
            exits(16384, "832\t3\t0\tsh\n1024\t1\t1\tk\n"),
            exits(16384, "832\t2\t0\tsh\n832\t1\t0\tcc\n"),
        ]),
        "now",
        "c",
    )
    .unwrap();
    let row = |used, threads, kthread, comm: &str| ExitRow {
        used_bytes: used,
        threads,
        kthread: Some(kthread),
        comm: Some(comm.to_owned()),
    };
    assert_eq!(
        merged.rows,
        Rows::Exits(vec![
            row(832, 1, false, "cc"),
            row(832, 5, false, "sh"),
            row(1024, 1, true, "k")
        ])
    );
    assert_eq!(merged.header.get("dropped"), Some("6"));
    assert_eq!(merged.header.get("threads"), Some("7"));
}

#[test]
fn files_that_do_not_go_together_are_refused() {
    let cases = [
        (
            vec![
                live(16384, "a", "900\t500\t1\ta\n"),
                live(32768, "b", "900\t500\t1\ta\n"),
            ],
            "census host2.tsv: has 32768-byte stacks, host1.tsv 16384-byte stacks",
        ),
        (
            vec![
                live(16384, "a", "900\t500\t1\ta\n"),
                exits(16384, "64\t1\t0\tx\n"),
            ],
            "census host2.tsv: is a census of exits, host1.tsv a live snapshot",
        ),
        (
            vec![census("used_bytes\tthreads\n64\t1\n")],
            "census host1.tsv: says no stack size",
        ),
        (
            vec![census("# stack_bytes: 16384\nused_bytes\tthreads\n64\t1\n")],
            "census host1.tsv: has no kthread and comm columns",
        ),
        (vec![], "no census to merge"),
    ];
    for (censuses, expected) in cases {
        let error = merge(&inputs(censuses), "now", "c").unwrap_err();
        assert!(error.contains(expected), "{error}");
    }
}

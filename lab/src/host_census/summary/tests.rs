use super::*;
use crate::host_census::tsv;

/// Four threads of a 16 KiB stack, computed by hand below.
const LIVE: &str = "\
# dks census snapshot: a test
# kernel_release: 6.18.44
# stack_bytes: 16384
# skipped_exited: 2
# skipped_unreadable: 0
used_bytes\tsleeping_depth_bytes\tkthread\tcomm
1\t1\t1\tkworker/0:0
4096\t600\t1\tkworker/1:0
4097\t4096\t0\tbash
16384\t9000\t0\tdeep
";

#[test]
fn a_live_summary_matches_the_hand_computation() {
    let census = tsv::parse(LIVE).unwrap();
    let summary = summarize(&census, 16384);
    assert_eq!(summary.threads, 4);
    assert_eq!(summary.kernel_threads, Some(2));
    // static: 4 x 16 KiB. fault: 1 + 1 + 2 + 4 pages. reclaim: 1 + 1 + 1 + 3 pages.
    assert_eq!(summary.static_bytes, 4 * 16384);
    assert_eq!(summary.populated_bytes, 8 * 4096);
    assert_eq!(summary.sleeping_bytes, Some(6 * 4096));
    assert_eq!(summary.fraction(summary.populated_bytes), Some(0.5));
    assert_eq!(summary.fraction(6 * 4096), Some(0.375));
    // 1 KiB buckets: marks at 1, 4096 (bucket 4), 4097 (bucket 5), 16384 (bucket 16).
    let high: Vec<u64> = summary.buckets.iter().map(|b| b.high_water).collect();
    assert_eq!(high, [1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let sleeping: Vec<u64> = summary
        .buckets
        .iter()
        .map(|b| b.sleeping.unwrap())
        .collect();
    assert_eq!(sleeping, [2, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(summary.buckets[0].up_to_bytes, 1024);

    let text = render(&summary, &census);
    assert!(text.starts_with(
        "Live snapshot of Linux 6.18.44, 16 KiB stacks: 4 threads (2 kernel, 2 user)\n\
             skipped: skipped_exited 2\n"
    ));
    assert!(
        text.contains("\n    1 -  1024 B                   1                 2\n"),
        "{text}"
    );
    assert!(
        text.contains("static              every stack full"),
        "{text}"
    );
    for (policy, kib, percent) in [
        ("static ", "64", "100.0 %"),
        ("fault, guaranteed ", "32", "50.0 %"),
        ("reclaim, switch ", "24", "37.5 %"),
    ] {
        let line = text.lines().find(|l| l.starts_with(policy)).unwrap();
        assert!(
            line.ends_with(&format!("{kib:>10} {percent:>10}")),
            "{line}"
        );
    }
}

#[test]
fn an_exits_summary_weighs_each_mark_by_its_exits() {
    let census = tsv::parse(
        "# stack_bytes: 16384\nused_bytes\tthreads\tkthread\tcomm\n\
             832\t3\t0\tsh\n4160\t1\t1\tkworker\n",
    )
    .unwrap();
    let summary = summarize(&census, 16384);
    assert_eq!(summary.threads, 4);
    assert_eq!(summary.kernel_threads, Some(1));
    // 3 x 1 page + 1 x 2 pages, of 4 x 4 pages.
    assert_eq!(summary.populated_bytes, 5 * 4096);
    assert_eq!(summary.fraction(summary.populated_bytes), Some(5.0 / 16.0));
    assert_eq!(summary.sleeping_bytes, None);
    assert_eq!(summary.buckets[0].high_water, 3);
    assert_eq!(summary.buckets[4].high_water, 1);
    assert!(summary.buckets.iter().all(|b| b.sleeping.is_none()));
    let text = render(&summary, &census);
    assert!(
        text.contains("n/a: exits carry no sleeping depth"),
        "{text}"
    );
    assert!(text.contains("31.2 %"), "{text}");
    assert!(text.starts_with("Exits of an unnamed host, 16 KiB stacks: 4 exits"));
    // The shipped exits have no kthread column: the split is not claimed.
    let shipped = tsv::parse(crate::census::EXITS_TSV).unwrap();
    assert_eq!(summarize(&shipped, 16384).kernel_threads, None);
}

#[test]
fn an_empty_census_has_no_fractions() {
    let census = tsv::parse("# stack_bytes: 16384\nused_bytes\tthreads\tkthread\tcomm\n").unwrap();
    let summary = summarize(&census, 16384);
    assert_eq!(summary.threads, 0);
    assert_eq!(summary.fraction(0), None);
    assert!(render(&summary, &census).contains("n/a"));
}

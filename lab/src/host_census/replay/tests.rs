use dks_protocol::scenario::Bucket;

use super::*;
use crate::host_census::tsv;

fn live(rows: &str) -> Census {
    tsv::parse(&format!(
        "# kernel_release: 6.18.44\n# stack_bytes: 16384\n# date: 2026-05-01T10:00:00Z\n\
             used_bytes\tsleeping_depth_bytes\tkthread\tcomm\n{rows}"
    ))
    .unwrap()
}

#[test]
fn distributions_come_from_either_kind() {
    let snapshot = live("900\t500\t1\ta\n900\t500\t0\tb\n4100\t800\t0\tc\n");
    assert_eq!(
        histogram(&snapshot, "used_bytes").unwrap(),
        census::exact_histogram([(900, 2), (4100, 1)])
    );
    assert_eq!(
        histogram(&snapshot, "sleeping_depth_bytes").unwrap(),
        census::exact_histogram([(500, 2), (800, 1)])
    );
    assert!(
        histogram(&snapshot, "threads")
            .unwrap_err()
            .contains("\"used_bytes\" or")
    );
    assert_eq!(
        population(&snapshot).unwrap(),
        [
            (
                LiveThread {
                    used_bytes: 900,
                    sleeping_depth_bytes: 500
                },
                2
            ),
            (
                LiveThread {
                    used_bytes: 4100,
                    sleeping_depth_bytes: 800
                },
                1
            )
        ]
    );
    let exits = tsv::parse(
        "used_bytes\tthreads\tkthread\tcomm\n832\t3\t0\tsh\n832\t1\t1\tk\n1024\t2\t0\tcc\n",
    )
    .unwrap();
    let b = |up_to_bytes, weight| Bucket {
        up_to_bytes,
        weight,
    };
    assert_eq!(
        histogram(&exits, "used_bytes").unwrap().buckets,
        [b(768, 0), b(832, 4), b(960, 0), b(1024, 2)]
    );
    assert!(
        histogram(&exits, "sleeping_depth_bytes")
            .unwrap_err()
            .contains("no column")
    );
    assert!(
        population(&exits)
            .unwrap_err()
            .contains("accepted: a live snapshot")
    );
    // The shipped exits give the same histogram as the built-in distribution.
    let shipped = tsv::parse(census::EXITS_TSV).unwrap();
    assert_eq!(
        histogram(&shipped, "used_bytes").unwrap(),
        census::exits_histogram()
    );
    let empty = live("");
    assert!(
        histogram(&empty, "used_bytes")
            .unwrap_err()
            .contains("holds no thread")
    );
    assert!(population(&empty).unwrap_err().contains("holds no thread"));
}

#[test]
fn names_are_made_safe() {
    assert_eq!(scenario_name("live-snapshot"), "census-live-snapshot");
    assert_eq!(scenario_name("my host (1)"), "census-my-host--1-");
    assert_eq!(scenario_name(&"x".repeat(100)).len(), 64);
}

#[test]
fn scenarios_say_why_they_cannot_be() {
    let no_size = tsv::parse("used_bytes\tthreads\n64\t1\n").unwrap();
    assert!(
        scenario(&no_size, "a.tsv", "n")
            .unwrap_err()
            .contains("stack size")
    );
    let mut odd = live("900\t500\t1\ta\n");
    odd.header.set("stack_bytes", 8192);
    assert!(
        scenario(&odd, "a.tsv", "n")
            .unwrap_err()
            .contains("16, 32 or 64 KiB")
    );
    assert!(
        scenario(&live(""), "a.tsv", "n")
            .unwrap_err()
            .contains("no thread")
    );
}

#[test]
fn a_big_snapshot_is_drawn_from_its_distributions() {
    let rows = "900\t500\t0\tx\n".repeat(6001);
    let text = scenario(&live(&rows), "big \"one\".tsv", "census-big").unwrap();
    assert!(text.contains("threads = 6001\n"), "{text}");
    assert!(
        text.contains("depth = { file = 'big \"one\".tsv' }\n"),
        "{text}"
    );
    assert!(text.contains("column = \"sleeping_depth_bytes\""), "{text}");
    assert!(!text.contains("population"), "{text}");
    assert!(text.contains("memory = \"512M\""), "{text}");
    // And the scenario reader takes it, with the census beside it.
    let dir = tempfile::tempdir().unwrap();
    let census = live(&rows);
    std::fs::write(dir.path().join("big \"one\".tsv"), tsv::render(&census)).unwrap();
    let scenario = crate::scenario::parse(
        &text,
        crate::scenario::Origin::File(dir.path().join("s.toml")),
    )
    .unwrap();
    let group = &scenario.groups[0].plans[0];
    assert_eq!(group.threads, 6001);
    assert_eq!(group.depth, census::exact_histogram([(900, 6001)]));
    assert_eq!(group.sleep_depth, census::exact_histogram([(500, 6001)]));
}

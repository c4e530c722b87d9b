use super::super::figures::{compare, tests as data};
use super::*;

#[test]
fn one_aligned_row_per_policy_with_the_json_s_figures() {
    let policies = vec![Policy::Static, Policy::Fault];
    let c = compare(&data::setup(), &policies, &data::measurements()).unwrap();
    let text = render(&c);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("dks compare: scenario s (2 CPU(s), max_stack 16K"));
    assert!(lines[1].starts_with("policy  end KiB  peak KiB"), "{text}");
    let static_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        static_row,
        [
            "static", "0", "64", "n/a", "n/a", "n/a", "n/a", "100.0%", "40", "160.0%", "0", "0",
            "0", "0", "0", "0", "0", "0", "0", "n/a", "0", "0", "0", "0", "0", "0", "0", "n/a",
            "1000", "1.00", "n/a", "n/a", "2000", "1.00", "n/a", "n/a", "n/a"
        ]
    );
    let fault_row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        fault_row,
        [
            "fault", "16", "48", "4", "12.00", "12.91", "n/a", "75.0%", "44", "109.1%", "8", "4",
            "0", "0", "0", "0", "0", "0", "0", "n/a", "0", "0", "0", "0", "0", "0", "0", "1500",
            "1100", "1.10", "n/a", "n/a", "500", "0.25", "n/a", "n/a", "n/a"
        ]
    );
    // Right-aligned: every row is as wide as the header.
    assert_eq!(lines[2].len(), lines[1].len());
    assert_eq!(lines[3].len(), lines[1].len());
    assert!(lines[4].contains("1000 insns handled on the IST stack, 1500 moved"));
}

#[test]
fn every_cost_is_shown_with_its_spread() {
    let mut measurements = data::measurements();
    // One operation whose operations differ: 10 of them, 100 to 190 instructions.
    let mut spread = data::cost("switch", "guaranteed", 10, 1450);
    (spread.min, spread.median, spread.max) = (100, 140, 190);
    measurements.costs.push(spread);
    let policies = vec![Policy::Static, Policy::Fault];
    let c = compare(&data::setup(), &policies, &measurements).unwrap();
    assert_eq!(c.costs.len(), measurements.costs.len());
    let text = render(&c);
    let title = text
        .lines()
        .position(|l| l.starts_with("costs (guest instructions per operation"))
        .expect("the costs table");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(title + 1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["operation", "policy", "n", "mean", "min", "median", "max"]
    );
    assert!(
        rows.contains(&vec![
            "switch",
            "guaranteed",
            "10",
            "145",
            "100",
            "140",
            "190"
        ]),
        "{text}"
    );
    // An operation without a policy shows "-".
    assert!(
        rows.iter()
            .any(|r| r.first() == Some(&"bounce_fault") && r[1] == "-"),
        "{text}"
    );
    let json = serde_json::to_value(&c).unwrap();
    let last = json["costs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        serde_json::json!({"what": "switch", "policy": "guaranteed", "samples": 10,
            "mean": 145.0, "min": 100, "median": 140, "max": 190})
    );
}

#[test]
fn reclaim_columns_show_the_dead_pages_and_the_trim_cost() {
    let policies = vec![Policy::Static, Policy::Fault];
    let mut c = compare(&data::setup(), &policies, &data::measurements()).unwrap();
    c.policies[1].reclaimed_dead = 279;
    c.policies[1].insns_per_trim = Some(1671.4);
    let row = cells(&c.policies[1]);
    let column = |header: &str| HEADERS.iter().position(|h| *h == header).unwrap();
    assert_eq!(row[column("dead reclaimed")], "279");
    assert_eq!(row[column("insns/trim")], "1671");
    assert_eq!(cells(&c.policies[0])[column("insns/trim")], "n/a");
}

#[test]
fn pack_columns_show_its_events_and_its_costs_beside_the_others() {
    let policies = vec![Policy::Static, Policy::Pack];
    let c = compare(&data::setup(), &policies, &data::pack_measurements()).unwrap();
    let column = |header: &str| {
        HEADERS
            .iter()
            .position(|h| *h == header)
            .unwrap_or_else(|| panic!("no column {header:?}"))
    };
    let pack = cells(&c.policies[1]);
    let static_row = cells(&c.policies[0]);
    for (header, expected) in [
        ("packs", "90"),
        ("restores", "80"),
        ("restore waits", "2"),
        ("packed", "10"),
        ("packed KiB", "9"),
        ("csum fails", "0"),
        ("guard catches", "0"),
        ("insns/pack", "3100"),
        ("insns/restore", "2250"),
        ("insns/fault", "1500"),
        ("insns/switch", "1200"),
    ] {
        assert_eq!(pack[column(header)], expected, "{header}");
    }
    // The costs sit beside the others; a policy the kernel measured none for shows n/a.
    assert_eq!(
        column("insns/restore"),
        column("insns/pack") + 1,
        "{HEADERS:?}"
    );
    assert!(column("insns/pack") > column("insns/switch"));
    assert_eq!(static_row[column("insns/pack")], "n/a");
    assert_eq!(static_row[column("insns/restore")], "n/a");
    assert_eq!(static_row[column("packs")], "0");
    let text = render(&c);
    assert!(!text.contains("BUG:"), "{text}");
    assert!(
        text.contains("\npack, restore: packing one sleeping"),
        "{text}"
    );
    // Every cell has a header.
    assert_eq!(pack.len(), HEADERS.len());
}

#[test]
fn a_checksum_failure_or_a_guard_catch_is_a_bug_line_under_the_table() {
    let policies = vec![Policy::Static, Policy::Pack];
    let mut c = compare(&data::setup(), &policies, &data::pack_measurements()).unwrap();
    c.policies[1].pack_checksum_failures = 1;
    let text = render(&c);
    assert!(
        text.contains("BUG: 1 restore(s) of pack stacks whose bytes did not match"),
        "{text}"
    );
    assert_eq!(text.matches("BUG:").count(), 1, "{text}");
    c.policies[1].pack_checksum_failures = 0;
    c.policies[1].pack_guard_catches = 3;
    let text = render(&c);
    assert!(
        text.contains("BUG: 3 touch(es) of a pack stack packed in guard mode"),
        "{text}"
    );
    assert_eq!(text.matches("BUG:").count(), 1, "{text}");
}

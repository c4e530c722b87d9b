use dks_protocol::record::ThreadPages;

use super::super::figures::{compare, tests as data};
use super::*;

#[test]
fn the_page_is_self_contained_with_three_svg_plots() {
    let mut m = data::measurements();
    for (policy, pages, threads) in [("static", 4, 4), ("fault", 3, 4)] {
        m.thread_pages.push(ThreadPages {
            policy: policy.parse().unwrap(),
            pages,
            threads,
        });
    }
    let policies = vec![Policy::Static, Policy::Fault];
    let mut c = compare(&data::setup(), &policies, &m).unwrap();
    c.description = "<script>alert(1)</script>".into();
    let page = html(&c, &m);
    std::fs::write(std::env::temp_dir().join("dks-report-test.html"), &page).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg").count(), 3, "{page}");
    assert!(!page.contains("<script"), "scripts or unescaped text");
    assert!(page.contains("&lt;script&gt;"));
    assert!(!page.contains("http://") || !page.contains("src=\"http"));
    assert!(!page.contains("<link"));
    // The table has the same cells as the text table.
    assert!(page.contains("<td>75.0%</td>"));
    for text in [
        "static",
        "fault",
        "fault live bound",
        "2^10",
        "time (s)",
        "threads",
        "stack faults",
    ] {
        assert!(page.contains(&format!(">\n{text}\n</text>")), "{text}");
    }
}

#[test]
fn missing_data_says_so_instead_of_an_empty_plot() {
    let m = Measurements::default();
    let c = compare(&data::setup(), &[], &m).unwrap();
    let page = html(&c, &m);
    assert_eq!(page.matches("<svg").count(), 0);
    assert_eq!(page.matches("No data").count(), 3);
}

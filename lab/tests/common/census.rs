//! Helpers of the `dks census` tests (census.rs and census_refusals.rs).

use std::io::Write;
use std::path::Path;
use std::process::Output;

use super::text;

/// Why BPF cannot run here, if it cannot.
pub fn bpf_unavailable() -> Option<String> {
    if !cfg!(feature = "bpf") {
        return Some("dks was built without the `bpf` feature (scripts/test turns it on)".into());
    }
    if !is_root() {
        return Some("not root: loading the census programs needs CAP_BPF and CAP_PERFMON".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    None
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Says, past the harness's output capture, that `test` is skipped and why.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED census::{test}: {why}");
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn assert_refused(output: &Output, code: i32, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    assert!(output.stdout.is_empty(), "{}", text(output));
    assert_eq!(stderr.matches("error:").count(), 1, "{}", text(output));
    for part in expected {
        assert!(stderr.contains(part), "{part:?} in\n{}", text(output));
    }
}

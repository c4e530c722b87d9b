use super::super::figures::{compare, tests as data};
use super::*;

/// The test comparison at `kib`, with static's and fault's peaks set.
fn at(kib: u32, static_peak: u64, fault_peak: u64) -> Comparison {
    let policies = vec![Policy::Static, Policy::Fault];
    let mut c = compare(&data::setup(), &policies, &data::measurements()).unwrap();
    c.max_stack_kib = kib;
    c.policies[0].stack_kib_peak = static_peak;
    c.policies[1].stack_kib_peak = fault_peak;
    c.policies[1].stack_peak_vs_static = Some(fault_peak as f64 / static_peak as f64);
    c
}

#[test]
fn each_policy_s_memory_at_every_size_in_one_row() {
    let s = sweep(vec![at(16, 64, 48), at(64, 256, 50)]);
    assert_eq!(s.max_stack_kib, [16, 64]);
    assert_eq!(s.memory.len(), 2);
    let fault = &s.memory[1];
    assert_eq!(fault.policy, Policy::Fault);
    assert_eq!(fault.stack_kib_peak, [Some(48), Some(50)]);
    assert_eq!(fault.stack_peak_vs_first[1], Some(50.0 / 48.0));
    assert_eq!(s.memory[0].stack_peak_vs_first[1], Some(4.0));

    let text = render(&s);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1]
            .split("  ")
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        [
            "policy",
            "16K peak KiB",
            "16K /static",
            "64K peak KiB",
            "64K /static",
            "64K /16K"
        ]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["static", "64", "100.0%", "256", "100.0%", "4.00"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["fault", "48", "75.0%", "50", "19.5%", "1.04"]
    );
}

#[test]
fn a_policy_missing_at_one_size_is_n_a_there() {
    let mut second = at(32, 128, 48);
    second.policies.truncate(1);
    let s = sweep(vec![at(16, 64, 48), second]);
    assert_eq!(s.memory[1].stack_kib_peak, [Some(48), None]);
    let text = render(&s);
    assert_eq!(
        text.lines()
            .nth(3)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["fault", "48", "75.0%", "n/a", "n/a", "n/a"]
    );
}

//! The soak (issue 9): one boot runs `DKS_SOAK_LIFETIMES` thread lifetimes (default
//! 1,000,000) under every stack policy the kernel implements, on `DKS_SOAK_CPUS` CPUs
//! (default 2), and checks that free frames, stack slots, populated pages and the heap are
//! back at their baseline (`bench=soak:N`, see `kernel/src/ktest/soak.rs`). Not part of
//! `cargo test`: run it with `cargo bench -p dks-lab --bench soak`. It prints the kernel's
//! figures and the wall time, and exits non-zero if the soak failed.

use std::process::ExitCode;
use std::time::Duration;

use dks_lab::boot;
use dks_lab::config::BootConfig;
use dks_lab::kernel;
use dks_lab::test_report;
use dks_protocol::record::Record;

/// Generous: a million lifetimes take minutes under TCG on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(3 * 3600);

fn env_number(
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                format!(
                    "{name}={text:?}: expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and any filter); the soak takes no arguments.
    let settings = env_number("DKS_SOAK_LIFETIMES", 1_000_000, 1..=100_000_000)
        .and_then(|lifetimes| Ok((lifetimes, env_number("DKS_SOAK_CPUS", 2, 1..=4)?)));
    let (lifetimes, cpus) = match settings {
        Ok(settings) => settings,
        Err(problem) => {
            eprintln!("soak: {problem}");
            return ExitCode::from(2);
        }
    };
    let kernel = match kernel::build_once() {
        Ok(kernel) => kernel,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let config = BootConfig {
        kernel_args: vec![format!("bench=soak:{lifetimes}")],
        cpus: cpus as u8,
        timeout: TIMEOUT,
        ..BootConfig::new(kernel)
    };
    println!(
        "soak: {lifetimes} lifetimes on {cpus} CPU(s): {}",
        config.cmdline()
    );
    let outcome = match boot::run(&config, |_| {}) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for record in outcome.records() {
        if let Record::Log(log) = record
            && log.text.starts_with("soak:")
        {
            println!("{}", log.text);
        }
    }
    println!("wall time {:.1} s", outcome.elapsed.as_secs_f64());
    match test_report::check(&outcome) {
        Ok(_) => {
            println!("soak passed: memory back at its baseline");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("soak FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

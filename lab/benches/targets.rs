//! The cost targets of the hot paths (issue 13), checked against the cost boot of `dks compare`
//! (`bench=costs tsc=instructions`, 1 CPU, `-icount shift=0`: every figure is a deterministic
//! count of guest instructions, docs/fault-path.md).
//!
//! `cargo bench -p dks-lab --bench targets` builds the kernel (or takes `-- --kernel ELF`),
//! boots the cost boot once (a few seconds), prints each target with the measured figure (the
//! mean, as `dks compare` shows it, and the median) and whether it holds, and exits non-zero
//! when one does not. A benchmark, not a test: the figures are a property of the build, and
//! the suite checks correctness, not speed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dks_lab::boot;
use dks_lab::config::BootConfig;
use dks_protocol::record::{Cost, Record};

/// The cost boot's kernel arguments (those of `dks compare`).
const COST_BOOT_ARGS: [&str; 2] = ["bench=costs", "tsc=instructions"];

/// The policy the others are compared with.
const STATIC: &str = "static";

/// A stack fault, entry to return.
const STACK_FAULT_MAX: f64 = 400.0;
/// A `static` context switch.
const STATIC_SWITCH_MAX: f64 = 450.0;
/// Each dynamic policy's switch over `static`'s.
const SWITCH_OVER_STATIC_MAX: f64 = 0.02;
/// A non-stack fault moved to the interrupted stack, over the same fault handled in place.
const BOUNCE_OVER_DIRECT_MAX: f64 = 150.0;
/// A dynamic policy's thread creation over `static`'s.
const CREATE_VS_STATIC_MAX: f64 = 0.34;

/// One measured operation: mean and median guest instructions.
#[derive(Clone, Copy, Debug)]
struct Figure {
    mean: f64,
    median: u64,
}

impl Figure {
    fn of(cost: &Cost<'_>) -> Option<Self> {
        (cost.samples > 0).then(|| Figure {
            mean: cost.total as f64 / cost.samples as f64,
            median: cost.median,
        })
    }
}

/// One line of the verdict.
struct Check {
    target: String,
    measured: String,
    limit: String,
    holds: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("targets: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn kernel_from_args() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    let mut kernel = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes this to every harness-less bench.
            "--bench" => {}
            "--kernel" => {
                let path = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--kernel needs the path of a kernel ELF"))?;
                kernel = Some(PathBuf::from(path));
            }
            other => anyhow::bail!(
                "unknown argument {other:?}; accepted: --kernel ELF (boot this kernel instead \
                 of building the repository's)"
            ),
        }
    }
    Ok(kernel)
}

fn run() -> anyhow::Result<bool> {
    let kernel = match kernel_from_args()? {
        Some(kernel) => kernel,
        None => dks_lab::kernel::build_once()?,
    };
    let config = BootConfig {
        kernel_args: COST_BOOT_ARGS.iter().map(|a| (*a).to_owned()).collect(),
        cpus: 1,
        icount_shift: Some(0),
        timeout: Duration::from_secs(300),
        ..BootConfig::new(&kernel)
    };
    eprintln!("targets: cost boot of {}", kernel.display());
    let outcome = boot::run(&config, |_| {})?;
    anyhow::ensure!(
        outcome.is_success(),
        "the cost boot ({}) failed: {outcome:?}",
        config.cmdline()
    );
    let mut figures = BTreeMap::new();
    for record in outcome.records() {
        if let Record::Cost(cost) = record {
            anyhow::ensure!(
                cost.instructions,
                "the cost boot counted time, not instructions (-icount missing?)"
            );
            if let Some(figure) = Figure::of(cost) {
                figures.insert(
                    (
                        cost.what.to_string(),
                        cost.policy.map_or(String::new(), |p| p.name().to_owned()),
                    ),
                    figure,
                );
            }
        }
    }
    let get = |what: &str, policy: &str| figures.get(&(what.to_owned(), policy.to_owned()));
    let policies: Vec<String> = figures
        .keys()
        .filter(|(what, _)| what == "create")
        .map(|(_, policy)| policy.clone())
        .collect();
    anyhow::ensure!(
        policies.iter().any(|p| p == STATIC),
        "the cost boot measured no `static` creation"
    );
    let dynamic: Vec<&String> = policies.iter().filter(|p| *p != STATIC).collect();
    let mut checks = Vec::new();
    let missing = |target: String, limit: String| Check {
        target,
        measured: "not measured".into(),
        limit,
        holds: false,
    };
    let static_switch = get("switch", STATIC).copied();
    let static_create = get("create", STATIC).copied();
    // A policy that never takes a stack fault (`static`, `switch`) has no `stack_fault`
    // measurement, and no fault to hold to the target.
    for policy in dynamic.iter().filter(|p| get("stack_fault", p).is_some()) {
        let f = get("stack_fault", policy).expect("filtered");
        checks.push(Check {
            target: format!("stack fault, {policy}"),
            measured: format!("{:.0} (median {})", f.mean, f.median),
            limit: format!("<= {STACK_FAULT_MAX:.0}"),
            holds: f.mean <= STACK_FAULT_MAX,
        });
    }
    let target = "switch, static".to_owned();
    let limit = format!("<= {STATIC_SWITCH_MAX:.0}");
    checks.push(match static_switch {
        Some(f) => Check {
            measured: format!("{:.0} (median {})", f.mean, f.median),
            holds: f.mean <= STATIC_SWITCH_MAX,
            target,
            limit,
        },
        None => missing(target, limit),
    });
    for policy in &dynamic {
        let target = format!("switch, {policy} over static");
        let limit = format!("<= +{:.0} %", SWITCH_OVER_STATIC_MAX * 100.0);
        checks.push(match (get("switch", policy), static_switch) {
            (Some(f), Some(s)) => {
                let over = f.mean / s.mean - 1.0;
                Check {
                    measured: format!(
                        "{:+.1} % ({:.1} vs {:.1}; medians {} vs {})",
                        over * 100.0,
                        f.mean,
                        s.mean,
                        f.median,
                        s.median
                    ),
                    holds: over <= SWITCH_OVER_STATIC_MAX,
                    target,
                    limit,
                }
            }
            _ => missing(target, limit),
        });
    }
    let target = "non-stack fault moved, over in place".to_owned();
    let limit = format!("<= +{BOUNCE_OVER_DIRECT_MAX:.0}");
    checks.push(match (get("bounce_fault", ""), get("direct_fault", "")) {
        (Some(bounce), Some(direct)) => {
            let over = bounce.mean - direct.mean;
            Check {
                measured: format!(
                    "{over:+.0} ({:.0} vs {:.0}; medians {} vs {})",
                    bounce.mean, direct.mean, bounce.median, direct.median
                ),
                holds: over <= BOUNCE_OVER_DIRECT_MAX,
                target,
                limit,
            }
        }
        _ => missing(target, limit),
    });
    for policy in &dynamic {
        let target = format!("creation, {policy} / static");
        let limit = format!("<= {CREATE_VS_STATIC_MAX:.2}");
        checks.push(match (get("create", policy), static_create) {
            (Some(f), Some(s)) => {
                let ratio = f.mean / s.mean;
                Check {
                    measured: format!("{ratio:.3} ({:.0} vs {:.0})", f.mean, s.mean),
                    holds: ratio <= CREATE_VS_STATIC_MAX,
                    target,
                    limit,
                }
            }
            _ => missing(target, limit),
        });
    }
    let width = |f: fn(&Check) -> &str, title: &str| {
        checks
            .iter()
            .map(|c| f(c).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (t, m, l) = (
        width(|c| &c.target, "target"),
        width(|c| &c.measured, "measured (guest instructions)"),
        width(|c| &c.limit, "limit"),
    );
    println!(
        "{:<t$}  {:<m$}  {:<l$}  holds",
        "target", "measured (guest instructions)", "limit"
    );
    for c in &checks {
        println!(
            "{:<t$}  {:<m$}  {:<l$}  {}",
            c.target,
            c.measured,
            c.limit,
            if c.holds { "yes" } else { "NO" }
        );
    }
    let holding = checks.iter().filter(|c| c.holds).count();
    println!("{holding} of {} targets hold", checks.len());
    Ok(holding == checks.len())
}

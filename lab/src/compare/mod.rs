//! `dks compare`: one scenario under every policy, measured the same way, in one table.
//!
//! A comparison is a few boots of the same kernel, all judged by [`crate::outcome`]:
//!
//! 1. the **cost boot** (`bench=costs`, `-icount shift=0`, 1 CPU): the kernel measures its
//!    operations in guest instructions and prints `Cost` records. Its `create` costs also
//!    say which policies this kernel implements: without `--policies`, those are the ones
//!    compared;
//! 2. the **workload boots** (`workload=initrd max_stack=...`, the plan as `-initrd`): all
//!    policies side by side in one boot when the scenario's threads fit in one plan, else one
//!    boot per policy. The kernel prints `Sample`s while the workload runs (shown as progress)
//!    and `PolicyStat`, `ThreadPages` and possibly `StackFault` records at the end.
//!
//! Any boot that does not end in success stops the comparison with one error that carries the
//! kernel's own words; nothing is written then. The outputs (table, JSON, report) are made
//! from the records only after every boot succeeded ([`figures`], [`table`], [`report`]), and
//! files are written all or nothing ([`crate::output`]).
//!
//! With `--inject-nmi`/`--inject-mce`, each workload boot (never the cost boot) gets the
//! injection plan ([`crate::inject`]); what was injected and handled goes into the figures.
//!
//! A workload's plan travels to the kernel as a temporary file under `$TMPDIR`, created by
//! `tempfile` (exclusively, random name, mode 0600: a link planted there cannot redirect it)
//! and removed when its boot is over, also when `dks` is interrupted.

pub mod figures;
pub mod report;
pub mod sweep;
pub mod table;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use dks_core::Policy;
use dks_protocol::record::Record;

use crate::boot::{self, BootOutcome};
use crate::config::BootConfig;
use crate::scenario::{BootPlan, Scenario};
use crate::{inject, interrupt, render};
use figures::{Comparison, Measurements, Setup};

/// The time limit of the cost boot when nobody says otherwise.
pub const COST_BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// A workload boot may take this long plus [`WORKLOAD_TIMEOUT_PER_GUEST_SECOND`] for every
/// second of the scenario's duration (creating thousands of threads under TCG takes a while).
pub const WORKLOAD_TIMEOUT_BASE: Duration = Duration::from_secs(180);
/// See [`WORKLOAD_TIMEOUT_BASE`].
pub const WORKLOAD_TIMEOUT_PER_GUEST_SECOND: u32 = 10;
/// A workload boot may also take this long per thread of its plan (creating, running and
/// reaping a million threads under TCG takes many minutes).
pub const WORKLOAD_TIMEOUT_PER_THREAD: Duration = Duration::from_millis(3);
/// The kernel arguments of the cost boot: run the cost benchmarks, and know that the TSC counts
/// guest instructions (the boot runs under `-icount shift=0`), so the records say so.
pub const COST_BOOT_ARGS: [&str; 2] = ["bench=costs", "tsc=instructions"];

/// What to compare.
#[derive(Clone, Debug)]
pub struct Request {
    /// The scenario.
    pub scenario: Scenario,
    /// The policies of its `"each"` groups; `None` for every policy the kernel implements.
    pub policies: Option<Vec<Policy>>,
    /// CPUs of the workload boots; `None` for the scenario's.
    pub cpus: Option<u8>,
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// The time limit of every boot; `None` for the defaults.
    pub timeout: Option<Duration>,
    /// Faults to inject into every workload boot.
    pub injection: Option<inject::Plan>,
}

/// A finished comparison.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The figures.
    pub comparison: Comparison,
    /// The records they came from (for the report's plots).
    pub measurements: Measurements,
    /// Wall time of all boots.
    pub elapsed: Duration,
}

/// Why a comparison stopped. Each has its `dks` exit code ([`Failure::exit_code`]).
#[derive(Debug)]
pub enum Failure {
    /// The request cannot run on this kernel (a policy it does not implement): a usage error.
    Usage(String),
    /// The host could not boot (QEMU missing, I/O).
    Host(anyhow::Error),
    /// A boot ended in anything but success.
    Boot {
        /// Which boot.
        what: String,
        /// How it ended.
        outcome: Box<BootOutcome>,
    },
    /// Every boot succeeded, but the records lack what the comparison needs.
    Records(String),
    /// A signal interrupted `dks`; the running boot's QEMU was stopped.
    Interrupted(interrupt::Interrupted),
}

impl Failure {
    /// Returns the exit code of `dks` for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => crate::outcome::EXIT_USAGE,
            Failure::Host(_) => crate::outcome::EXIT_HOST_ERROR,
            Failure::Boot { outcome, .. } => outcome.verdict.exit_code(),
            Failure::Records(_) => crate::outcome::Verdict::Inconsistent(String::new()).exit_code(),
            Failure::Interrupted(interrupted) => 128 + interrupted.0 as u8,
        }
    }

    /// Describes the failure: one line, then for a failed boot QEMU's messages and the last
    /// console lines.
    pub fn describe(&self) -> String {
        match self {
            Failure::Usage(message) => message.clone(),
            Failure::Host(error) => format!("{error:#}"),
            Failure::Interrupted(interrupted) => interrupted.to_string(),
            Failure::Records(problem) => {
                format!("the kernel reported success, but its records are incomplete: {problem}")
            }
            Failure::Boot { what, outcome } => {
                let mut text = format!("{what} failed: {}", outcome.describe());
                let qemu: Vec<&str> = outcome
                    .qemu_stderr
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect();
                if qemu.len() > 1 {
                    text.push_str("\nQEMU's messages:\n");
                    text.push_str(&qemu.join("\n"));
                }
                let tail: Vec<String> = outcome
                    .lines
                    .iter()
                    .rev()
                    .take(12)
                    .rev()
                    .map(|line| format!("  {}", render::line(line)))
                    .collect();
                if !tail.is_empty() {
                    text.push_str("\nthe last console lines:\n");
                    text.push_str(&tail.join("\n"));
                }
                text
            }
        }
    }
}

/// Progress on a terminal or a log: steps as lines, workload time as a line that updates in
/// place on a terminal, or one line per guest second elsewhere.
#[derive(Debug)]
pub struct Progress<W: Write> {
    out: W,
    terminal: bool,
    open_line: bool,
    last_second: Option<u64>,
}

impl<W: Write> Progress<W> {
    /// Returns progress written to `out`; `terminal` lets a line update in place.
    pub fn new(out: W, terminal: bool) -> Self {
        Progress {
            out,
            terminal,
            open_line: false,
            last_second: None,
        }
    }

    /// Writes one step.
    pub fn step(&mut self, text: &str) {
        self.close_line();
        let _ = writeln!(self.out, "{text}");
        self.last_second = None;
    }

    /// Reports that the workload `label` reached `t_ms` of `duration_ms`.
    pub fn tick(&mut self, label: &str, t_ms: u64, duration_ms: u32) {
        let line = format!(
            "{label} t={:.1}s/{:.1}s",
            t_ms as f64 / 1000.0,
            f64::from(duration_ms) / 1000.0
        );
        if self.terminal {
            let _ = write!(self.out, "\r{line}");
            let _ = self.out.flush();
            self.open_line = true;
        } else if self.last_second.is_none_or(|s| t_ms / 1000 > s) {
            let _ = writeln!(self.out, "{line}");
            self.last_second = Some(t_ms / 1000);
        }
    }

    /// Ends a line left open by [`Progress::tick`].
    pub fn close_line(&mut self) {
        if self.open_line {
            let _ = writeln!(self.out);
            self.open_line = false;
        }
    }

    /// Returns the writer (what the tests read back).
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Runs the comparison: the cost boot, then the workload boots. Every console is appended to
/// `log` (each after a `# ` header line naming its boot), also when a boot fails.
pub fn run<W: Write>(
    request: &Request,
    progress: &mut Progress<W>,
    log: &mut String,
) -> Result<Finished, Failure> {
    let start = Instant::now();
    let scenario = &request.scenario;
    let mut measurements = Measurements::default();

    // 1. Costs, and which policies this kernel has.
    let config = BootConfig {
        kernel_args: COST_BOOT_ARGS
            .iter()
            .map(|arg| (*arg).to_owned())
            .chain([format!("max_stack={}K", scenario.max_stack_bytes / 1024)])
            .collect(),
        cpus: 1,
        icount_shift: Some(0),
        timeout: request.timeout.unwrap_or(COST_BOOT_TIMEOUT),
        ..BootConfig::new(&request.kernel)
    };
    progress.step("[costs] measuring costs in guest instructions (-icount shift=0, 1 CPU)");
    let outcome = boot_logged(&config, "cost boot", log, |_| {})?;
    if !outcome.is_success() {
        return Err(Failure::Boot {
            what: format!("the cost boot ({})", config.cmdline()),
            outcome: Box::new(outcome),
        });
    }
    measurements.add_cost_boot(outcome.records());
    let implemented = measurements.implemented_policies();
    if implemented.is_empty() {
        return Err(Failure::Records(
            "the cost boot measured no `create` cost, so no policy is known to exist".into(),
        ));
    }
    progress.step(&format!(
        "[costs] done in {:.1} s; this kernel implements: {}",
        outcome.elapsed.as_secs_f64(),
        table::joined(&implemented)
    ));

    // 2. The policies and the boots.
    let each = request
        .policies
        .clone()
        .unwrap_or_else(|| implemented.clone());
    for policy in &each {
        if !implemented.contains(policy) {
            return Err(Failure::Usage(format!(
                "--policies: {policy} is not implemented by this kernel; accepted: {} \
                 (the policies its cost boot measured)",
                table::joined(&implemented)
            )));
        }
    }
    for policy in scenario.fixed_policies() {
        if !implemented.contains(&policy) {
            return Err(Failure::Usage(format!(
                "{}: a group runs under policy {policy}, which this kernel does not implement \
                 (it implements: {})",
                scenario.origin,
                table::joined(&implemented)
            )));
        }
    }
    let boots = scenario
        .boots(&each)
        .map_err(|e| Failure::Usage(e.to_string()))?;

    // 3. The workload.
    let cpus = request.cpus.unwrap_or(scenario.cpus);
    for (index, boot) in boots.iter().enumerate() {
        let threads: u32 = boot.plan.groups.iter().map(|g| g.threads).sum();
        let timeout = request.timeout.unwrap_or(
            WORKLOAD_TIMEOUT_BASE
                + Duration::from_millis(
                    u64::from(scenario.duration_ms) * u64::from(WORKLOAD_TIMEOUT_PER_GUEST_SECOND),
                )
                + WORKLOAD_TIMEOUT_PER_THREAD * threads,
        );
        let label = match boots.len() {
            1 => format!("[workload {}]", scenario.name),
            n => format!(
                "[workload {} {}/{n}: {}]",
                scenario.name,
                index + 1,
                boot.policies
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let plan_file = write_plan(boot)?;
        let config = BootConfig {
            kernel_args: scenario.kernel_args(&boot.plan),
            cpus,
            memory: scenario.memory,
            timeout,
            initrd: Some(plan_file.path().to_owned()),
            injection: request.injection,
            ..BootConfig::new(&request.kernel)
        };
        progress.step(&format!(
            "{label} booting: {} ({threads} threads at once, {cpus} CPU(s), {}, {:.1} s of guest time)",
            table::joined(&boot.policies),
            scenario.memory,
            f64::from(scenario.duration_ms) / 1000.0
        ));
        let what = format!("workload boot {} of {}", index + 1, boots.len());
        let outcome = boot_logged(&config, &what, log, |line| {
            if let Some(Record::Sample(sample)) = line.record()
                && Some(&sample.policy) == boot.policies.first()
            {
                progress.tick(&label, sample.t_ms, scenario.duration_ms);
            }
        })?;
        progress.close_line();
        if let Some(report) = &outcome.injection {
            for line in report.lines() {
                progress.step(&format!("{label} {line}"));
            }
        }
        if let Some(incomplete) = out_of_memory(scenario, boot, &outcome) {
            progress.step(&format!(
                "{label} {}: could not run the scenario: {}",
                incomplete.policy,
                table::incomplete_words(&incomplete)
            ));
            measurements.incomplete.push(incomplete);
            drop(plan_file);
            continue;
        }
        if !outcome.is_success() {
            return Err(Failure::Boot {
                what: format!(
                    "{what} (policies {}; {})",
                    table::joined(&boot.policies),
                    config.cmdline()
                ),
                outcome: Box::new(outcome),
            });
        }
        measurements.add_workload_boot(outcome.records(), &boot.policies);
        if let Some(report) = &outcome.injection {
            measurements
                .injections
                .push((boot.policies.clone(), report.clone()));
        }
        drop(plan_file);
        progress.step(&format!(
            "{label} done in {:.1} s",
            outcome.elapsed.as_secs_f64()
        ));
    }

    // 4. The figures.
    let policies: Vec<Policy> = Policy::ALL
        .into_iter()
        .filter(|p| boots.iter().any(|b| b.policies.contains(p)))
        .collect();
    let setup = Setup {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        cpus,
        max_stack_kib: scenario.max_stack_bytes / 1024,
        workload_boots: boots.len(),
        injection: request.injection,
    };
    let comparison =
        figures::compare(&setup, &policies, &measurements).map_err(Failure::Records)?;
    Ok(Finished {
        comparison,
        measurements,
        elapsed: start.elapsed(),
    })
}

/// The exit reason of a workload boot that could not create every thread of its plan.
const SPAWN_FAILURE_EXIT: &str = "some threads of the plan could not be created";

/// Returns how far the policy of `boot` got when its boot failed only because memory ran out
/// while its threads were created, and the scenario says to report that
/// (`out_of_memory = "report"`, one policy per boot). `None` for anything else: the boot
/// succeeded, or failed in any other way (which stops the comparison as always).
fn out_of_memory(
    scenario: &Scenario,
    boot: &BootPlan,
    outcome: &BootOutcome,
) -> Option<figures::IncompletePolicy> {
    if scenario.out_of_memory != crate::scenario::OutOfMemory::Report
        || outcome.verdict != crate::outcome::Verdict::KernelFailure
    {
        return None;
    }
    let [policy] = boot.policies.as_slice() else {
        return None;
    };
    let exit_reason = outcome.records().find_map(|r| match r {
        Record::Exit(exit) => Some(exit.reason.to_string()),
        _ => None,
    })?;
    let other_failure = outcome
        .records()
        .any(|r| matches!(r, Record::AdmissionStall(_) | Record::Panic(_)));
    if !exit_reason.starts_with(SPAWN_FAILURE_EXIT) || other_failure {
        return None;
    }
    let failures: Vec<_> = outcome
        .records()
        .filter_map(|r| match r {
            Record::SpawnFailure(f) => Some(f),
            _ => None,
        })
        .collect();
    let planned = boot.plan.groups.iter().map(|g| u64::from(g.threads)).sum();
    let mut incomplete = figures::IncompletePolicy::out_of_memory(*policy, &failures, planned)?;
    // Groups that created every thread have no record: count them as created.
    let failed: u64 = failures.iter().map(|f| f.planned).sum();
    incomplete.threads_created += planned.saturating_sub(failed);
    Some(incomplete)
}

/// Boots `config`, appending its console to `log` under a header line.
fn boot_logged(
    config: &BootConfig,
    what: &str,
    log: &mut String,
    on_line: impl FnMut(&crate::console::ConsoleLine),
) -> Result<BootOutcome, Failure> {
    let outcome = boot::run(config, on_line).map_err(|error| match interrupt::find(&error) {
        Some(interrupted) => Failure::Interrupted(interrupted),
        None => Failure::Host(error),
    })?;
    log.push_str(&format!(
        "# dks compare: {what}: -append \"{}\"{}: {}\n",
        config.cmdline(),
        config
            .initrd
            .as_ref()
            .map(|p| format!(" -initrd {}", p.display()))
            .unwrap_or_default(),
        outcome.verdict
    ));
    log.push_str(&outcome.serial_log);
    if !outcome.serial_log.is_empty() && !outcome.serial_log.ends_with('\n') {
        log.push('\n');
    }
    Ok(outcome)
}

/// Writes the plan of `boot` to a new temporary file (exclusive, random name, 0600, under
/// `$TMPDIR`), removed when the returned handle is dropped.
fn write_plan(boot: &BootPlan) -> Result<tempfile::NamedTempFile, Failure> {
    let json = serde_json::to_vec(&boot.plan)
        .context("cannot encode the plan")
        .map_err(Failure::Host)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("dks-plan-{}.", boot.plan.name))
        .suffix(".json")
        .tempfile()
        .context("cannot create a temporary file for the plan")
        .map_err(Failure::Host)?;
    file.write_all(&json)
        .and_then(|()| file.flush())
        .with_context(|| format!("cannot write the plan to {}", file.path().display()))
        .map_err(Failure::Host)?;
    Ok(file)
}

#[cfg(test)]
mod tests;

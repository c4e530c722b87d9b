//! The `dks` command line.
//!
//! Flags are parsed strictly by clap: a bad value is one error naming the flag and what it
//! accepts, and `dks` exits with [`outcome::EXIT_USAGE`]. Host problems (no QEMU, a failed
//! kernel build) exit with [`outcome::EXIT_HOST_ERROR`]; a boot exits with its verdict's code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dks_core::Policy;
use dks_core::policy::POLICY_NAMES;

use crate::compare::{self, Progress};
use crate::config::{Accel, BootConfig, MemorySize};
use crate::host_census::command::CensusCommand;
use crate::render::StreamPrinter;
use crate::scenario::{self, builtin};
use crate::{boot, config, inject, interrupt, kernel, outcome, output, qemu};

/// The exit-code table, for `--help`.
static EXIT_CODES_HELP: LazyLock<String> = LazyLock::new(|| {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in outcome::EXIT_CODES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text.push_str(INTERRUPTED_HELP);
    text.push('\n');
    text
});

/// What an interruption does, for `--help`.
pub const INTERRUPTED_HELP: &str = "SIGINT (Ctrl-C), SIGTERM or SIGHUP stop the running QEMU, \
remove dks's temporary files, write nothing, and end dks by that signal (a shell shows 128 + \
its number).";

/// dks: dynamic kernel stacks on a testbed kernel booted under QEMU.
///
/// Builds the testbed kernel, boots it under QEMU (TCG unless asked otherwise) and reports what
/// it prints as readable lines. See docs/lab.md.
#[derive(Debug, Parser)]
#[command(name = "dks", version, after_help = EXIT_CODES_HELP.as_str())]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The help of `dks compare` after its options: the built-ins, the table, the exit codes.
static COMPARE_HELP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "Built-in scenarios: {} (default: {}); or the path of a TOML scenario file \
         (format: docs/compare.md).\n\n\
         Boots the kernel once for costs (-icount shift=0) and once for the workload with all \
         policies side by side (or once per policy when the threads do not fit one boot), then \
         prints one table with a row per policy on stdout; progress goes to stderr. Nothing is \
         written unless every boot succeeded.\n\n{}",
        builtin::NAMES.join(", "),
        builtin::DEFAULT,
        EXIT_CODES_HELP.as_str()
    )
});

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the kernel if needed, boot it once, stream its records, exit with its verdict.
    #[command(after_help = EXIT_CODES_HELP.as_str())]
    Run(RunArgs),
    /// Run a scenario under every policy and compare stack memory, faults and costs in one
    /// table (optionally as JSON and an HTML report with plots).
    #[command(after_help = COMPARE_HELP.as_str())]
    Compare(CompareArgs),
    /// Measure the kernel stacks of this Linux host with BPF (snapshot, exits; needs root),
    /// or merge censuses of many hosts; each writes a census file, a scenario that replays
    /// it under `dks compare`, and prints what every policy would hold. See docs/census.md.
    #[command(subcommand, after_help = crate::host_census::command::EXIT_CODES_HELP)]
    Census(CensusCommand),
}

/// A comma-separated list of policies, each named once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyList(pub Vec<Policy>);

impl FromStr for PolicyList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let accepted = format!(
            "accepted: a comma-separated list of {}",
            POLICY_NAMES.join(", ")
        );
        let mut policies: Vec<Policy> = Vec::new();
        for name in text.split(',') {
            let Ok(policy) = name.parse() else {
                return Err(format!("unknown policy {name:?}; {accepted}"));
            };
            if policies.contains(&policy) {
                return Err(format!("policy {name:?} is named twice; {accepted}"));
            }
            policies.push(policy);
        }
        Ok(PolicyList(policies))
    }
}

/// A comma-separated list of stack sizes (`16K`, `32K`, `64K`), each named once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxStackList(pub Vec<String>);

impl FromStr for MaxStackList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let accepted = "accepted: a comma-separated list of 16K, 32K, 64K (e.g. 16K,32K,64K)";
        let mut sizes: Vec<String> = Vec::new();
        for size in text.split(',') {
            if dks_core::MaxStack::from_name(size).is_none() {
                return Err(format!("{size:?} is not a stack size; {accepted}"));
            }
            if sizes.iter().any(|s| s == size) {
                return Err(format!("{size} is named twice; {accepted}"));
            }
            sizes.push(size.to_owned());
        }
        Ok(MaxStackList(sizes))
    }
}

/// The fault-injection flags of `dks run` and `dks compare`.
#[derive(Debug, Default, clap::Args)]
struct InjectArgs {
    /// Inject NMIs through QEMU's monitor once the kernel is up: COUNT (1 to 1000000, back to
    /// back) or RATE/s (1/s to 10000/s, until the boot ends), e.g. 1000 or 50/s. Each NMI
    /// reaches every CPU.
    #[arg(long, value_name = "COUNT|RATE/s")]
    inject_nmi: Option<inject::NmiSpec>,

    /// Inject machine checks through QEMU's monitor once the kernel is up: corrected:COUNT or
    /// recoverable:COUNT (1 to 10000, each after the kernel reported the previous one), or
    /// fatal (one uncorrectable error; dks run only).
    #[arg(long, value_name = "KIND[:COUNT]")]
    inject_mce: Option<inject::MceSpec>,
}

impl InjectArgs {
    /// The plan, if anything is to be injected.
    fn plan(&self) -> Option<inject::Plan> {
        let plan = inject::Plan {
            nmi: self.inject_nmi,
            mce: self.inject_mce,
        };
        (!plan.is_empty()).then_some(plan)
    }
}

/// The flags of `dks compare`.
#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The scenario: a built-in's name or the path of a TOML file.
    #[arg(long, value_name = "NAME|FILE", default_value = builtin::DEFAULT)]
    scenario: String,

    /// The policies to compare, comma-separated (e.g. static,fault,guaranteed); default: every
    /// policy the kernel implements.
    #[arg(long, value_name = "LIST")]
    policies: Option<PolicyList>,

    /// Run the scenario at these stack sizes instead of its max_stack: a comma-separated list
    /// of 16K, 32K, 64K (e.g. 16K,32K,64K). With several, one comparison at each size, then
    /// each policy's stack memory at every size in one table (and --json holds them all).
    #[arg(long, value_name = "LIST")]
    max_stack: Option<MaxStackList>,

    /// Virtual CPUs of the workload boots (1 to 4); default: the scenario's.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u8).range(config::MIN_CPUS as i64..=config::MAX_CPUS as i64))]
    cpus: Option<u8>,

    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Also write an HTML report with plots to DIR/index.html (DIR is created if missing).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,

    /// Boot this kernel ELF instead of building the repository's kernel.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,

    /// Seconds each boot may take before QEMU is killed; default: 300 for the cost boot,
    /// 180 plus 10 per second of the scenario for a workload boot.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,

    /// Also write every boot's console, exactly as received, to this file (written even when a
    /// boot fails).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    #[command(flatten)]
    inject: InjectArgs,
}

/// The flags of `dks run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Number of virtual CPUs (1 to 4).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(config::MIN_CPUS as i64..=config::MAX_CPUS as i64))]
    cpus: u8,

    /// Guest RAM: a whole number of MiB from 32M to 16G with a suffix K, M or G (e.g. 512M, 1G).
    #[arg(long, value_name = "SIZE", default_value_t = MemorySize::DEFAULT)]
    memory: MemorySize,

    /// QEMU accelerator. kvm is refused where the host has no hardware virtualization
    /// (kvm_intel or kvm_amd loaded and /dev/kvm usable).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,

    /// Seconds the boot may take before QEMU is killed (at least 1).
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Boot this kernel ELF instead of building the repository's kernel.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,

    /// Also write the serial console, exactly as received, to this file (records as raw JSON
    /// lines, with every field, e.g. an exception's registers).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    #[command(flatten)]
    inject: InjectArgs,

    /// The kernel command line, after `--`: e.g. `-- test=all`, `-- test=NAME[,NAME...]`
    /// (words of printable ASCII, at most 768 bytes in all).
    #[arg(last = true, value_name = "KERNEL ARGS")]
    kernel_args: Vec<String>,
}

/// How a command ended: with an exit code, or interrupted by a signal (after clean-up).
enum Ending {
    Code(u8),
    Interrupted(interrupt::Interrupted),
}

/// Prints a line on stderr; a closed or hung-up terminal must not stop the clean-up.
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The ending for a host error: an interruption (also when the error is its consequence, e.g.
/// a kernel build whose cargo got the terminal's Ctrl-C too), or exit code 1 after saying what
/// failed.
fn host_error(error: &anyhow::Error) -> Ending {
    let signal = interrupt::pending().map(interrupt::Interrupted);
    match interrupt::find(error).or(signal) {
        Some(interrupted) => Ending::Interrupted(interrupted),
        None => {
            say(&format!("dks: error: {error:#}"));
            Ending::Code(outcome::EXIT_HOST_ERROR)
        }
    }
}

/// Runs `dks` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                outcome::EXIT_USAGE
            } else {
                0
            });
        }
    };
    if let Err(error) = interrupt::install() {
        say(&format!(
            "dks: error: cannot install the signal handlers: {error}"
        ));
        return ExitCode::from(outcome::EXIT_HOST_ERROR);
    }
    let ending = match cli.command {
        Command::Run(args) => run(args),
        Command::Compare(args) => compare(args),
        Command::Census(command) => {
            let code = crate::host_census::command::run(command);
            // A census cut short by a signal writes nothing (its outputs are written at the
            // end, all or nothing); it ends by the signal like the other commands.
            match interrupt::check() {
                Ok(()) => Ending::Code(code),
                Err(interrupted) => Ending::Interrupted(interrupted),
            }
        }
    };
    match ending {
        Ending::Code(code) => ExitCode::from(code),
        Ending::Interrupted(interrupted) => {
            // Every QEMU is stopped and every temporary file removed by now.
            say(&format!(
                "dks: {interrupted}: any QEMU stopped, temporary files removed, nothing written"
            ));
            interrupt::exit_by(interrupted.0)
        }
    }
}

/// Checks every output path before anything boots (see [`output`]).
fn check_outputs(args: &CompareArgs) -> Result<(), String> {
    if let Some(json) = &args.json {
        output::check_file("--json", json)?;
    }
    if let Some(report) = &args.report {
        output::check_folder("--report", report)?;
    }
    if let Some(log) = &args.log {
        output::check_file("--log", log)?;
    }
    Ok(())
}

/// `dks compare`.
fn compare(args: CompareArgs) -> Ending {
    // Bad input first, before anything is built or booted: the scenario at every size asked.
    let loaded = match &args.max_stack {
        None => scenario::load(&args.scenario).map(|s| vec![s]),
        Some(sizes) => sizes
            .0
            .iter()
            .map(|size| scenario::load_at_max_stack(&args.scenario, size))
            .collect(),
    };
    let scenarios = match loaded {
        Ok(scenarios) => scenarios,
        Err(error) => {
            say(&format!("dks: error: {error}"));
            return Ending::Code(outcome::EXIT_USAGE);
        }
    };
    if scenarios.len() > 1 && args.report.is_some() {
        say(
            "dks: error: --report takes one comparison; accepted with --report: one --max-stack \
             size (the sizes' memory is in the table and in --json)",
        );
        return Ending::Code(outcome::EXIT_USAGE);
    }
    if let Some(mce) = args.inject.inject_mce
        && mce.kind == inject::MceKind::Fatal
    {
        say(
            "dks: error: --inject-mce fatal: a fatal machine check ends its boot, so no \
             comparison can finish; accepted here: corrected:COUNT or recoverable:COUNT (for a \
             fatal one: dks run --inject-mce fatal)",
        );
        return Ending::Code(outcome::EXIT_USAGE);
    }
    if let Err(problem) = check_outputs(&args) {
        say(&format!("dks: error: {problem}"));
        return Ending::Code(outcome::EXIT_USAGE);
    }
    let kernel = match qemu::find().and_then(|_| match &args.kernel {
        Some(path) => Ok(path.clone()),
        None => kernel::build(&kernel::repo_root()),
    }) {
        Ok(kernel) => kernel,
        Err(error) => return host_error(&error),
    };
    if let Err(interrupted) = interrupt::check() {
        return Ending::Interrupted(interrupted);
    }
    let stderr = std::io::stderr();
    let terminal = stderr.is_terminal();
    let mut progress = Progress::new(stderr, terminal);
    let mut log = String::new();
    let several = scenarios.len() > 1;
    let mut result = Ok(Vec::new());
    for scenario in scenarios {
        if several {
            progress.step(&format!("[max_stack {}K]", scenario.max_stack_bytes / 1024));
        }
        let request = compare::Request {
            scenario,
            policies: args.policies.clone().map(|list| list.0),
            cpus: args.cpus,
            kernel: kernel.clone(),
            timeout: args.timeout.map(Duration::from_secs),
            injection: args.inject.plan(),
        };
        match compare::run(&request, &mut progress, &mut log) {
            Ok(finished) => {
                if let Ok(all) = &mut result {
                    all.push(finished);
                }
            }
            Err(failure) => {
                result = Err(failure);
                break;
            }
        }
    }
    progress.close_line();
    if let Err(compare::Failure::Interrupted(interrupted)) = result {
        return Ending::Interrupted(interrupted);
    }
    // The log is diagnostics: written even when a boot failed. When it cannot be written, that
    // is said, and a failed comparison still ends with its own code.
    let log_failed = args.log.as_ref().is_some_and(|path| {
        match output::write_atomically(path, log.as_bytes()) {
            Ok(()) => false,
            Err(error) => {
                say(&format!(
                    "dks: error: cannot write the console log: {error:#}"
                ));
                true
            }
        }
    });
    let finished = match result {
        Ok(finished) => finished,
        Err(failure) => {
            say(&format!("dks: FAILED: {}", failure.describe()));
            return Ending::Code(failure.exit_code());
        }
    };
    if log_failed {
        say(
            "dks: error: every boot succeeded, but the console log could not be written; no \
             other output was written",
        );
        return Ending::Code(outcome::EXIT_HOST_ERROR);
    }
    match write_outputs(&args, &finished) {
        Ok(written) => {
            for one in &finished {
                print!("{}", compare::table::render(&one.comparison));
            }
            if finished.len() > 1 {
                let sweep =
                    compare::sweep::sweep(finished.iter().map(|f| f.comparison.clone()).collect());
                print!("{}", compare::sweep::render(&sweep));
            }
            let elapsed: Duration = finished.iter().map(|f| f.elapsed).sum();
            say(&format!(
                "dks: success ({} policies{}, {:.1} s){written}",
                finished.first().map_or(0, |f| f.comparison.policies.len()),
                match finished.len() {
                    1 => String::new(),
                    n => format!(" at {n} stack sizes"),
                },
                elapsed.as_secs_f64()
            ));
            Ending::Code(0)
        }
        Err(error) => host_error(&error),
    }
}

/// Writes `--json` and `--report`, all or nothing; returns what was written, for the last line.
/// Several comparisons (one per `--max-stack` size) go into the JSON as one sweep; `--report`
/// was refused for them before anything booted.
fn write_outputs(args: &CompareArgs, all: &[compare::Finished]) -> anyhow::Result<String> {
    let mut files = Vec::new();
    let mut folders = Vec::new();
    let mut written = String::new();
    let finished = anyhow::Context::context(all.first(), "no comparison ran")?;
    if let Some(path) = &args.json {
        let mut json = match all.len() {
            1 => serde_json::to_string_pretty(&finished.comparison)?,
            _ => serde_json::to_string_pretty(&compare::sweep::sweep(
                all.iter().map(|f| f.comparison.clone()).collect(),
            ))?,
        };
        json.push('\n');
        files.push((path.clone(), json.into_bytes()));
        written.push_str(&format!("; JSON: {}", path.display()));
    }
    if let Some(dir) = &args.report {
        let page = compare::report::html(&finished.comparison, &finished.measurements);
        let index = dir.join("index.html");
        written.push_str(&format!("; report: {}", index.display()));
        files.push((index, page.into_bytes()));
        folders.push(dir.as_path());
    }
    output::write_all(&files, &folders)?;
    Ok(written)
}

/// Checks `dks run`'s arguments that clap cannot: the kernel command line and `--log`.
fn check_run_args(args: &RunArgs) -> Result<(), String> {
    config::check_kernel_args(&args.kernel_args)?;
    if let Some(log) = &args.log {
        output::check_file("--log", log)?;
    }
    Ok(())
}

/// `dks run`.
fn run(args: RunArgs) -> Ending {
    // Bad input first, before anything is built or booted.
    if let Err(problem) = check_run_args(&args) {
        say(&format!("dks: error: {problem}"));
        return Ending::Code(outcome::EXIT_USAGE);
    }
    match boot_once(&args) {
        Ok(ending) => ending,
        Err(error) => host_error(&error),
    }
}

/// Builds the kernel if needed and boots it once; errors are host problems.
fn boot_once(args: &RunArgs) -> anyhow::Result<Ending> {
    // Cheap checks first, so a missing QEMU is reported before a long build.
    qemu::check_accel(args.accel)?;
    qemu::find()?;
    let kernel = match &args.kernel {
        Some(path) => path.clone(),
        None => kernel::build(&kernel::repo_root())?,
    };
    let config = BootConfig {
        kernel_args: args.kernel_args.clone(),
        cpus: args.cpus,
        memory: args.memory,
        accel: args.accel,
        timeout: Duration::from_secs(args.timeout),
        injection: args.inject.plan(),
        ..BootConfig::new(kernel)
    };

    let mut printer = StreamPrinter::new(std::io::stdout());
    let outcome = boot::run(&config, |line| {
        // A closed stdout (e.g. `dks run | head`) must not stop the boot or change its verdict.
        let _ = printer.print(line);
    })?;
    let _ = printer.finish();
    let mut code = outcome.verdict.exit_code();
    if let Some(path) = &args.log
        && let Err(error) = output::write_atomically(path, outcome.serial_log.as_bytes())
    {
        say(&format!(
            "dks: error: cannot write the console log: {error:#}"
        ));
        // A failed boot keeps its own code: the log must not hide the verdict.
        if outcome.is_success() {
            code = outcome::EXIT_HOST_ERROR;
        }
    }

    // One line of QEMU's is already in the description of the failure; show more in full.
    let qemu_lines = outcome.qemu_stderr.lines().filter(|l| !l.trim().is_empty());
    if qemu_lines.count() > 1 && !outcome.is_success() {
        say(&format!(
            "dks: QEMU's messages:\n{}",
            outcome.qemu_stderr.trim_end()
        ));
    }
    if let Some(report) = &outcome.injection {
        for line in report.lines() {
            say(&format!("dks: {line}"));
        }
    }
    if outcome.is_success() {
        say(&format!(
            "dks: success ({} CPU(s), {}, {:.1} s)",
            config.cpus,
            config.memory,
            outcome.elapsed.as_secs_f64()
        ));
    } else {
        say(&format!("dks: FAILED: {}", outcome.describe()));
    }
    Ok(Ending::Code(code))
}

#[cfg(test)]
mod tests;

//! The `dks census` subcommands: their flags, and the order in which each checks, measures,
//! writes and reports.
//!
//! Every subcommand checks its flags and its output first (exit code 2 and nothing written on
//! bad input), then measures or reads (a host that cannot run the BPF programs: exit code 1,
//! nothing written), then writes the census and its scenario whole ([`output::write`]) and
//! prints the summary on stdout; what was written goes to stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use dks_core::Policy;

use super::take::{self, Provenance, Request};
use super::{Census, kernel, merge, output, replay, summary, tsv};
use crate::outcome::{EXIT_HOST_ERROR, EXIT_USAGE};
use crate::scenario::{self, Origin};

/// Where the kernel exposes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The longest exits window, seconds (a day).
pub const MAX_WINDOW_SECONDS: u64 = 86_400;

/// The exit codes of `dks census`, for `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  \
    0  the census and its scenario were written, the summary printed\n  \
    1  this host cannot run the BPF programs (the error names what is missing and how to get \
    it), or a file could not be written\n  \
    2  a bad flag, output or input file\n\
    Nothing is written unless everything succeeded. See docs/census.md.";

/// The `dks census` subcommands.
#[derive(Debug, Subcommand)]
pub enum CensusCommand {
    /// Read the kernel stack of every thread of this host now (BPF iter/task; needs root):
    /// its high-water mark, how deep it sleeps, kernel thread or not, its name.
    #[command(after_help = EXIT_CODES_HELP)]
    Snapshot(SnapshotArgs),
    /// Read the kernel stack of every thread that exits during a window (BPF
    /// tp_btf/sched_switch; needs root).
    #[command(after_help = EXIT_CODES_HELP)]
    Exits(ExitsArgs),
    /// Merge censuses of one kind from many hosts (same stack size) into one: a fleet's view.
    #[command(after_help = EXIT_CODES_HELP)]
    Merge(MergeArgs),
}

/// Flags shared by the measuring subcommands.
#[derive(Debug, Args)]
pub struct BpfArgs {
    /// The kernel BTF to check and load against (for tests).
    #[arg(long, value_name = "FILE", default_value = KERNEL_BTF, hide = true)]
    btf: PathBuf,
}

/// The flags of `dks census snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The census file to write (.tsv); its scenario goes beside it as .toml.
    #[arg(long, value_name = "FILE.tsv", default_value = "live-snapshot.tsv")]
    out: PathBuf,

    #[command(flatten)]
    bpf: BpfArgs,

    /// Make the first stack page of every N-th thread unreadable (for tests).
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    inject_unreadable_every: u32,
}

/// The flags of `dks census exits`.
#[derive(Debug, Args)]
pub struct ExitsArgs {
    /// How long to watch, seconds (1 to 86400).
    #[arg(long, value_name = "N", required = true,
          value_parser = clap::value_parser!(u64).range(1..=MAX_WINDOW_SECONDS))]
    seconds: u64,

    /// The census file to write (.tsv); its scenario goes beside it as .toml.
    #[arg(long, value_name = "FILE.tsv", default_value = "exits.tsv")]
    out: PathBuf,

    #[command(flatten)]
    bpf: BpfArgs,
}

/// The flags of `dks census merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The censuses to merge (two or more, of one kind, written by dks census).
    #[arg(value_name = "FILE", required = true, num_args = 2..)]
    files: Vec<PathBuf>,

    /// The merged census file to write (.tsv); its scenario goes beside it as .toml.
    #[arg(long, value_name = "FILE.tsv", required = true)]
    out: PathBuf,
}

/// Runs a `dks census` subcommand; returns the exit code.
pub fn run(command: CensusCommand) -> u8 {
    let result = match command {
        CensusCommand::Snapshot(args) => snapshot(args),
        CensusCommand::Exits(args) => exits(args),
        CensusCommand::Merge(args) => merge(args),
    };
    match result {
        Ok(()) => 0,
        Err((code, problem)) => {
            eprintln!("dks: error: {problem}");
            code
        }
    }
}

/// A failure: the exit code and the message.
type Failure = (u8, String);

fn usage(problem: String) -> Failure {
    (EXIT_USAGE, problem)
}

fn host(problem: String) -> Failure {
    (EXIT_HOST_ERROR, problem)
}

/// The host's description for the header, and the stack size to assume.
fn provenance(window: Option<(u64, u64)>) -> (Provenance, u32) {
    let release = kernel::release();
    let config = kernel::config(&release);
    let default_stack = kernel::thread_size(config.as_ref().map(|(text, _)| text.as_str()));
    let provenance = Provenance {
        kernel_release: release,
        stack_options: kernel::stack_options(config.as_ref()),
        date: now(),
        command: command_line(),
        window,
    };
    (provenance, default_stack)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// This process's command line, as a shell would take it back.
fn command_line() -> String {
    let mut words = vec!["dks".to_owned()];
    words.extend(std::env::args_os().skip(1).map(|arg| {
        let arg = arg.to_string_lossy();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./=:,+-@%".contains(c));
        if plain {
            arg.into_owned()
        } else {
            format!("'{}'", arg.replace('\'', "'\\''"))
        }
    }));
    words.join(" ")
}

fn snapshot(args: SnapshotArgs) -> Result<(), Failure> {
    let outputs = output::check(&args.out, "--out").map_err(usage)?;
    let (provenance, default_stack) = provenance(None);
    let request = Request {
        btf: args.bpf.btf,
        default_stack_bytes: default_stack,
        inject_unreadable_every: args.inject_unreadable_every,
    };
    let observations = take::snapshot(&request).map_err(host)?;
    let taken = take::live_rows(&observations, default_stack).map_err(host)?;
    finish(&take::census(taken, &provenance), &outputs)
}

fn exits(args: ExitsArgs) -> Result<(), Failure> {
    let outputs = output::check(&args.out, "--out").map_err(usage)?;
    let (mut provenance, default_stack) = provenance(None);
    let request = Request {
        btf: args.bpf.btf,
        default_stack_bytes: default_stack,
        inject_unreadable_every: 0,
    };
    let seconds = args.seconds;
    let (observations, seen, dropped) = take::exits(&request, Duration::from_secs(seconds), || {
        eprintln!("dks: watching thread exits for {seconds} s (BPF tp_btf/sched_switch attached)");
    })
    .map_err(host)?;
    if let Some(signal) = crate::interrupt::pending() {
        // The window was cut short: no census of a window nobody asked for.
        return Err(host(format!(
            "interrupted by {} after the program was attached",
            signal.as_str()
        )));
    }
    provenance.window = Some((seconds, seen));
    let taken = take::exit_rows(&observations, default_stack, dropped).map_err(host)?;
    finish(&take::census(taken, &provenance), &outputs)
}

fn merge(args: MergeArgs) -> Result<(), Failure> {
    let outputs = output::check(&args.out, "--out").map_err(usage)?;
    let inputs = args
        .files
        .iter()
        .map(|path| tsv::read(path).map(|census| (path.clone(), census)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let merged = merge::merge(&inputs, &now(), &command_line()).map_err(usage)?;
    finish(&merged, &outputs)
}

/// Writes `census` and its scenario, then prints the summary.
fn finish(census: &Census, outputs: &output::Outputs) -> Result<(), Failure> {
    let tsv_name = file_name(&outputs.tsv);
    let stem = tsv_name.trim_end_matches(".tsv");
    let scenario_text = replay::scenario(census, &tsv_name, &replay::scenario_name(stem));
    let toml_path = outputs.toml.clone();
    let check = || {
        let text = scenario_text.as_deref().unwrap_or_default();
        let scenario = scenario::parse(text, Origin::File(toml_path.clone()))
            .map_err(|e| format!("the scenario written for the census is refused: {e}"))?;
        scenario
            .boots(&Policy::ALL)
            .map(|_| ())
            .map_err(|e| format!("the scenario written for the census is refused: {e}"))
    };
    output::write(
        outputs,
        &tsv::render(census),
        scenario_text.as_deref().ok(),
        check,
    )
    .map_err(host)?;
    let stack_bytes = census
        .stack_bytes()
        .expect("a written census has a stack size");
    print!(
        "{}",
        summary::render(&summary::summarize(census, stack_bytes), census)
    );
    match &scenario_text {
        Ok(_) => eprintln!(
            "dks: wrote {} and {}; replay it under every policy with: \
             dks compare --scenario {}",
            outputs.tsv.display(),
            outputs.toml.display(),
            outputs.toml.display()
        ),
        Err(why) => eprintln!("dks: wrote {}; no scenario: {why}", outputs.tsv.display()),
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

//! The `dks` command line.
//!
//! Flags are parsed strictly by clap: a bad value is one error naming the flag and what it
//! accepts, and `dks` exits with [`outcome::EXIT_USAGE`]. Host problems (no QEMU, a failed
//! kernel build) exit with [`outcome::EXIT_HOST_ERROR`]; a boot exits with its verdict's code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Accel, BootConfig, MemorySize};
use crate::render::StreamPrinter;
use crate::{boot, config, kernel, outcome, qemu};

/// The exit-code table, for `--help`.
static EXIT_CODES_HELP: LazyLock<String> = LazyLock::new(|| {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in outcome::EXIT_CODES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text
});

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the kernel if needed, boot it once, stream its records, exit with its verdict.
    #[command(after_help = EXIT_CODES_HELP.as_str())]
    Run(RunArgs),
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

    /// The kernel command line, after `--`: e.g. `-- test=all`, `-- test=NAME[,NAME...]`.
    #[arg(last = true, value_name = "KERNEL ARGS")]
    kernel_args: Vec<String>,
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
    match cli.command {
        Command::Run(args) => match run(args) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("dks: error: {error:#}");
                ExitCode::from(outcome::EXIT_HOST_ERROR)
            }
        },
    }
}

/// `dks run`: returns the verdict's exit code, or an error for a host problem.
fn run(args: RunArgs) -> anyhow::Result<u8> {
    // Cheap checks first, so a missing QEMU is reported before a long build.
    qemu::check_accel(args.accel)?;
    qemu::find()?;
    let kernel = match args.kernel {
        Some(path) => path,
        None => kernel::build(&kernel::repo_root())?,
    };
    let config = BootConfig {
        kernel_args: args.kernel_args.clone(),
        cpus: args.cpus,
        memory: args.memory,
        accel: args.accel,
        timeout: Duration::from_secs(args.timeout),
        ..BootConfig::new(kernel)
    };

    let mut printer = StreamPrinter::new(std::io::stdout());
    let outcome = boot::run(&config, |line| {
        // A closed stdout (e.g. `dks run | head`) must not stop the boot or change its verdict.
        let _ = printer.print(line);
    })?;
    let _ = printer.finish();
    if let Some(path) = &args.log {
        std::fs::write(path, &outcome.serial_log)
            .with_context(|| format!("cannot write the console log to {}", path.display()))?;
    }

    // One line of QEMU's is already in the description of the failure; show more in full.
    let qemu_lines = outcome.qemu_stderr.lines().filter(|l| !l.trim().is_empty());
    if qemu_lines.count() > 1 && !outcome.is_success() {
        eprintln!("dks: QEMU's messages:\n{}", outcome.qemu_stderr.trim_end());
    }
    if outcome.is_success() {
        eprintln!(
            "dks: success ({} CPU(s), {}, {:.1} s)",
            config.cpus,
            config.memory,
            outcome.elapsed.as_secs_f64()
        );
    } else {
        eprintln!("dks: FAILED: {}", outcome.describe());
    }
    Ok(outcome.verdict.exit_code())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dks").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_and_kernel_args() {
        let Command::Run(args) = parse(&["run", "--", "test=all", "x=1"]).unwrap().command;
        assert_eq!(args.cpus, 1);
        assert_eq!(args.memory, MemorySize::DEFAULT);
        assert_eq!(args.accel, Accel::Tcg);
        assert_eq!(args.timeout, 60);
        assert_eq!(args.kernel, None);
        assert_eq!(args.kernel_args, ["test=all", "x=1"]);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_accepted_values() {
        for (args, flag, accepted) in [
            (&["run", "--cpus", "9"][..], "--cpus", "1..=4"),
            (&["run", "--cpus", "0"][..], "--cpus", "1..=4"),
            (
                &["run", "--memory", "15Q"][..],
                "--memory",
                "suffix K, M or G",
            ),
            (&["run", "--accel", "hvf"][..], "--accel", "tcg, kvm"),
            (&["run", "--timeout", "0"][..], "--timeout", "1.."),
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
            assert!(error.contains(accepted), "{args:?}: {error}");
        }
    }
}

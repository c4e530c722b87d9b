//! The host side of dks: build the testbed kernel, boot it under QEMU, read what it reports.
//!
//! The kernel speaks only through records on its serial line ([`dks_protocol::wire`]) and the
//! exit code it leaves with ([`dks_protocol::exit::ExitCode`]). This library turns one boot into
//! a [`boot::BootOutcome`]: every console line in order, how QEMU ended, and a
//! [`outcome::Verdict`] that is success only when the kernel said so *and* QEMU agrees. The
//! `dks` binary is a thin CLI over it; integration tests and later subcommands (`dks compare`
//! boots many times) call it directly.
//!
//! - [`config`]: what one boot is ([`config::BootConfig`]) and the strict parsing of its sizes.
//! - [`kernel`]: building the kernel ELF with cargo.
//! - [`qemu`]: finding QEMU, choosing the accelerator, the one place the command line is built.
//! - [`qmp`]: a private QEMU monitor socket and a small QMP client.
//! - [`inject`]: NMIs and machine checks injected into a running boot through the monitor.
//! - [`interrupt`]: SIGINT, SIGTERM and SIGHUP stop QEMU and remove temporary files.
//! - [`output`]: output files checked before anything boots and written all or nothing.
//! - [`console`]: classifying serial lines into records, free text and malformed records.
//! - [`boot`]: running QEMU with a timeout and collecting the outcome.
//! - [`outcome`]: judging a boot and the `dks` exit codes.
//! - [`test_report`]: the in-kernel test results of a boot, checked against the plan.
//! - [`render`]: one readable line per record.
//! - [`census`]: the Linux 6.18 kernel-stack census, embedded, and the distributions from it.
//! - [`host_census`]: `dks census`: the kernel stacks of a live Linux host (BPF), as census
//!   files with provenance, summaries, merges and scenarios that replay them.
//! - [`scenario`]: scenario files, strictly checked, and the workload plans made from them.
//! - [`compare`]: `dks compare`: the cost and workload boots, figures, table, JSON, report.
//! - [`cli`]: the `dks` command line.

#![forbid(unsafe_code)]

pub mod boot;
mod census;
pub mod cli;
mod compare;
pub mod config;
pub mod console;
pub mod host_census;
mod inject;
mod interrupt;
pub mod kernel;
pub mod outcome;
mod output;
pub mod qemu;
pub mod qmp;
mod render;
pub mod scenario;
pub mod test_report;

//! Building the kernel ELF.
//!
//! The kernel builds for the host target with its own flags, which live in
//! `kernel/.cargo/config.toml`; cargo finds that file from its working directory, so the build
//! runs `cargo build --profile kernel -p dks-kernel` *in* `kernel/` (the workspace's `kernel`
//! profile: release with fat LTO and one codegen unit, docs/dynamic-stacks.md). Cargo decides whether anything is
//! out of date (a no-op build takes a fraction of a second) and serializes concurrent builds
//! with its own lock. The ELF's path comes from cargo's JSON messages, so a `CARGO_TARGET_DIR`
//! is honoured. Cargo's output is kept and shown only when the build fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context;

/// The kernel's package and binary name.
pub const KERNEL_PACKAGE: &str = "dks-kernel";

/// The cargo profile the kernel is built with (the workspace `Cargo.toml`: release, fat LTO,
/// one codegen unit).
pub const KERNEL_PROFILE: &str = "kernel";

/// Returns the repository's root (the folder above `lab/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lab/ has a parent folder")
        .to_path_buf()
}

/// Builds the kernel of the repository at `repo` (`kernel` profile) and returns its ELF.
pub fn build(repo: &Path) -> anyhow::Result<PathBuf> {
    let dir = repo.join("kernel");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--profile", KERNEL_PROFILE, "-p", KERNEL_PACKAGE])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(&dir)
        // These would replace the kernel's rustflags from its config.toml and break the link.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    let what = format!(
        "cargo build --profile {KERNEL_PROFILE} -p {KERNEL_PACKAGE} (in {})",
        dir.display()
    );
    let output = command
        .output()
        .with_context(|| format!("cannot run {what}; is Rust installed (https://rustup.rs)?"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "building the kernel failed ({what}, {}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    executable_from_messages(&stdout)
        .with_context(|| format!("{what} succeeded but named no {KERNEL_PACKAGE} executable"))
}

/// Returns the kernel ELF, building it on the first call of this process only; every later call
/// (from any thread) gets the same answer. Tests that boot use this.
pub fn build_once() -> anyhow::Result<PathBuf> {
    static KERNEL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    KERNEL
        .get_or_init(|| build(&repo_root()).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Finds the kernel binary's path in cargo's `--message-format=json` output.
fn executable_from_messages(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == KERNEL_PACKAGE)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests;

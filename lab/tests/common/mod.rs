//! Helpers shared by the integration tests: running the `dks` binary, and fake QEMUs.
//!
//! A fake QEMU is a shell script named `qemu-system-x86_64` in a fresh folder that is put first
//! on `PATH`; it plays a kernel console and exit status, so the CLI's whole path (flags, QEMU
//! command line, streaming, verdict, exit code) is tested without QEMU or a kernel.

#![allow(dead_code)] // reason: each test file uses its own subset of these helpers

pub mod census;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Returns the `dks` binary cargo built for these tests.
pub fn dks() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dks"))
}

/// Returns a fresh, empty folder for the test `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch folder");
    dir
}

/// A folder holding a fake `qemu-system-x86_64` and a dummy kernel file.
pub struct FakeQemu {
    pub dir: PathBuf,
}

impl FakeQemu {
    /// Writes a fake QEMU that runs `body` (sh) after saving its arguments, one per line, to
    /// `args.txt` in its folder.
    pub fn new(name: &str, body: &str) -> FakeQemu {
        let dir = scratch_dir(name);
        let script = dir.join("qemu-system-x86_64");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n{body}\n",
                dir.join("args.txt").display()
            ),
        )
        .expect("write the fake QEMU");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(dir.join("kernel.elf"), b"not really a kernel").expect("write a dummy kernel");
        FakeQemu { dir }
    }

    /// Returns the dummy kernel's path.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("kernel.elf")
    }

    /// Returns the arguments the fake was called with.
    pub fn args(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("args.txt"))
            .expect("the fake QEMU ran")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Returns a `dks` command with this fake first on `PATH`.
    pub fn dks(&self) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(self.dir.clone()).chain(std::env::split_paths(&path)),
        )
        .expect("join PATH");
        let mut command = dks();
        command.env("PATH", path);
        command
    }

    /// Runs `dks run --kernel <dummy> <args>` with this fake first on `PATH`.
    pub fn run_dks(&self, args: &[&str]) -> Output {
        self.dks()
            .arg("run")
            .arg("--kernel")
            .arg(self.kernel())
            .args(args)
            .output()
            .expect("run dks")
    }
}

/// Stdout and stderr of `output`, for assertions and failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

//! QEMU: where it is, which accelerator can work, and the one function that builds its
//! command line ([`args`]).
//!
//! Facts this relies on (`docs/boot.md`): `-kernel` boots the kernel's PVH ELF directly;
//! `-device isa-debug-exit` at port [`EXIT_PORT`] lets the kernel end QEMU with a status that
//! encodes its [`dks_protocol::exit::ExitCode`]; `-no-reboot` turns a triple fault into an exit
//! with status 0 instead of an endless reboot loop. KVM is offered only where the host has
//! hardware virtualization: on machines whose `/dev/kvm` is a software stand-in (`kvm_pvm`)
//! a guest dies at its first SSE instruction.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Accel, BootConfig};
use crate::qmp::MonitorSocket;

/// The QEMU binary the lab runs.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The Debian package that provides [`QEMU_BINARY`].
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The I/O port of the isa-debug-exit device; the kernel writes its exit code there.
pub const EXIT_PORT: u16 = 0xf4;

/// Returns the path of [`QEMU_BINARY`] on `PATH`, or an error that says how to install it.
pub fn find() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(QEMU_BINARY))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| anyhow::anyhow!(missing_message()))
}

/// The error for a missing QEMU: what is missing and which package provides it.
pub fn missing_message() -> String {
    format!(
        "{QEMU_BINARY} is not on PATH; Debian's package {QEMU_PACKAGE} provides it: \
         sudo apt-get install {QEMU_PACKAGE}"
    )
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Returns why KVM cannot run the guest here, or `Ok` when it can: a hardware KVM module
/// (`kvm_intel` or `kvm_amd`) is loaded and `/dev/kvm` opens for reading and writing.
pub fn kvm_usable() -> Result<(), String> {
    let module = ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|name| Path::new("/sys/module").join(name).exists());
    if module.is_none() {
        return Err(
            "neither kvm_intel nor kvm_amd is loaded (no hardware virtualization; \
                    a software /dev/kvm such as kvm_pvm cannot run this kernel)"
                .into(),
        );
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm cannot be opened for reading and writing: {e}"))
}

/// Returns `Ok` when `accel` can run here; for KVM where it cannot, one error saying why and
/// what to use instead.
pub fn check_accel(accel: Accel) -> anyhow::Result<()> {
    match accel {
        Accel::Tcg => Ok(()),
        Accel::Kvm => kvm_usable().map_err(|why| {
            anyhow::anyhow!("--accel kvm is not usable on this machine: {why}; use --accel tcg")
        }),
    }
}

/// Returns QEMU's arguments for `config`, with its QMP monitor on `monitor` when given (else
/// no monitor at all). The single place the command line is built: every boot of the lab goes
/// through it.
pub fn args(config: &BootConfig, monitor: Option<&MonitorSocket>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "-kernel".into(),
        config.kernel.clone().into(),
        "-append".into(),
        config.cmdline().into(),
        "-serial".into(),
        "stdio".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
        "-device".into(),
        format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04").into(),
        "-m".into(),
        config.memory.to_string().into(),
        "-smp".into(),
        config.cpus.to_string().into(),
        "-accel".into(),
        accel_arg(config).into(),
    ];
    if let Some(shift) = config.icount_shift {
        args.extend(["-icount".into(), format!("shift={shift}").into()]);
    }
    if let Some(initrd) = &config.initrd {
        args.extend(["-initrd".into(), initrd.clone().into()]);
    }
    if let Some(monitor) = monitor {
        args.extend(monitor.qemu_args());
    }
    args
}

/// TCG runs one host thread per vCPU (`thread=multi`) when there are several CPUs, except
/// under `-icount`, which QEMU supports only with single-threaded TCG.
fn accel_arg(config: &BootConfig) -> String {
    match config.accel {
        Accel::Kvm => "kvm".into(),
        Accel::Tcg if config.cpus > 1 && config.icount_shift.is_none() => "tcg,thread=multi".into(),
        Accel::Tcg => "tcg".into(),
    }
}

/// Returns the command that boots `config` with the QEMU at `qemu` (and its monitor on
/// `monitor`).
pub fn command(qemu: &Path, config: &BootConfig, monitor: Option<&MonitorSocket>) -> Command {
    let mut command = Command::new(qemu);
    command.args(args(config, monitor));
    command
}

#[cfg(test)]
mod tests;

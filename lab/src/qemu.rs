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
mod tests {
    use super::*;

    fn args_of(config: &BootConfig) -> Vec<String> {
        args(config, None)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    #[test]
    fn default_boot_has_every_fixed_option() {
        let config = BootConfig::new("/k.elf");
        let args = args_of(&config);
        assert_eq!(value_of(&args, "-kernel"), Some("/k.elf"));
        assert_eq!(value_of(&args, "-append"), Some(""));
        assert_eq!(value_of(&args, "-serial"), Some("stdio"));
        assert_eq!(value_of(&args, "-display"), Some("none"));
        assert_eq!(value_of(&args, "-monitor"), Some("none"));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert_eq!(
            value_of(&args, "-device"),
            Some("isa-debug-exit,iobase=0xf4,iosize=0x04")
        );
        assert_eq!(value_of(&args, "-m"), Some("512M"));
        assert_eq!(value_of(&args, "-smp"), Some("1"));
        assert_eq!(value_of(&args, "-accel"), Some("tcg"));
        assert_eq!(value_of(&args, "-icount"), None);
        assert_eq!(value_of(&args, "-initrd"), None);
    }

    #[test]
    fn options_reach_the_command_line() {
        let mut config = BootConfig::new("/k.elf");
        config.kernel_args = vec!["test=all".into(), "max_stack=16K".into()];
        config.cpus = 2;
        config.memory = "1G".parse().unwrap();
        config.initrd = Some("/scenario.bin".into());
        let args = args_of(&config);
        assert_eq!(value_of(&args, "-append"), Some("test=all max_stack=16K"));
        assert_eq!(value_of(&args, "-smp"), Some("2"));
        assert_eq!(value_of(&args, "-m"), Some("1G"));
        assert_eq!(value_of(&args, "-accel"), Some("tcg,thread=multi"));
        assert_eq!(value_of(&args, "-initrd"), Some("/scenario.bin"));

        config.icount_shift = Some(0);
        let args = args_of(&config);
        assert_eq!(value_of(&args, "-icount"), Some("shift=0"));
        assert_eq!(
            value_of(&args, "-accel"),
            Some("tcg"),
            "icount needs one TCG thread"
        );

        config.accel = Accel::Kvm;
        assert_eq!(value_of(&args_of(&config), "-accel"), Some("kvm"));
    }

    #[test]
    fn the_monitor_is_off_unless_a_private_socket_is_given() {
        let config = BootConfig::new("/k.elf");
        let socket = MonitorSocket::new().unwrap();
        let args: Vec<String> = args(&config, Some(&socket))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(value_of(&args, "-monitor"), Some("none"));
        assert_eq!(
            value_of(&args, "-chardev"),
            Some(format!("socket,id=dks-qmp,path={}", socket.path().display()).as_str())
        );
        assert_eq!(
            value_of(&args, "-mon"),
            Some("chardev=dks-qmp,mode=control")
        );
        assert_eq!(value_of(&args_of(&config), "-chardev"), None);
    }

    #[test]
    fn missing_qemu_names_the_package() {
        let message = missing_message();
        assert!(message.contains(QEMU_BINARY));
        assert!(message.contains("apt-get install qemu-system-x86"));
    }

    #[test]
    fn kvm_is_refused_with_a_reason_where_it_cannot_work() {
        assert!(check_accel(Accel::Tcg).is_ok());
        match kvm_usable() {
            Ok(()) => assert!(check_accel(Accel::Kvm).is_ok()),
            Err(why) => {
                let error = check_accel(Accel::Kvm).unwrap_err().to_string();
                assert!(
                    error.contains(&why) && error.contains("--accel tcg"),
                    "{error}"
                );
            }
        }
    }
}

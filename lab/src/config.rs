//! What one boot is: the kernel and its arguments, the machine QEMU emulates, the time limit.
//!
//! [`BootConfig`] is plain data; [`crate::qemu::args`] turns it into QEMU's command line and
//! [`crate::boot::run`] runs it. Everything here is checked strictly ([`BootConfig::validate`],
//! [`MemorySize`]'s parser): a bad value is one error naming what was wrong and what is accepted.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The fewest CPUs a boot may have.
pub const MIN_CPUS: u8 = 1;
/// The most CPUs a boot may have (the kernel supports up to 4, DESIGN §6).
pub const MAX_CPUS: u8 = 4;
/// The time limit of a boot when nobody says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest `-icount shift` QEMU accepts.
pub const MAX_ICOUNT_SHIFT: u8 = 10;

/// Which QEMU accelerator runs the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// QEMU's software emulation; works everywhere.
    #[default]
    Tcg,
    /// Hardware virtualization; only where the host really has it (see `docs/lab.md`).
    Kvm,
}

impl Accel {
    /// Returns the name QEMU and the CLI use.
    pub const fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// An amount of guest RAM: a whole number of MiB between [`MemorySize::MIN`] and
/// [`MemorySize::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemorySize {
    mib: u64,
}

impl MemorySize {
    /// The least RAM a boot may have.
    pub const MIN: MemorySize = MemorySize { mib: 32 };
    /// The most RAM a boot may have.
    pub const MAX: MemorySize = MemorySize { mib: 16 * 1024 };
    /// The RAM of a boot when nobody says otherwise.
    pub const DEFAULT: MemorySize = MemorySize { mib: 512 };

    /// What the parser accepts, for error messages and help texts.
    pub const ACCEPTED: &'static str =
        "a whole number of MiB from 32M to 16G, written with a suffix K, M or G (e.g. 512M, 1G)";

    /// Returns the size in MiB.
    pub const fn mib(self) -> u64 {
        self.mib
    }

    /// Returns the size in MiB when it is in range, or `None`.
    pub const fn from_mib(mib: u64) -> Option<MemorySize> {
        if mib < MemorySize::MIN.mib || mib > MemorySize::MAX.mib {
            None
        } else {
            Some(MemorySize { mib })
        }
    }
}

impl Default for MemorySize {
    fn default() -> Self {
        MemorySize::DEFAULT
    }
}

impl fmt::Display for MemorySize {
    /// Writes the size as QEMU's `-m` takes it (`512M`, `1G`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// Why a size did not parse; its message names what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySizeError {
    given: String,
    problem: &'static str,
}

impl fmt::Display for MemorySizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}; accepted: {}",
            self.given,
            self.problem,
            MemorySize::ACCEPTED
        )
    }
}

impl std::error::Error for MemorySizeError {}

impl FromStr for MemorySize {
    type Err = MemorySizeError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let error = |problem| MemorySizeError {
            given: given.to_owned(),
            problem,
        };
        let digits_end = given
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| error("has no unit"))?;
        let (number, unit) = given.split_at(digits_end);
        if number.is_empty() {
            return Err(error("does not start with a number"));
        }
        let kib_per_unit: u64 = match unit {
            "K" | "k" => 1,
            "M" | "m" => 1024,
            "G" | "g" => 1024 * 1024,
            _ => return Err(error("has an unknown unit")),
        };
        let kib = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(kib_per_unit))
            .ok_or_else(|| error("is too large"))?;
        if !kib.is_multiple_of(1024) {
            return Err(error("is not a whole number of MiB"));
        }
        MemorySize::from_mib(kib / 1024).ok_or_else(|| error("is out of range"))
    }
}

/// One boot of the kernel under QEMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// The kernel ELF (PVH).
    pub kernel: PathBuf,
    /// The kernel command line, one `key=value` (or word) per element; joined with spaces.
    pub kernel_args: Vec<String>,
    /// Number of CPUs, [`MIN_CPUS`]`..=`[`MAX_CPUS`].
    pub cpus: u8,
    /// Guest RAM.
    pub memory: MemorySize,
    /// The accelerator asked for; [`crate::qemu::check_accel`] refuses KVM where it cannot work.
    pub accel: Accel,
    /// How long the boot may take before QEMU is killed.
    pub timeout: Duration,
    /// `-icount shift=N`: the guest clock advances with executed instructions (2^N ns each), so
    /// costs read as instructions (DESIGN §9). Implies single-threaded TCG.
    pub icount_shift: Option<u8>,
    /// `-initrd FILE`: a file handed to the kernel as its initial RAM disk (e.g. a scenario).
    pub initrd: Option<PathBuf>,
    /// NMIs and machine checks to inject through QEMU's monitor while the boot runs.
    pub injection: Option<crate::inject::Plan>,
}

impl BootConfig {
    /// Returns the default boot of `kernel`: no arguments, 1 CPU, 512 MiB, TCG, 60 s.
    pub fn new(kernel: impl Into<PathBuf>) -> BootConfig {
        BootConfig {
            kernel: kernel.into(),
            kernel_args: Vec::new(),
            cpus: MIN_CPUS,
            memory: MemorySize::DEFAULT,
            accel: Accel::Tcg,
            timeout: DEFAULT_TIMEOUT,
            icount_shift: None,
            initrd: None,
            injection: None,
        }
    }

    /// Returns the kernel command line as QEMU's `-append` passes it.
    pub fn cmdline(&self) -> String {
        self.kernel_args.join(" ")
    }

    /// Checks every field that plain types cannot constrain; the error names the field and
    /// what it accepts.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(MIN_CPUS..=MAX_CPUS).contains(&self.cpus) {
            anyhow::bail!(
                "cpus = {} is out of range; accepted: {MIN_CPUS} to {MAX_CPUS}",
                self.cpus
            );
        }
        if self.timeout.is_zero() {
            anyhow::bail!("timeout = 0 s; accepted: at least 1 s");
        }
        if let Some(shift) = self.icount_shift
            && shift > MAX_ICOUNT_SHIFT
        {
            anyhow::bail!("icount shift = {shift}; accepted: 0 to {MAX_ICOUNT_SHIFT}");
        }
        check_kernel_args(&self.kernel_args).map_err(anyhow::Error::msg)?;
        for (what, path) in [
            ("kernel", Some(&self.kernel)),
            ("initrd", self.initrd.as_ref()),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                anyhow::bail!("{what} {} is not a readable file", path.display());
            }
        }
        Ok(())
    }
}

/// Checks kernel arguments: each a non-empty word without whitespace, and the line they make
/// within the limits of [`dks_protocol::cmdline`] (its length, its characters), which the
/// kernel enforces too. The error names the argument or the line's length and what is
/// accepted.
pub fn check_kernel_args(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args
        .iter()
        .find(|arg| arg.is_empty() || arg.contains(char::is_whitespace))
    {
        return Err(format!(
            "kernel argument {arg:?} is empty or contains whitespace; accepted: words like key=value"
        ));
    }
    let line = args.join(" ");
    dks_protocol::cmdline::check(&line).map_err(|error| match error {
        dks_protocol::cmdline::CmdlineError::BadByte { at, .. } => {
            let arg = args
                .iter()
                .scan(0, |start, arg| {
                    let this = (*start, arg);
                    *start += arg.len() + 1;
                    Some(this)
                })
                .filter(|(start, _)| *start <= at)
                .last()
                .map(|(_, arg)| arg.as_str())
                .unwrap_or_default();
            format!("kernel argument {arg:?}: {error}")
        }
        error => format!("{error} (the kernel echoes it in a record line)"),
    })
}

#[cfg(test)]
mod tests;

//! What `--inject-nmi` and `--inject-mce` ask for ([`NmiSpec`], [`MceSpec`], parsed strictly),
//! and the monitor command of each kind of machine check ([`MceKind::command`]).

use std::fmt;
use std::str::FromStr;

/// The most NMIs `COUNT` may ask for.
pub const MAX_NMI_COUNT: u64 = 1_000_000;
/// The highest NMI rate, per second.
pub const MAX_NMI_RATE: u32 = 10_000;
/// The most machine checks one boot may get.
pub const MAX_MCE_COUNT: u32 = 10_000;
/// The MCA bank every injected error goes to (QEMU emulates 10 banks).
pub const MCE_BANK: u32 = 1;
/// The address of injected error 0; error `k` is at `MCE_ADDRESS + k * 4096`.
pub const MCE_ADDRESS: u64 = 0x1234_0000;

/// `--inject-nmi`: how many NMIs, or how fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmiSpec {
    /// This many, back to back, from the `Boot` record on.
    Count(u64),
    /// This many per second (wall time) from the `Boot` record until the boot ends.
    Rate(u32),
}

impl NmiSpec {
    /// What `--inject-nmi` accepts.
    pub const ACCEPTED: &'static str = "COUNT (1 to 1000000 NMIs, back to back from the \
         kernel's Boot record on) or RATE/s (1/s to 10000/s, until the boot ends), e.g. 1000 \
         or 50/s";
}

impl FromStr for NmiSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || {
            format!(
                "{text:?} is not an NMI count or rate; accepted: {}",
                Self::ACCEPTED
            )
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(rate) = text.strip_suffix("/s") {
            if !digits(rate) {
                return Err(error());
            }
            return match rate.parse::<u32>() {
                Ok(rate) if (1..=MAX_NMI_RATE).contains(&rate) => Ok(NmiSpec::Rate(rate)),
                _ => Err(error()),
            };
        }
        if !digits(text) {
            return Err(error());
        }
        match text.parse::<u64>() {
            Ok(count) if (1..=MAX_NMI_COUNT).contains(&count) => Ok(NmiSpec::Count(count)),
            _ => Err(error()),
        }
    }
}

impl fmt::Display for NmiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NmiSpec::Count(count) => write!(f, "{count}"),
            NmiSpec::Rate(rate) => write!(f, "{rate}/s"),
        }
    }
}

/// The severity of an injected machine check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MceKind {
    /// Corrected: only written into the bank (no #MC); the kernel finds it by polling.
    Corrected,
    /// Uncorrected but recoverable, action optional (like a patrol-scrub error): #MC with the
    /// interrupted context valid (`RIPV`); the kernel reports it and continues.
    Recoverable,
    /// Uncorrectable, processor context corrupt (`PCC`), `RIPV` clear: the kernel must stop.
    Fatal,
}

// IA32_MCi_STATUS bits (Intel SDM Vol. 3B, "IA32_MCi_STATUS MSRs").
pub(super) const MCI_VAL: u64 = 1 << 63;
pub(super) const MCI_UC: u64 = 1 << 61;
const MCI_EN: u64 = 1 << 60;
const MCI_ADDRV: u64 = 1 << 58;
pub(super) const MCI_PCC: u64 = 1 << 57;
pub(super) const MCI_S: u64 = 1 << 56;
/// MCA error code: memory controller, generic transaction, channel not given.
const MCACOD_MEMORY: u64 = 0x008f;
/// MCA error code: memory scrubbing error, channel not given (an SRAO error).
const MCACOD_SCRUB: u64 = 0x00cf;
// IA32_MCG_STATUS bits.
pub(super) const MCG_RIPV: u64 = 1 << 0;
const MCG_EIPV: u64 = 1 << 1;
pub(super) const MCG_MCIP: u64 = 1 << 2;

impl MceKind {
    /// Returns the name the CLI and the kernel's records use.
    pub const fn name(self) -> &'static str {
        match self {
            MceKind::Corrected => "corrected",
            MceKind::Recoverable => "recoverable",
            MceKind::Fatal => "fatal",
        }
    }

    /// Returns `IA32_MCi_STATUS` and `IA32_MCG_STATUS` of an error of this kind.
    pub const fn status(self) -> (u64, u64) {
        match self {
            MceKind::Corrected => (MCI_VAL | MCI_EN | MCI_ADDRV | MCACOD_MEMORY, 0),
            MceKind::Recoverable => (
                MCI_VAL | MCI_UC | MCI_EN | MCI_ADDRV | MCI_S | MCACOD_SCRUB,
                MCG_MCIP | MCG_RIPV,
            ),
            MceKind::Fatal => (
                MCI_VAL | MCI_UC | MCI_EN | MCI_ADDRV | MCI_PCC | MCACOD_MEMORY,
                MCG_MCIP | MCG_EIPV,
            ),
        }
    }

    /// Returns the HMP command that injects error number `index` of this kind on `cpu`, and
    /// the error's address.
    pub fn command(self, index: u32, cpu: u32) -> (String, u64) {
        let (status, mcg_status) = self.status();
        let address = MCE_ADDRESS + u64::from(index) * 4096;
        (
            format!("mce {cpu} {MCE_BANK} {status:#x} {mcg_status:#x} {address:#x} 0"),
            address,
        )
    }
}

/// `--inject-mce`: which machine checks, how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MceSpec {
    /// Their kind.
    pub kind: MceKind,
    /// How many (1 for `fatal`).
    pub count: u32,
}

impl MceSpec {
    /// What `--inject-mce` accepts.
    pub const ACCEPTED: &'static str = "corrected:COUNT or recoverable:COUNT (COUNT 1 to \
         10000, one at a time, each after the kernel reported the previous one) or fatal (one \
         uncorrectable error), e.g. corrected:100";
}

impl FromStr for MceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || {
            format!(
                "{text:?} is not a machine-check kind and count; accepted: {}",
                Self::ACCEPTED
            )
        };
        if text == "fatal" {
            return Ok(MceSpec {
                kind: MceKind::Fatal,
                count: 1,
            });
        }
        let (kind, count) = text.split_once(':').ok_or_else(error)?;
        let kind = match kind {
            "corrected" => MceKind::Corrected,
            "recoverable" => MceKind::Recoverable,
            _ => return Err(error()),
        };
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        match count.parse::<u32>() {
            Ok(count) if (1..=MAX_MCE_COUNT).contains(&count) => Ok(MceSpec { kind, count }),
            _ => Err(error()),
        }
    }
}

impl fmt::Display for MceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MceKind::Fatal => write!(f, "fatal"),
            kind => write!(f, "{}:{}", kind.name(), self.count),
        }
    }
}

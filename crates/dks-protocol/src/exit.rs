//! Exit codes of a kernel boot.
//!
//! The kernel writes one byte `v` to the isa-debug-exit port; QEMU then exits with status
//! `(v << 1) | 1`. No code maps to status 0 or to QEMU's own error statuses, and a triple fault
//! (which ends QEMU with status 0 under `-no-reboot`) therefore never reads as success.

use serde::{Deserialize, Serialize};

/// Why the kernel ended a boot. The discriminant is the byte written to the exit port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ExitCode {
    /// Everything the boot was asked to do succeeded.
    Success = 0x10,
    /// The boot ran, and something it checked failed (a test, a scenario outcome).
    Failure = 0x11,
    /// The kernel command line was rejected; nothing ran.
    ConfigError = 0x12,
    /// The kernel panicked.
    Panic = 0x13,
    /// An exception the kernel does not handle, or a fatal stack fault.
    Exception = 0x14,
}

impl ExitCode {
    /// Every exit code, for exhaustive checks.
    pub const ALL: [ExitCode; 5] = [
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::ConfigError,
        ExitCode::Panic,
        ExitCode::Exception,
    ];

    /// Returns the exit status QEMU reports when the kernel exits with this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// Returns the exit code behind a QEMU exit status, or `None` when the status was not
    /// produced by the kernel's exit device (for example 0 after a triple fault).
    pub fn from_qemu_status(status: i32) -> Option<ExitCode> {
        ExitCode::ALL
            .into_iter()
            .find(|code| code.qemu_status() == status)
    }

    /// Returns a short lower-case name, as used in records.
    pub const fn name(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::Failure => "failure",
            ExitCode::ConfigError => "config_error",
            ExitCode::Panic => "panic",
            ExitCode::Exception => "exception",
        }
    }
}

#[cfg(test)]
mod tests;

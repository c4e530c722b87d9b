//! The wire protocol between the dks testbed kernel and the host.
//!
//! The kernel speaks to the host only through its serial line. Everything the host must
//! understand (test results, counters, errors, panics, the final exit reason) travels as a
//! *record*: one line that starts with [`wire::PREFIX`] followed by one JSON object. Lines without
//! the prefix are free text for humans and carry no meaning for the host.
//!
//! The kernel encodes records without a heap ([`wire::encode`] writes into a caller's buffer), so
//! that a fault handler or a panic can still report. The host decodes them with
//! [`wire::parse_line`] (feature `host`). Both use the types of [`record`], so the two sides
//! cannot drift apart; the version in the prefix changes whenever a record changes
//! incompatibly.
//!
//! The kernel ends every boot through the isa-debug-exit device with an [`exit::ExitCode`]; the
//! host maps QEMU's exit status back with [`exit::ExitCode::from_qemu_status`].

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmdline;
pub mod exit;
mod policy_or_none;
pub mod record;
pub mod scenario;
pub mod wire;

//! Interruption: SIGINT (Ctrl-C), SIGTERM and SIGHUP end `dks` cleanly.
//!
//! [`install`] makes these signals set a flag instead of killing the process. Everything that
//! waits (the boot loop in [`crate::boot`], the fault-injection driver) polls [`pending`] and
//! returns an [`Interrupted`] error when it is set; a boot stops its QEMU (its whole process
//! group) before it returns. The error travels up like any other, so every temporary file and
//! folder is removed by its owner's `Drop` on the way. The CLI then ends the process with the
//! signal's default action ([`exit_by`]): the parent sees `dks` killed by that signal, as if
//! nothing had been caught.
//!
//! A second signal while the first is being handled ends `dks` at once (exit status
//! 128 + signal), in case the clean-up itself hangs.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::sys::signal::Signal;

/// The signals that interrupt `dks`.
pub const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The signal that arrived (0: none), and whether one did (arms the second-signal exit).
struct Flags {
    signal: Arc<AtomicUsize>,
    arrived: Arc<AtomicBool>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Makes [`SIGNALS`] set the interruption flag instead of killing the process. Call once, early;
/// later calls do nothing.
pub fn install() -> std::io::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let flags = Flags {
        signal: Arc::new(AtomicUsize::new(0)),
        arrived: Arc::new(AtomicBool::new(false)),
    };
    for signal in SIGNALS {
        let number = signal as i32;
        // The shutdown goes first: it acts only when a signal has already arrived.
        signal_hook::flag::register_conditional_shutdown(
            number,
            128 + number,
            Arc::clone(&flags.arrived),
        )?;
        signal_hook::flag::register_usize(number, Arc::clone(&flags.signal), number as usize)?;
        signal_hook::flag::register(number, Arc::clone(&flags.arrived))?;
    }
    let _ = FLAGS.set(flags);
    Ok(())
}

/// Returns the signal that interrupted `dks`, if one arrived.
pub fn pending() -> Option<Signal> {
    let flags = FLAGS.get()?;
    match flags.signal.load(Ordering::SeqCst) {
        0 => None,
        number => Signal::try_from(number as i32).ok(),
    }
}

/// Returns an [`Interrupted`] error when a signal arrived.
pub fn check() -> Result<(), Interrupted> {
    match pending() {
        Some(signal) => Err(Interrupted(signal)),
        None => Ok(()),
    }
}

/// A wait was cut short by a signal; the boot's QEMU, if any, has been stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted(pub Signal);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", self.0.as_str())
    }
}

impl std::error::Error for Interrupted {}

/// Returns the [`Interrupted`] an error chain carries, if any.
pub fn find(error: &anyhow::Error) -> Option<Interrupted> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Interrupted>())
        .copied()
}

/// Ends the process with `signal`'s default action (termination by that signal); falls back to
/// exit status 128 + signal.
pub fn exit_by(signal: Signal) -> ! {
    let _ = signal_hook::low_level::emulate_default_handler(signal as i32);
    std::process::exit(128 + signal as i32)
}

/// Returns `signal`'s number and name, e.g. `15 (SIGTERM)`; just the number when it is none of
/// Linux's signals.
pub fn describe_signal(number: i32) -> String {
    match Signal::try_from(number) {
        Ok(signal) => format!("{number} ({})", signal.as_str()),
        Err(_) => number.to_string(),
    }
}

#[cfg(test)]
mod tests;

//! Reporting to the host: records on the console, the exit, the panic handler.
//!
//! Records are encoded into a buffer on the stack (no heap), so fault handlers and the panic
//! handler can report even when the heap is broken or locked.

use alloc::borrow::Cow;
use core::fmt::{self, Write};

use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Exit, Log, Panic, Record};
use dks_protocol::wire::{self, MAX_LINE_BYTES};

use crate::hw::{console, cpu_ops, qemu};

/// Prints one record.
pub fn emit(record: &Record<'_>) {
    let mut buf = [0u8; MAX_LINE_BYTES];
    match wire::encode(record, &mut buf) {
        Ok(line) => console::write_str(line),
        Err(_) => {
            let mut text = TextBuffer::<96>::new();
            let _ = write!(
                text,
                "a {} record was too long to print ({MAX_LINE_BYTES}-byte limit)",
                record.kind()
            );
            let mut small = [0u8; 256];
            let note = Record::Log(Log {
                text: Cow::Borrowed(text.as_str()),
            });
            if let Ok(line) = wire::encode(&note, &mut small) {
                console::write_str(line);
            }
        }
    }
}

/// Prints one record from NMI or machine-check context: as [`emit`], but without waiting
/// for a console that another context may hold forever (`console::write_str_forced`).
pub fn emit_forced(record: &Record<'_>) {
    let mut buf = [0u8; MAX_LINE_BYTES];
    if let Ok(line) = wire::encode(record, &mut buf) {
        console::write_str_forced(line);
    }
}

/// Prints the final record with [`emit_forced`] and ends the boot.
pub fn exit_forced(code: ExitCode, reason: &str) -> ! {
    emit_forced(&Record::Exit(Exit {
        code,
        reason: Cow::Borrowed(reason),
    }));
    qemu::exit(code)
}

/// Prints a free-form remark as a `Log` record.
pub fn log(args: fmt::Arguments<'_>) {
    let mut text = TextBuffer::<512>::new();
    let _ = text.write_fmt(args);
    emit(&Record::Log(Log {
        text: Cow::Borrowed(text.as_str()),
    }));
}

/// Prints the final record and ends the boot.
pub fn exit(code: ExitCode, reason: &str) -> ! {
    emit(&Record::Exit(Exit {
        code,
        reason: Cow::Borrowed(reason),
    }));
    qemu::exit(code)
}

/// A fixed-size text buffer that truncates (at a character boundary) instead of failing.
pub struct TextBuffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> TextBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        TextBuffer {
            bytes: [0; N],
            len: 0,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // `write_str` only appends whole characters.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for TextBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for TextBuffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + encoded.len() > N {
                return Err(fmt::Error);
            }
            self.bytes[self.len..self.len + encoded.len()].copy_from_slice(encoded);
            self.len += encoded.len();
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut message = TextBuffer::<384>::new();
    let _ = write!(message, "{}", info.message());
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    emit(&Record::Panic(Panic {
        cpu: cpu_ops::id_hint(),
        message: Cow::Borrowed(message.as_str()),
        file: Cow::Borrowed(file),
        line,
    }));
    exit(ExitCode::Panic, "kernel panic")
}

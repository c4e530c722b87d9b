//! The records themselves.
//!
//! Every record is one variant of [`Record`]; its JSON form is externally tagged, e.g.
//! `{"test_end":{"name":"boot","outcome":"pass","detail":""}}`. Text fields are
//! [`Cow`]s: the kernel borrows (no heap needed to report), the host owns or borrows as the
//! parser finds convenient. Numbers are unsigned integers; addresses are plain `u64`s.
//!
//! Adding a field to a record is compatible only if the host treats it as optional; anything
//! else bumps [`crate::wire::VERSION`].

use alloc::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::exit::ExitCode;

/// One line of meaning on the serial console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record<'a> {
    /// The kernel is up: what it found.
    #[serde(borrow)]
    Boot(Boot<'a>),
    /// The command line was rejected. Always followed by [`Record::Exit`] with
    /// [`ExitCode::ConfigError`].
    #[serde(borrow)]
    ConfigError(ConfigError<'a>),
    /// The set of in-kernel tests this boot will run.
    TestPlan(TestPlan),
    /// An in-kernel test starts.
    #[serde(borrow)]
    TestBegin(TestBegin<'a>),
    /// An in-kernel test ended.
    #[serde(borrow)]
    TestEnd(TestEnd<'a>),
    /// An exception the kernel did not expect.
    Exception(Exception),
    /// A page fault hit the guard page of a stack: a stack overflow.
    #[serde(borrow)]
    GuardHit(GuardHit<'a>),
    /// The kernel panicked.
    #[serde(borrow)]
    Panic(Panic<'a>),
    /// A remark for humans; the host shows it and attaches no meaning.
    #[serde(borrow)]
    Log(Log<'a>),
    /// The last record of a boot: the kernel is about to exit QEMU.
    #[serde(borrow)]
    Exit(Exit<'a>),
}

/// What the kernel found at boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot<'a> {
    /// The kernel's version string.
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// CPUs that are running.
    pub cpus: u32,
    /// Usable RAM reported by the boot memory map, in KiB.
    pub memory_kib: u64,
    /// Frames the frame allocator manages.
    pub frames_total: u64,
    /// Frames free after boot.
    pub frames_free: u64,
    /// The kernel command line as given.
    #[serde(borrow)]
    pub cmdline: Cow<'a, str>,
}

/// A rejected command-line entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError<'a> {
    /// The key that was wrong (the whole word when it had no `=`).
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// The value given, empty when there was none.
    #[serde(borrow)]
    pub value: Cow<'a, str>,
    /// What was wrong, in a few words.
    #[serde(borrow)]
    pub problem: Cow<'a, str>,
    /// What would have been accepted.
    #[serde(borrow)]
    pub accepted: Cow<'a, str>,
}

/// The tests of this boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestPlan {
    /// How many tests will run; the host expects exactly this many [`TestEnd`] records.
    pub count: u32,
}

/// A test starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestBegin<'a> {
    /// The test's name, unique in the kernel.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// Pass or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The test's checks all held.
    Pass,
    /// A check failed; the detail says which.
    Fail,
}

/// A test ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestEnd<'a> {
    /// The test's name, as in its [`TestBegin`].
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Whether it passed.
    pub outcome: Outcome,
    /// For a failure, the check that failed; empty on success.
    #[serde(borrow)]
    pub detail: Cow<'a, str>,
}

/// The general registers at the time of an exception.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // reason: register names are their own documentation
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// An unexpected exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// The CPU it happened on.
    pub cpu: u32,
    /// The vector number (14 for a page fault).
    pub vector: u8,
    /// The error code the CPU pushed, if this vector has one.
    pub error_code: Option<u64>,
    /// The interrupted instruction pointer.
    pub rip: u64,
    /// The interrupted stack pointer.
    pub rsp: u64,
    /// The interrupted flags.
    pub rflags: u64,
    /// The faulting address for a page fault (CR2), 0 otherwise.
    pub cr2: u64,
    /// The general registers.
    pub registers: Registers,
}

/// A stack overflow into a guard page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardHit<'a> {
    /// The CPU it happened on.
    pub cpu: u32,
    /// The task whose stack overflowed (its name).
    #[serde(borrow)]
    pub task: Cow<'a, str>,
    /// The faulting address (inside the guard page).
    pub address: u64,
    /// How deep the stack was at the fault: bytes from the stack top to the faulting address.
    pub depth_bytes: u64,
    /// The instruction that touched the guard page.
    pub rip: u64,
}

/// A kernel panic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panic<'a> {
    /// The CPU that panicked.
    pub cpu: u32,
    /// The panic message (possibly truncated).
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// The source file.
    #[serde(borrow)]
    pub file: Cow<'a, str>,
    /// The source line.
    pub line: u32,
}

/// A remark for humans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log<'a> {
    /// The text.
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

/// The end of a boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit<'a> {
    /// The code the kernel exits with.
    pub code: ExitCode,
    /// Why, in a few words.
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
}

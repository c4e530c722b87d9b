//! The kernel command line, parsed strictly (DESIGN §11).
//!
//! The line is a space-separated list of `key=value` words. Every key may appear once. An
//! unknown key, a word without `=`, a repeated key or a value outside what the key accepts is
//! an error that names the key, the value, the problem and what would have been accepted;
//! the kernel reports it as one `ConfigError` record and exits without running anything.
//!
//! Before any word is looked at, the whole line is checked against the limits of
//! [`dks_protocol::cmdline`] (length and characters): the host refuses the same lines before
//! it boots, and the `Boot` record that echoes an accepted line always fits a record line.
//! The words an error echoes are cut to [`ECHO_BYTES`], so every `ConfigError` record fits too.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::mm::frames::{self, Injection};

/// Something that deliberately crashes the boot, so the host can check that crashes are
/// reported (and never read as success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Executes `ud2`: an invalid-opcode exception.
    InvalidOpcode,
    /// Reads an unmapped address: a page fault nobody handles.
    PageFault,
    /// Overflows a kernel stack into its guard page.
    Guard,
    /// Takes a page fault inside the page-fault handler (while its IST frame is live).
    NestedPageFault,
    /// Bounces a page fault onto a stack gap without populating it first: the copy of the
    /// #PF frame faults (while the frame is live).
    BounceCopyFault,
    /// Raises a machine check with an uncorrectable error (PCC set).
    MachineCheck,
    /// Takes a page fault (one that would be served) inside the NMI handler.
    NmiPageFault,
    /// Takes a page fault (one that would be served) inside the machine-check handler.
    MachineCheckPageFault,
    /// Overflows the stack of the `main` thread, one of the kernel's own, with interrupts on.
    KernelThreadOverflow,
}

/// Where a workload's plan comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadSource {
    /// The JSON plan in the first boot module (`-initrd`).
    Initrd,
    /// The built-in mixed-policy workload.
    Mixed,
}

/// A measurement run instead of tests or a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    /// `costs`: what the mechanism costs per operation (`bench.rs`).
    Costs,
    /// `soak:N`: N thread lifetimes under every policy, then memory back to its baseline.
    Soak {
        /// Thread lifetimes.
        lifetimes: u64,
    },
}

/// The most lifetimes `bench=soak:N` accepts.
pub const MAX_SOAK_LIFETIMES: u64 = 100_000_000;

/// Which in-kernel tests to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestSelection {
    /// Every registered test.
    All,
    /// These tests, in this order.
    Named(Vec<&'static str>),
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Tests to run, if any.
    pub tests: Option<TestSelection>,
    /// The allocation-failure pattern armed after boot.
    pub injection: Injection,
    /// Frames only atomic allocations may take.
    pub reserve_frames: u64,
    /// Timer interrupts per second.
    pub hz: u32,
    /// A deliberate crash, for testing the crash reports.
    pub crash: Option<Crash>,
    /// The largest a thread stack may grow, in bytes (16, 32 or 64 KiB).
    pub max_stack_bytes: u64,
    /// Stack slots in the stack region (the most threads alive at once).
    pub slots: u32,
    /// The stack-memory limit of the workload threads' group (the memory-cgroup analogue),
    /// pages; `None`: no limit.
    pub group_limit_pages: Option<u64>,
    /// The most the kernel heap may grow to, MiB; `None`: as far as memory allows.
    pub heap_limit_mib: Option<u64>,
    /// A measurement (`bench=costs`, `bench=soak:N`) instead of tests or a workload.
    pub bench: Option<Bench>,
    /// Run a workload: the plan in the first boot module, or a built-in one.
    pub workload: Option<WorkloadSource>,
    /// The TSC counts guest instructions (`tsc=instructions`: QEMU's `-icount shift=0`).
    pub tsc_counts_instructions: bool,
    /// A `pack` thread asleep this long is packed (`pack_after_ms=`), milliseconds.
    pub pack_after_ms: u64,
    /// Packs keep the top page's frame unmapped to catch foreign touches (`pack_guard=on`).
    pub pack_guard: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tests: None,
            injection: Injection::None,
            reserve_frames: frames::DEFAULT_RESERVE_FRAMES,
            hz: 100,
            crash: None,
            max_stack_bytes: 16 * 1024,
            slots: dks_protocol::scenario::DEFAULT_SLOTS,
            group_limit_pages: None,
            heap_limit_mib: None,
            bench: None,
            workload: None,
            tsc_counts_instructions: false,
            pack_after_ms: dks_core::pack::DEFAULT_PACK_THRESHOLD_MS,
            pack_guard: false,
        }
    }
}

/// A rejected command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key at fault (the whole word when it had no `=`).
    pub key: String,
    /// The value given.
    pub value: String,
    /// What was wrong.
    pub problem: Cow<'static, str>,
    /// What would be accepted.
    pub accepted: Cow<'static, str>,
}

/// Every key, with what it accepts.
const KEYS: &[(&str, &str)] = &[
    ("test", "all, or a comma-separated list of test names"),
    (
        "inject",
        "none, every:N (N >= 1), percent:P:SEED (P 0..=100), atomic-window:START:LEN, all-atomic",
    ),
    ("reserve", "a frame count from 0 to 1048576"),
    ("hz", "timer interrupts per second, 10 to 10000"),
    (
        "crash",
        "ud, page-fault, guard, nested-page-fault, bounce-copy-fault, machine-check, \
         nmi-page-fault, machine-check-page-fault, kernel-thread-overflow",
    ),
    ("max_stack", "16K, 32K or 64K"),
    ("slots", "stack slots, 64 to 1004352"),
    (
        "group_limit",
        "the workload group's stack limit in pages, 1 to 4294967295",
    ),
    (
        "heap_limit_mib",
        "the most the kernel heap may grow to, MiB, 8 to 65536",
    ),
    (
        "bench",
        "costs, or soak:N (N thread lifetimes, 1 to 100000000)",
    ),
    (
        "workload",
        "initrd (the plan in the first boot module) or mixed (built in)",
    ),
    (
        "tsc",
        "time, or instructions (QEMU runs with -icount shift=0)",
    ),
    (
        "pack_after_ms",
        "how long a pack thread sleeps before it is packed, ms, 1 to 60000",
    ),
    ("pack_guard", "on or off"),
];

/// The longest sleep threshold `pack_after_ms=` accepts, milliseconds.
pub const MAX_PACK_AFTER_MS: u64 = 60_000;

const _: () = assert!(
    dks_protocol::scenario::MAX_SLOTS == 1_004_352,
    "the accepted text of `slots` names the largest"
);

fn accepted_for(key: &str) -> &'static str {
    KEYS.iter().find(|(k, _)| *k == key).map_or("", |(_, a)| a)
}

fn accepted_keys() -> String {
    let names: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    let mut text = String::from("keys: ");
    text.push_str(&names.join(", "));
    text
}

/// The most bytes of a key or value a [`ConfigError`] repeats; a longer one is cut and ends
/// in `...`.
pub const ECHO_BYTES: usize = 64;

/// The most bytes of test names an error lists: with the echoed value and problem, the
/// record stays within one line however many tests there are.
const ACCEPTED_NAMES_BYTES: usize = 480;

/// Returns `names` joined by ", ", as many as fit in `budget` bytes, then how many more.
fn name_list(names: &[&str], budget: usize) -> String {
    let mut list = String::new();
    for (index, name) in names.iter().enumerate() {
        let separator = if list.is_empty() { "" } else { ", " };
        if list.len() + separator.len() + name.len() > budget {
            list.push_str(&alloc::format!(
                "{separator}... and {} more",
                names.len() - index
            ));
            break;
        }
        list.push_str(separator);
        list.push_str(name);
    }
    list
}

/// Returns `text`, cut to [`ECHO_BYTES`] (at a character boundary) with `...` when longer.
fn echo(text: &str) -> String {
    if text.len() <= ECHO_BYTES {
        return text.into();
    }
    let mut end = ECHO_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = String::from(&text[..end]);
    cut.push_str("...");
    cut
}

/// The error for a line that breaks the limits of [`dks_protocol::cmdline`].
fn whole_line_error(error: dks_protocol::cmdline::CmdlineError) -> ConfigError {
    use dks_protocol::cmdline::{ACCEPTED_CHARACTERS, CmdlineError, MAX_CMDLINE_BYTES};
    let problem = match error {
        CmdlineError::TooLong { bytes } => {
            alloc::format!("{bytes} bytes, longer than the kernel accepts")
        }
        CmdlineError::BadByte { at, byte } => {
            alloc::format!("byte {at} is {:?}, which is not accepted", char::from(byte))
        }
    };
    ConfigError {
        key: "command line".into(),
        value: String::new(),
        problem: problem.into(),
        accepted: alloc::format!("at most {MAX_CMDLINE_BYTES} bytes of {ACCEPTED_CHARACTERS}")
            .into(),
    }
}

/// Parses `line`. `test_names` are the registered tests, used to check `test=`.
pub fn parse(line: &str, test_names: &[&'static str]) -> Result<Config, ConfigError> {
    if let Err(error) = dks_protocol::cmdline::check(line) {
        return Err(whole_line_error(error));
    }
    let mut config = Config::default();
    let mut seen: Vec<&str> = Vec::new();
    for word in line.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ConfigError {
                key: echo(word),
                value: String::new(),
                problem: "not of the form key=value".into(),
                accepted: accepted_keys().into(),
            });
        };
        let error = |problem: &'static str| ConfigError {
            key: echo(key),
            value: echo(value),
            problem: problem.into(),
            accepted: accepted_for(key).into(),
        };
        if !KEYS.iter().any(|(k, _)| *k == key) {
            return Err(ConfigError {
                key: echo(key),
                value: echo(value),
                problem: "unknown key".into(),
                accepted: accepted_keys().into(),
            });
        }
        if seen.contains(&key) {
            return Err(error("key given twice"));
        }
        seen.push(key);
        match key {
            "test" => {
                config.tests = Some(parse_tests(value, test_names).map_err(|e| {
                    match e {
                        TestsError::Empty => error("empty test list"),
                        TestsError::Unknown(name) => ConfigError {
                            key: echo(key),
                            value: echo(value),
                            problem: alloc::format!("no test named {:?}", echo(name)).into(),
                            accepted: alloc::format!(
                                "all, or a comma-separated list of: {}",
                                name_list(test_names, ACCEPTED_NAMES_BYTES)
                            )
                            .into(),
                        },
                    }
                })?)
            }
            "inject" => {
                config.injection =
                    parse_injection(value).ok_or_else(|| error("bad injection pattern"))?
            }
            "reserve" => {
                config.reserve_frames = parse_in_range(value, 0, 1 << 20)
                    .ok_or_else(|| error("not a number in range"))?
            }
            "hz" => {
                config.hz = parse_in_range(value, 10, 10_000)
                    .ok_or_else(|| error("not a number in range"))?
                    as u32
            }
            "max_stack" => {
                config.max_stack_bytes = dks_core::MaxStack::from_name(value)
                    .ok_or_else(|| error("not an allowed stack size"))?
                    .bytes()
            }
            "bench" => {
                config.bench = Some(match value.split_once(':') {
                    None if value == "costs" => Bench::Costs,
                    Some(("soak", n)) => Bench::Soak {
                        lifetimes: parse_in_range(n, 1, MAX_SOAK_LIFETIMES)
                            .ok_or_else(|| error("not a lifetime count in range"))?,
                    },
                    _ => return Err(error("unknown benchmark")),
                })
            }
            "workload" => {
                config.workload = Some(match value {
                    "initrd" => WorkloadSource::Initrd,
                    "mixed" => WorkloadSource::Mixed,
                    _ => return Err(error("unknown workload")),
                })
            }
            "tsc" => {
                config.tsc_counts_instructions = match value {
                    "instructions" => true,
                    "time" => false,
                    _ => return Err(error("unknown TSC meaning")),
                }
            }
            "slots" => {
                config.slots =
                    parse_in_range(value, 64, u64::from(dks_protocol::scenario::MAX_SLOTS))
                        .ok_or_else(|| error("not a number in range"))? as u32
            }
            "pack_after_ms" => {
                config.pack_after_ms = parse_in_range(value, 1, MAX_PACK_AFTER_MS)
                    .ok_or_else(|| error("not a number of milliseconds in range"))?
            }
            "pack_guard" => {
                config.pack_guard = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(error("neither on nor off")),
                }
            }
            "heap_limit_mib" => {
                config.heap_limit_mib = Some(
                    parse_in_range(value, 8, 65_536)
                        .ok_or_else(|| error("not a size in MiB in range"))?,
                )
            }
            "group_limit" => {
                config.group_limit_pages = Some(
                    parse_in_range(value, 1, u64::from(u32::MAX))
                        .ok_or_else(|| error("not a page count in range"))?,
                )
            }
            "crash" => {
                config.crash = Some(match value {
                    "ud" => Crash::InvalidOpcode,
                    "page-fault" => Crash::PageFault,
                    "guard" => Crash::Guard,
                    "nested-page-fault" => Crash::NestedPageFault,
                    "bounce-copy-fault" => Crash::BounceCopyFault,
                    "machine-check" => Crash::MachineCheck,
                    "nmi-page-fault" => Crash::NmiPageFault,
                    "machine-check-page-fault" => Crash::MachineCheckPageFault,
                    "kernel-thread-overflow" => Crash::KernelThreadOverflow,
                    _ => return Err(error("unknown crash kind")),
                })
            }
            _ => unreachable!("every key of KEYS is handled"),
        }
    }
    Ok(config)
}

enum TestsError<'a> {
    Empty,
    Unknown(&'a str),
}

fn parse_tests<'a>(
    value: &'a str,
    names: &[&'static str],
) -> Result<TestSelection, TestsError<'a>> {
    if value == "all" {
        return Ok(TestSelection::All);
    }
    let mut selected = Vec::new();
    for name in value.split(',') {
        let known = names
            .iter()
            .find(|n| **n == name)
            .ok_or(TestsError::Unknown(name))?;
        selected.push(*known);
    }
    if selected.is_empty() || value.is_empty() {
        return Err(TestsError::Empty);
    }
    Ok(TestSelection::Named(selected))
}

/// Parses a decimal number (no sign, no spaces) within `min..=max`.
pub fn parse_in_range(value: &str, min: u64, max: u64) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

fn parse_injection(value: &str) -> Option<Injection> {
    let mut parts = value.split(':');
    let kind = parts.next()?;
    let numbers: Vec<&str> = parts.collect();
    let injection = match (kind, numbers.as_slice()) {
        ("none", []) => Injection::None,
        ("all-atomic", []) => Injection::AllAtomic,
        ("every", [n]) => Injection::EveryNth(parse_in_range(n, 1, u64::MAX)?),
        ("percent", [p, seed]) => Injection::Percent {
            percent: parse_in_range(p, 0, 100)? as u8,
            seed: parse_in_range(seed, 0, u64::MAX)?,
        },
        ("atomic-window", [start, len]) => Injection::AtomicWindow {
            start: parse_in_range(start, 0, u64::MAX)?,
            len: parse_in_range(len, 0, u64::MAX)?,
        },
        _ => return None,
    };
    Some(injection)
}

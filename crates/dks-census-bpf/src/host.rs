//! Whether this host can run the census programs, and if not, what is missing and how to get
//! it.
//!
//! The facts ([`HostFacts`]) are gathered once ([`gather`]): the process's effective
//! capabilities and what the kernel's BTF offers. [`check`] turns them into one [`HostError`]
//! naming the first thing missing; it is a pure function, so every refusal is tested without
//! needing a host that lacks it.

use std::fmt;
use std::path::{Path, PathBuf};

use libbpf_rs::btf::{Btf, types};

/// Where the kernel exposes its own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Which census program is to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `iter/task`: the snapshot of every thread.
    Snapshot,
    /// `tp_btf/sched_switch`: the exits.
    Exits,
}

/// What the kernel's BTF offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfFacts {
    /// No file at the path.
    Missing(PathBuf),
    /// A file that libbpf cannot parse as BTF.
    Unreadable(PathBuf, String),
    /// Parsed: whether the kernel has BPF task iterators (`struct bpf_iter__task`, Linux 5.8)
    /// and BTF-typed tracepoints on `sched_switch` (`btf_trace_sched_switch`, Linux 5.5).
    Present {
        /// `struct bpf_iter__task` is known.
        task_iterator: bool,
        /// `btf_trace_sched_switch` is known.
        sched_switch: bool,
    },
}

/// Everything [`check`] decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// The effective capability set (`CapEff` of `/proc/self/status`); `None` when unreadable.
    pub effective_caps: Option<u64>,
    /// The kernel's BTF.
    pub btf: BtfFacts,
}

/// Why the census cannot run on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// Neither `CAP_BPF` with `CAP_PERFMON` nor `CAP_SYS_ADMIN`.
    NotPermitted,
    /// No BTF file.
    NoBtf(PathBuf),
    /// A BTF file libbpf cannot parse.
    BadBtf(PathBuf, String),
    /// The kernel lacks what the program needs.
    TooOld(Program),
    /// The `bpf()` system call is not there.
    BpfDisabled(String),
    /// The kernel refused to load or attach a program.
    Refused(String),
    /// Anything else libbpf or the kernel reported.
    Failed(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::NotPermitted => write!(
                f,
                "not permitted: reading kernel stacks with BPF needs CAP_BPF and CAP_PERFMON \
                 (or CAP_SYS_ADMIN), which this process does not have; run it as root, e.g. \
                 `sudo ./dks census ...`"
            ),
            HostError::NoBtf(path) => write!(
                f,
                "this kernel has no BTF ({} is missing): the census programs are typed against \
                 the running kernel (CO-RE); it needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF=y (the default of Debian 11+, Ubuntu 20.10+, Fedora 31+ \
                 and RHEL 8.2+ kernels)",
                path.display()
            ),
            HostError::BadBtf(path, problem) => write!(
                f,
                "cannot read the kernel's BTF {}: {problem}; it needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF=y",
                path.display()
            ),
            HostError::TooOld(Program::Snapshot) => write!(
                f,
                "this kernel is too old for BPF task iterators (its BTF has no \
                 struct bpf_iter__task): `dks census snapshot` needs Linux 5.8 or later"
            ),
            HostError::TooOld(Program::Exits) => write!(
                f,
                "this kernel has no BTF-typed sched_switch tracepoint (its BTF has no \
                 btf_trace_sched_switch): `dks census exits` needs Linux 5.5 or later"
            ),
            HostError::BpfDisabled(detail) => write!(
                f,
                "BPF is disabled in this kernel (the bpf() system call is missing: \
                 CONFIG_BPF_SYSCALL=y is needed): {detail}"
            ),
            HostError::Refused(detail) => write!(
                f,
                "the kernel refused the census programs: {detail}; with the capabilities \
                 present this usually means kernel lockdown (confidentiality mode forbids \
                 reading kernel memory; see /sys/kernel/security/lockdown) or a security \
                 module denying BPF"
            ),
            HostError::Failed(detail) => write!(f, "BPF failed: {detail}"),
        }
    }
}

impl std::error::Error for HostError {}

/// Gathers the facts of this process and the BTF at `btf`.
pub fn gather(btf: &Path) -> HostFacts {
    let effective_caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_caps(&status));
    let btf = if !btf.exists() {
        BtfFacts::Missing(btf.to_owned())
    } else {
        match Btf::from_path(btf) {
            Ok(parsed) => BtfFacts::Present {
                task_iterator: parsed
                    .type_by_name::<types::Struct>("bpf_iter__task")
                    .is_some(),
                sched_switch: parsed
                    .type_by_name::<types::Typedef>("btf_trace_sched_switch")
                    .is_some(),
            },
            Err(error) => BtfFacts::Unreadable(btf.to_owned(), format!("{error:#}")),
        }
    };
    HostFacts {
        effective_caps,
        btf,
    }
}

/// Returns the `CapEff` mask of a `/proc/PID/status` text.
pub fn effective_caps(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(value.trim(), 16).ok()
}

/// Returns whether `caps` allow loading tracing programs that read kernel memory.
pub fn caps_suffice(caps: u64) -> bool {
    let has = |cap: u32| caps & (1 << cap) != 0;
    (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN)
}

/// Returns the first thing that keeps `program` from running on a host with `facts`.
pub fn check(facts: &HostFacts, program: Program) -> Result<(), HostError> {
    if !facts.effective_caps.is_some_and(caps_suffice) {
        return Err(HostError::NotPermitted);
    }
    match &facts.btf {
        BtfFacts::Missing(path) => Err(HostError::NoBtf(path.clone())),
        BtfFacts::Unreadable(path, problem) => {
            Err(HostError::BadBtf(path.clone(), problem.clone()))
        }
        BtfFacts::Present {
            task_iterator,
            sched_switch,
        } => {
            let supported = match program {
                Program::Snapshot => *task_iterator,
                Program::Exits => *sched_switch,
            };
            if supported {
                Ok(())
            } else {
                Err(HostError::TooOld(program))
            }
        }
    }
}

/// Classifies an error of libbpf while the programs are loaded or attached.
pub fn classify(error: &libbpf_rs::Error, log: &str) -> HostError {
    let detail = if log.trim().is_empty() {
        format!("{error:#}")
    } else {
        format!("{error:#}; libbpf said:\n{}", log.trim_end())
    };
    match error.kind() {
        libbpf_rs::ErrorKind::Unsupported => HostError::BpfDisabled(detail),
        libbpf_rs::ErrorKind::PermissionDenied => HostError::Refused(detail),
        _ => HostError::Failed(detail),
    }
}

#[cfg(test)]
mod tests;

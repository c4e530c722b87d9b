//! What the host is, for the provenance header: its kernel release and the build options that
//! change what a census reads.
//!
//! The options come from the kernel's configuration, `/proc/config.gz` (`CONFIG_IKCONFIG_PROC`)
//! or else `/boot/config-RELEASE`; when neither is readable the header says so instead of
//! guessing. They are:
//!
//! - `VMAP_STACK`: stacks are vmalloc'ed, with a guard page; the programs then read each
//!   stack's size from its `vm_struct`;
//! - `INIT_STACK_NONE` / `INIT_STACK_ALL_ZERO` / `INIT_STACK_ALL_PATTERN`: how uninitialized
//!   locals are filled; a pattern makes every word a frame reserved look used, zero makes
//!   reserved-but-unwritten words look unused;
//! - `KSTACK_ERASE` (`GCC_PLUGIN_STACKLEAK` before 6.16): the used part of the stack is
//!   overwritten with a poison value on return to user space, so marks stay where they were;
//! - `RANDOMIZE_KSTACK_OFFSET` (and `_DEFAULT`): a random offset of up to 1 KiB on every
//!   system call moves user threads' marks deeper;
//! - `KASAN`: doubles `THREAD_SIZE` on x86_64 ([`thread_size`]);
//! - `SCHED_STACK_END_CHECK`, `DEBUG_STACK_USAGE`: the canary the rule skips is checked,
//!   and the kernel measures the same mark itself.

use std::io::Read;
use std::path::Path;

use super::PAGE_BYTES;

/// The options named in the header, in order.
pub const STACK_OPTIONS: [&str; 11] = [
    "VMAP_STACK",
    "INIT_STACK_NONE",
    "INIT_STACK_ALL_ZERO",
    "INIT_STACK_ALL_PATTERN",
    "KSTACK_ERASE",
    "GCC_PLUGIN_STACKLEAK",
    "RANDOMIZE_KSTACK_OFFSET",
    "RANDOMIZE_KSTACK_OFFSET_DEFAULT",
    "KASAN",
    "SCHED_STACK_END_CHECK",
    "DEBUG_STACK_USAGE",
];

/// The running kernel's release (`uname -r`).
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The running kernel's configuration and where it was read, when readable.
pub fn config(release: &str) -> Option<(String, String)> {
    let gz = Path::new("/proc/config.gz");
    if let Ok(file) = std::fs::File::open(gz) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some((text, gz.display().to_string()));
        }
    }
    let boot = format!("/boot/config-{release}");
    std::fs::read_to_string(&boot).ok().map(|text| (text, boot))
}

/// The value of `CONFIG_<name>` in `config`: `Some("y")`, `Some("n")` when "is not set",
/// `None` when the kernel does not know the option.
pub fn option<'c>(config: &'c str, name: &str) -> Option<&'c str> {
    let set = format!("CONFIG_{name}=");
    let unset = format!("# CONFIG_{name} is not set");
    config.lines().find_map(|line| {
        if let Some(value) = line.strip_prefix(&set) {
            Some(value)
        } else if line == unset {
            Some("n")
        } else {
            None
        }
    })
}

/// The header's `stack_options` value: each option the kernel knows, `NAME=value`, and where
/// the configuration came from; or why there is none.
pub fn stack_options(config: Option<&(String, String)>) -> String {
    match config {
        Some((text, source)) => {
            let known: Vec<String> = STACK_OPTIONS
                .iter()
                .filter_map(|name| option(text, name).map(|value| format!("{name}={value}")))
                .collect();
            format!("{} (from {source})", known.join(" "))
        }
        None => "unknown (neither /proc/config.gz nor /boot/config-RELEASE is readable)".to_owned(),
    }
}

/// x86_64's `THREAD_SIZE`: 16 KiB, doubled by KASAN (`KASAN_STACK_ORDER`). Only the default
/// the programs use for a stack whose `vm_struct` they cannot read.
pub fn thread_size(config: Option<&str>) -> u32 {
    let kasan = config.and_then(|text| option(text, "KASAN")) == Some("y");
    (4 * PAGE_BYTES) << u32::from(kasan)
}

#[cfg(test)]
mod tests;

//! The BPF side of `dks census`: how deep the threads of the running Linux host use their
//! kernel stacks.
//!
//! Two programs in C (`src/bpf/census.bpf.c`), compiled by clang at build time and loaded
//! through the skeleton libbpf-cargo generates ([`skeleton`]), CO-RE against the running
//! kernel's BTF:
//!
//! - [`snapshot`]: a task iterator (`iter/task`) reads every thread's stack at one moment:
//!   its high-water mark (Linux's `stack_not_used()` rule: the first non-zero word from the
//!   stack's far end) and how deep it sleeps (its saved stack pointer below the stack top);
//! - [`watch_exits`]: a BTF tracepoint on `sched_switch` reads the stack of every thread at
//!   its last switch (`prev` is `TASK_DEAD`) and hands the readings over a ring buffer.
//!
//! Both return [`Record`]s, one per thread, whose [`Reading`] says whether the stack was read
//! or why not (the thread exited while it was read, a page could not be read, ...): nothing is
//! guessed, and the caller counts what was skipped. Before anything is loaded, [`host::check`]
//! refuses a host that cannot run the programs with one error naming what is missing.
//!
//! Our code has no `unsafe`; the generated skeleton does (calls into libbpf), and is the one
//! module where it is allowed.

#![deny(unsafe_code)]

pub mod host;
pub mod record;
mod skeleton;

use std::ffi::CString;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{PrintLevel, RingBufferBuilder};

pub use host::{HostError, Program};
pub use record::{Reading, Record};

use skeleton::{CensusSkelBuilder, OpenCensusSkel};

/// Bytes of a page (x86_64); the programs read stacks a page at a time.
pub const PAGE_BYTES: u32 = 4096;

/// What the programs are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The kernel's BTF, checked before loading and used for CO-RE (normally
    /// [`host::KERNEL_BTF`]).
    pub btf: PathBuf,
    /// Pages of a stack whose size the program cannot read from its `vm_struct` (a kernel
    /// without `VMAP_STACK`): `THREAD_SIZE / PAGE_SIZE` as the caller found it.
    pub default_stack_pages: u32,
    /// A test hook: when N > 0, the first stack page of every N-th thread the snapshot visits
    /// is read from an address that cannot be read. 0 in normal use.
    pub inject_unreadable_every: u32,
}

impl Options {
    /// The options of a normal run on this host, with `THREAD_SIZE` as found by the caller.
    pub fn new(default_stack_pages: u32) -> Self {
        Options {
            btf: PathBuf::from(host::KERNEL_BTF),
            default_stack_pages,
            inject_unreadable_every: 0,
        }
    }
}

/// The readings of the threads that exited during a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exits {
    /// One per exit, in the order the ring buffer delivered them.
    pub records: Vec<Record>,
    /// Exits the program saw (records plus dropped).
    pub seen: u64,
    /// Exits whose record was lost because the ring buffer was full.
    pub dropped: u64,
}

/// libbpf's messages of the current operation (its verifier log on a failed load), kept to
/// put in the error instead of printing them.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

fn keep_libbpf_message(_level: PrintLevel, message: String) {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.push_str(&message);
    }
}

/// Starts collecting libbpf's warnings afresh.
fn capture_libbpf_log() {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.clear();
    }
    libbpf_rs::set_print(Some((PrintLevel::Warn, keep_libbpf_message)));
}

/// The last lines libbpf printed (a verifier log can be thousands of lines).
fn libbpf_log_tail() -> String {
    let log = LIBBPF_LOG.lock().map(|log| log.clone()).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn failed(error: libbpf_rs::Error) -> HostError {
    host::classify(&error, &libbpf_log_tail())
}

/// Opens the skeleton with `options` and with only `program` (and its maps) to be loaded.
fn open<'obj>(
    options: &Options,
    program: Program,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    btf_path: &CString,
) -> Result<OpenCensusSkel<'obj>, HostError> {
    let open_opts = libbpf_rs::libbpf_sys::bpf_object_open_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_object_open_opts>() as _,
        btf_custom_path: btf_path.as_ptr(),
        ..Default::default()
    };
    let mut open = CensusSkelBuilder::default()
        .open_opts(open_opts, object)
        .map_err(failed)?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| HostError::Failed("the skeleton has no read-only data".to_owned()))?;
    rodata.default_stack_pages = options.default_stack_pages;
    rodata.inject_unreadable_every = options.inject_unreadable_every;
    let snapshot = program == Program::Snapshot;
    open.progs.census_task.set_autoload(snapshot);
    open.progs.census_exit.set_autoload(!snapshot);
    open.maps
        .iter_page
        .set_autocreate(snapshot)
        .map_err(failed)?;
    open.maps
        .exit_page
        .set_autocreate(!snapshot)
        .map_err(failed)?;
    open.maps.exits.set_autocreate(!snapshot).map_err(failed)?;
    Ok(open)
}

fn c_path(options: &Options) -> Result<CString, HostError> {
    CString::new(options.btf.as_os_str().as_bytes())
        .map_err(|_| HostError::Failed(format!("{:?} holds a NUL byte", options.btf)))
}

/// Reads every thread of the host once (`iter/task`): one record per thread the iterator
/// visited, in its order (by thread id).
pub fn snapshot(options: &Options) -> Result<Vec<Record>, HostError> {
    host::check(&host::gather(&options.btf), Program::Snapshot)?;
    capture_libbpf_log();
    let btf_path = c_path(options)?;
    let mut object = MaybeUninit::uninit();
    let skel = open(options, Program::Snapshot, &mut object, &btf_path)?
        .load()
        .map_err(failed)?;
    let link = skel.progs.census_task.attach().map_err(failed)?;
    let mut iter = libbpf_rs::Iter::new(&link).map_err(failed)?;
    let mut bytes = Vec::new();
    iter.read_to_end(&mut bytes)
        .map_err(|error| HostError::Failed(format!("reading the task iterator: {error}")))?;
    record::decode_all(&bytes).map_err(|error| HostError::Failed(error.to_string()))
}

/// Reads the stack of every thread that exits during `window` (`tp_btf/sched_switch`).
/// `attached` is called once the program is attached, before the window starts; `stop` is
/// asked every 100 ms at most and ends the window early when it says so (an interrupted
/// `dks`).
pub fn watch_exits(
    options: &Options,
    window: Duration,
    attached: impl FnOnce(),
    stop: impl Fn() -> bool,
) -> Result<Exits, HostError> {
    host::check(&host::gather(&options.btf), Program::Exits)?;
    capture_libbpf_log();
    let btf_path = c_path(options)?;
    let mut object = MaybeUninit::uninit();
    let mut skel = open(options, Program::Exits, &mut object, &btf_path)?
        .load()
        .map_err(failed)?;
    let mut records = Vec::new();
    let mut undecodable = None;
    {
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.exits, |bytes: &[u8]| {
                match record::decode(bytes) {
                    Ok(record) => records.push(record),
                    Err(error) => undecodable = Some(error),
                }
                0
            })
            .map_err(failed)?;
        let ring = builder.build().map_err(failed)?;
        let link = skel.progs.census_exit.attach().map_err(failed)?;
        attached();
        let end = Instant::now() + window;
        loop {
            let now = Instant::now();
            if now >= end || stop() {
                break;
            }
            ring.poll((end - now).min(Duration::from_millis(100)))
                .map_err(failed)?;
        }
        drop(link);
        ring.consume().map_err(failed)?;
    }
    if let Some(error) = undecodable {
        return Err(HostError::Failed(error.to_string()));
    }
    let counters = skel
        .maps
        .bss_data
        .as_deref_mut()
        .ok_or_else(|| HostError::Failed("the skeleton has no counters".to_owned()))?;
    Ok(Exits {
        records,
        seen: counters.exits_seen,
        dropped: counters.exits_dropped,
    })
}

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

use dks_core::{Counter, Policy};
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
    /// A stack fault that could not be served (the thread is stopped).
    #[serde(borrow)]
    StackFault(StackFault<'a>),
    /// The kernel-wide stack counters (`vmstat`-like), on request and at the end of a run.
    #[serde(borrow)]
    Vmstat(Vmstat<'a>),
    /// One policy's share of the stack memory and events, printed with every `Vmstat`.
    PolicyStat(PolicyStat),
    /// A measured cost, in guest instructions (under `-icount shift=0`).
    #[serde(borrow)]
    Cost(Cost<'a>),
    /// One point of the stack-memory-over-time series of a workload.
    Sample(Sample),
    /// How many threads of a policy ended with a given number of stack pages populated.
    ThreadPages(ThreadPages),
    /// Non-maskable interrupts and machine checks handled so far, printed with every
    /// [`Record::Vmstat`].
    TrapStat(TrapStat),
    /// One machine-check error read from an MCA bank (by the #MC handler or by polling).
    #[serde(borrow)]
    MachineCheck(MachineCheck<'a>),
    /// Threads of a workload group that could not be created; the boot then fails.
    #[serde(borrow)]
    SpawnFailure(SpawnFailure<'a>),
    /// A thread that admission has refused for longer than the kernel's reporting limit.
    #[serde(borrow)]
    AdmissionStall(AdmissionStall<'a>),
    /// What one policy's workload threads did and whether their stacks kept their data.
    WorkloadStat(WorkloadStat),
    /// What one policy's threads cost beyond their stack pages, at the end of a workload.
    ThreadOverhead(ThreadOverhead),
    /// Memory before a workload's threads were created and after they all exited.
    MemoryBalance(MemoryBalance),
    /// The last record of a boot: the kernel is about to exit QEMU.
    #[serde(borrow)]
    Exit(Exit<'a>),
}

impl Record<'_> {
    /// Returns the record's tag as its JSON carries it (`boot`, `config_error`, ...), e.g. to
    /// name a record that could not be printed.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Boot(_) => "boot",
            Record::ConfigError(_) => "config_error",
            Record::TestPlan(_) => "test_plan",
            Record::TestBegin(_) => "test_begin",
            Record::TestEnd(_) => "test_end",
            Record::Exception(_) => "exception",
            Record::GuardHit(_) => "guard_hit",
            Record::Panic(_) => "panic",
            Record::Log(_) => "log",
            Record::StackFault(_) => "stack_fault",
            Record::Vmstat(_) => "vmstat",
            Record::PolicyStat(_) => "policy_stat",
            Record::Cost(_) => "cost",
            Record::Sample(_) => "sample",
            Record::ThreadPages(_) => "thread_pages",
            Record::TrapStat(_) => "trap_stat",
            Record::MachineCheck(_) => "machine_check",
            Record::SpawnFailure(_) => "spawn_failure",
            Record::AdmissionStall(_) => "admission_stall",
            Record::WorkloadStat(_) => "workload_stat",
            Record::ThreadOverhead(_) => "thread_overhead",
            Record::MemoryBalance(_) => "memory_balance",
            Record::Exit(_) => "exit",
        }
    }
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

/// A stack fault that could not be served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFault<'a> {
    /// The CPU it happened on.
    pub cpu: u32,
    /// The thread whose stack it was.
    #[serde(borrow)]
    pub task: Cow<'a, str>,
    /// The thread's stack policy.
    #[serde(with = "crate::policy_or_none")]
    pub policy: Option<Policy>,
    /// The faulting address.
    pub address: u64,
    /// Bytes from the stack top to the faulting address.
    pub depth_bytes: u64,
    /// Why it could not be served (e.g. `magazine_empty`).
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
}

/// Writes [`Vmstat`] with a field for every counter of `dks_core::counter_list!`, in its
/// order, between `reason` and the kernel's other figures.
macro_rules! vmstat_record {
    ($($(#[$doc:meta])* $variant:ident $name:ident: $ty:ty,)*) => {
        /// The kernel-wide stack counters, with Linux's names where they exist.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Vmstat<'a> {
            /// Why it was printed (`request`, `end`, ...).
            #[serde(borrow)]
            pub reason: Cow<'a, str>,
            $($(#[$doc])* pub $name: $ty,)*
            /// Free frames.
            pub frames_free: u64,
            /// Frames managed.
            pub frames_total: u64,
            /// Frames in the per-CPU magazines.
            pub magazine_frames: u64,
            /// Stacks kept in the per-CPU stack caches, and their populated pages.
            pub cached_stacks: u64,
            /// Populated pages of cached stacks.
            pub cached_pages: u64,
            /// Frames of released stacks waiting for a TLB purge.
            pub quarantined_frames: u64,
            /// Stack slots holding a live, cached or quarantined stack.
            pub slots_in_use: u64,
        }

        impl Vmstat<'_> {
            /// Returns the value of `counter` (event counts saturate at `i64::MAX`).
            pub fn counter(&self, counter: Counter) -> i64 {
                match counter {
                    $(Counter::$variant => i64::try_from(self.$name).unwrap_or(i64::MAX),)*
                }
            }

            /// Sets `counter` to `value` (a negative event count reads as 0).
            pub fn set_counter(&mut self, counter: Counter, value: i64) {
                match counter {
                    $(Counter::$variant => {
                        self.$name = <$ty>::try_from(value).unwrap_or_default();
                    })*
                }
            }
        }
    };
}

dks_core::counter_list!(vmstat_record);

/// One policy's stack memory and events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStat {
    /// The policy (`static`, `fault`, `guaranteed`, `reclaim`, `switch`, `pack`).
    pub policy: Policy,
    /// Threads created with it.
    pub threads_created: u64,
    /// Threads alive now.
    pub threads_live: u64,
    /// Stack memory of its threads now, KiB: populated pages, and under `pack` the pack
    /// buffers rounded up to whole KiB (`nr_kernel_stack_kb` of the policy's account).
    pub stack_kib_now: u64,
    /// The most its populated pages ever held, KiB, tracked at every change; under `pack`,
    /// whose buffers have no peak of their own in the sum, at least `stack_kib_now`.
    pub stack_kib_peak: u64,
    /// Stack faults served for its threads.
    pub faults: u64,
    /// Stack faults of its threads that could not be served.
    pub fatal: u64,
    /// Magazine refills made to run its threads (at their switch-in or admission).
    pub refills: u64,
    /// Of those, refills that fell short (an atomic allocation failed).
    pub refill_failures: u64,
    /// Guard-page hits of its threads.
    pub guard_hits: u64,
    /// Times one of its threads was refused by admission.
    pub admit_waits: u64,
    /// Total time its threads waited for admission, microseconds.
    pub admit_wait_us_total: u64,
    /// Longest single wait for admission, microseconds.
    pub admit_wait_us_max: u64,
    /// Threads stopped by a fatal stack fault or a guard hit.
    pub killed: u64,
    /// Fatal stack faults with interrupts off (in a workload's interrupts-off section): each
    /// would have stopped a real kernel. The testbed counts it and stops only the thread, so
    /// the other policies of the boot keep running. 0 when absent.
    #[serde(default)]
    pub kernel_stops: u64,
    /// Pages given back before exit.
    pub reclaimed: u64,
    /// Of those, pages dead below a sleeping thread's saved stack pointer, trimmed (under
    /// memory pressure or after a long sleep; `reclaim`). 0 when absent.
    #[serde(default)]
    pub reclaimed_dead: u64,
    /// Of those, pages given back at switch-out because their Accessed bit was clear
    /// (`switch`): never cached by any TLB, so no flush. 0 when absent.
    #[serde(default)]
    pub reclaimed_accessed_clear: u64,
    /// TLB shootdowns not needed: switch-outs that gave pages back with no flush. 0 when
    /// absent.
    #[serde(default)]
    pub flushes_avoided: u64,
    /// Stack faults of threads whose policy maps every page while they run (`switch`): each
    /// is a bug. 0 when absent.
    #[serde(default)]
    pub switch_faults: u64,
    /// The most stack memory running threads held at once beyond what they held switched out
    /// (pages `switch`'s admissions mapped for the running threads), KiB; given for `switch`,
    /// absent for the others (nothing is mapped at their switch-in).
    #[serde(default)]
    pub running_extra_kib_peak: Option<u64>,
    /// Mean high-water mark of its exited threads: the deepest byte each one wrote, found as
    /// Linux's `stack_not_used()` finds it (first non-zero word from the far end; unpopulated
    /// pages count as unused), bytes.
    pub high_water_mean_bytes: u64,
    /// The deepest high-water mark of its exited threads, bytes.
    pub high_water_max_bytes: u64,
    /// Stacks of sleeping threads packed into a buffer (`dks_packs`; `pack`, docs/pack.md).
    /// 0 when absent (a kernel without `pack`).
    #[serde(default)]
    pub packs: u64,
    /// Packed stacks restored into a page (`dks_restores`), with or without a checksum
    /// mismatch. 0 when absent.
    #[serde(default)]
    pub restores: u64,
    /// Restores refused for want of a page, on the wake path or before the switch-in
    /// (`dks_restore_wait`); the thread waited and was restored later. 0 when absent.
    #[serde(default)]
    pub restore_waits: u64,
    /// Restores whose bytes did not match the pack's checksum (`dks_pack_csum_fail`): each is
    /// a bug. 0 when absent.
    #[serde(default)]
    pub pack_checksum_failures: u64,
    /// Faults on a stack packed in guard mode (`dks_pack_guard_catches`): each is another
    /// thread touching a sleeping thread's stack, a bug in the toucher. 0 when absent.
    #[serde(default)]
    pub pack_guard_catches: u64,
    /// Its stacks packed when the record was printed (`nr_packed_threads`). 0 when absent.
    #[serde(default)]
    pub packed_threads: u64,
    /// The pack buffers of those stacks then, KiB, rounded up (`nr_packed_bytes`); counted in
    /// `stack_kib_now` too. 0 when absent.
    #[serde(default)]
    pub packed_kib: u64,
}

/// A measured cost. Under `-icount shift=0` the TSC counts guest instructions, so these are
/// instruction counts; otherwise TSC ticks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost<'a> {
    /// What was measured (`stack_fault`, `bounce_fault`, `direct_fault`, `switch`, `create`).
    #[serde(borrow)]
    pub what: Cow<'a, str>,
    /// The policy it was measured under (empty when it does not apply).
    #[serde(with = "crate::policy_or_none")]
    pub policy: Option<Policy>,
    /// Operations measured.
    pub samples: u64,
    /// Sum over all operations.
    pub total: u64,
    /// The cheapest operation.
    pub min: u64,
    /// The median operation (the lower middle one of an even count).
    pub median: u64,
    /// The dearest operation.
    pub max: u64,
    /// Whether the TSC counted instructions (`-icount`) rather than time.
    pub instructions: bool,
    /// Operations whose cost fell in `[2^i, 2^(i+1))` (the last bucket takes everything
    /// above).
    pub log2_histogram: [u64; 24],
}

/// Stack memory of one policy at one moment of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the workload started.
    pub t_ms: u64,
    /// The policy.
    pub policy: Policy,
    /// Stack memory of its threads, KiB: populated pages, and under `pack` the pack buffers
    /// rounded up to whole KiB.
    pub stack_kib: u64,
    /// The live-data bound of its threads: the pages their live stacks touch now, KiB.
    pub live_kib: u64,
    /// Its threads alive now.
    pub threads: u64,
}

/// A bucket of the "pages held per thread" distribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadPages {
    /// The policy.
    pub policy: Policy,
    /// Populated pages at the thread's peak.
    pub pages: u32,
    /// Threads that peaked at that many pages.
    pub threads: u64,
}

/// Counts of the traps that can arrive at any moment (not maskable by clearing IF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrapStat {
    /// NMIs handled, all CPUs.
    pub nmis: u64,
    /// Of those, NMIs that interrupted another trap handler (an IST frame of #PF, #MC, an
    /// interrupt, ...) on their CPU.
    pub nmis_nested: u64,
    /// #MC exceptions taken, all CPUs.
    pub machine_check_exceptions: u64,
    /// Machine-check errors reported with severity `corrected`.
    pub mce_corrected: u64,
    /// Machine-check errors reported with severity `recoverable` (the run continued).
    pub mce_recoverable: u64,
}

/// A machine-check error from one MCA bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineCheck<'a> {
    /// The CPU whose bank held it.
    pub cpu: u32,
    /// The bank number.
    pub bank: u32,
    /// `IA32_MCi_STATUS`.
    pub status: u64,
    /// `IA32_MCi_ADDR` when the status says it is valid, else 0.
    pub address: u64,
    /// `IA32_MCi_MISC` when the status says it is valid, else 0.
    pub misc: u64,
    /// `IA32_MCG_STATUS` at the time (0 for an error found by polling).
    pub mcg_status: u64,
    /// `corrected`, `recoverable` (the interrupted code can resume) or `fatal` (the kernel
    /// stops after this record).
    #[serde(borrow)]
    pub severity: Cow<'a, str>,
    /// How it was found: `exception` (#MC) or `poll`.
    #[serde(borrow)]
    pub found_by: Cow<'a, str>,
}

/// Threads of one workload group that could not be created, by cause. A workload whose plan
/// could not be carried out in full fails rather than report figures for fewer threads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnFailure<'a> {
    /// The group, as the plan names it.
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    /// Its stack policy.
    pub policy: Policy,
    /// Threads of the group that were created (first ones and replacements).
    pub created: u64,
    /// Creations refused because every stack slot was in use.
    pub no_slot: u64,
    /// Creations refused for want of memory for the stack's first pages.
    pub out_of_memory: u64,
    /// Creations refused by the group's stack-memory limit.
    pub group_limit: u64,
    /// Threads the group asks for at once (its plan's `threads`); 0 from a kernel that did not
    /// say.
    #[serde(default)]
    pub planned: u64,
    /// First threads of the group never tried: once memory has run out for a group's first
    /// threads, the kernel stops creating them (each further try would fail the same way), so
    /// `created` is how far the group got.
    #[serde(default)]
    pub not_attempted: u64,
    /// Of `out_of_memory`, creations refused because the kernel heap could not grow for the
    /// thread's structures (the rest: no frames for the stack's first pages).
    #[serde(default)]
    pub out_of_heap: u64,
}

/// What one policy's threads cost beyond their stack pages, at the end of a workload's
/// duration (with the `end` counters): the kernel structures every thread needs, so that the
/// memory a policy saves is measured against what a thread costs in all. Sizes in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadOverhead {
    /// The policy.
    pub policy: Policy,
    /// Its threads alive then.
    pub threads: u64,
    /// Their stack memory, bytes: populated stack pages, and under `pack` the pack buffers
    /// of their packed stacks (class sizes).
    pub stack_bytes: u64,
    /// Their share of the kernel heap (thread structures, the workload's per-thread records,
    /// allocator overhead): the heap in use beyond what it was when the workload started,
    /// less FPU save areas and pack buffers (counted in `stack_bytes`), divided evenly over
    /// every workload thread alive.
    pub heap_bytes: u64,
    /// Their FPU/SSE save areas (one per thread that was ever preempted), bytes.
    pub fpu_bytes: u64,
    /// FPU/SSE save areas among them.
    pub fpu_areas: u64,
    /// The stack-slot metadata of their slots.
    pub slot_bytes: u64,
    /// Their share of the stack region's page tables (tables of slots in use, by slot).
    pub page_table_bytes: u64,
}

/// A thread that admission (`guaranteed`: a CPU may run a thread only when its magazine covers
/// the thread's need) has kept waiting for longer than the kernel's reporting limit: its stack
/// could not be covered because atomic allocations keep failing. Printed once per wait when the
/// limit is passed, and again for every thread still waiting when a workload ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionStall<'a> {
    /// The CPU that refused it last.
    pub cpu: u32,
    /// The thread's name.
    #[serde(borrow)]
    pub task: Cow<'a, str>,
    /// Its stack policy.
    pub policy: Policy,
    /// Pages its stack may still need (its maximum less what it has populated).
    pub need_pages: u32,
    /// Pages in that CPU's magazine when it was refused.
    pub magazine_pages: u32,
    /// How long it has waited so far, milliseconds.
    pub waited_ms: u64,
    /// `waiting` (the limit was passed, the thread may still be admitted) or `at_end` (a
    /// workload ended with the thread never admitted: the boot then fails).
    #[serde(borrow)]
    pub when: Cow<'a, str>,
}

/// The work one policy's threads did in a workload, and the check of their stacks' data: every
/// frame of a path fills its locals with a pattern and checks them on the way back up, after
/// whatever happened below it (stack faults, preemptions, migrations, bounces, NMIs, machine
/// checks). Printed at the end of a workload, per policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStat {
    /// The policy.
    pub policy: Policy,
    /// Threads whose body ran to its end (not stopped).
    pub threads_finished: u64,
    /// Of those, threads that completed no path at all (they first ran after the run was
    /// told to stop): a run in which every thread ran has 0.
    #[serde(default)]
    pub threads_idle: u64,
    /// Paths completed.
    pub paths: u64,
    /// Frames checked on the way back up.
    pub frames_checked: u64,
    /// Frames whose locals had changed while they were live: corrupted stack data.
    pub frames_corrupted: u64,
    /// Wrapping sum of every checked frame's words: the same in every run of a plan whose
    /// threads run a fixed number of paths (short-lived, not replaced), whatever the timing.
    pub checksum: u64,
}

/// Memory before a workload created its threads and after every one of them exited and the
/// stack caches and the TLB quarantine were emptied: what a run did not give back. Frames count
/// as available when free or in a per-CPU magazine; frames the heap took to grow stay the
/// heap's (`heap_grown_frames`) and are not a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBalance {
    /// Frames available before.
    pub frames_before: u64,
    /// Frames available after.
    pub frames_after: u64,
    /// Frames the heap grew by in between.
    pub heap_grown_frames: u64,
    /// Stack slots in use before.
    pub slots_before: u64,
    /// Stack slots in use after.
    pub slots_after: u64,
    /// Populated stack memory before, KiB.
    pub stack_kib_before: u64,
    /// Populated stack memory after, KiB.
    pub stack_kib_after: u64,
    /// Heap bytes in use before.
    pub heap_bytes_before: u64,
    /// Heap bytes in use after.
    pub heap_bytes_after: u64,
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

//! What a thread costs beyond its stack pages, and what a workload gives back.
//!
//! A policy that saves stack pages saves what a user gets only if the rest of a thread is
//! small beside it, so a workload reports, per policy, at the end of its duration
//! ([`emit_thread_overhead`], `ThreadOverhead` records):
//! - its stack memory: populated pages, and the pack buffers of its packed stacks (`pack`);
//! - the heap its threads take: the heap in use beyond what it was when the workload started,
//!   less FPU save areas and pack buffers (heap blocks, counted with the stack above), divided
//!   evenly over the workload's live threads (thread structures,
//!   their names and bodies, the workload's record of each, queue and sleeper entries, the
//!   allocator's own overhead: everything a thread brings, measured rather than added up);
//! - FPU/SSE save areas, counted exactly per policy: one per thread that was ever preempted
//!   (made at the first preemption, see `sched::Thread::fpu_area`);
//! - stack-slot metadata and the stack region's page tables: the whole region's, divided over
//!   the workload's live threads (the region is sized for the plan, so its cost is theirs).
//!
//! [`Snapshot`]s taken before a workload creates its threads and after they all exited give
//! the `MemoryBalance` record: whether every frame, slot and stack page came back.

use core::sync::atomic::{AtomicI64, Ordering};

use dks_core::{Account, Counter};
use dks_protocol::record::{MemoryBalance, Record, ThreadOverhead};

use crate::hw::layout::PAGE_BYTES;
use crate::hw::trap_entry::FpuArea;
use crate::mm::{frames, heap};
use crate::report;
use crate::stacks::{self, Policy, ThreadStack};

/// Heap bytes of one FPU/SSE save area with its reference counts.
pub const FPU_AREA_BYTES: u64 = core::mem::size_of::<FpuArea>() as u64 + 16;

/// FPU save areas alive, per account (`dks_core::Account`: the policies, then the kernel's
/// own threads).
static FPU_AREAS: [AtomicI64; Account::COUNT] = [const { AtomicI64::new(0) }; Account::COUNT];

/// The account a thread's costs go to: its policy's, or the kernel's own.
pub fn account_of(stack: &ThreadStack) -> Account {
    stacks::account(stack.slot())
}

/// Counts `delta` FPU save areas made (1) or freed (-1) for `account`.
pub fn note_fpu_area(account: Account, delta: i64) {
    FPU_AREAS[account.index()].fetch_add(delta, Ordering::Relaxed);
}

fn fpu_areas(account: Account) -> u64 {
    FPU_AREAS[account.index()].load(Ordering::Relaxed).max(0) as u64
}

/// Memory as a workload's start or end sees it.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// Frames free or in a magazine.
    frames_available: u64,
    heap_grown: u64,
    heap_used: u64,
    slots_in_use: u64,
    stack_kib: u64,
    /// FPU save areas of the policies' threads (not the kernel's own).
    fpu_areas: u64,
}

impl Snapshot {
    /// Reads memory now.
    pub fn take() -> Snapshot {
        let stacks = stacks::stats();
        Snapshot {
            frames_available: frames::stats().free + stacks.magazine_frames,
            heap_grown: heap::grown_bytes(),
            heap_used: heap::used_bytes(),
            slots_in_use: u64::from(stacks.slots_in_use),
            stack_kib: stacks.counters.get(Counter::NrKernelStackKb).max(0) as u64,
            fpu_areas: Policy::ALL
                .map(|p| fpu_areas(Account::Policy(p)))
                .iter()
                .sum(),
        }
    }
}

/// Prints one `ThreadOverhead` record per policy of `policies` (see the module docs), with
/// `start` the snapshot taken before the workload created its threads.
pub fn emit_thread_overhead(start: &Snapshot, policies: impl Iterator<Item = Policy> + Clone) {
    let now = Snapshot::take();
    let live = |policy: Policy| stacks::policy_totals(policy).threads_live();
    let all_threads: u64 = policies.clone().map(live).sum();
    if all_threads == 0 {
        return;
    }
    let fpu_growth = now.fpu_areas.saturating_sub(start.fpu_areas) * FPU_AREA_BYTES;
    // Pack buffers come from the kernel heap; they are stack memory, counted per policy below.
    let packed_bytes =
        |policy: Policy| stacks::policy_totals(policy).packed_bytes_now.max(0) as u64;
    let all_packed: u64 = policies.clone().map(packed_bytes).sum();
    let heap_per_thread = now
        .heap_used
        .saturating_sub(start.heap_used)
        .saturating_sub(fpu_growth)
        .saturating_sub(all_packed)
        / all_threads;
    let share = |total: u64, threads: u64| total * threads / all_threads;
    for policy in policies {
        let threads = live(policy);
        let totals = stacks::policy_totals(policy);
        let areas = fpu_areas(Account::Policy(policy));
        report::emit(&Record::ThreadOverhead(ThreadOverhead {
            policy,
            threads,
            stack_bytes: totals.pages_now.max(0) as u64 * PAGE_BYTES + packed_bytes(policy),
            heap_bytes: heap_per_thread * threads,
            fpu_bytes: areas * FPU_AREA_BYTES,
            fpu_areas: areas,
            slot_bytes: share(stacks::slot_metadata_bytes(), threads),
            page_table_bytes: share(stacks::page_table_bytes(), threads),
        }));
    }
}

/// Prints the `MemoryBalance` of a workload that started at `before` and whose threads have
/// all exited now (caches and quarantine emptied by the caller).
pub fn emit_balance(before: &Snapshot) {
    let after = Snapshot::take();
    report::emit(&Record::MemoryBalance(MemoryBalance {
        frames_before: before.frames_available,
        frames_after: after.frames_available,
        heap_grown_frames: (after.heap_grown - before.heap_grown) / PAGE_BYTES,
        slots_before: before.slots_in_use,
        slots_after: after.slots_in_use,
        stack_kib_before: before.stack_kib,
        stack_kib_after: after.stack_kib,
        heap_bytes_before: before.heap_used,
        heap_bytes_after: after.heap_used,
    }));
}

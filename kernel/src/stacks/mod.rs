//! Thread stacks in the stack region, through `dks-core`.
//!
//! The mechanism's state lives here, split by who may touch it (see `dks_core`'s crate docs):
//! - per slot, the live [`Stack`] behind a lock that only these ever take: the page-fault
//!   handler of the CPU that runs the thread (with `try_lock`: it never waits), the scheduler
//!   of a CPU while the thread is off every CPU, the creator before the thread first runs, and
//!   the releaser after it exited. So the fault handler always finds it free; if it ever did
//!   not, that is reported as a fatal fault, not waited for. Readers on other CPUs use the
//!   slot's atomic mirrors (`populated`, `faults`), never the lock;
//! - per CPU, the magazine: its scheduler loop (on a static stack) and its fault handler,
//!   again with `try_lock` in the handler; nothing on a dynamic stack ever holds it;
//! - per CPU and policy, the stack cache, touched by creation and release on that CPU;
//! - per CPU, dks-core's counters, and dks-core's ledger (atomics, per account: a policy's
//!   workload threads or the kernel's own), which the mechanism counts into and reports sum
//!   on read ([`totals`]); the kernel counts nothing of its own;
//! - the groups' charges (atomics).
//!
//! Slots not in use wait in `FREE_SLOTS` (or in the [`quarantine`] until a TLB purge). A
//! slot's entries are all empty while it is free, and its page tables exist from boot, so the
//! fault path never allocates a table.

mod fault;
pub mod pack;
mod platform;
pub mod quarantine;
mod switch;
pub mod trim;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

pub use dks_core::Policy;
use dks_core::stack::{self, CreateFailure, Released, StackSource};
use dks_core::trim_claim::STATE_BITS;
use dks_core::{
    Account, AccountSnapshot, CpuCounters, CpuId, GroupCharge, GroupId, LayoutError, Ledger,
    Magazine, SlotIndex, Stack, StackCache, StackLayout, StackSpec, Tally, Totals, TrimClaim,
    VirtAddr,
};
use spin::Once;

pub use self::fault::{FaultResult, handle_fault, prepare_bounce};
use self::platform::X86Platform;
pub use self::switch::{
    Admit, admission_shortfall, admit, drain_magazine_here, refill_magazine_here,
    running_extra_peak_pages, switched_out, trim_claims_seen,
};
use crate::hw::cpu_ops::{self, MAX_CPUS};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::sync::IrqMutex;
use crate::hw::{paging, stack_pages};

/// Groups for the memory-cgroup-like charge.
pub const MAX_GROUPS: usize = 8;

/// The group of the kernel's own threads (workers, stack reclaim, the main thread): their
/// stacks are accounted apart from every policy's.
pub const SYSTEM_GROUP: GroupId = GroupId::new(MAX_GROUPS as u16 - 1);

/// One stack slot.
struct Slot {
    /// The live stack (see the module docs for who may lock it).
    stack: IrqMutex<Option<Stack>>,
    /// Populated pages now, mirrored for readers on other CPUs.
    populated: AtomicU8,
    /// Stack faults served for the current stack of this slot, mirrored.
    faults: AtomicU32,
    /// The account of the current stack, mirrored (its index in `Account::ALL`).
    account: AtomicU8,
    /// The policy of the live stack, mirrored (its index in `Policy::ALL` in the low bits,
    /// [`POLICY_INDEX`], and above them, from [`SWITCH_OUT_SHIFT`], a bit per
    /// `SwitchOutReason` for which its switch-out needs the mechanism), or [`NO_STACK`]; in
    /// the same word, the trim claim (`dks_core::trim_claim`): whether a trim or the waking
    /// admission gets the switched-out stack. The scheduler decides from this one word
    /// whether a switch needs the mechanism at all (`switch::admit`, `switch::switched_out`):
    /// admission skips the locks while no trim touched the stack.
    policy: TrimClaim,
    /// Since when (uptime ms + 1) its thread sleeps with dead pages a trim may take; read
    /// only while the trim claim in [`Slot::policy`] says it is a candidate (see [`trim`]).
    asleep_since: AtomicU64,
    /// The TLB flush generation its trimmed pages wait for before the thread may run again;
    /// 0 when none ([`trim::TRIM_PENDING`] while the round's flush is not yet requested).
    flush_epoch: AtomicU64,
    /// A wake-path restore of its packed stack found bytes that do not match the pack's
    /// checksum: admission must stop the thread, not run it ([`pack`]). In what was padding.
    corrupt: AtomicBool,
    /// A round trimmed the dead pages of this sleep already (a `pack` stack waiting for its
    /// pack): later rounds leave it alone until its pack is due. Cleared by the switch-out
    /// that makes the slot a candidate. In what was padding.
    dead_trimmed: AtomicBool,
    /// Its `pack` thread was woken since its switch-out, its stack not packed: it waits for
    /// admission (in a run queue, maybe long), trimmed of its dead pages like a `reclaim`
    /// stack but never packed (`pack::restore_on_wake`). Set under the stack's lock, cleared by
    /// the switch-out that makes the slot a candidate. In what was padding.
    woken: AtomicBool,
}

/// [`Slot::policy`] of a slot without a live stack: no policy, and every switch-out bit set
/// (the locked path finds no stack and does nothing).
const NO_STACK: u8 = POLICY_INDEX | (0b11 << SWITCH_OUT_SHIFT);

/// The bits of [`Slot::policy`] that hold the policy's index.
const POLICY_INDEX: u8 = 0x0f;

/// Where the switch-out bits start in [`Slot::policy`]: bit `SWITCH_OUT_SHIFT + reason` is set
/// when a switch-out for that reason needs the mechanism
/// (`dks_core::switch::switch_out_needs_mechanism`).
const SWITCH_OUT_SHIFT: u8 = 6;

const _: () = assert!(
    (POLICY_INDEX | (0b11 << SWITCH_OUT_SHIFT)) & STATE_BITS == 0,
    "the policy mirror leaves the trim claim's bits alone"
);

/// [`Slot::policy`] for a live stack of `policy`.
const fn policy_mirror(policy: Policy) -> u8 {
    use dks_core::switch::{SwitchOutReason, switch_out_needs_mechanism};
    let mut mirror = policy.index() as u8;
    assert!(
        mirror & !POLICY_INDEX == 0,
        "policy indexes fit POLICY_INDEX"
    );
    let reasons = [SwitchOutReason::Preempted, SwitchOutReason::Asleep];
    let mut i = 0;
    while i < reasons.len() {
        if switch_out_needs_mechanism(policy, reasons[i]) {
            mirror |= 1 << (SWITCH_OUT_SHIFT + reasons[i] as u8);
        }
        i += 1;
    }
    mirror
}

impl Slot {
    /// Copies what readers on other CPUs (and the fault path's accounting) may read without
    /// the lock from `stack`, the slot's live stack.
    fn mirror(&self, stack: &Stack) {
        self.mirror_pages(stack);
        self.account
            .store(stack.account().index() as u8, Ordering::Relaxed);
    }

    /// Copies what a stack fault changes (the populated pages and the fault count): a stack's
    /// account and policy never change while it lives.
    fn mirror_pages(&self, stack: &Stack) {
        self.populated
            .store(stack.populated_pages(), Ordering::Relaxed);
        self.faults.store(stack.faults(), Ordering::Relaxed);
    }

    /// Whether the switch-out of the slot's thread for `reason` needs the mechanism (always
    /// without a live stack), from the mirror.
    #[inline]
    fn switch_out_needs_mechanism(&self, reason: dks_core::switch::SwitchOutReason) -> bool {
        self.policy.load() & (1 << (SWITCH_OUT_SHIFT + reason as u8)) != 0
    }

    /// The policy of the slot's live stack, from the mirror; `None` without one.
    fn policy(&self) -> Option<Policy> {
        Policy::ALL
            .get(usize::from(self.policy.load() & POLICY_INDEX))
            .copied()
    }

    /// The policy in a word loaded from [`Slot::policy`] if its trim claim is `Idle`; `None`
    /// without a live stack or with a claim that is not `Idle` (the trim claim's bits are
    /// decoded with the index: a claimed word is no index of a policy, so the scheduler's one
    /// test for a live stack also sends a claimed slot to the locked path, at no cost to the
    /// others).
    #[inline]
    fn unclaimed_policy_of(word: u8) -> Option<Policy> {
        Policy::ALL
            .get(usize::from(word & (POLICY_INDEX | STATE_BITS)))
            .copied()
    }
}

struct Region {
    layout: StackLayout,
    slots: Vec<Slot>,
    /// A bit per slot (slot `i` is bit `i % 64` of word `i / 64`): set when the slot became a
    /// candidate of the trims, so that a round looks only at these (see [`trim`]).
    trim_hints: Vec<AtomicU64>,
    magazines: Vec<IrqMutex<Magazine>>,
}

static REGION: Once<Region> = Once::new();
static FREE_SLOTS: IrqMutex<Vec<u32>> = IrqMutex::new(Vec::new());
static CACHES: [[IrqMutex<StackCache>; Policy::COUNT]; MAX_CPUS] =
    [const { [const { IrqMutex::new(StackCache::new()) }; Policy::COUNT] }; MAX_CPUS];
static COUNTERS: [CpuCounters; MAX_CPUS] = [const { CpuCounters::new() }; MAX_CPUS];
static LEDGER: Ledger = Ledger::new();
static GROUPS: [GroupCharge; MAX_GROUPS] = [const { GroupCharge::new(None) }; MAX_GROUPS];

/// The policies this kernel implements: the one place that says so (the others exist in
/// `dks-core`, tested on the host). Benchmarks, workloads and tests take them from here.
pub const IMPLEMENTED: [Policy; 6] = [
    Policy::Static,
    Policy::Fault,
    Policy::Guaranteed,
    Policy::Reclaim,
    Policy::Switch,
    Policy::Pack,
];

/// Of [`IMPLEMENTED`], the policies that populate on demand.
pub const DYNAMIC: [Policy; 4] = {
    let mut dynamic = [Policy::Static; 4];
    let (mut i, mut n) = (0, 0);
    while i < IMPLEMENTED.len() {
        if IMPLEMENTED[i].grows_by_fault() {
            dynamic[n] = IMPLEMENTED[i];
            n += 1;
        }
        i += 1;
    }
    assert!(
        n == dynamic.len(),
        "DYNAMIC holds every implemented policy that grows by fault"
    );
    dynamic
};

fn region() -> &'static Region {
    REGION.get().expect("stacks::init ran")
}

/// Where the mechanism counts on CPU `cpu`.
fn tally(cpu: usize) -> Tally<'static> {
    Tally::new(&COUNTERS[cpu], &LEDGER)
}

/// Sets up the stack region: `max_stack_bytes` per stack (16, 32 or 64 KiB), `slots` stacks.
pub fn init(max_stack_bytes: u64, slots: u32) -> Result<(), LayoutError> {
    let layout = StackLayout::try_new(
        VirtAddr::new(crate::hw::layout::STACK_REGION_BASE),
        max_stack_bytes,
        slots,
    )?;
    platform::prepare_region(&layout);
    let cells = (0..slots)
        .map(|_| Slot {
            stack: IrqMutex::new(None),
            populated: AtomicU8::new(0),
            faults: AtomicU32::new(0),
            policy: TrimClaim::new(NO_STACK),
            account: AtomicU8::new(0),
            asleep_since: AtomicU64::new(0),
            flush_epoch: AtomicU64::new(0),
            corrupt: AtomicBool::new(false),
            dead_trimmed: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        })
        .collect();
    let magazines = (0..MAX_CPUS as u32)
        .map(|cpu| IrqMutex::new(Magazine::new(CpuId::new(cpu), &layout)))
        .collect();
    *FREE_SLOTS.lock() = (0..slots).rev().collect();
    let trim_hints = (0..slots.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
    REGION.call_once(|| Region {
        layout,
        slots: cells,
        trim_hints,
        magazines,
    });
    Ok(())
}

/// The layout of every stack.
pub fn layout() -> &'static StackLayout {
    &region().layout
}

/// A thread's stack, as its thread sees it: its slot and policy (8 bytes in every thread; the
/// addresses follow from the slot).
#[derive(Debug)]
pub struct ThreadStack {
    slot: SlotIndex,
    policy: Policy,
}

impl ThreadStack {
    /// The initial stack pointer (just above the highest byte).
    pub fn top(&self) -> u64 {
        layout().stack_top(self.slot).as_u64()
    }

    /// The lowest byte of the stack (its guard page is below).
    pub fn bottom(&self) -> u64 {
        layout().stack_bottom(self.slot).as_u64()
    }

    /// Whether `address` lies in the stack. One look at the layout and one comparison: the
    /// scheduler asks at every switch, for the thread leaving and the one coming in.
    #[inline]
    pub fn contains(&self, address: u64) -> bool {
        let layout = layout();
        let bottom = layout.stack_bottom(self.slot).as_u64();
        address.wrapping_sub(bottom) < layout.max_stack().bytes()
    }

    /// The slot, also the owner id written into its unpopulated entries.
    pub fn slot(&self) -> SlotIndex {
        self.slot
    }

    /// The policy the stack was created with.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Pages populated now (read without locking; 0 once released).
    pub fn populated_pages(&self) -> u8 {
        region().slots[self.slot.as_usize()]
            .populated
            .load(Ordering::Relaxed)
    }

    /// The deepest byte written so far, as bytes below the stack top (see [`high_water`]).
    pub fn high_water_bytes(&self) -> u64 {
        high_water(self.slot)
    }

    /// Stack faults served for this stack so far.
    pub fn faults(&self) -> u32 {
        region().slots[self.slot.as_usize()]
            .faults
            .load(Ordering::Relaxed)
    }
}

/// Why a stack could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// Every slot is in use.
    NoSlot,
    /// Not enough memory for the initial pages.
    OutOfMemory,
    /// The group's limit does not allow the initial pages.
    GroupLimit,
}

/// Creates a stack with `policy`, charged to group 0: see [`create_in_group`].
pub fn create(policy: Policy) -> Result<ThreadStack, StackError> {
    create_in_group(policy, GroupId::new(0))
}

/// Creates a stack with `policy`, charged to `group`: a cached stack of this CPU and policy if
/// there is one (only its populated pages are zeroed), else a fresh slot. When slots or
/// memory run out, purges the quarantine once and tries again.
pub fn create_in_group(policy: Policy, group: GroupId) -> Result<ThreadStack, StackError> {
    match try_create(policy, group) {
        Err(StackError::NoSlot | StackError::OutOfMemory) if quarantine::held() != (0, 0) => {
            purge();
            try_create(policy, group)
        }
        result => result,
    }
}

fn try_create(policy: Policy, group: GroupId) -> Result<ThreadStack, StackError> {
    let region = region();
    // The cache of the CPU this runs on now; the thread may move on afterwards, so `cpu` only
    // says where the stack came from (a failed creation puts it back there) and which CPU's
    // counters (atomics, summed on read) count it.
    let (cpu, cached) = {
        let irq = cpu_ops::IrqGuard::new();
        let cpu = cpu_ops::current_id(&irq) as usize;
        (cpu, CACHES[cpu][policy.index()].lock().take())
    };
    let cache = &CACHES[cpu][policy.index()];
    let source = match cached {
        Some(cached) => StackSource::Cached(cached),
        None => StackSource::Fresh(take_slot()?),
    };
    let spec = if group == SYSTEM_GROUP {
        StackSpec::system(policy, group)
    } else {
        StackSpec::new(policy, group)
    };
    let result = stack::create(
        &mut X86Platform::live(),
        &region.layout,
        tally(cpu),
        &GROUPS[group.as_usize()],
        spec,
        source,
    );
    match result {
        Ok(created) => {
            let slot = created.stack.slot();
            for page in created.pages_to_zero.iter() {
                stack_pages::zero(region.layout.page_addr(slot, page).as_u64());
            }
            let cell = &region.slots[slot.as_usize()];
            cell.mirror(&created.stack);
            // A new stack: its policy, and no trim claim (no thread runs on it yet).
            cell.policy.reset(policy_mirror(created.stack.policy()));
            *cell.stack.lock() = Some(created.stack);
            Ok(ThreadStack { slot, policy })
        }
        Err(error) => {
            match error.source {
                StackSource::Fresh(slot) => FREE_SLOTS.lock().push(slot.as_u32()),
                StackSource::Cached(cached) => {
                    if let Err(cached) = cache.lock().put(cached) {
                        // The cache filled up meanwhile: free the stack instead.
                        let mut spare = StackCache::new();
                        spare.put(cached).expect("an empty cache has room");
                        free_cached(spare);
                    }
                }
            }
            Err(match error.failure {
                CreateFailure::GroupLimit(_) => StackError::GroupLimit,
                CreateFailure::OutOfMemory { .. } => StackError::OutOfMemory,
            })
        }
    }
}

fn take_slot() -> Result<SlotIndex, StackError> {
    let index = FREE_SLOTS.lock().pop().ok_or(StackError::NoSlot)?;
    Ok(layout().slot(index).expect("free slots are in the layout"))
}

/// Releases the stack of an exited thread: into this CPU's cache for its policy, or freed.
/// Must run on another stack than `stack` (the per-CPU workers do it).
pub fn release(stack: &ThreadStack) {
    let region = region();
    let cell = &region.slots[stack.slot.as_usize()];
    let Some(live) = cell.stack.lock().take() else {
        return;
    };
    let mark = high_water(stack.slot);
    cell.populated.store(0, Ordering::Relaxed);
    cell.policy.reset(NO_STACK);
    let group = live.group();
    let policy = live.policy();
    let exited = stack::exit(live);
    let mut platform = X86Platform::releasing();
    // Into the cache of the CPU this runs on, chosen and filled under one guard (the workers
    // that call this are pinned, but the rule holds for any caller).
    let released = {
        let irq = cpu_ops::IrqGuard::new();
        let cpu = cpu_ops::current_id(&irq) as usize;
        stack::release(
            &mut platform,
            &region.layout,
            &mut CACHES[cpu][policy.index()].lock(),
            tally(cpu),
            &GROUPS[group.as_usize()],
            exited,
            mark,
        )
    };
    if let Released::Freed(slot) = released {
        free_slot(slot.as_u32(), &platform);
    }
    quarantine::start_flush(false);
    let slots = quarantine::poll();
    FREE_SLOTS.lock().extend(slots);
}

/// The high-water mark of the stack in `slot`, as Linux's `stack_not_used()` computes it: the
/// distance from the stack top to the first non-zero word found scanning up from the far end.
/// Unpopulated pages count as unused. Every populated page starts zeroed (fresh frames come
/// zeroed, reused ones are zeroed), so a non-zero word was written by the stack's thread. Reads
/// go through the direct map, so the scan never faults; on a running thread's stack it is a
/// snapshot.
fn high_water(slot: SlotIndex) -> u64 {
    let layout = &region().layout;
    let top = layout.stack_top(slot).as_u64();
    let pages = layout.stack_pages();
    for index in (0..pages).rev() {
        let page = layout
            .page_addr(slot, dks_core::StackPage::new(index))
            .as_u64();
        let Some(phys) = paging::translate(page) else {
            continue;
        };
        if let Some(offset) = paging::first_nonzero_word(phys) {
            return top - (page + offset);
        }
    }
    0
}

/// Returns a slot to the free slots, or to the quarantine if its TLB entries may live on.
fn free_slot(slot: u32, platform: &X86Platform) {
    if platform.deferred() {
        quarantine::hold_slot(slot);
    } else {
        FREE_SLOTS.lock().push(slot);
    }
}

/// Purges the quarantine: flushes every TLB and waits, then its frames and slots are free
/// again.
pub fn purge() {
    let slots = quarantine::purge_now();
    FREE_SLOTS.lock().extend(slots);
}

/// Frees what the quarantine holds whose flush completed everywhere, without waiting.
pub fn poll_quarantine() {
    let slots = quarantine::poll();
    FREE_SLOTS.lock().extend(slots);
}

fn free_cached(mut cache: StackCache) {
    let mut platform = X86Platform::releasing();
    let freed = dks_core::cache::free_all(&mut platform, layout(), &mut cache);
    for slot in freed.into_iter().flatten() {
        free_slot(slot.as_u32(), &platform);
    }
}

/// Frees every cached stack on every CPU and purges the quarantine (memory pressure, or to
/// measure against a baseline). Returns how many cached stacks were freed.
pub fn drain_caches() -> usize {
    let mut freed = 0;
    for per_policy in &CACHES {
        for cache in per_policy {
            let taken = core::mem::take(&mut *cache.lock());
            freed += taken.len();
            free_cached(taken);
        }
    }
    purge();
    freed
}

/// Counts of the stack region, for tests and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackStats {
    /// Slots holding a live, cached or quarantined stack.
    pub slots_in_use: u32,
    /// Stacks in the per-CPU caches.
    pub cached_stacks: u32,
    /// Populated pages of cached stacks.
    pub cached_pages: u64,
    /// Frames and slots of released stacks waiting for a TLB purge.
    pub quarantined: (usize, usize),
    /// Frames in the per-CPU magazines.
    pub magazine_frames: u64,
    /// The counters of DESIGN §7, summed over CPUs, in all and per account.
    pub counters: Totals,
}

/// Reads the counts.
pub fn stats() -> StackStats {
    let region = region();
    let free = FREE_SLOTS.lock().len() as u32;
    let (mut cached_stacks, mut cached_pages) = (0, 0);
    for per_policy in &CACHES {
        for cache in per_policy {
            for cached in cache.lock().iter() {
                cached_stacks += 1;
                cached_pages += u64::from(cached.populated().len());
            }
        }
    }
    StackStats {
        slots_in_use: region.layout.slot_count() - free,
        cached_stacks,
        cached_pages,
        quarantined: quarantine::held(),
        magazine_frames: switch::magazine_frames(),
        counters: totals(),
    }
}

/// The counters of DESIGN §7, summed over CPUs, in all and per account.
pub fn totals() -> Totals {
    dks_core::counters::sum(COUNTERS.iter(), &LEDGER)
}

/// The figures of the workload threads of `policy` now, for tests. Only that account is
/// summed: a whole `Totals` is a few KiB, and tests call this deep in the test runner's stack.
pub fn policy_totals(policy: Policy) -> AccountSnapshot {
    dks_core::counters::sum_account(COUNTERS.iter(), &LEDGER, Account::Policy(policy))
}

/// The charge of group `group` (pages, limit).
pub fn group(group: GroupId) -> &'static GroupCharge {
    &GROUPS[group.as_usize()]
}

/// Notes that the thread of `slot` was stopped by a fatal stack fault or a guard hit.
pub fn note_killed(slot: SlotIndex) {
    LEDGER.note_stopped(account(slot));
}

/// Notes a fatal stack fault of `slot` with interrupts off that would have stopped the
/// kernel: a workload's interrupts-off section, given up so that the boot can go on (see
/// `workload` and `trap::stack_failure`).
pub fn note_kernel_stop(slot: SlotIndex) {
    LEDGER.note_kernel_stop(account(slot));
}

/// Notes that the thread of `slot` waited `ticks` (TSC) for admission.
pub fn note_admit_wait(slot: SlotIndex, ticks: u64) {
    LEDGER.note_admit_wait(account(slot), ticks);
}

/// Who the stack in `slot` is counted for (its policy, or the kernel's own threads), read
/// without the lock.
pub fn account(slot: SlotIndex) -> Account {
    let index = region().slots[slot.as_usize()]
        .account
        .load(Ordering::Relaxed);
    Account::ALL[usize::from(index)]
}

/// Whether the stack in `slot` belongs to one of the kernel's own threads (`SYSTEM_GROUP`).
/// Lock-free: for the fault path.
pub fn is_system(slot: SlotIndex) -> bool {
    account(slot) == Account::System
}

/// Every frame mapped in a live stack, with its slot: for the "no frame in two stacks" check.
pub fn mapped_frames() -> Vec<(u64, u32)> {
    let region = region();
    let mut frames = Vec::new();
    for index in 0..region.layout.slot_count() {
        let slot = region.layout.slot(index).expect("index below slot_count");
        for page in region.layout.all_pages().iter() {
            if let Some(phys) = paging::translate(region.layout.page_addr(slot, page).as_u64()) {
                frames.push((phys & !(PAGE_BYTES - 1), index));
            }
        }
    }
    frames
}

/// Bytes of per-slot metadata (the live stack, its mirrors) of the whole region.
pub fn slot_metadata_bytes() -> u64 {
    let region = region();
    (region.slots.capacity() * core::mem::size_of::<Slot>()) as u64
}

/// Bytes of the page tables that map the stack region (made at boot, see `platform`).
pub fn page_table_bytes() -> u64 {
    platform::region_table_bytes(layout())
}

const _: () = assert!(dks_core::layout::PAGE_SIZE_IN_BYTES == PAGE_BYTES);

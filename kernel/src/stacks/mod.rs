//! Thread stacks in the stack region, through `dks-core`.
//!
//! The mechanism's state lives here, split by who may touch it (see `dks_core`'s crate docs):
//! - per slot, the live [`Stack`] (`SLOTS`): its CPU's fault handler and scheduler while the
//!   thread runs, whoever creates or releases it otherwise;
//! - per CPU, the stack cache (`CACHES`), touched by creation and release on that CPU;
//! - per CPU, counters (atomics), summed on read;
//! - the groups' charges (atomics).
//!
//! The stack magazines (the fault path's state) arrive with the dynamic policies.
//!
//! Slots not in use wait in `FREE_SLOTS`. A slot's entries are all empty while it is free,
//! and its page tables exist from boot, so the fault path never allocates a table.

mod platform;
pub mod quarantine;

use alloc::vec::Vec;
pub use dks_core::Policy;
use dks_core::stack::{self, CreateFailure, Released, StackSource};
use dks_core::{
    CounterSnapshot, CpuCounters, GroupCharge, GroupId, LayoutError, SlotIndex, Stack, StackCache,
    StackLayout, StackSpec, VirtAddr,
};
use spin::Once;

use self::platform::X86Platform;
use crate::hw::cpu::{self, MAX_CPUS};
use crate::hw::paging;
use crate::layout::PAGE_BYTES;
use crate::sync::IrqMutex;

/// Groups for the memory-cgroup-like charge.
pub const MAX_GROUPS: usize = 8;

struct Region {
    layout: StackLayout,
    slots: Vec<IrqMutex<Option<Stack>>>,
}

static REGION: Once<Region> = Once::new();
static FREE_SLOTS: IrqMutex<Vec<u32>> = IrqMutex::new(Vec::new());
static CACHES: [IrqMutex<StackCache>; MAX_CPUS] =
    [const { IrqMutex::new(StackCache::new()) }; MAX_CPUS];
static COUNTERS: [CpuCounters; MAX_CPUS] = [const { CpuCounters::new() }; MAX_CPUS];
static GROUPS: [GroupCharge; MAX_GROUPS] = [const { GroupCharge::new(None) }; MAX_GROUPS];

fn region() -> &'static Region {
    REGION.get().expect("stacks::init ran")
}

/// Sets up the stack region: `max_stack_bytes` per stack (16, 32 or 64 KiB), `slots` stacks.
pub fn init(max_stack_bytes: u64, slots: u32) -> Result<(), LayoutError> {
    let layout = StackLayout::try_new(
        VirtAddr::new(crate::layout::STACK_REGION_BASE),
        max_stack_bytes,
        slots,
    )?;
    platform::prepare_region(&layout);
    let cells = (0..slots).map(|_| IrqMutex::new(None)).collect();
    *FREE_SLOTS.lock() = (0..slots).rev().collect();
    REGION.call_once(|| Region {
        layout,
        slots: cells,
    });
    Ok(())
}

/// The layout of every stack.
pub fn layout() -> &'static StackLayout {
    &region().layout
}

/// A thread's stack, as its thread sees it.
#[derive(Debug)]
pub struct ThreadStack {
    slot: SlotIndex,
    top: u64,
}

impl ThreadStack {
    /// The initial stack pointer (just above the highest byte).
    pub fn top(&self) -> u64 {
        self.top
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

/// Creates a stack with `policy`, charged to group 0: a cached stack of this CPU if there is
/// one (only its populated pages are zeroed), else a fresh slot.
pub fn create(policy: Policy) -> Result<ThreadStack, StackError> {
    create_in_group(policy, GroupId::new(0))
}

/// As [`create`], charged to `group`. When slots or memory run out, purges the quarantine
/// once and tries again.
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
    let cpu = cpu::current_id() as usize;
    let cached = CACHES[cpu].lock().take();
    let source = match cached {
        Some(cached) => StackSource::Cached(cached),
        None => StackSource::Fresh(take_slot()?),
    };
    let spec = StackSpec { policy, group };
    let result = stack::create(
        &mut X86Platform::live(),
        &region.layout,
        &COUNTERS[cpu],
        &GROUPS[group.as_usize()],
        spec,
        source,
    );
    match result {
        Ok(created) => {
            let slot = created.stack.slot();
            for page in created.pages_to_zero.iter() {
                paging::zero_mapped_page(region.layout.page_addr(slot, page).as_u64());
            }
            *region.slots[slot.as_usize()].lock() = Some(created.stack);
            Ok(ThreadStack {
                slot,
                top: region.layout.stack_top(slot).as_u64(),
            })
        }
        Err(error) => {
            match error.source {
                StackSource::Fresh(slot) => FREE_SLOTS.lock().push(slot.as_u32()),
                StackSource::Cached(cached) => {
                    if let Err(cached) = CACHES[cpu].lock().put(cached) {
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

/// Releases the stack of an exited thread: into this CPU's cache, or freed. Must run on
/// another stack than `stack` (the worker thread does it).
pub fn release(stack: &ThreadStack) {
    let region = region();
    let Some(live) = region.slots[stack.slot.as_usize()].lock().take() else {
        return;
    };
    let group = live.group();
    let cpu = cpu::current_id() as usize;
    let exited = stack::exit(live);
    let mut platform = X86Platform::releasing();
    let released = stack::release(
        &mut platform,
        &region.layout,
        &mut CACHES[cpu].lock(),
        &COUNTERS[cpu],
        &GROUPS[group.as_usize()],
        exited,
    );
    if let Released::Freed(slot) = released {
        free_slot(slot.as_u32(), &platform);
    }
    if quarantine::wants_purge() {
        purge();
    }
}

/// Returns a slot to the free slots, or to the quarantine if its TLB entries may live on.
fn free_slot(slot: u32, platform: &X86Platform) {
    if platform.deferred() {
        quarantine::hold_slot(slot);
    } else {
        FREE_SLOTS.lock().push(slot);
    }
}

/// Purges the quarantine: one shootdown, then its frames and slots are free again.
pub fn purge() {
    let slots = quarantine::purge();
    FREE_SLOTS.lock().extend(slots);
}

fn free_cached(mut cache: StackCache) {
    let mut platform = X86Platform::releasing();
    let freed = dks_core::cache::free_all(&mut platform, layout(), &mut cache);
    for slot in freed.into_iter().flatten() {
        free_slot(slot.as_u32(), &platform);
    }
}

/// Frees every cached stack on every CPU and purges the quarantine (to measure against a
/// baseline).
pub fn drain_caches() {
    for cache in &CACHES {
        let taken = core::mem::take(&mut *cache.lock());
        free_cached(taken);
    }
    purge();
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
    /// The counters of DESIGN §7, summed over CPUs.
    pub counters: CounterSnapshot,
}

/// Reads the counts.
pub fn stats() -> StackStats {
    let region = region();
    let free = FREE_SLOTS.lock().len() as u32;
    let (mut cached_stacks, mut cached_pages) = (0, 0);
    for cache in &CACHES {
        for cached in cache.lock().iter() {
            cached_stacks += 1;
            cached_pages += u64::from(cached.populated().len());
        }
    }
    StackStats {
        slots_in_use: region.layout.slot_count() - free,
        cached_stacks,
        cached_pages,
        quarantined: quarantine::held(),
        counters: dks_core::counters::sum(COUNTERS.iter()),
    }
}

/// Where a faulting address lies in the stack region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackAddress {
    /// Not in the stack region.
    Elsewhere,
    /// In the guard page(s) of `slot`, `depth` bytes below its top.
    Guard {
        /// The slot.
        slot: SlotIndex,
        /// Bytes below the stack top.
        depth: u64,
    },
    /// In the stack pages of `slot`.
    Stack {
        /// The slot.
        slot: SlotIndex,
    },
}

/// Classifies `address` (e.g. a page fault's CR2).
pub fn locate(address: u64) -> StackAddress {
    let Some(region) = REGION.get() else {
        return StackAddress::Elsewhere;
    };
    let addr = VirtAddr::new(address);
    match region.layout.locate(addr) {
        None => StackAddress::Elsewhere,
        Some(location) => match location.part {
            dks_core::SlotPart::Guard => StackAddress::Guard {
                slot: location.slot,
                depth: region.layout.depth_in_bytes(location.slot, addr),
            },
            dks_core::SlotPart::Stack(_) => StackAddress::Stack {
                slot: location.slot,
            },
        },
    }
}

const _: () = assert!(dks_core::layout::PAGE_SIZE_IN_BYTES == PAGE_BYTES);

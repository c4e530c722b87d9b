//! The thread-stack region's pages: the typed operations through which the kernel changes
//! them, and the only ones.
//!
//! Every page table of the region is created once, at boot ([`prepare`]), and never freed, so
//! each operation here writes or reads one existing leaf entry with one atomic access: the
//! stack-fault path allocates nothing and takes no lock. [`prepare`] also keeps the address of
//! every leaf table of the region ([`LEAF_TABLES`], one per 2 MiB), so an operation finds its
//! entry with one lookup instead of a walk from the PML4. A populated stack page is mapped
//! present, writable, not executable, not global, with the Accessed bit clear; a page that is
//! not populated holds one of `dks-core`'s not-present entries ([`AbsentPte`], whose present
//! bit is clear by construction).
//!
//! What this module guarantees: every operation checks that its page lies in the thread-stack
//! region (`layout::STACK_REGION_BASE`, one PML4 entry) and touches no entry and no memory
//! outside it; no reference to an entry ever leaves the module. What it does not decide:
//! which pages of which slot are populated, and when. That is the stack mechanism's
//! (`dks-core`), whose invariant is that a slot's pages change only while the slot is not in
//! use or by its own thread's faults; no Rust reference points into the region except the
//! frames of the thread running on a stack.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use dks_core::AbsentPte;
use spin::Once;

use crate::frame::Frame;
use crate::layout::{PAGE_BYTES, PML4_ENTRY_BYTES, STACK_REGION_BASE};
use crate::paging::{self, bits};

/// Leaf flags of a populated stack page.
const STACK_PAGE: u64 = dks_core::pte::STACK_PAGE_FLAGS;

/// Whether a translation that an entry change removed may still sit in some CPU's TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a stale translation may remain: shoot it down or say why not"]
pub enum Stale {
    /// No TLB can hold it: the entry was not present (x86 never caches those), or its
    /// Accessed bit was clear (no CPU used it since it was mapped).
    No,
    /// Some CPU may have cached it: every CPU's TLB must forget the page.
    MaybeAnywhere,
}

/// Returns whether `page` is a page-aligned address of the thread-stack region.
#[inline]
fn is_stack_page(page: u64) -> bool {
    page.wrapping_sub(STACK_REGION_BASE) < PML4_ENTRY_BYTES && page.is_multiple_of(PAGE_BYTES)
}

/// Bytes of the region one leaf table maps.
const LEAF_TABLE_SPAN_BYTES: u64 = PAGE_BYTES * 512;

/// The direct-map address of the leaf table of each 2 MiB of the prepared region, from
/// `STACK_REGION_BASE` up (set once by [`prepare`]).
static LEAF_TABLES: Once<Box<[u64]>> = Once::new();

/// The leaf entry of the page that holds `address`.
///
/// # Panics
/// If `address` does not lie in the prepared part of the stack region.
#[inline]
fn leaf(address: u64) -> &'static AtomicU64 {
    let tables = LEAF_TABLES.get().expect("stack_pages::prepare ran at boot");
    let offset = address.wrapping_sub(STACK_REGION_BASE);
    // Indexing checks the region: an address below the base wraps to a huge offset.
    let table = tables[(offset / LEAF_TABLE_SPAN_BYTES) as usize];
    let index = (offset / PAGE_BYTES) % 512;
    // SAFETY: `table` is the direct-map address of a leaf page table that `prepare` created
    // for this part of the region (`paging::ensure_leaf`); tables are never freed and the
    // direct map covers them. `index < 512`, so the entry lies in that table, 8-aligned, and
    // page-table entries are only ever accessed atomically, so viewing it as an `AtomicU64`
    // that lives forever is sound.
    unsafe { &*((table + index * 8) as *const AtomicU64) }
}

/// Creates every page table for the stack pages in `[STACK_REGION_BASE, end)` and records the
/// leaf tables. Called once, at boot, after the heap is up.
///
/// # Panics
/// If `start` is not the region's base, the range leaves the region, memory for the tables
/// runs out, or the region was prepared already.
pub fn prepare(start: u64, end: u64) {
    assert!(
        start == STACK_REGION_BASE && start < end && end - STACK_REGION_BASE <= PML4_ENTRY_BYTES,
        "stack region {start:#x}..{end:#x} is not a range of the region from its base"
    );
    assert!(!LEAF_TABLES.is_completed(), "stack region prepared twice");
    let mut tables = Vec::new();
    let mut address = start;
    while address < end {
        let first =
            paging::ensure_leaf(address).expect("memory for the stack region's page tables");
        // The entry of the table's first page is the table's first word.
        tables.push(first as *const AtomicU64 as u64);
        address += LEAF_TABLE_SPAN_BYTES;
    }
    LEAF_TABLES.call_once(|| tables.into_boxed_slice());
}

/// Maps `frame` at the stack page `page`, whose entry must not be present (the mechanism maps
/// only pages it knows to be absent). No TLB can hold a translation for a not-present entry,
/// so nothing needs flushing.
///
/// # Panics
/// If `page` is not a page of the prepared stack region.
#[inline]
pub fn map(page: u64, frame: Frame) {
    leaf(page).store(frame.into_mapped() | STACK_PAGE, Ordering::Release);
}

/// Unmaps the present stack page `page`, leaves `leave` in its entry, and returns its frame
/// and whether a TLB may still hold the translation.
///
/// # Panics
/// If `page` is not a stack-region page or was not present.
#[inline]
pub fn unmap(page: u64, leave: AbsentPte) -> (Frame, Stale) {
    let old = leaf(page).swap(leave.raw(), Ordering::AcqRel);
    assert!(
        old & bits::PRESENT != 0,
        "unmapping the absent stack page {page:#x}"
    );
    let stale = if old & bits::ACCESSED != 0 {
        Stale::MaybeAnywhere
    } else {
        Stale::No
    };
    (Frame::from_address(old & bits::ADDRESS_MASK), stale)
}

/// Writes the not-present entry `entry` for the stack page `page` (a marker of an unpopulated
/// page, or empty), over a not-present entry.
///
/// # Panics
/// If `page` is not a page of the prepared stack region.
#[inline]
pub fn write_absent(page: u64, entry: AbsentPte) {
    leaf(page).store(entry.raw(), Ordering::Release);
}

/// Returns the raw entry of the stack page `page`.
///
/// # Panics
/// If `page` is not a page of the prepared stack region.
#[inline]
pub fn entry(page: u64) -> u64 {
    leaf(page).load(Ordering::Acquire)
}

/// Zeroes the populated stack page `page` through the direct map (a page of a stack that is
/// being handed to a new thread: its next user starts from zeros, and a high-water scan sees
/// only what that user wrote).
///
/// # Panics
/// If `page` is not a populated stack-region page.
pub fn zero(page: u64) {
    let raw = entry(page);
    assert!(
        raw & bits::PRESENT != 0,
        "zeroing the unpopulated stack page {page:#x}"
    );
    let phys = raw & bits::ADDRESS_MASK;
    assert!(
        paging::direct_map_covers(phys, PAGE_BYTES),
        "stack frame {phys:#x} outside the direct map"
    );
    // SAFETY: 1. The 4 KiB at `phys` are the frame that a present entry of the stack region
    // names (checked), covered by the direct map (checked), so the write stays inside one
    // stack page. 2. No Rust reference points into stack-region memory except the frames of
    // the thread running on that stack (module docs); a page is zeroed only for a stack being
    // handed to a new thread, which has not run yet, as the mechanism's slot states ensure.
    unsafe {
        core::ptr::write_bytes(
            paging::phys_to_virt(phys) as *mut u8,
            0,
            PAGE_BYTES as usize,
        )
    };
}

/// Fills the stack page `page` with `byte` through its stack mapping, as if a thread grew
/// into it: a page that is not populated faults and is populated by the stack-fault path (for
/// tests that dirty a stack no thread runs on).
///
/// # Panics
/// If `page` is not a page of the prepared stack region.
pub fn fill(page: u64, byte: u8) {
    assert!(is_stack_page(page), "{page:#x} is not a stack-region page");
    // SAFETY: 1. The 4 KiB at `page` lie in the stack region (checked): mapped, or populated by
    // the fault path on this write, or the write faults fatally and is reported; the write
    // touches nothing outside the page. 2. No Rust reference points into stack-region memory
    // except the frames of the thread running on that stack (module docs), and the stack a
    // test fills has no thread.
    unsafe { core::ptr::write_bytes(page as *mut u8, byte, PAGE_BYTES as usize) };
}

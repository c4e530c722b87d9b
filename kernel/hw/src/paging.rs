//! The kernel's own 4-level page tables.
//!
//! One PML4 serves every CPU. [`init`] builds it: the kernel image at its link address with
//! per-section permissions (text read+execute, rodata read-only, data and bss read+write, never
//! writable and executable at once), the direct map of all RAM with 2 MiB pages, and empty
//! top-level entries for every other region of `layout`, so later mappings appear on all CPUs.
//!
//! Who may change what:
//! - Creating intermediate tables takes [`TABLES`] (a lock), and allocates with normal urgency.
//! - A leaf entry (PTE) belongs to whoever owns that page (a stack page belongs to its stack) and
//!   is written with one atomic store, without the lock. This is what lets the stack-fault path
//!   map a page without allocating or locking: the table that holds the entry exists already
//!   (it was created when the stack was set up).
//! - Changing a present entry returns a `#[must_use]` [`Flush`]: the caller decides whether this
//!   CPU's TLB entry must go (`flush`) or no TLB can hold it (`ignore`); shootdowns to other
//!   CPUs are the caller's business.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

use crate::frame::{self, Frame};
use crate::layout::{self, DIRECT_MAP_BASE, LARGE_PAGE_BYTES, PAGE_BYTES};
use crate::pvh::PhysRange;
use crate::sync::IrqMutex;

/// Page-table entry bits: defined once, in `dks-core`.
pub use dks_core::pte::bits;

/// Leaf permissions for the kinds of kernel memory.
pub mod flags {
    use super::bits::*;
    /// Kernel code.
    pub const TEXT: u64 = PRESENT | GLOBAL;
    /// Read-only kernel data.
    pub const RODATA: u64 = PRESENT | GLOBAL | NO_EXECUTE;
    /// Read-write kernel data (also stacks and the direct map).
    pub const DATA: u64 = PRESENT | WRITABLE | GLOBAL | NO_EXECUTE;
    /// Device registers.
    pub const MMIO: u64 = DATA | NO_CACHE | WRITE_THROUGH;
}

const TABLE_FLAGS: u64 = bits::PRESENT | bits::WRITABLE;
const ENTRIES: usize = 512;

static KERNEL_TABLES_ACTIVE: AtomicBool = AtomicBool::new(false);
static PML4_PHYS: AtomicU64 = AtomicU64::new(0);
/// Bytes of physical memory the direct map covers (1 GiB under the boot tables).
static DIRECT_MAP_BYTES: AtomicU64 = AtomicU64::new(1 << 30);
/// Serialises the creation of intermediate tables.
static TABLES: IrqMutex<()> = IrqMutex::new(());

/// Returns whether the kernel's own tables are loaded.
#[inline]
pub fn kernel_tables_active() -> bool {
    KERNEL_TABLES_ACTIVE.load(Ordering::Acquire)
}

/// Returns the direct-map address of physical address `phys`.
#[inline]
pub fn phys_to_virt(phys: u64) -> u64 {
    debug_assert!(phys < DIRECT_MAP_BYTES.load(Ordering::Relaxed));
    DIRECT_MAP_BASE + phys
}

/// Returns whether the direct map covers `phys .. phys + bytes`.
#[inline]
pub fn direct_map_covers(phys: u64, bytes: u64) -> bool {
    phys.checked_add(bytes)
        .is_some_and(|end| end <= DIRECT_MAP_BYTES.load(Ordering::Relaxed))
}

/// Returns the physical address of the PML4 all CPUs load.
#[inline]
pub fn pml4_phys() -> u64 {
    PML4_PHYS.load(Ordering::Relaxed)
}

/// Fills a frame with zeros through the direct map.
#[inline]
pub fn zero_frame(frame: &Frame) {
    let virt = phys_to_virt(frame.address());
    // SAFETY: the caller owns `frame` (a `Frame` is unique), so nobody else uses its 4 KiB;
    // the direct map covers it (frames come from RAM the direct map maps).
    unsafe { core::ptr::write_bytes(virt as *mut u8, 0, PAGE_BYTES as usize) };
}

/// Reads 8 bytes of physical memory through the direct map.
///
/// # Panics
/// If the direct map does not cover `phys .. phys + 8` or `phys` is not 8-aligned.
pub fn read_phys_u64(phys: u64) -> u64 {
    assert!(
        phys.is_multiple_of(8) && direct_map_covers(phys, 8),
        "physical read of {phys:#x}"
    );
    // SAFETY: the direct map covers the 8 aligned bytes (checked); they are RAM, and a read
    // of RAM has no side effects (a racing writer could only make the value stale).
    unsafe { core::ptr::read_volatile(phys_to_virt(phys) as *const u64) }
}

/// Returns the entry `index` of the table at physical address `table`.
#[inline]
fn entry(table: u64, index: usize) -> &'static AtomicU64 {
    assert!(index < ENTRIES && table.is_multiple_of(PAGE_BYTES));
    let virt = phys_to_virt(table) + (index as u64) * 8;
    // SAFETY: `table` is a page-table frame (it came from a present non-leaf entry or is the
    // PML4), reachable through the direct map, and 8-aligned entries are only ever accessed
    // atomically, so viewing one as an `AtomicU64` is sound; tables are never freed.
    unsafe { &*(virt as *const AtomicU64) }
}

#[inline]
fn indices(virt: u64) -> [usize; 4] {
    [
        (virt >> 39) as usize & 511,
        (virt >> 30) as usize & 511,
        (virt >> 21) as usize & 511,
        (virt >> 12) as usize & 511,
    ]
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for an intermediate table.
    OutOfMemory,
    /// The address is already mapped (or covered by a large page).
    AlreadyMapped,
}

/// Returns the leaf entry for `virt` if every table above it exists. Never allocates.
#[inline]
pub(crate) fn existing_leaf(virt: u64) -> Option<&'static AtomicU64> {
    let mut table = pml4_phys();
    let idx = indices(virt);
    for &i in &idx[..3] {
        let e = entry(table, i).load(Ordering::Acquire);
        if e & bits::PRESENT == 0 || e & bits::HUGE != 0 {
            return None;
        }
        table = e & bits::ADDRESS_MASK;
    }
    Some(entry(table, idx[3]))
}

/// Returns the leaf entry for `virt`, creating the tables above it (zeroed, normal urgency).
#[inline]
pub(crate) fn ensure_leaf(virt: u64) -> Result<&'static AtomicU64, MapError> {
    match existing_leaf(virt) {
        Some(e) => Ok(e),
        None => create_leaf(virt),
    }
}

/// The rest of [`ensure_leaf`] when a table is missing: creates the tables above `virt`'s leaf
/// under the tables lock. Out of line, so that the common case (the tables exist) is small
/// enough to inline into its callers across the crate boundary (`map_lazy_page`).
#[cold]
#[inline(never)]
fn create_leaf(virt: u64) -> Result<&'static AtomicU64, MapError> {
    let _lock = TABLES.lock();
    let mut table = pml4_phys();
    let idx = indices(virt);
    for &i in &idx[..3] {
        let slot = entry(table, i);
        let mut e = slot.load(Ordering::Acquire);
        if e & bits::HUGE != 0 {
            return Err(MapError::AlreadyMapped);
        }
        if e & bits::PRESENT == 0 {
            let frame = frame::source()
                .alloc_zeroed()
                .ok_or(MapError::OutOfMemory)?;
            e = frame.into_mapped() | TABLE_FLAGS;
            slot.store(e, Ordering::Release);
        }
        table = e & bits::ADDRESS_MASK;
    }
    Ok(entry(table, idx[3]))
}

/// A TLB entry that may be stale after a mapping change.
#[derive(Debug)]
#[must_use = "the TLB may still hold the old translation: flush it or say why not"]
pub struct Flush {
    virt: u64,
}

impl Flush {
    /// Invalidates this CPU's TLB entry for the page.
    #[inline]
    pub fn flush(self) {
        x86_64::instructions::tlb::flush(VirtAddr::new(self.virt));
    }

    /// Drops the flush: the caller knows no TLB can hold the old translation (it was not
    /// present, or its Accessed bit was clear), or will shoot it down itself.
    #[inline]
    pub fn ignore(self) {}
}

/// Maps the 4 KiB page at `virt` to `frame` with `leaf_flags`. On failure the frame comes back.
/// Only this crate maps pages of its choosing; the kernel maps through the region-typed
/// functions ([`map_lazy_page`], `stack_pages`, `kstacks`).
#[inline]
pub(crate) fn map(virt: u64, frame: Frame, leaf_flags: u64) -> Result<Flush, (Frame, MapError)> {
    let slot = match ensure_leaf(virt) {
        Ok(slot) => slot,
        Err(e) => return Err((frame, e)),
    };
    if slot.load(Ordering::Acquire) & bits::PRESENT != 0 {
        return Err((frame, MapError::AlreadyMapped));
    }
    slot.store(frame.into_mapped() | leaf_flags, Ordering::Release);
    Ok(Flush { virt })
}

/// Unmaps the 4 KiB page at `virt` and returns its frame, or `None` if it was not mapped.
#[inline]
pub(crate) fn unmap(virt: u64) -> Option<(Frame, Flush)> {
    let slot = existing_leaf(virt)?;
    let old = slot.swap(0, Ordering::AcqRel);
    if old & bits::PRESENT == 0 {
        slot.store(old, Ordering::Release);
        return None;
    }
    Some((
        Frame::from_address(old & bits::ADDRESS_MASK),
        Flush { virt },
    ))
}

/// Returns whether `page` is a page-aligned address of the lazy region.
#[inline]
fn is_lazy_page(page: u64) -> bool {
    page.wrapping_sub(layout::LAZY_REGION_BASE) < layout::LAZY_REGION_BYTES
        && page.is_multiple_of(PAGE_BYTES)
}

/// Maps `frame` read-write (not executable) at `page` in the lazy region, which holds memory
/// that only this crate's probes and lazy accesses reach (`catch`, `probes`), never a Rust
/// reference. On failure the frame comes back.
///
/// # Panics
/// If `page` is not a page of the lazy region.
#[inline]
pub fn map_lazy_page(page: u64, frame: Frame) -> Result<Flush, (Frame, MapError)> {
    assert!(is_lazy_page(page), "{page:#x} is not a lazy-region page");
    map(page, frame, flags::DATA)
}

/// Unmaps `page` in the lazy region and returns its frame, or `None` if it was not mapped.
///
/// # Panics
/// If `page` is not a page of the lazy region.
#[inline]
pub fn unmap_lazy_page(page: u64) -> Option<(Frame, Flush)> {
    assert!(is_lazy_page(page), "{page:#x} is not a lazy-region page");
    unmap(page)
}

/// Returns the physical address `virt` translates to, if mapped.
#[inline]
pub fn translate(virt: u64) -> Option<u64> {
    let mut table = pml4_phys();
    let idx = indices(virt);
    for (level, &i) in idx.iter().enumerate() {
        let e = entry(table, i).load(Ordering::Acquire);
        if e & bits::PRESENT == 0 {
            return None;
        }
        if level == 2 && e & bits::HUGE != 0 {
            return Some((e & bits::ADDRESS_MASK) + (virt & (LARGE_PAGE_BYTES - 1)));
        }
        table = e & bits::ADDRESS_MASK;
    }
    Some(table + (virt & (PAGE_BYTES - 1)))
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

/// The kernel image's sections as `[start, end)` virtual (= physical) ranges.
pub fn image_sections() -> [(u64, u64, u64); 3] {
    let addr = |p: *const u8| p as u64;
    [
        (
            addr(&raw const __text_start),
            addr(&raw const __text_end),
            flags::TEXT,
        ),
        (
            addr(&raw const __rodata_start),
            addr(&raw const __rodata_end),
            flags::RODATA,
        ),
        (
            addr(&raw const __data_start),
            addr(&raw const __data_end),
            flags::DATA,
        ),
    ]
}

/// Returns the physical range the kernel image occupies.
pub fn image_range() -> PhysRange {
    let sections = image_sections();
    PhysRange {
        start: sections[0].0,
        bytes: sections[2].1 - sections[0].0,
    }
}

/// Builds the kernel's page tables and switches this CPU to them. Called once, on the boot
/// CPU, after the frame allocator is up; other CPUs load [`pml4_phys`].
pub fn init(ram: &[PhysRange]) {
    let pml4 = frame::source()
        .alloc_zeroed()
        .expect("a frame for the PML4");
    PML4_PHYS.store(pml4.into_mapped(), Ordering::Relaxed);

    for (start, end, leaf_flags) in image_sections() {
        assert!(
            start % PAGE_BYTES == 0 && end % PAGE_BYTES == 0,
            "section not page aligned"
        );
        for page in (start..end).step_by(PAGE_BYTES as usize) {
            let slot = ensure_leaf(page).expect("memory for the image's page tables");
            slot.store(page | leaf_flags, Ordering::Relaxed);
        }
    }

    let ram_end = ram
        .iter()
        .map(PhysRange::end)
        .max()
        .unwrap_or(0)
        .min(layout::MAX_PHYS_BYTES);
    let direct_map_bytes = ram_end.div_ceil(LARGE_PAGE_BYTES) * LARGE_PAGE_BYTES;
    for phys in (0..direct_map_bytes).step_by(LARGE_PAGE_BYTES as usize) {
        // A large page sits in a page directory: create the tables above the directory by
        // asking for the PTE of its first 4 KiB and then replacing the directory entry.
        map_large(DIRECT_MAP_BASE + phys, phys);
    }

    for base in [
        layout::STACK_REGION_BASE,
        layout::KERNEL_STACKS_BASE,
        layout::MMIO_BASE,
        layout::LAZY_REGION_BASE,
    ] {
        let slot = entry(pml4_phys(), layout::pml4_index(base));
        if slot.load(Ordering::Relaxed) & bits::PRESENT == 0 {
            let frame = frame::source().alloc_zeroed().expect("a frame for a PDPT");
            slot.store(frame.into_mapped() | TABLE_FLAGS, Ordering::Relaxed);
        }
    }

    // SAFETY: enabling global pages only changes how the TLB treats entries with GLOBAL set.
    unsafe { Cr4::update(|f| f.insert(Cr4Flags::PAGE_GLOBAL)) };
    load_on_this_cpu();
    DIRECT_MAP_BYTES.store(direct_map_bytes, Ordering::Release);
    KERNEL_TABLES_ACTIVE.store(true, Ordering::Release);
}

fn map_large(virt: u64, phys: u64) {
    let idx = indices(virt);
    let mut table = pml4_phys();
    for &i in &idx[..2] {
        let slot = entry(table, i);
        let mut e = slot.load(Ordering::Relaxed);
        if e & bits::PRESENT == 0 {
            let frame = frame::source()
                .alloc_zeroed()
                .expect("a frame for the direct map");
            e = frame.into_mapped() | TABLE_FLAGS;
            slot.store(e, Ordering::Relaxed);
        }
        table = e & bits::ADDRESS_MASK;
    }
    entry(table, idx[2]).store(phys | flags::DATA | bits::HUGE, Ordering::Relaxed);
}

/// Loads the kernel PML4 on this CPU.
pub fn load_on_this_cpu() {
    let frame = PhysFrame::from_start_address(PhysAddr::new(pml4_phys())).expect("aligned PML4");
    // SAFETY: the kernel tables map the image at its link address with the permissions the
    // code relies on, the direct map and every region in use, so execution continues
    // unchanged; the same is true on every CPU.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Maps `bytes` of device registers at physical `phys` uncached at `virt` (in the MMIO
/// region) and returns `virt`.
pub fn map_mmio(virt: u64, phys: u64, bytes: u64) -> u64 {
    assert!(virt >= layout::MMIO_BASE && phys.is_multiple_of(PAGE_BYTES));
    for offset in (0..bytes).step_by(PAGE_BYTES as usize) {
        let slot = ensure_leaf(virt + offset).expect("memory for MMIO page tables");
        slot.store((phys + offset) | flags::MMIO, Ordering::Release);
        x86_64::instructions::tlb::flush(VirtAddr::new(virt + offset));
    }
    virt
}

/// Maps the low page `phys` at the same virtual address, writable and executable: only for
/// the AP trampoline while processors start.
pub fn map_identity_executable(phys: u64) {
    assert!(phys < layout::KERNEL_IMAGE_BASE && phys.is_multiple_of(PAGE_BYTES));
    let slot = ensure_leaf(phys).expect("memory for the trampoline's page tables");
    slot.store(phys | bits::PRESENT | bits::WRITABLE, Ordering::Release);
    x86_64::instructions::tlb::flush(VirtAddr::new(phys));
}

/// Removes an identity mapping made by [`map_identity_executable`] on this CPU. Other CPUs
/// that used it flush their TLBs themselves when they leave the trampoline (a CR3 write is
/// not needed: they never touch the page again, and the page itself stays reserved).
pub fn unmap_identity(phys: u64) {
    assert!(phys < layout::KERNEL_IMAGE_BASE);
    if let Some(slot) = existing_leaf(phys) {
        slot.store(0, Ordering::Release);
        x86_64::instructions::tlb::flush(VirtAddr::new(phys));
    }
}

/// Invalidates this CPU's TLB entries for `[start, end)`: page by page for a few pages, the
/// whole TLB (global entries included) for more.
#[inline]
pub fn flush_range(start: u64, end: u64) {
    const PAGE_BY_PAGE_LIMIT: u64 = 32;
    let pages = end.saturating_sub(start).div_ceil(PAGE_BYTES);
    if pages <= PAGE_BY_PAGE_LIMIT {
        for page in 0..pages {
            x86_64::instructions::tlb::flush(VirtAddr::new(start + page * PAGE_BYTES));
        }
    } else {
        // Toggling CR4.PGE flushes every entry, global ones included.
        // SAFETY: clearing and setting PGE only flushes the TLB; the page tables are unchanged.
        unsafe {
            Cr4::update(|f| f.remove(Cr4Flags::PAGE_GLOBAL));
            Cr4::update(|f| f.insert(Cr4Flags::PAGE_GLOBAL));
        }
    }
}

/// Returns the offset of the first non-zero 8-byte word of the physical page at `phys`, read
/// through the direct map, or `None` if the page is all zeros.
///
/// # Panics
/// If `phys` is not page aligned or not covered by the direct map.
pub fn first_nonzero_word(phys: u64) -> Option<u64> {
    assert!(
        phys.is_multiple_of(PAGE_BYTES) && direct_map_covers(phys, PAGE_BYTES),
        "scan of {phys:#x}"
    );
    // SAFETY: the page lies in the direct map (checked), which maps RAM read-write for the
    // kernel's lifetime; reading it as 512 `u64`s (8-aligned) has no side effects, and a
    // concurrent writer could only make the answer stale, never unsound for plain integers.
    let words = unsafe {
        core::slice::from_raw_parts(phys_to_virt(phys) as *const u64, (PAGE_BYTES / 8) as usize)
    };
    words.iter().position(|&w| w != 0).map(|i| i as u64 * 8)
}

/// Returns whether every byte of the mapped page at `virt` reads as zero (through the direct
/// map, so reading never faults); `None` if it is not mapped.
pub fn page_is_zero(virt: u64) -> Option<bool> {
    let phys = translate(virt & !(PAGE_BYTES - 1))?;
    Some((0..PAGE_BYTES / 8).all(|i| read_phys_u64(phys + i * 8) == 0))
}

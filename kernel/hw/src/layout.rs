//! The kernel's virtual address space: one table of where everything lives.
//!
//! | region | start | what |
//! |---|---|---|
//! | kernel image | 1 MiB (identity) | text RX, rodata R, data/bss RW; nothing else in the low half |
//! | lazy region | `LAZY_REGION_BASE` | mapped on demand by non-stack page faults (stands in for user memory) |
//! | direct map | `DIRECT_MAP_BASE` | all RAM, 2 MiB pages, RW, NX |
//! | stack region | `STACK_REGION_BASE` | thread stacks in fixed slots (DESIGN §3), owned by `dks-core`'s layout |
//! | kernel stacks | `KERNEL_STACKS_BASE` | IST and idle stacks, always populated, each below a guard page; laid out by `dks-core`'s layout too ([`KERNEL_STACKS`]) |
//! | MMIO | `MMIO_BASE` | device registers (local APIC), uncached |
//!
//! Each region has its own top-level (PML4) entry, created at boot, so every CPU sees every
//! later mapping through the one shared PML4.

use dks_core::addr::VirtAddr;
use dks_core::layout::StackLayout;

/// Bytes in a page.
pub const PAGE_BYTES: u64 = dks_core::layout::PAGE_SIZE_IN_BYTES;
/// Bytes in a large (2 MiB) page.
pub const LARGE_PAGE_BYTES: u64 = 2 * 1024 * 1024;
/// Bytes one PML4 entry spans.
pub const PML4_ENTRY_BYTES: u64 = 1 << 39;

/// The highest physical address the kernel manages (the frame allocator's bitmap and the
/// direct map stop here).
pub const MAX_PHYS_BYTES: u64 = 32 << 30;

/// Where the linker places the kernel image (virtual = physical).
pub const KERNEL_IMAGE_BASE: u64 = 0x10_0000;
/// A lazily mapped region whose faults are served on the interrupted stack.
pub const LAZY_REGION_BASE: u64 = 0x0000_1000_0000_0000;
/// Size of the lazy region.
pub const LAZY_REGION_BYTES: u64 = 1 << 30;
/// An address nothing ever maps (the last page of the lower half): `crash=page-fault` reads it.
pub const NEVER_MAPPED: u64 = 0x0000_7fff_ffff_f000;

/// The direct map of physical memory (Linux's `PAGE_OFFSET`).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;
/// The thread-stack region (Linux's vmalloc area starts here too).
pub const STACK_REGION_BASE: u64 = dks_core::layout::DEFAULT_STACK_REGION_BASE;
/// IST stacks and idle stacks.
pub const KERNEL_STACKS_BASE: u64 = 0xffff_ca00_0000_0000;
/// Device registers.
pub const MMIO_BASE: u64 = 0xffff_ff00_0000_0000;

/// The most kernel stacks (IST, scheduler loops, tests) a boot hands out: `MAX_CPUS` CPUs with
/// their IST stacks and scheduler stack use far fewer.
pub const KERNEL_STACK_SLOTS: u32 = 4096;
/// The kernel-stacks region, laid out by `dks-core`'s [`StackLayout`] as the thread stacks are:
/// slots of one guard page (`GUARD_PAGES_PER_SLOT`) below a 32 KiB stack. Every kernel-stack
/// address (`kstacks`) and the figures below come from it.
pub const KERNEL_STACKS: StackLayout = match StackLayout::try_new(
    VirtAddr::new(KERNEL_STACKS_BASE),
    32 * 1024,
    KERNEL_STACK_SLOTS,
) {
    Ok(layout) => layout,
    Err(_) => panic!("the kernel-stacks region is not a valid stack layout"),
};
/// Bytes of one kernel stack (IST or idle) in the kernel-stacks region.
pub const KERNEL_STACK_BYTES: u64 = KERNEL_STACKS.max_stack().bytes();

/// Returns the PML4 index of a virtual address.
#[inline]
pub const fn pml4_index(address: u64) -> usize {
    ((address >> 39) & 511) as usize
}

const _: () = assert!(pml4_index(DIRECT_MAP_BASE) == 273);
const _: () = assert!(pml4_index(STACK_REGION_BASE) != pml4_index(KERNEL_STACKS_BASE));
const _: () = assert!(pml4_index(LAZY_REGION_BASE) != pml4_index(KERNEL_IMAGE_BASE));
const _: () = assert!(LAZY_REGION_BYTES <= PML4_ENTRY_BYTES);
const _: () = assert!(KERNEL_STACK_BYTES.is_multiple_of(PAGE_BYTES));
const _: () = assert!(
    KERNEL_STACKS.region_end().as_u64() - KERNEL_STACKS_BASE <= PML4_ENTRY_BYTES,
    "the kernel stacks fit their PML4 entry"
);

/// Returns whether `address` lies in the thread-stack region or the kernel-stacks region.
#[inline]
pub const fn is_stack_address(address: u64) -> bool {
    (address >= STACK_REGION_BASE && address < STACK_REGION_BASE + PML4_ENTRY_BYTES)
        || (address >= KERNEL_STACKS_BASE && address < KERNEL_STACKS_BASE + PML4_ENTRY_BYTES)
}

//! The kernel heap: `talc` over one contiguous block of the direct map.
//!
//! The allocator's lock keeps interrupts off while held (a thread preempted inside `alloc`
//! would otherwise block every other thread of its CPU). Talc keeps free blocks in size bins,
//! so an allocation does not walk a list that grows with fragmentation (which made the cost
//! of creating a thread grow with the number of threads under a first-fit allocator).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use spin::Once;
use talc::{OomHandler, Span, Talc};

use crate::layout::PAGE_BYTES;
use crate::sync::IrqMutex;
use crate::{frame, paging};

struct KernelHeap {
    talc: IrqMutex<Talc<GrowOnOom>>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    talc: IrqMutex::new(Talc::new(GrowOnOom)),
};

/// How far the heap may grow when an allocation does not fit: the kernel's policy (its limit,
/// `mm::heap`), registered at boot with [`set_growth`].
pub trait HeapGrowth: Sync {
    /// Returns how many bytes to add to a heap of `claimed` bytes so that an allocation of
    /// `bytes` fits, or `None` if the heap may not grow that far.
    fn emergency_growth(&self, claimed: u64, bytes: u64) -> Option<u64>;
    /// Records that the heap grew by `bytes`.
    fn note_growth(&self, bytes: u64);
}

static GROWTH: Once<&'static dyn HeapGrowth> = Once::new();

/// Registers the kernel's growth policy. Until then an allocation that does not fit fails.
///
/// # Panics
/// If called twice.
pub fn set_growth(growth: &'static dyn HeapGrowth) {
    assert!(!GROWTH.is_completed(), "heap growth policy set twice");
    GROWTH.call_once(|| growth);
}

/// When an allocation does not fit, the heap grows by a block from the frame allocator, as
/// far as the kernel's policy allows ([`HeapGrowth`]); only when that fails does the
/// allocation fail. The kernel keeps room ahead of need (`mm::heap::ensure_free`), so this is
/// the last resort for an allocation that found the margin too fragmented.
struct GrowOnOom;

impl OomHandler for GrowOnOom {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        let growth = GROWTH.get().ok_or(())?;
        let claimed = talc.get_counters().claimed_bytes as u64;
        let bytes = growth
            .emergency_growth(claimed, layout.size() as u64)
            .ok_or(())?;
        let pages = bytes.div_ceil(PAGE_BYTES);
        let phys = frame::source().alloc_contiguous(pages).ok_or(())?;
        growth.note_growth(pages * PAGE_BYTES);
        let start = paging::phys_to_virt(phys);
        let span = Span::from_base_size(start as *mut u8, (pages * PAGE_BYTES) as usize);
        // SAFETY: as in `grow`: the block was just taken from the frame allocator for the heap
        // alone, is never given back, the direct map covers it, and it overlaps nothing
        // claimed before.
        unsafe { talc.claim(span) }.map(|_| ())
    }
}

// SAFETY: Talc hands out disjoint blocks of the memory claimed in `init` that satisfy the
// requested layout, and takes back only blocks it handed out with their layout (GlobalAlloc's
// contract for `dealloc`); the lock serialises all access.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `layout` has a non-zero size.
        unsafe { self.talc.lock().malloc(layout) }.map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with this `layout`.
            unsafe { self.talc.lock().free(block, layout) };
        }
    }
}

/// Takes `bytes` (rounded up to pages) of contiguous physical memory from the frame allocator
/// and makes it the heap. Called once at boot.
///
/// # Panics
/// If called twice, or if no contiguous block of that size is free.
pub fn init(bytes: u64) {
    let pages = bytes.div_ceil(PAGE_BYTES);
    let phys = frame::source()
        .alloc_contiguous(pages)
        .expect("contiguous memory for the kernel heap");
    let start = paging::phys_to_virt(phys);
    let mut talc = HEAP.talc.lock();
    assert!(
        talc.get_counters().claimed_bytes == 0,
        "heap initialised twice"
    );
    let span = Span::from_base_size(start as *mut u8, (pages * PAGE_BYTES) as usize);
    // SAFETY: `phys .. phys + pages` was just taken from the frame allocator for the heap alone
    // and is never given back, so the heap owns it; the direct map covers it; it is claimed
    // once (checked above).
    unsafe { talc.claim(span) }.expect("talc accepts the heap's memory");
}

/// Adds `bytes` (rounded up to pages) of contiguous physical memory from the frame allocator
/// to the heap, after [`init`]: returns `false` (and takes nothing) when no free block of that
/// size exists. The memory stays the heap's for good, as the first block does.
pub fn grow(bytes: u64) -> bool {
    let pages = bytes.div_ceil(PAGE_BYTES);
    let Some(phys) = frame::source().alloc_contiguous(pages) else {
        return false;
    };
    let start = paging::phys_to_virt(phys);
    let span = Span::from_base_size(start as *mut u8, (pages * PAGE_BYTES) as usize);
    let mut talc = HEAP.talc.lock();
    assert!(
        talc.get_counters().claimed_bytes != 0,
        "heap grown before init"
    );
    // SAFETY: `phys .. phys + pages` was just taken from the frame allocator for the heap alone
    // and is never given back, so the heap owns it; the direct map covers it; it overlaps no
    // block claimed before (the frame allocator hands a frame out once).
    unsafe { talc.claim(span) }.expect("talc accepts more memory");
    true
}

/// Returns (bytes in use, bytes in the heap).
pub fn usage() -> (usize, usize) {
    let talc = HEAP.talc.lock();
    let counters = talc.get_counters();
    (counters.allocated_bytes, counters.claimed_bytes)
}

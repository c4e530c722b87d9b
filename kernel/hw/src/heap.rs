//! The kernel heap: `talc` over one contiguous block of the direct map.
//!
//! The allocator's lock keeps interrupts off while held (a thread preempted inside `alloc`
//! would otherwise block every other thread of its CPU). Talc keeps free blocks in size bins,
//! so an allocation does not walk a list that grows with fragmentation (which made the cost
//! of creating a thread grow with the number of threads under a first-fit allocator).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use talc::{ErrOnOom, Span, Talc};

use crate::layout::PAGE_BYTES;
use crate::sync::IrqMutex;
use crate::{frame, paging};

struct KernelHeap {
    talc: IrqMutex<Talc<ErrOnOom>>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    talc: IrqMutex::new(Talc::new(ErrOnOom)),
};

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

/// Returns (bytes in use, bytes in the heap).
pub fn usage() -> (usize, usize) {
    let talc = HEAP.talc.lock();
    let counters = talc.get_counters();
    (counters.allocated_bytes, counters.claimed_bytes)
}

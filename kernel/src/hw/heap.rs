//! The kernel heap: `linked_list_allocator` over one contiguous block of the direct map.
//!
//! The allocator's lock keeps interrupts off while held (a thread preempted inside `alloc`
//! would otherwise block every other thread of its CPU). Interrupt handlers never allocate.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;

use crate::hw::paging;
use crate::layout::PAGE_BYTES;
use crate::mm::frames;
use crate::sync::IrqMutex;

struct KernelHeap {
    heap: IrqMutex<Heap>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    heap: IrqMutex::new(Heap::empty()),
};

// SAFETY: `Heap` hands out disjoint blocks of the region given to `init` that satisfy the
// requested layout, and takes back only blocks it handed out (GlobalAlloc's contract for
// `dealloc`); the lock serialises all access.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |block| block.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with this `layout`.
            unsafe { self.heap.lock().deallocate(block, layout) };
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
    let phys = frames::alloc_contiguous(pages).expect("contiguous memory for the kernel heap");
    let start = paging::phys_to_virt(phys);
    let mut heap = HEAP.heap.lock();
    assert!(heap.size() == 0, "heap initialised twice");
    // SAFETY: `phys .. phys + pages` was just taken from the frame allocator for the heap alone
    // and is never given back, so the heap owns it; the direct map covers it; `init` runs once
    // (checked above).
    unsafe { heap.init(start as *mut u8, (pages * PAGE_BYTES) as usize) };
}

/// Returns (bytes in use, bytes in the heap).
pub fn usage() -> (usize, usize) {
    let heap = HEAP.heap.lock();
    (heap.used(), heap.size())
}

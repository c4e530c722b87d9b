//! The memory of packed stacks: the heap buffers a sleeping thread's live stack bytes wait
//! in, and the copies between them and the top page of its stack.
//!
//! A buffer is a heap block: a 16-byte header (a tag derived from its address, and its size)
//! followed by its bytes; its handle is the address of the bytes. Every operation checks the
//! tag, so a handle this module did not make (or made and freed) is a panic, not a write to
//! someone else's memory; `dks-core` makes that impossible anyway (a `PackBuffer` is neither
//! `Copy` nor `Clone` and only the platform makes one).
//!
//! The stack side of a copy is a range of one present page of the thread-stack region (a
//! packed stack's live bytes lie in its top page: at most a page below its page-aligned top),
//! reached through the direct map of the frame its entry names. So a copy never faults and
//! never goes through a translation another CPU's TLB may still hold for the page's previous
//! frame. What the caller guarantees (the mechanism's slot lock): the stack's thread is off
//! every CPU, so nothing writes those bytes during the copy.

use alloc::alloc::{Layout, alloc, dealloc};

use dks_core::Checksum;

use crate::layout::{DIRECT_MAP_BASE, PAGE_BYTES};
use crate::paging::{self, bits};
use crate::stack_pages;

/// Bytes before a buffer's first byte: its tag and its size.
const HEADER_BYTES: u64 = 16;

/// Mixed with a buffer's address into its tag.
const TAG: u64 = 0x7061_636b_6564_2121;

/// The largest buffer: one page, the most live bytes a packed stack has.
const MAX_BUFFER_BYTES: u64 = PAGE_BYTES;

fn layout_of(bytes: u64) -> Layout {
    match Layout::from_size_align((HEADER_BYTES + bytes) as usize, 16) {
        Ok(layout) => layout,
        Err(_) => unreachable!("at most a page and a header"),
    }
}

/// Returns a new buffer of `bytes` (1 to a page) from the heap, or `None` when the heap
/// cannot give one. Its contents are undefined until written.
///
/// # Panics
/// If `bytes` is 0 or more than a page.
pub fn alloc_buffer(bytes: u64) -> Option<u64> {
    assert!(
        bytes > 0 && bytes <= MAX_BUFFER_BYTES,
        "a pack buffer of {bytes} bytes"
    );
    // SAFETY: the layout's size is at least the header's 16 bytes, so it is not zero.
    let block = unsafe { alloc(layout_of(bytes)) };
    if block.is_null() {
        return None;
    }
    let handle = block as u64 + HEADER_BYTES;
    // SAFETY: `block` is a fresh heap block of at least 16 bytes, 16-aligned, owned by nobody
    // else: its two first words are ours to write.
    unsafe {
        (block as *mut u64).write(handle ^ TAG);
        (block as *mut u64).add(1).write(bytes);
    }
    Some(handle)
}

/// Returns the size of the buffer `handle` after checking its tag.
///
/// # Panics
/// If `handle` is not a live buffer of this module.
fn checked_size(handle: u64) -> u64 {
    let header = handle.wrapping_sub(HEADER_BYTES);
    assert!(
        handle.is_multiple_of(16)
            && header >= DIRECT_MAP_BASE
            && paging::direct_map_covers(header - DIRECT_MAP_BASE, HEADER_BYTES),
        "{handle:#x} is not a pack buffer"
    );
    // SAFETY: `handle - 16` is 16-aligned and lies in the direct map (checked), where the
    // kernel heap lives: reading its two words reads mapped memory. If it is one of our
    // buffers, they are its header; if not, the tag check below refuses it before anything
    // else is done with the address.
    let (tag, bytes) = unsafe {
        let header = (handle - HEADER_BYTES) as *const u64;
        (header.read_volatile(), header.add(1).read_volatile())
    };
    assert!(
        tag == handle ^ TAG && bytes > 0 && bytes <= MAX_BUFFER_BYTES,
        "{handle:#x} is not a live pack buffer"
    );
    bytes
}

/// Gives the buffer `handle` back to the heap.
///
/// # Panics
/// If `handle` is not a live buffer of this module.
pub fn free_buffer(handle: u64) {
    let bytes = checked_size(handle);
    let block = (handle - HEADER_BYTES) as *mut u8;
    // SAFETY: 1. `block` is the start of a live buffer of `bytes` (its tag checked), allocated
    // by `alloc_buffer` with `layout_of(bytes)`, so it is freed with the same layout. 2. The
    // tag is cleared first, so a second free of the same handle panics in `checked_size`
    // (until the heap reuses the block).
    unsafe {
        (block as *mut u64).write(0);
        dealloc(block, layout_of(bytes));
    }
}

/// Returns the direct-map address of the `len` bytes at `from` in the present stack page
/// that holds them.
///
/// # Panics
/// If the range is empty, does not lie in one page of the stack region, or that page is not
/// present.
fn stack_bytes(from: u64, len: u64) -> u64 {
    let page = from & !(PAGE_BYTES - 1);
    assert!(
        len > 0 && from - page + len <= PAGE_BYTES,
        "{len} bytes at {from:#x} do not lie in one stack page"
    );
    // Panics if the page is not in the prepared stack region.
    let raw = stack_pages::entry(page);
    assert!(
        raw & bits::PRESENT != 0,
        "stack page {page:#x} is not present"
    );
    let phys = raw & bits::ADDRESS_MASK;
    assert!(
        paging::direct_map_covers(phys, PAGE_BYTES),
        "stack frame {phys:#x} outside the direct map"
    );
    paging::phys_to_virt(phys) + (from - page)
}

/// Copies the `len` bytes at `from` (in one present stack page) to the start of the buffer
/// `handle`.
///
/// # Panics
/// If `handle` is not a live buffer of at least `len` bytes, or the stack range is not in
/// one present stack page.
pub fn copy_to_buffer(from: u64, handle: u64, len: u64) {
    assert!(len <= checked_size(handle), "{len} bytes into {handle:#x}");
    let source = stack_bytes(from, len);
    // SAFETY: 1. `source..source + len` lies in the frame of a present stack page, through
    // the direct map (checked); the thread of that stack is off every CPU (module docs), so
    // nothing writes it meanwhile. 2. `handle..handle + len` lies in a live buffer of this
    // module (checked), which no Rust reference points into. 3. A heap block and a stack
    // frame do not overlap (the frame allocator hands a frame out once).
    unsafe { core::ptr::copy_nonoverlapping(source as *const u8, handle as *mut u8, len as usize) };
}

/// Copies the first `len` bytes of the buffer `handle` to `to` (in one present stack page).
///
/// # Panics
/// As [`copy_to_buffer`].
pub fn copy_from_buffer(handle: u64, to: u64, len: u64) {
    assert!(len <= checked_size(handle), "{len} bytes from {handle:#x}");
    let target = stack_bytes(to, len);
    // SAFETY: as in `copy_to_buffer`, with the roles swapped: the stack bytes are written
    // while their thread is off every CPU, and no Rust reference points into them.
    unsafe { core::ptr::copy_nonoverlapping(handle as *const u8, target as *mut u8, len as usize) };
}

/// Returns the checksum ([`Checksum::of`]) of the `len` bytes at `from` (in one present
/// stack page).
///
/// # Panics
/// If the range is not in one present stack page.
pub fn stack_checksum(from: u64, len: u64) -> Checksum {
    let bytes = stack_bytes(from, len);
    // SAFETY: `bytes..bytes + len` lies in the frame of a present stack page, through the
    // direct map (checked), whose thread is off every CPU (module docs): nothing writes it
    // while the slice lives, which ends with this function.
    let slice = unsafe { core::slice::from_raw_parts(bytes as *const u8, len as usize) };
    Checksum::of(slice)
}

/// Reads the word at `address`, in the thread-stack region, with no catcher: what a thread
/// that follows a pointer into another thread's stack does. For tests of the refusal of a
/// touch of a packed stack: the read faults, and the fault path stops the reader.
///
/// # Panics
/// If `address` is not an 8-aligned address of the stack region.
pub fn read_stack_word(address: u64) -> u64 {
    assert!(
        address.is_multiple_of(8)
            && address.wrapping_sub(crate::layout::STACK_REGION_BASE)
                < crate::layout::PML4_ENTRY_BYTES,
        "{address:#x} is not a word of the stack region"
    );
    // SAFETY: the address lies in the stack region (checked), aligned: the read either
    // faults (an unmapped page: the fault path refuses it and stops this thread, so the read
    // never completes) or loads a word of a mapped stack page, which no Rust reference of
    // this thread points into; `read_volatile` makes it exactly one load.
    unsafe { core::ptr::read_volatile(address as *const u64) }
}

/// Flips every bit of byte `offset` of the buffer `handle`: what a stray write into a packed
/// stack's buffer would do (for tests of the restore's checksum).
///
/// # Panics
/// If `handle` is not a live buffer of this module or `offset` lies beyond it.
pub fn flip_buffer_byte(handle: u64, offset: u64) {
    assert!(
        offset < checked_size(handle),
        "byte {offset} of {handle:#x}"
    );
    let byte = (handle + offset) as *mut u8;
    // SAFETY: the byte lies in a live buffer of this module (checked), which no Rust
    // reference points into.
    unsafe { byte.write_volatile(!byte.read_volatile()) };
}

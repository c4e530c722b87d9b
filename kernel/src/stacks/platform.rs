//! `dks_core::Platform` on the kernel's real page tables and frame allocator, in safe code:
//! every page-table change goes through the hardware crate's typed stack-region operations
//! (`hw::stack_pages`), which write one existing leaf entry each (the region's tables are made
//! at boot, `prepare_region`), so the stack-fault path allocates nothing.
//!
//! # When the TLB work happens
//!
//! A platform is made for one job. [`X86Platform::live`] serves live stacks: a flush that
//! needs a shootdown does it at once, because the stack's thread may use the address again
//! right away. [`X86Platform::releasing`] serves stacks of exited threads: nobody uses their
//! addresses until the slot is handed out again, so a shootdown can wait. Frames freed after
//! such a deferred flush go to the [`quarantine`](super::quarantine) with their slot, and a
//! single shootdown of every TLB later purges many stacks at once (an IPI to a busy CPU costs
//! milliseconds under TCG).

use dks_core::{
    AbsentPte, Checksum, CpuId, Flush, FlushBatch, FlushNeed, Frame, PackBuffer, Platform,
    SizeClass, StackLayout, Urgency, VirtAddr,
};

use crate::hw::cpu_ops;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::pack_memory;
use crate::hw::stack_pages::{self, Stale};
use crate::mm::frames;
use crate::tlb;

/// The machine, as dks sees it, for one job (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct X86Platform {
    /// Shootdowns may wait for the next purge (the addresses are dead).
    defer_shootdowns: bool,
    /// A shootdown was deferred: frames freed from now on go to the quarantine.
    deferred: bool,
}

impl X86Platform {
    /// For work on live stacks: shootdowns happen before `flush` returns.
    pub fn live() -> Self {
        X86Platform {
            defer_shootdowns: false,
            deferred: false,
        }
    }

    /// For tearing down stacks nobody runs on: shootdowns wait for the next purge.
    pub fn releasing() -> Self {
        X86Platform {
            defer_shootdowns: true,
            deferred: false,
        }
    }

    /// Whether a shootdown was deferred (the slot must then wait in the quarantine too).
    pub fn deferred(&self) -> bool {
        self.deferred
    }
}

fn urgency(urgency: Urgency) -> frames::Urgency {
    match urgency {
        Urgency::Normal => frames::Urgency::Normal,
        Urgency::Atomic => frames::Urgency::Atomic,
    }
}

fn flush_need(stale: Stale) -> FlushNeed {
    match stale {
        Stale::No => FlushNeed::NotCached,
        Stale::MaybeAnywhere => FlushNeed::Shootdown,
    }
}

impl Platform for X86Platform {
    /// Only the fault path asks (to check the magazine is this CPU's), in trap context: with
    /// interrupts off, so the answer is still true when dks-core compares it.
    fn current_cpu(&self) -> CpuId {
        assert!(
            !cpu_ops::interrupts_enabled(),
            "current_cpu asked with interrupts on"
        );
        CpuId::new(cpu_ops::current_id(&cpu_ops::IrqGuard::new()))
    }

    fn alloc_frame(&mut self, how: Urgency) -> Option<Frame> {
        let frame = frames::alloc_zeroed(urgency(how))?;
        Some(Frame::from_phys_addr(frame.into_mapped()))
    }

    fn free_frame(&mut self, frame: Frame) {
        let frame = frames::Frame::from_address(frame.phys_addr());
        if self.deferred {
            super::quarantine::hold_frame(frame);
        } else {
            frames::free(frame);
        }
    }

    fn map_stack_page(&mut self, addr: VirtAddr, frame: Frame) -> Flush {
        stack_pages::map(
            addr.as_u64(),
            frames::Frame::from_address(frame.phys_addr()),
        );
        // x86 never caches a not-present translation.
        Flush::new(addr, FlushNeed::NotCached)
    }

    fn unmap_stack_page(&mut self, addr: VirtAddr, leave: AbsentPte) -> (Frame, Flush) {
        let (frame, stale) = stack_pages::unmap(addr.as_u64(), leave);
        (
            Frame::from_phys_addr(frame.into_mapped()),
            Flush::new(addr, flush_need(stale)),
        )
    }

    fn write_absent(&mut self, addr: VirtAddr, entry: AbsentPte) {
        stack_pages::write_absent(addr.as_u64(), entry);
    }

    fn read_entry(&self, addr: VirtAddr) -> u64 {
        stack_pages::entry(addr.as_u64())
    }

    fn flush(&mut self, batch: FlushBatch) {
        if let (FlushNeed::Shootdown, Some((start, end))) = (batch.need(), batch.range()) {
            if self.defer_shootdowns {
                self.deferred = true;
            } else {
                tlb::shootdown(start.as_u64(), end.as_u64());
            }
        }
    }

    /// A heap block (`hw::pack_memory`). A `Normal` allocation (the pack scanner's, which may
    /// sleep) first makes room in the heap as thread creation does (`mm::heap::ensure_free`,
    /// which may grow it); an `Atomic` one takes what the heap has.
    fn alloc_buffer(&mut self, class: SizeClass, how: Urgency) -> Option<PackBuffer> {
        if how == Urgency::Normal && !crate::mm::heap::ensure_free(class.bytes()) {
            return None;
        }
        let handle = pack_memory::alloc_buffer(class.bytes())?;
        Some(PackBuffer::from_handle(handle, class))
    }

    fn free_buffer(&mut self, buffer: PackBuffer) {
        pack_memory::free_buffer(buffer.handle());
    }

    fn copy_to_buffer(&mut self, from: VirtAddr, buffer: &mut PackBuffer, len: u64) {
        pack_memory::copy_to_buffer(from.as_u64(), buffer.handle(), len);
    }

    fn copy_from_buffer(&mut self, buffer: &PackBuffer, to: VirtAddr, len: u64) {
        pack_memory::copy_from_buffer(buffer.handle(), to.as_u64(), len);
    }

    fn stack_checksum(&self, from: VirtAddr, len: u64) -> Checksum {
        pack_memory::stack_checksum(from.as_u64(), len)
    }
}

/// Creates every page table of the stack region described by `layout`.
pub fn prepare_region(layout: &StackLayout) {
    stack_pages::prepare(layout.base().as_u64(), layout.region_end().as_u64());
}

/// Bytes of the page tables [`prepare_region`] makes for `layout`: one page table per 2 MiB
/// of the region and one page directory per 1 GiB (the region's PML4 entry and its PDPT exist
/// from boot whatever the layout).
pub fn region_table_bytes(layout: &StackLayout) -> u64 {
    let start = layout.base().as_u64();
    let end = layout.region_end().as_u64();
    let spans = |bytes: u64| end.div_ceil(bytes) - start / bytes;
    (spans(PAGE_BYTES * 512) + spans(PAGE_BYTES * 512 * 512)) * PAGE_BYTES
}

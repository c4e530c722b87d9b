//! A software machine that implements [`Platform`], for host tests and the
//! simulator.
//!
//! [`EmulatedPlatform`] has a frame pool, a page table, one TLB per CPU and
//! a current CPU. It behaves like x86_64 where dks depends on it:
//!
//! - entries are real x86_64 page-table entries (`u64`), decoded by
//!   [`pte`];
//! - [`EmulatedPlatform::touch`] is a memory access by the current CPU: a TLB
//!   hit uses the cached translation without looking at the entry; a miss
//!   walks the entry, sets its Accessed bit and caches it, or reports the
//!   page fault the kernel would take;
//! - [`Platform::flush`] with a shootdown empties every CPU's TLB for the
//!   range; nothing else does.
//!
//! It enforces the platform contracts by panicking on misuse (mapping a
//! present page, unmapping an absent one, freeing a free frame), which in a
//! test is the bug report. It also lets a test check what dks cannot see:
//! [`EmulatedPlatform::check_tlbs`] (no CPU can reach a frame through a stale
//! translation), [`EmulatedPlatform::check_slot`] (page states add up) and
//! [`EmulatedPlatform::census`] (every frame in exactly one place).
//!
//! Allocations can fail on purpose ([`FailurePattern`]); `Normal`
//! allocations also fail when only the atomic reserve is left.
//!
//! Frames hold bytes ([`EmulatedPlatform::write_bytes`], [`EmulatedPlatform::read_bytes`];
//! a frame never written reads as zeros), and the platform hands out pack buffers from a map
//! (the same failure pattern applies to them), so the `pack` policy's copies and checksums
//! run on real bytes. [`EmulatedPlatform::live_buffers`] lists the buffers handed out, for the
//! census of a test.

mod census;
mod failure;
mod table;

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

pub use census::{Census, CensusError, FrameCounts, Place, SlotUse};
pub use failure::FailurePattern;
pub use table::{OneCpuCounters, OneStack};

use crate::addr::VirtAddr;
use crate::cpu::CpuId;
use crate::frame::{Frame, Urgency};
use crate::layout::{GUARD_PAGES_PER_SLOT, PAGE_SIZE_IN_BYTES, SlotIndex, SlotPart, StackLayout};
use crate::pack_buffer::{Checksum, PackBuffer, SizeClass};
use crate::page_set::PageSet;
use crate::platform::{Flush, FlushBatch, FlushNeed, Platform};
use crate::pte::{self, AbsentPte, EntryKind, PageState, STACK_PAGE_FLAGS, bits};

/// The frame number of the pool's first frame (frames start at 1 MiB).
const FIRST_FRAME_NUMBER: u64 = 256;

/// How to build an [`EmulatedPlatform`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatedConfig {
    /// Number of CPUs.
    pub cpus: u32,
    /// Frames in the pool.
    pub frames: u32,
    /// Frames only atomic allocations may take.
    pub atomic_reserve_frames: u32,
    /// Which allocations fail on purpose.
    pub failures: FailurePattern,
    /// Seed of the failure PRNG.
    pub seed: u64,
}

impl Default for EmulatedConfig {
    fn default() -> Self {
        Self {
            cpus: 1,
            frames: 256,
            atomic_reserve_frames: 0,
            failures: FailurePattern::Never,
            seed: 0,
        }
    }
}

/// What the platform saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatedStats {
    /// Allocation attempts.
    pub allocations: u64,
    /// Attempts that failed, injected or for lack of frames.
    pub failed_allocations: u64,
    /// Shootdowns (flushes that had pages to flush).
    pub shootdowns: u64,
    /// Pages flushed by shootdowns.
    pub shot_down_pages: u64,
}

/// A memory access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The address accessed.
    pub addr: VirtAddr,
    /// The entry of its page.
    pub entry: u64,
}

/// A CPU that could still reach a frame the page table no longer gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleTranslation {
    /// The CPU.
    pub cpu: CpuId,
    /// The page.
    pub addr: VirtAddr,
    /// The frame its TLB translates the page to.
    pub cached_frame_phys_addr: u64,
    /// The entry in the page table.
    pub entry: u64,
}

/// A page of a slot whose entry is not what it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotMismatch {
    /// The page.
    pub addr: VirtAddr,
    /// Its raw entry.
    pub entry: u64,
    /// The state it should be in (`None`: empty, the slot is unused).
    pub expected: Option<PageState>,
}

/// How many pages of a slot are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// Populated pages.
    pub populated: u64,
    /// Unpopulated pages.
    pub unpopulated: u64,
    /// Guard pages.
    pub guard: u64,
}

impl PageCounts {
    /// Returns the number of pages counted.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.populated + self.unpopulated + self.guard
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct FrameInfo {
    allocated: bool,
    mapped_at: Option<u64>,
    dirty: bool,
}

/// A software machine: frame pool, page table, per-CPU TLBs.
pub struct EmulatedPlatform {
    config: EmulatedConfig,
    current: CpuId,
    frames: Vec<FrameInfo>,
    free: Vec<u64>,
    table: BTreeMap<u64, u64>,
    tlbs: Vec<BTreeMap<u64, u64>>,
    injector: failure::Injector,
    stats: EmulatedStats,
    /// The bytes of frames written (by index); a frame not here holds zeros.
    contents: BTreeMap<usize, Vec<u8>>,
    /// Pack buffers handed out, by handle.
    buffers: BTreeMap<u64, (SizeClass, Vec<u8>)>,
    next_buffer: u64,
}

impl fmt::Debug for EmulatedPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedPlatform")
            .field("config", &self.config)
            .field("current", &self.current)
            .field("free_frames", &self.free.len())
            .field("entries", &self.table.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EmulatedPlatform {
    /// Returns a machine with every frame free, an empty page table and CPU 0
    /// current.
    ///
    /// # Panics
    ///
    /// If it has no CPU, or a reserve larger than the pool.
    #[must_use]
    pub fn new(config: EmulatedConfig) -> Self {
        assert!(config.cpus > 0, "an emulated machine needs a CPU");
        assert!(
            config.atomic_reserve_frames <= config.frames,
            "the atomic reserve is larger than the pool"
        );
        let frames = config.frames as usize;
        Self {
            current: CpuId::new(0),
            frames: alloc::vec![FrameInfo::default(); frames],
            // Hand out low frames first.
            free: (0..u64::from(config.frames)).rev().collect(),
            table: BTreeMap::new(),
            tlbs: (0..config.cpus).map(|_| BTreeMap::new()).collect(),
            injector: failure::Injector::new(config.failures, config.seed),
            stats: EmulatedStats::default(),
            contents: BTreeMap::new(),
            buffers: BTreeMap::new(),
            next_buffer: 1,
            config,
        }
    }

    /// Returns the configuration.
    #[must_use]
    pub const fn config(&self) -> &EmulatedConfig {
        &self.config
    }

    /// Makes `cpu` the one that runs from now on.
    ///
    /// # Panics
    ///
    /// If the machine has no such CPU.
    pub fn set_current_cpu(&mut self, cpu: CpuId) {
        assert!(cpu.as_u32() < self.config.cpus, "no CPU {}", cpu.as_u32());
        self.current = cpu;
    }

    /// Changes which allocations fail on purpose.
    pub fn set_failures(&mut self, pattern: FailurePattern) {
        self.injector.set_pattern(pattern);
    }

    /// Returns what the platform saw so far.
    #[must_use]
    pub const fn stats(&self) -> EmulatedStats {
        self.stats
    }

    /// Returns the number of frames in the pool.
    #[must_use]
    pub const fn total_frames(&self) -> u32 {
        self.config.frames
    }

    /// Returns the number of free frames.
    #[must_use]
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Returns the number of present entries.
    #[must_use]
    pub fn mapped_pages(&self) -> usize {
        self.table
            .values()
            .filter(|&&entry| entry & bits::PRESENT != 0)
            .count()
    }

    /// Accesses `addr` (a write) on the current CPU, as the CPU would: see
    /// the module docs. Returns the page fault if the page is not present.
    pub fn touch(&mut self, addr: VirtAddr) -> Result<(), PageFault> {
        let page = addr.page_base().as_u64();
        let tlb = &mut self.tlbs[self.current.as_usize()];
        let phys = match tlb.get(&page) {
            Some(&phys) => phys,
            None => {
                let entry = self.table.get(&page).copied().unwrap_or(0);
                let EntryKind::Present {
                    frame_phys_addr, ..
                } = pte::decode(entry)
                else {
                    return Err(PageFault { addr, entry });
                };
                self.table
                    .insert(page, entry | bits::ACCESSED | bits::DIRTY);
                tlb.insert(page, frame_phys_addr);
                frame_phys_addr
            }
        };
        let index = self.index_of(phys);
        self.frames[index].dirty = true;
        Ok(())
    }

    /// Zeroes the page at `addr` through its mapping on the current CPU, as
    /// the kernel does for a reused cached stack.
    ///
    /// # Panics
    ///
    /// If the page is not present.
    pub fn zero_page(&mut self, addr: VirtAddr) {
        if let Err(fault) = self.touch(addr) {
            panic!("zeroing a page that is not present: {fault:?}");
        }
        let phys = self.frame_at(addr).expect("touched, so present");
        let index = self.index_of(phys);
        self.frames[index].dirty = false;
        self.contents.remove(&index);
    }

    /// Writes `bytes` at `addr` on the current CPU, as the thread running there would: each
    /// page is [touched](Self::touch) first.
    ///
    /// # Errors
    ///
    /// The page fault of the first page that is not present (nothing is written from it on).
    pub fn write_bytes(&mut self, addr: VirtAddr, bytes: &[u8]) -> Result<(), PageFault> {
        let mut at = addr.as_u64();
        for chunk in page_chunks(addr, bytes.len() as u64) {
            self.touch(VirtAddr::new(chunk.0))?;
            let index = self.present_index(VirtAddr::new(chunk.0));
            let offset = (chunk.0 % PAGE_SIZE_IN_BYTES) as usize;
            let start = (chunk.0 - addr.as_u64()) as usize;
            self.frame_bytes_mut(index)[offset..offset + chunk.1 as usize]
                .copy_from_slice(&bytes[start..start + chunk.1 as usize]);
            at += chunk.1;
        }
        debug_assert_eq!(at, addr.as_u64() + bytes.len() as u64);
        Ok(())
    }

    /// Returns the `len` bytes at `addr`, read through the page table (as the kernel reads a
    /// switched-out stack).
    ///
    /// # Panics
    ///
    /// If a page of the range is not present.
    #[must_use]
    pub fn read_bytes(&self, addr: VirtAddr, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        for (at, n) in page_chunks(addr, len) {
            let index = self.present_index(VirtAddr::new(at));
            let offset = (at % PAGE_SIZE_IN_BYTES) as usize;
            match self.contents.get(&index) {
                Some(bytes) => out.extend_from_slice(&bytes[offset..offset + n as usize]),
                None => out.resize(out.len() + n as usize, 0),
            }
        }
        out
    }

    /// Flips the bits of `mask` in byte `offset` of a pack buffer, bypassing every check:
    /// for tests that corrupt a packed stack on purpose.
    ///
    /// # Panics
    ///
    /// If the buffer was not handed out or is shorter.
    pub fn corrupt_buffer(&mut self, buffer: &PackBuffer, offset: usize, mask: u8) {
        let (_, bytes) = self
            .buffers
            .get_mut(&buffer.handle())
            .unwrap_or_else(|| panic!("{buffer:?} was not handed out"));
        bytes[offset] ^= mask;
    }

    /// Flips the bits of `mask` in byte `offset` of the frame at `phys_addr`, as a write by
    /// another mapping would: for tests of guard mode.
    ///
    /// # Panics
    ///
    /// If the frame is not from this pool.
    pub fn corrupt_frame(&mut self, phys_addr: u64, offset: usize, mask: u8) {
        let index = self.index_of(phys_addr);
        self.frames[index].dirty = true;
        self.frame_bytes_mut(index)[offset] ^= mask;
    }

    /// Returns the pack buffers handed out and not taken back: handle and class.
    pub fn live_buffers(&self) -> impl Iterator<Item = (u64, SizeClass)> + '_ {
        self.buffers
            .iter()
            .map(|(&handle, &(class, _))| (handle, class))
    }

    fn frame_bytes_mut(&mut self, index: usize) -> &mut Vec<u8> {
        self.contents
            .entry(index)
            .or_insert_with(|| vec![0; PAGE_SIZE_IN_BYTES as usize])
    }

    fn present_index(&self, addr: VirtAddr) -> usize {
        let entry = self.read_entry(addr);
        let EntryKind::Present {
            frame_phys_addr, ..
        } = pte::decode(entry)
        else {
            panic!("{addr} is not present (entry {entry:#x})");
        };
        self.index_of(frame_phys_addr)
    }

    fn buffer_bytes(&self, buffer: &PackBuffer) -> &[u8] {
        let (class, bytes) = self
            .buffers
            .get(&buffer.handle())
            .unwrap_or_else(|| panic!("{buffer:?} was not handed out"));
        assert_eq!(*class, buffer.class(), "{buffer:?} changed its class");
        bytes
    }

    /// Returns the physical address of the frame mapped at `addr`, if any.
    #[must_use]
    pub fn frame_at(&self, addr: VirtAddr) -> Option<u64> {
        match pte::decode(self.read_entry(addr.page_base())) {
            EntryKind::Present {
                frame_phys_addr, ..
            } => Some(frame_phys_addr),
            _ => None,
        }
    }

    /// Returns whether the frame at `phys_addr` still holds only zeros.
    ///
    /// # Panics
    ///
    /// If the frame is not from this pool.
    #[must_use]
    pub fn is_clean(&self, phys_addr: u64) -> bool {
        !self.frames[self.index_of(phys_addr)].dirty
    }

    /// Returns the first cached translation that no longer matches the page
    /// table (a CPU could reach a frame it should not), if any.
    pub fn check_tlbs(&self) -> Result<(), StaleTranslation> {
        for (cpu, tlb) in self.tlbs.iter().enumerate() {
            for (&page, &phys) in tlb {
                let entry = self.table.get(&page).copied().unwrap_or(0);
                let matches = matches!(
                    pte::decode(entry),
                    EntryKind::Present { frame_phys_addr, accessed: true } if frame_phys_addr == phys
                );
                if !matches {
                    return Err(StaleTranslation {
                        // The CPU count is a u32.
                        cpu: CpuId::new(cpu as u32),
                        addr: VirtAddr::new(page),
                        cached_frame_phys_addr: phys,
                        entry,
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks every entry of `slot` against what it should be: all empty if
    /// `populated` is `None` (slot unused), else guard pages empty, the pages
    /// of `populated` present and the other stack pages unpopulated with the
    /// slot as owner. Returns how many pages are in each state.
    pub fn check_slot(
        &self,
        layout: &StackLayout,
        slot: SlotIndex,
        populated: Option<PageSet>,
    ) -> Result<PageCounts, SlotMismatch> {
        let mut counts = PageCounts::default();
        for index in 0..layout.slot_size_in_pages() {
            let addr = VirtAddr::new(layout.slot_base(slot).as_u64() + index * PAGE_SIZE_IN_BYTES);
            let entry = self.read_entry(addr);
            let part = layout.locate(addr).expect("inside the slot").part;
            let expected = match (populated, part) {
                (None, _) => None,
                (Some(_), SlotPart::Guard) => Some(PageState::Guard),
                (Some(set), SlotPart::Stack(page)) if set.contains(page) => {
                    Some(PageState::Populated)
                }
                (Some(_), SlotPart::Stack(_)) => Some(PageState::Unpopulated { owner: slot }),
            };
            let actual = pte::page_state(part, entry);
            let fine = match expected {
                None => entry == 0,
                Some(_) => actual == expected,
            };
            if !fine {
                return Err(SlotMismatch {
                    addr,
                    entry,
                    expected,
                });
            }
            match actual {
                Some(PageState::Populated) => counts.populated += 1,
                Some(PageState::Unpopulated { .. }) => counts.unpopulated += 1,
                Some(PageState::Guard) => counts.guard += 1,
                None => {}
            }
        }
        debug_assert!(populated.is_none() || counts.guard == GUARD_PAGES_PER_SLOT);
        Ok(counts)
    }

    /// Starts a census of every frame: records the free ones and the mapped
    /// ones (as [`Place::Stack`] or [`Place::Cache`] by `slot_use` of their
    /// slot). The caller records the rest (magazines, other use) and calls
    /// [`Census::finish`].
    pub fn census(
        &self,
        layout: &StackLayout,
        slot_use: impl Fn(SlotIndex) -> SlotUse,
    ) -> Result<Census, CensusError> {
        let mut census = Census::new(FIRST_FRAME_NUMBER, self.frames.len());
        for &index in &self.free {
            census.record_number(FIRST_FRAME_NUMBER + index, Place::Free)?;
        }
        for (&page, &entry) in &self.table {
            let EntryKind::Present {
                frame_phys_addr, ..
            } = pte::decode(entry)
            else {
                continue;
            };
            let addr = VirtAddr::new(page);
            let place = match layout.locate(addr) {
                Some(location) if location.part != SlotPart::Guard => {
                    match slot_use(location.slot) {
                        SlotUse::Live => Place::Stack(location.slot),
                        SlotUse::Cached => Place::Cache(location.slot),
                        SlotUse::Unused => return Err(CensusError::MappedOutsideStacks { addr }),
                    }
                }
                _ => return Err(CensusError::MappedOutsideStacks { addr }),
            };
            census.record_number(frame_phys_addr / PAGE_SIZE_IN_BYTES, place)?;
        }
        Ok(census)
    }

    fn index_of(&self, phys: u64) -> usize {
        let number = phys / PAGE_SIZE_IN_BYTES;
        let index = number
            .checked_sub(FIRST_FRAME_NUMBER)
            .filter(|&index| index < self.frames.len() as u64)
            .unwrap_or_else(|| panic!("frame {phys:#x} is not from this pool"));
        // Below the pool size, a usize.
        index as usize
    }

    fn present_entry(&self, addr: VirtAddr) -> Option<u64> {
        self.table
            .get(&addr.as_u64())
            .copied()
            .filter(|entry| entry & bits::PRESENT != 0)
    }
}

impl Platform for EmulatedPlatform {
    fn current_cpu(&self) -> CpuId {
        self.current
    }

    fn alloc_frame(&mut self, urgency: Urgency) -> Option<Frame> {
        self.stats.allocations += 1;
        let reserve = match urgency {
            Urgency::Normal => self.config.atomic_reserve_frames as usize,
            Urgency::Atomic => 0,
        };
        if self.injector.fails(urgency) || self.free.len() <= reserve {
            self.stats.failed_allocations += 1;
            return None;
        }
        let index = self.free.pop()?;
        // Below the pool size, a usize.
        let info = &mut self.frames[index as usize];
        debug_assert!(!info.allocated);
        *info = FrameInfo {
            allocated: true,
            mapped_at: None,
            dirty: false,
        };
        self.contents.remove(&(index as usize));
        Some(Frame::from_phys_addr(
            (FIRST_FRAME_NUMBER + index) * PAGE_SIZE_IN_BYTES,
        ))
    }

    fn free_frame(&mut self, frame: Frame) {
        let index = self.index_of(frame.phys_addr());
        let info = &mut self.frames[index];
        assert!(info.allocated, "double free of {frame:?}");
        assert!(
            info.mapped_at.is_none(),
            "freeing {frame:?}, which is still mapped"
        );
        info.allocated = false;
        self.free.push(index as u64);
    }

    fn map_stack_page(&mut self, addr: VirtAddr, frame: Frame) -> Flush {
        assert!(
            addr.is_page_aligned(),
            "mapping the unaligned address {addr}"
        );
        assert!(
            self.present_entry(addr).is_none(),
            "mapping {addr}, which is present already"
        );
        let index = self.index_of(frame.phys_addr());
        let info = &mut self.frames[index];
        assert!(info.allocated, "mapping the free {frame:?}");
        assert!(info.mapped_at.is_none(), "{frame:?} is mapped twice");
        info.mapped_at = Some(addr.as_u64());
        let entry = frame.phys_addr() | STACK_PAGE_FLAGS;
        self.table.insert(addr.as_u64(), entry);
        Flush::new(addr, FlushNeed::NotCached)
    }

    fn unmap_stack_page(&mut self, addr: VirtAddr, leave: AbsentPte) -> (Frame, Flush) {
        let Some(entry) = self.present_entry(addr) else {
            panic!("unmapping {addr}, which is not present");
        };
        let phys = entry & bits::ADDRESS_MASK;
        let index = self.index_of(phys);
        self.frames[index].mapped_at = None;
        self.write_absent_unchecked(addr, leave);
        let need = if entry & bits::ACCESSED != 0 {
            FlushNeed::Shootdown
        } else {
            FlushNeed::NotCached
        };
        (Frame::from_phys_addr(phys), Flush::new(addr, need))
    }

    fn write_absent(&mut self, addr: VirtAddr, entry: AbsentPte) {
        assert!(
            self.present_entry(addr).is_none(),
            "writing a not-present entry over the present page {addr}"
        );
        self.write_absent_unchecked(addr, entry);
    }

    fn read_entry(&self, addr: VirtAddr) -> u64 {
        self.table
            .get(&addr.page_base().as_u64())
            .copied()
            .unwrap_or(0)
    }

    fn flush(&mut self, batch: FlushBatch) {
        let Some((start, end)) = batch.range() else {
            return;
        };
        self.stats.shootdowns += 1;
        self.stats.shot_down_pages += u64::from(batch.pages());
        for tlb in &mut self.tlbs {
            tlb.retain(|&page, _| page < start.as_u64() || page >= end.as_u64());
        }
    }

    fn alloc_buffer(&mut self, class: SizeClass, urgency: Urgency) -> Option<PackBuffer> {
        self.stats.allocations += 1;
        if self.injector.fails(urgency) {
            self.stats.failed_allocations += 1;
            return None;
        }
        let handle = self.next_buffer;
        self.next_buffer += 1;
        // Fresh buffers hold a pattern, not zeros: a restore must copy every byte.
        self.buffers
            .insert(handle, (class, vec![0xa5; class.bytes() as usize]));
        Some(PackBuffer::from_handle(handle, class))
    }

    fn free_buffer(&mut self, buffer: PackBuffer) {
        let (class, _) = self
            .buffers
            .remove(&buffer.handle())
            .unwrap_or_else(|| panic!("double free of {buffer:?}"));
        assert_eq!(class, buffer.class(), "{buffer:?} changed its class");
    }

    fn copy_to_buffer(&mut self, from: VirtAddr, buffer: &mut PackBuffer, len: u64) {
        assert!(len <= buffer.class().bytes(), "{len} bytes into {buffer:?}");
        let bytes = self.read_bytes(from, len);
        let (_, into) = self
            .buffers
            .get_mut(&buffer.handle())
            .unwrap_or_else(|| panic!("{buffer:?} was not handed out"));
        into[..len as usize].copy_from_slice(&bytes);
    }

    fn copy_from_buffer(&mut self, buffer: &PackBuffer, to: VirtAddr, len: u64) {
        let bytes = self.buffer_bytes(buffer)[..len as usize].to_vec();
        for (at, n) in page_chunks(to, len) {
            let index = self.present_index(VirtAddr::new(at));
            self.frames[index].dirty = true;
            let offset = (at % PAGE_SIZE_IN_BYTES) as usize;
            let start = (at - to.as_u64()) as usize;
            self.frame_bytes_mut(index)[offset..offset + n as usize]
                .copy_from_slice(&bytes[start..start + n as usize]);
        }
    }

    fn stack_checksum(&self, from: VirtAddr, len: u64) -> Checksum {
        Checksum::of(&self.read_bytes(from, len))
    }
}

/// Splits `[addr, addr + len)` at page boundaries: (start, length) of each piece.
fn page_chunks(addr: VirtAddr, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = addr.as_u64() + len;
    let mut at = addr.as_u64();
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page_end = (at / PAGE_SIZE_IN_BYTES + 1) * PAGE_SIZE_IN_BYTES;
        let n = page_end.min(end) - at;
        let chunk = (at, n);
        at += n;
        Some(chunk)
    })
}

impl EmulatedPlatform {
    /// Overwrites the entry of the page at `addr` with `raw`, bypassing every
    /// check: for tests that corrupt the page table on purpose. The frame of
    /// a present entry overwritten this way stays allocated.
    pub fn write_raw_entry(&mut self, addr: VirtAddr, raw: u64) {
        self.table.insert(addr.page_base().as_u64(), raw);
    }

    fn write_absent_unchecked(&mut self, addr: VirtAddr, entry: AbsentPte) {
        assert!(
            addr.is_page_aligned(),
            "writing the unaligned address {addr}"
        );
        if entry.raw() == 0 {
            self.table.remove(&addr.as_u64());
        } else {
            self.table.insert(addr.as_u64(), entry.raw());
        }
    }
}

#[cfg(test)]
mod tests;

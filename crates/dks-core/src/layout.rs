//! The stack region and the arithmetic of its slots.
//!
//! The region starts at [`StackLayout::base`] (by default
//! [`DEFAULT_STACK_REGION_BASE`], where Linux puts vmalloc) and is carved into
//! [`StackLayout::slot_count`] slots of equal size. Each slot is, from low to
//! high addresses:
//!
//! ```text
//!  slot base                                                   stack top
//!  | guard page(s) | page n-1 | ... | page 1 | page 0 |
//!  '-- GUARD_PAGES_PER_SLOT --'-------- max_stack ---------'
//! ```
//!
//! The stack grows down from the stack top, so stack pages are numbered from
//! the top: [`StackPage`] 0 holds the stack top and is the first page a thread
//! uses. A stack overflowing its `max_stack` bytes runs into the guard page of
//! its own slot, never into the slot below.
//!
//! # Invariants
//!
//! - This module is the only place that computes a stack address; everyone
//!   else asks a [`StackLayout`]. It is immutable once built.
//! - A layout only exists for a valid geometry: `max_stack` is 16, 32 or
//!   64 KiB, the base is page aligned, there is at least one slot, and the
//!   whole region is canonical and does not wrap around. [`StackLayout::try_new`]
//!   rejects anything else with a [`LayoutError`]; nothing is clamped.
//! - [`StackLayout::locate`] and the address functions are inverse to each
//!   other for every address of the region.

use core::fmt;

use crate::addr::VirtAddr;
use crate::page_set::PageSet;

/// The size of a page, in bytes.
pub const PAGE_SIZE_IN_BYTES: u64 = 4096;

/// The number of guard pages at the low end of every slot.
pub const GUARD_PAGES_PER_SLOT: u64 = 1;

/// The largest number of pages a stack may have (64 KiB).
pub const MAX_STACK_PAGES_LIMIT: usize = 16;

/// The bytes below the stack pointer that leaf functions may use (the x86_64
/// System V red zone); they hold live data too.
pub const RED_ZONE_IN_BYTES: u64 = 128;

/// Where the stack region starts unless told otherwise (Linux's vmalloc base).
pub const DEFAULT_STACK_REGION_BASE: u64 = 0xffff_c900_0000_0000;

const _: () = assert!(DEFAULT_STACK_REGION_BASE.is_multiple_of(PAGE_SIZE_IN_BYTES));
const _: () = assert!(MAX_STACK_PAGES_LIMIT <= PageSet::CAPACITY);
const _: () = assert!(MaxStack::Kib64.pages() as usize == MAX_STACK_PAGES_LIMIT);
const _: () = assert!(GUARD_PAGES_PER_SLOT >= 1);
const _: () = assert!(RED_ZONE_IN_BYTES < PAGE_SIZE_IN_BYTES);

/// Returns where a trap frame moved onto an interrupted stack whose stack pointer is `sp`
/// ends: below the red zone, aligned to 16 bytes as the ABI wants a frame.
#[must_use]
pub const fn frame_below_red_zone(sp: u64) -> u64 {
    (sp - RED_ZONE_IN_BYTES) & !15
}

/// The size of every stack in the region: 16, 32 or 64 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaxStack {
    /// 16 KiB (4 pages), Linux's `THREAD_SIZE` on x86_64.
    Kib16,
    /// 32 KiB (8 pages).
    Kib32,
    /// 64 KiB (16 pages).
    Kib64,
}

impl MaxStack {
    /// Every allowed size.
    pub const ALL: [Self; 3] = [Self::Kib16, Self::Kib32, Self::Kib64];

    /// Returns the size of `bytes` bytes, or [`LayoutError::BadMaxStack`] for
    /// anything but 16, 32 or 64 KiB.
    pub const fn try_from_bytes(bytes: u64) -> Result<Self, LayoutError> {
        match bytes {
            0x4000 => Ok(Self::Kib16),
            0x8000 => Ok(Self::Kib32),
            0x1_0000 => Ok(Self::Kib64),
            _ => Err(LayoutError::BadMaxStack { bytes }),
        }
    }

    /// Returns the size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.pages() as u64 * PAGE_SIZE_IN_BYTES
    }

    /// Returns the size as the kernel's command line and scenarios spell it: `16K`, `32K`
    /// or `64K`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kib16 => "16K",
            Self::Kib32 => "32K",
            Self::Kib64 => "64K",
        }
    }

    /// Returns the size named `name` (see [`Self::name`]), or `None`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|size| size.name() == name)
    }

    /// Returns the size in pages.
    #[must_use]
    pub const fn pages(self) -> u8 {
        match self {
            Self::Kib16 => 4,
            Self::Kib32 => 8,
            Self::Kib64 => 16,
        }
    }
}

/// The index of a slot of the stack region; also the owner id written into
/// the slot's unpopulated page-table entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotIndex(u32);

impl SlotIndex {
    /// Returns slot number `index`.
    #[must_use]
    pub const fn new(index: u32) -> Self {
        Self(index)
    }

    /// Returns the slot number.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// Returns the slot number as an index into a table of slots.
    #[must_use]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// A page of a stack, counted from the top: page 0 holds the stack top.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackPage(u8);

impl StackPage {
    /// The top page of every stack.
    pub const TOP: Self = Self(0);

    /// Returns page `index` from the top. Whether a stack has that page is the
    /// layout's business ([`StackLayout::stack_page`]).
    #[must_use]
    pub const fn new(index: u8) -> Self {
        Self(index)
    }

    /// Returns the page's index from the top.
    #[must_use]
    pub const fn index(self) -> u8 {
        self.0
    }
}

/// Which part of a slot an address falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotPart {
    /// A guard page below the stack.
    Guard,
    /// A page of the stack.
    Stack(StackPage),
}

/// Where an address of the stack region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The slot the address belongs to.
    pub slot: SlotIndex,
    /// The part of the slot.
    pub part: SlotPart,
}

/// Why a layout or a stack pointer was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// `max_stack` must be 16, 32 or 64 KiB.
    BadMaxStack {
        /// The size asked for, in bytes.
        bytes: u64,
    },
    /// The region base must be page aligned.
    MisalignedBase {
        /// The base asked for.
        base: VirtAddr,
    },
    /// A region needs at least one slot.
    NoSlots,
    /// The region wraps around or leaves the canonical half its base is in.
    NotCanonical {
        /// The base asked for.
        base: VirtAddr,
        /// The number of slots asked for.
        slot_count: u32,
    },
    /// A stack pointer is not inside the stack of its slot.
    SpOutsideStack {
        /// The slot whose stack was meant.
        slot: SlotIndex,
        /// The stack pointer.
        sp: VirtAddr,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMaxStack { bytes } => write!(
                f,
                "max_stack of {bytes} bytes is not allowed; use 16, 32 or 64 KiB"
            ),
            Self::MisalignedBase { base } => {
                write!(f, "stack region base {base} is not page aligned")
            }
            Self::NoSlots => write!(f, "the stack region needs at least one slot"),
            Self::NotCanonical { base, slot_count } => write!(
                f,
                "a stack region of {slot_count} slots at {base} is not canonical"
            ),
            Self::SpOutsideStack { slot, sp } => {
                write!(
                    f,
                    "stack pointer {sp} is outside the stack of slot {}",
                    slot.0
                )
            }
        }
    }
}

impl core::error::Error for LayoutError {}

/// The geometry of the stack region: where it is, how many slots it has and
/// how large each stack is. The one owner of stack address arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackLayout {
    base: u64,
    slot_count: u32,
    max_stack: MaxStack,
}

impl StackLayout {
    /// Returns the layout of `slot_count` slots of `max_stack_bytes` stacks
    /// starting at `base`, or why that geometry is invalid. A `const fn`, so
    /// that a fixed region (the kernel's own stacks) is a constant checked at
    /// compile time.
    pub const fn try_new(
        base: VirtAddr,
        max_stack_bytes: u64,
        slot_count: u32,
    ) -> Result<Self, LayoutError> {
        let max_stack = match MaxStack::try_from_bytes(max_stack_bytes) {
            Ok(max_stack) => max_stack,
            Err(error) => return Err(error),
        };
        if !base.is_page_aligned() {
            return Err(LayoutError::MisalignedBase { base });
        }
        if slot_count == 0 {
            return Err(LayoutError::NoSlots);
        }
        let slot_size_in_bytes =
            (GUARD_PAGES_PER_SLOT + max_stack.pages() as u64) * PAGE_SIZE_IN_BYTES;
        let not_canonical = LayoutError::NotCanonical { base, slot_count };
        let last_byte = match (slot_count as u64).checked_mul(slot_size_in_bytes) {
            Some(size) => match base.as_u64().checked_add(size - 1) {
                Some(last_byte) => last_byte,
                None => return Err(not_canonical),
            },
            None => return Err(not_canonical),
        };
        let same_half = base.as_u64() >> 47 == last_byte >> 47;
        if !is_canonical(base.as_u64()) || !is_canonical(last_byte) || !same_half {
            return Err(not_canonical);
        }
        Ok(Self {
            base: base.as_u64(),
            slot_count,
            max_stack,
        })
    }

    /// Returns the layout of `slot_count` slots of `max_stack_bytes` stacks at
    /// [`DEFAULT_STACK_REGION_BASE`], or why that geometry is invalid.
    pub fn try_with_default_base(
        max_stack_bytes: u64,
        slot_count: u32,
    ) -> Result<Self, LayoutError> {
        Self::try_new(
            VirtAddr::new(DEFAULT_STACK_REGION_BASE),
            max_stack_bytes,
            slot_count,
        )
    }

    /// Returns the layout like [`Self::try_new`].
    ///
    /// # Panics
    ///
    /// If the geometry is invalid.
    #[must_use]
    pub fn new(base: VirtAddr, max_stack_bytes: u64, slot_count: u32) -> Self {
        match Self::try_new(base, max_stack_bytes, slot_count) {
            Ok(layout) => layout,
            Err(error) => panic!("invalid stack layout: {error}"),
        }
    }

    /// Returns the first address of the region.
    #[must_use]
    pub const fn base(&self) -> VirtAddr {
        VirtAddr::new(self.base)
    }

    /// Returns the number of slots.
    #[must_use]
    pub const fn slot_count(&self) -> u32 {
        self.slot_count
    }

    /// Returns the size of every stack.
    #[must_use]
    pub const fn max_stack(&self) -> MaxStack {
        self.max_stack
    }

    /// Returns the number of pages of every stack.
    #[must_use]
    pub const fn stack_pages(&self) -> u8 {
        self.max_stack.pages()
    }

    /// Returns the number of pages of every slot, guard pages included.
    #[must_use]
    pub const fn slot_size_in_pages(&self) -> u64 {
        GUARD_PAGES_PER_SLOT + self.max_stack.pages() as u64
    }

    /// Returns the number of bytes of every slot, guard pages included.
    #[must_use]
    pub const fn slot_size_in_bytes(&self) -> u64 {
        self.slot_size_in_pages() * PAGE_SIZE_IN_BYTES
    }

    /// Returns the first address past the region.
    #[must_use]
    pub const fn region_end(&self) -> VirtAddr {
        // try_new checked that this does not overflow (the last byte is one
        // below; the end may be 0 only if the region ends the address space).
        VirtAddr::new(
            self.base
                .wrapping_add(self.slot_count as u64 * self.slot_size_in_bytes()),
        )
    }

    /// Returns the set of all pages of a stack.
    #[must_use]
    pub const fn all_pages(&self) -> PageSet {
        PageSet::top(self.max_stack.pages() as usize)
    }

    /// Returns page `index` from the top, if stacks of this layout have it.
    #[must_use]
    pub const fn stack_page(&self, index: u8) -> Option<StackPage> {
        if index < self.max_stack.pages() {
            Some(StackPage::new(index))
        } else {
            None
        }
    }

    /// Returns slot `index`, if the region has it.
    #[must_use]
    pub const fn slot(&self, index: u32) -> Option<SlotIndex> {
        if index < self.slot_count {
            Some(SlotIndex::new(index))
        } else {
            None
        }
    }

    /// Returns the lowest address of `slot` (its first guard page).
    ///
    /// # Panics
    ///
    /// If the region has no such slot.
    #[must_use]
    pub fn slot_base(&self, slot: SlotIndex) -> VirtAddr {
        assert!(
            slot.0 < self.slot_count,
            "slot {} outside the region",
            slot.0
        );
        VirtAddr::new(self.base + u64::from(slot.0) * self.slot_size_in_bytes())
    }

    /// Returns the address of guard page `index` of `slot` (0 is the lowest).
    ///
    /// # Panics
    ///
    /// If the region has no such slot or the slot no such guard page.
    #[must_use]
    pub fn guard_page_addr(&self, slot: SlotIndex, index: u64) -> VirtAddr {
        assert!(
            index < GUARD_PAGES_PER_SLOT,
            "guard page {index} outside the slot"
        );
        VirtAddr::new(self.slot_base(slot).as_u64() + index * PAGE_SIZE_IN_BYTES)
    }

    /// Returns the lowest address of the stack of `slot` (just above its
    /// guard pages).
    ///
    /// # Panics
    ///
    /// If the region has no such slot.
    #[must_use]
    pub fn stack_bottom(&self, slot: SlotIndex) -> VirtAddr {
        VirtAddr::new(self.slot_base(slot).as_u64() + GUARD_PAGES_PER_SLOT * PAGE_SIZE_IN_BYTES)
    }

    /// Returns the stack top of `slot`: the first address past its stack,
    /// where the stack pointer of an empty stack points.
    ///
    /// # Panics
    ///
    /// If the region has no such slot.
    #[must_use]
    pub fn stack_top(&self, slot: SlotIndex) -> VirtAddr {
        VirtAddr::new(self.slot_base(slot).as_u64() + self.slot_size_in_bytes())
    }

    /// Returns the lowest address of `page` of the stack of `slot`.
    ///
    /// # Panics
    ///
    /// If the region has no such slot or the stack no such page.
    #[must_use]
    pub fn page_addr(&self, slot: SlotIndex, page: StackPage) -> VirtAddr {
        assert!(
            page.0 < self.stack_pages(),
            "stack page {} outside the stack",
            page.0
        );
        let top = self.stack_top(slot).as_u64();
        VirtAddr::new(top - (u64::from(page.0) + 1) * PAGE_SIZE_IN_BYTES)
    }

    /// Returns which slot, and which part of it, `addr` falls in, or `None`
    /// for an address outside the region.
    #[must_use]
    pub fn locate(&self, addr: VirtAddr) -> Option<Location> {
        let offset = addr.as_u64().checked_sub(self.base)?;
        let slot = offset / self.slot_size_in_bytes();
        if slot >= u64::from(self.slot_count) {
            return None;
        }
        let page_in_slot = offset % self.slot_size_in_bytes() / PAGE_SIZE_IN_BYTES;
        let part = if page_in_slot < GUARD_PAGES_PER_SLOT {
            SlotPart::Guard
        } else {
            // Below slot_size_in_pages, so it fits the page index.
            let from_top = self.slot_size_in_pages() - 1 - page_in_slot;
            SlotPart::Stack(StackPage::new(from_top as u8))
        };
        Some(Location {
            // Below slot_count, a u32.
            slot: SlotIndex::new(slot as u32),
            part,
        })
    }

    /// Returns how deep `addr` is in the stack of `slot`: its distance from
    /// the stack top, in bytes (an address in the guard page is deeper than
    /// `max_stack`).
    ///
    /// # Panics
    ///
    /// If the region has no such slot or `addr` is above the stack top.
    #[must_use]
    pub fn depth_in_bytes(&self, slot: SlotIndex, addr: VirtAddr) -> u64 {
        self.stack_top(slot)
            .as_u64()
            .checked_sub(addr.as_u64())
            .expect("address above the stack top")
    }

    /// Returns the pages that a stack used down to `depth_in_bytes` below its
    /// top touches (at least the top page, at most the whole stack).
    #[must_use]
    pub fn pages_to_depth(&self, depth_in_bytes: u64) -> PageSet {
        let pages = depth_in_bytes.div_ceil(PAGE_SIZE_IN_BYTES).max(1);
        let pages = pages.min(u64::from(self.stack_pages()));
        // At most 16.
        PageSet::top(pages as usize)
    }

    /// Returns the pages of the stack of `slot` that may hold live data when
    /// its stack pointer is `sp`: every page from the top down to the one
    /// holding the lowest byte of the red zone below `sp`. The top page is
    /// always live.
    pub fn live_pages(&self, slot: SlotIndex, sp: VirtAddr) -> Result<PageSet, LayoutError> {
        let top = self.stack_top(slot).as_u64();
        let bottom = self.stack_bottom(slot).as_u64();
        if sp.as_u64() < bottom || sp.as_u64() > top {
            return Err(LayoutError::SpOutsideStack { slot, sp });
        }
        let lowest_live = sp.as_u64().saturating_sub(RED_ZONE_IN_BYTES).max(bottom);
        Ok(self.pages_to_depth(top - lowest_live))
    }
}

/// Returns whether bits 63..47 of `addr` are all equal.
const fn is_canonical(addr: u64) -> bool {
    let high = addr >> 47;
    high == 0 || high == (1 << 17) - 1
}

#[cfg(test)]
mod tests;

//! Page states and how an unpopulated stack page is written in an x86_64
//! page-table entry.
//!
//! Every page of a slot in use is in exactly one [`PageState`]:
//!
//! - **populated**: the entry is present and maps a frame;
//! - **unpopulated**: the entry is not present and holds the marker and the
//!   owning slot, so the fault handler learns the owner from the entry itself
//!   and never has to trust `current` (which is wrong during a switch);
//! - **guard**: the entry is empty (zero); only the guard pages of a slot are.
//!
//! A slot not in use has only empty entries.
//!
//! # Bit layout of an unpopulated entry
//!
//! When bit 0 (P) of an x86_64 page-table entry is clear, the CPU ignores all
//! other bits (Intel SDM Vol. 3, "Paging": "Format of a Page-Table Entry"),
//! so they are free for software. An unpopulated stack page is:
//!
//! | bits   | value                                                        |
//! |--------|--------------------------------------------------------------|
//! | 0      | 0: not present                                               |
//! | 1..=11 | 0                                                            |
//! | 12..=43| the owner: the [`SlotIndex`] of the stack (32 bits)          |
//! | 44..=51| all ones (see below)                                         |
//! | 52..=58| the marker [`UNPOPULATED_MARKER`] (`0x5a`)                   |
//! | 59..=63| 0                                                            |
//!
//! Bits 44..=51 are set so that the frame-address field (bits 12..=51) of a
//! not-present entry points far above any physical memory: a CPU affected by
//! L1TF may speculatively use that field as an address, and Linux's PTE
//! inversion makes the same choice for the same reason.
//!
//! Decoding is exact: an entry is unpopulated only if every bit outside the
//! owner field has the value above. A present entry (P set) and an empty entry
//! (zero) therefore never decode as a stack page, nor does a random value
//! with any stray bit set.

use crate::layout::{SlotIndex, SlotPart};

/// The bits of an x86-64 page-table entry: the one definition, which the kernel's page tables
/// use too (`kernel/src/hw/paging.rs` re-exports it).
pub mod bits {
    /// Bit 0: the entry maps a frame.
    pub const PRESENT: u64 = 1 << 0;
    /// Bit 1: writes are allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// Bit 3: write-through caching.
    pub const WRITE_THROUGH: u64 = 1 << 3;
    /// Bit 4: caching disabled.
    pub const NO_CACHE: u64 = 1 << 4;
    /// Bit 5: the CPU used the entry for a translation since the bit was cleared.
    pub const ACCESSED: u64 = 1 << 5;
    /// Bit 6: the CPU wrote through the entry.
    pub const DIRTY: u64 = 1 << 6;
    /// Bit 7: a 2 MiB page (in a page directory).
    pub const HUGE: u64 = 1 << 7;
    /// Bit 8: the translation is global (kept across CR3 loads).
    pub const GLOBAL: u64 = 1 << 8;
    /// Bit 63: instruction fetches are not allowed.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// Bits 12..=51: the physical address of the frame of a present entry.
    pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// The flags of a populated stack page: present, writable, not executable, not global (a
/// stack page is unmapped while other CPUs may hold it in their TLBs, and purged with them).
pub const STACK_PAGE_FLAGS: u64 = bits::PRESENT | bits::WRITABLE | bits::NO_EXECUTE;

/// The marker of an unpopulated stack page, in bits 52..=58.
pub const UNPOPULATED_MARKER: u64 = 0x5a;
const MARKER_SHIFT: u32 = 52;
const MARKER_MASK: u64 = 0x7f << MARKER_SHIFT;
const OWNER_SHIFT: u32 = 12;
const OWNER_MASK: u64 = (u32::MAX as u64) << OWNER_SHIFT;
const HIGH_ADDRESS_BITS: u64 = 0xff << 44;
/// Every bit of an unpopulated entry apart from the owner.
const UNPOPULATED_FIXED_BITS: u64 = (UNPOPULATED_MARKER << MARKER_SHIFT) | HIGH_ADDRESS_BITS;

/// The bit that marks an unpopulated entry of a packed stack ([`AbsentPte::packed`]): bit 9,
/// one of the bits the MMU ignores. With it set the entry is not one [`decode`] reads as
/// unpopulated (it says [`EntryKind::Foreign`]), so the stack-fault path refuses a touch of a
/// packed stack in its refusal branch, at no cost to the faults it serves
/// ([`packed_owner`] tells it apart there).
const PACKED_BIT: u64 = 1 << 9;
/// Every bit of an unpopulated entry of a packed stack apart from the owner.
const PACKED_FIXED_BITS: u64 = UNPOPULATED_FIXED_BITS | PACKED_BIT;

const _: () =
    assert!(PACKED_BIT & (OWNER_MASK | MARKER_MASK | HIGH_ADDRESS_BITS | bits::PRESENT) == 0);
const _: () = assert!(UNPOPULATED_MARKER <= 0x7f);
const _: () = assert!(OWNER_MASK & HIGH_ADDRESS_BITS == 0);
const _: () = assert!(OWNER_MASK & MARKER_MASK == 0 && HIGH_ADDRESS_BITS & MARKER_MASK == 0);
const _: () = assert!(UNPOPULATED_FIXED_BITS & bits::PRESENT == 0);
const _: () = assert!((OWNER_MASK | HIGH_ADDRESS_BITS) & !bits::ADDRESS_MASK == 0);

/// A not-present entry that dks writes: empty, or unpopulated with an owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbsentPte(u64);

impl AbsentPte {
    /// The empty entry: a guard page, or a page of a slot not in use.
    pub const EMPTY: Self = Self(0);

    /// Returns the entry of an unpopulated page of the stack in slot `owner`.
    #[must_use]
    pub const fn unpopulated(owner: SlotIndex) -> Self {
        Self(UNPOPULATED_FIXED_BITS | ((owner.as_u32() as u64) << OWNER_SHIFT))
    }

    /// Returns the entry of a page of the packed stack in slot `owner` ([`crate::pack`]):
    /// unpopulated, and refused by the fault path.
    #[must_use]
    pub const fn packed(owner: SlotIndex) -> Self {
        Self(PACKED_FIXED_BITS | ((owner.as_u32() as u64) << OWNER_SHIFT))
    }

    /// Returns the raw entry.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// What a raw page-table entry says, as far as stacks are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Present: maps a frame.
    Present {
        /// The physical address of the frame.
        frame_phys_addr: u64,
        /// Whether the Accessed bit is set.
        accessed: bool,
    },
    /// Not present, an unpopulated stack page of `owner`.
    Unpopulated {
        /// The slot of the stack that owns the page.
        owner: SlotIndex,
    },
    /// Zero: a guard page or nothing.
    Empty,
    /// Not present and not written by dks.
    Foreign,
}

/// Returns what the raw entry `raw` says.
#[must_use]
pub const fn decode(raw: u64) -> EntryKind {
    if raw & bits::PRESENT != 0 {
        return EntryKind::Present {
            frame_phys_addr: raw & bits::ADDRESS_MASK,
            accessed: raw & bits::ACCESSED != 0,
        };
    }
    if raw == 0 {
        return EntryKind::Empty;
    }
    if raw & !OWNER_MASK == UNPOPULATED_FIXED_BITS {
        // The mask keeps 32 bits.
        let owner = ((raw & OWNER_MASK) >> OWNER_SHIFT) as u32;
        return EntryKind::Unpopulated {
            owner: SlotIndex::new(owner),
        };
    }
    EntryKind::Foreign
}

/// Returns the owner named by `raw` if it is the entry of a page of a packed stack
/// ([`AbsentPte::packed`], which [`decode`] reads as [`EntryKind::Foreign`]).
#[must_use]
pub const fn packed_owner(raw: u64) -> Option<SlotIndex> {
    if raw & !OWNER_MASK == PACKED_FIXED_BITS {
        // The mask keeps 32 bits.
        Some(SlotIndex::new(((raw & OWNER_MASK) >> OWNER_SHIFT) as u32))
    } else {
        None
    }
}

/// The state of one page of a slot in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// Backed by a frame.
    Populated,
    /// Reserved for the stack of `owner`, not backed.
    Unpopulated {
        /// The slot of the stack that owns the page.
        owner: SlotIndex,
    },
    /// A guard page: never backed.
    Guard,
}

/// Returns the state of a page of a slot in use, given which part of the
/// slot it is and its raw entry, or `None` if the entry is not valid there
/// (a stack page with an empty or foreign entry, a guard page with anything
/// but an empty one).
#[must_use]
pub const fn page_state(part: SlotPart, raw: u64) -> Option<PageState> {
    match (part, decode(raw)) {
        (SlotPart::Guard, EntryKind::Empty) => Some(PageState::Guard),
        (SlotPart::Stack(_), EntryKind::Present { .. }) => Some(PageState::Populated),
        (SlotPart::Stack(_), EntryKind::Unpopulated { owner }) => {
            Some(PageState::Unpopulated { owner })
        }
        // A page of a packed stack is unpopulated too (the fault path refuses it).
        (SlotPart::Stack(_), EntryKind::Foreign) => match packed_owner(raw) {
            Some(owner) => Some(PageState::Unpopulated { owner }),
            None => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests;

//! The census: every frame in exactly one place.
//!
//! A [`Census`] has one entry per frame of the pool. The platform records
//! what it sees (free frames, mapped frames by slot); the test records what
//! only dks sees (magazines, frames it holds for other use). Recording a
//! frame twice is the bug "a frame in two places" ([`CensusError::TwoPlaces`]:
//! this also catches one frame mapped in two stacks); a frame recorded
//! nowhere at [`Census::finish`] is a lost frame.

use alloc::vec::Vec;

use crate::VirtAddr;
use crate::cpu::CpuId;
use crate::frame::Frame;
use crate::layout::{PAGE_SIZE_IN_BYTES, SlotIndex};
use crate::magazine::Magazine;

/// Where a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the platform's free pool.
    Free,
    /// In a CPU's magazine.
    Magazine(CpuId),
    /// Mapped in a live stack (or one waiting to be released).
    Stack(SlotIndex),
    /// Mapped in a cached stack.
    Cache(SlotIndex),
    /// Allocated for anything else.
    Other,
}

/// What a slot is used for, as the census asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotUse {
    /// Not in use: nothing may be mapped there.
    Unused,
    /// A live stack, or an exited one not yet released.
    Live,
    /// A stack in a CPU's cache.
    Cached,
}

/// A frame not in exactly one place, or mapped where no stack is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CensusError {
    /// The frame is in two places.
    TwoPlaces {
        /// The frame.
        frame_phys_addr: u64,
        /// Where it was recorded first.
        first: Place,
        /// Where it was recorded again.
        second: Place,
    },
    /// The frame is nowhere.
    Nowhere {
        /// The frame.
        frame_phys_addr: u64,
    },
    /// The frame is not from the pool.
    NotOurs {
        /// The frame.
        frame_phys_addr: u64,
    },
    /// A page outside any stack in use (or a guard page) is present.
    MappedOutsideStacks {
        /// The page.
        addr: VirtAddr,
    },
}

/// How many frames are in each kind of place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Free.
    pub free: u64,
    /// In magazines.
    pub magazine: u64,
    /// Mapped in live stacks.
    pub stack: u64,
    /// Mapped in cached stacks.
    pub cache: u64,
    /// Other use.
    pub other: u64,
}

impl FrameCounts {
    /// Returns the number of frames counted.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.free + self.magazine + self.stack + self.cache + self.other
    }
}

/// Where every frame of a pool is, being filled in.
#[derive(Debug)]
pub struct Census {
    first_number: u64,
    places: Vec<Option<Place>>,
}

impl Census {
    pub(crate) fn new(first_number: u64, frames: usize) -> Self {
        Self {
            first_number,
            places: alloc::vec![None; frames],
        }
    }

    pub(crate) fn record_number(&mut self, number: u64, place: Place) -> Result<(), CensusError> {
        let frame_phys_addr = number * PAGE_SIZE_IN_BYTES;
        let entry = number
            .checked_sub(self.first_number)
            .and_then(|index| self.places.get_mut(usize::try_from(index).ok()?))
            .ok_or(CensusError::NotOurs { frame_phys_addr })?;
        if let Some(first) = *entry {
            return Err(CensusError::TwoPlaces {
                frame_phys_addr,
                first,
                second: place,
            });
        }
        *entry = Some(place);
        Ok(())
    }

    /// Records that `frame` is at `place`.
    pub fn record(&mut self, frame: &Frame, place: Place) -> Result<(), CensusError> {
        self.record_number(frame.number(), place)
    }

    /// Records every frame of `magazine`.
    pub fn record_magazine(&mut self, magazine: &Magazine) -> Result<(), CensusError> {
        magazine
            .frames()
            .try_for_each(|frame| self.record(frame, Place::Magazine(magazine.cpu())))
    }

    /// Checks that every frame was recorded and returns the counts.
    pub fn finish(self) -> Result<FrameCounts, CensusError> {
        let mut counts = FrameCounts::default();
        for (index, place) in (self.first_number..).zip(self.places) {
            match place {
                None => {
                    return Err(CensusError::Nowhere {
                        frame_phys_addr: index * PAGE_SIZE_IN_BYTES,
                    });
                }
                Some(Place::Free) => counts.free += 1,
                Some(Place::Magazine(_)) => counts.magazine += 1,
                Some(Place::Stack(_)) => counts.stack += 1,
                Some(Place::Cache(_)) => counts.cache += 1,
                Some(Place::Other) => counts.other += 1,
            }
        }
        Ok(counts)
    }
}

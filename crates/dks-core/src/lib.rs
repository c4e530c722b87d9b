//! The dynamic kernel stack mechanism, independent of any CPU.
//!
//! A kernel thread's stack lives in a fixed slot of a reserved virtual region
//! ([`layout`]). Only some of its pages are backed by memory; the others are
//! *unpopulated*: their page-table entries are not present but carry a marker
//! and the owning slot ([`pte`]). When the stack grows into such a page, the
//! page fault is served from a small per-CPU [`magazine`] of pre-allocated
//! frames ([`fault`]), which is refilled at context switch ([`switch`]). Which
//! pages are populated at creation, when the magazine is refilled, whether a
//! task must be *admitted* before it runs and which pages are given back
//! early is the thread's [`policy`]. [`reclaim`] decides which pages hold no
//! live data; [`pack`] moves a long sleeper's live bytes into a small buffer
//! and back; [`cache`] and [`deferred`] keep freed stacks for reuse and free
//! them outside the exiting thread; [`counters`], [`account`] and [`group`]
//! account for it all, per CPU, per policy and per group.
//!
//! The crate knows no CPU: everything it needs from a machine goes through
//! the small [`Platform`] trait. The kernel implements it on x86_64 page
//! tables; the `emulated` module (feature `emulated`) implements it in software so that the same code runs
//! in host tests and the simulator.
//!
//! # Where state lives
//!
//! The state is split by who may touch it, so the kernel can put each part
//! behind the right guard:
//!
//! - per CPU, touched only by its CPU with interrupts off: [`PerCpu`] (the
//!   magazine and the stack cache);
//! - per CPU, written by its CPU and read by anyone: [`CpuCounters`] (relaxed
//!   atomics, per account, summed on read);
//! - per stack, touched by whoever holds the thread (its CPU while it runs or
//!   faults, the scheduler while it is switched out): [`Stack`];
//! - global: [`Ledger`] (per account: populated pages, threads; atomics),
//!   [`GroupCharge`] (atomics), and the immutable [`StackLayout`].
//!
//! No function takes a lock, and the fault path ([`fault::handle`]) neither
//! allocates nor panics on a condition it can report.
//!
//! # Invariants (DESIGN §10), and where each is kept
//!
//! - Every stack page is in exactly one state, populated, unpopulated or
//!   guard, and their counts add up to the slot's pages: [`pte`] defines the
//!   states, [`stack`] writes them at creation and teardown, [`fault`],
//!   [`switch`] and [`reclaim`] move pages between the first two.
//! - Every frame is in exactly one place (free, a magazine, a stack, a cached
//!   stack, other use): frames are the non-`Clone` [`Frame`] type, so moving
//!   one is the only way to put it somewhere; the emulated platform's census
//!   checks it.
//! - A frame is freed only after every TLB that may cache it was flushed:
//!   [`platform`]'s `#[must_use]` [`Flush`] tokens.
//! - Under `guaranteed`, `reclaim` and `switch`, no stack fault is fatal:
//!   [`switch::prepare`] admits a task only when the magazine covers its need.
//! - Populated stack memory returns to its baseline once every thread exited:
//!   [`stack::release`] and [`cache::free_all`] give back every page.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The packed state of a stack lives out of line (`pack::PackedBox`), so that a stack that is
// not packed pays one pointer for it; the kernel has a heap.
extern crate alloc;

pub mod account;
pub mod addr;
pub mod cache;
pub mod counters;
pub mod cpu;
pub mod deferred;
#[cfg(any(test, feature = "emulated"))]
pub mod emulated;
pub mod fault;
pub mod frame;
pub mod group;
pub mod layout;
pub mod magazine;
pub mod pack;
pub mod pack_buffer;
pub mod page_set;
pub mod platform;
pub mod policy;
pub mod pte;
pub mod reclaim;
pub mod stack;
pub mod switch;
#[cfg(test)]
mod test_fixture;
pub mod trim_claim;

pub use account::{Account, AccountSnapshot, Ledger};
pub use addr::VirtAddr;
pub use cache::{CachedStack, StackCache};
pub use counters::{Counter, CpuCounters, Tally, Totals};
pub use cpu::{CpuId, PerCpu};
pub use deferred::DeferredFree;
pub use fault::{Busy, FatalReason, FaultOutcome, StackTable};
pub use frame::{Frame, Urgency};
pub use group::{ChargeError, GroupCharge, GroupId};
pub use layout::{LayoutError, Location, MaxStack, SlotIndex, SlotPart, StackLayout, StackPage};
pub use magazine::{Magazine, Refill};
pub use pack::{PackMode, Packed, Restore};
pub use pack_buffer::{Checksum, PackBuffer, SizeClass};
pub use page_set::PageSet;
pub use platform::{Flush, FlushBatch, FlushNeed, Platform};
pub use policy::Policy;
pub use pte::{AbsentPte, EntryKind, PageState};
pub use stack::{Stack, StackSource, StackSpec};
pub use trim_claim::{Claim, TrimClaim, TrimState};

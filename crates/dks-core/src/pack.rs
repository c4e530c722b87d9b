//! The `pack` policy: a long sleeper's live stack bytes without its pages.
//!
//! Every other policy keeps at least the top page of a sleeping thread. A sleeping thread's
//! live data is only the bytes from its saved stack pointer, less the red zone, up to the
//! stack top: a few hundred bytes for most sleepers. [`pack`] copies those bytes into a
//! [`PackBuffer`] of the smallest [`SizeClass`] that holds them, checksums them, gives back
//! every populated page (dead ones as [`reclaim`](crate::reclaim) does, the top page too:
//! unmapped, flushed in one batch, then freed) and marks the stack packed. [`restore`] does
//! the reverse before the thread can run: a page from the CPU's magazine, mapped at the top,
//! the bytes copied back and their checksum verified, the buffer freed.
//!
//! # Who calls what
//!
//! - A scanner (the kernel's background thread, on its own static stack, allowed to sleep)
//!   calls [`pack`] for each `pack` thread that has slept longer than
//!   [`PackConfig::threshold_ms`]; the buffer is allocated with [`Urgency::Normal`].
//! - The wake path calls [`restore`] with the waker's CPU magazine (interrupts off: no
//!   sleeping; atomic allocations only). It must leave in the magazine what the thread
//!   running on that CPU was admitted with ([`wake_reserve`]): that thread's faults are
//!   served from it, and the `guaranteed` argument (the magazine covers the running
//!   thread's need) would not hold if a restore took one of its pages. So it first refills
//!   with atomic allocations when the magazine holds no more than that reserve, and may
//!   still fail for want of a page: the thread is then runnable but still packed.
//! - [`switch::prepare`](crate::switch::prepare) restores a packed stack before it admits it,
//!   so no thread is ever switched in packed; without a page it answers
//!   [`Admission::WaitRestore`](crate::switch::Admission::WaitRestore) (counted as
//!   `dks_restore_wait`), exactly like an unadmitted `guaranteed` thread.
//! - The release of an exited stack ([`stack::release`](crate::stack::release)) frees a buffer
//!   whose thread was stopped while packed: the only other place a buffer is freed.
//!
//! # Invariants
//!
//! - A packed stack has no present page: any touch faults, and the fault path refuses to
//!   serve it ([`FatalReason::PackedStack`](crate::FatalReason::PackedStack)). A packed
//!   stack is never restored by a page fault: only [`restore`] maps its page back.
//! - The buffer is owned by the [`Stack`] (neither `Copy` nor `Clone`): it is freed once,
//!   after its bytes were copied back, or at release when no restore can come.
//! - Bytes restored equal bytes packed, or the restore says so
//!   ([`Restore::ChecksumMismatch`], counted as `dks_pack_csum_fail`): the thread must not
//!   run on them.
//! - Accounting: a pack gives back pages (`dks_reclaimed`, the populated pages and the group
//!   charge go down) and adds one packed thread and the buffer's bytes (`nr_packed_threads`,
//!   `nr_packed_bytes`, also in `nr_kernel_stack_kb`); a restore undoes both.
//!
//! # Guard mode
//!
//! With [`PackMode::Guard`] the top page is unmapped and flushed but its frame is kept with
//! the stack instead of freed. A touch of the packed stack faults as in the normal mode, and
//! is counted as a guard-mode catch (`dks_pack_guard_catches`) with the culprit's address in
//! the fatal outcome; at restore the kept frame is mapped back (no magazine page needed) and
//! its bytes are checked against the pack's checksum before the buffer is copied over them,
//! so a write that reached the frame by another mapping is caught too. The kept frame still
//! counts as a populated page of the account and of the group: guard mode saves no memory.

use crate::account::Account;
use crate::addr::VirtAddr;
use crate::counters::{Counter, Tally};
use crate::frame::Frame;
use crate::frame::{NO_STACK_FRAMES, Urgency};
use crate::group::GroupCharge;
use crate::layout::{RED_ZONE_IN_BYTES, StackLayout, StackPage};
use crate::magazine::Magazine;
use crate::pack_buffer::{Checksum, PackBuffer, SizeClass};
use crate::platform::{FlushBatch, FlushNeed, Platform};
use crate::pte::AbsentPte;
use crate::stack::Stack;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// The sleep after which the scanner packs a `pack` thread, by default (milliseconds).
pub const DEFAULT_PACK_THRESHOLD_MS: u64 = 1000;

/// Whether a packed page's frame is freed or kept to catch touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackMode {
    /// Free every page: the memory is saved.
    Free,
    /// Keep the top page's frame, unmapped, and check it at restore (see the module docs).
    Guard,
}

/// When and how the scanner packs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackConfig {
    /// Pack a thread once it has slept this long.
    pub threshold_ms: u64,
    /// Free or keep the packed page.
    pub mode: PackMode,
}

impl PackConfig {
    /// Returns whether a thread that has slept `slept_ms` is due for packing.
    #[must_use]
    pub const fn is_due(&self, slept_ms: u64) -> bool {
        slept_ms >= self.threshold_ms
    }
}

impl Default for PackConfig {
    fn default() -> Self {
        Self {
            threshold_ms: DEFAULT_PACK_THRESHOLD_MS,
            mode: PackMode::Free,
        }
    }
}

/// What a packed stack keeps: its live bytes in a buffer, their checksum, and in guard mode
/// the frame of its top page.
#[derive(Debug, PartialEq, Eq)]
pub struct Packed {
    buffer: PackBuffer,
    len: u64,
    checksum: Checksum,
    kept: Option<Frame>,
}

impl Packed {
    /// Returns the buffer holding the live bytes.
    #[must_use]
    pub const fn buffer(&self) -> &PackBuffer {
        &self.buffer
    }

    /// Returns the number of live bytes packed.
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Returns whether no byte was packed (never: a stack always has live bytes).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the checksum of the live bytes, taken at pack.
    #[must_use]
    pub const fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// Returns the kept frame of the top page (guard mode).
    #[must_use]
    pub const fn kept_frame(&self) -> Option<&Frame> {
        self.kept.as_ref()
    }
}

/// The packed state of a stack, out of line: a stack that is not packed pays one pointer
/// for it (`Option<PackedBox>` is the size of a pointer), which matters because the kernel
/// keeps one [`Stack`] per slot of its region, live or not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PackedBox(Box<[Packed; 1]>);

impl PackedBox {
    /// Returns the packed state.
    pub(crate) const fn get(&self) -> &Packed {
        &self.0[0]
    }

    /// Returns the packed state, giving back its allocation.
    pub(crate) fn into_inner(self) -> Packed {
        let [packed] = *self.0;
        packed
    }
}

/// Room for one [`PackedBox`], taken before a pack changes anything, so that a pack that
/// cannot have it changes nothing.
struct PackedRoom(Vec<Packed>);

impl PackedRoom {
    /// Returns room for one packed state, or `None` if the allocation fails.
    fn try_new() -> Option<Self> {
        let mut room = Vec::new();
        room.try_reserve_exact(1).ok()?;
        Some(Self(room))
    }

    /// Puts `packed` in the room.
    fn fill(mut self, packed: Packed) -> PackedBox {
        self.0.push(packed);
        match self.0.into_boxed_slice().try_into() {
            Ok(one) => PackedBox(one),
            Err(_) => unreachable!("one element pushed"),
        }
    }
}

/// Why a stack was not packed. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotPacked {
    /// Its policy does not pack.
    Policy,
    /// The thread is not asleep (running, runnable, or woken).
    Awake,
    /// It is packed already.
    AlreadyPacked,
    /// Its live bytes do not fit in one page.
    TooDeep {
        /// The live bytes.
        live_bytes: u64,
    },
    /// No buffer could be had.
    NoBuffer,
}

/// A stack packed.
#[must_use = "a pack is accounted; the caller may want its figures"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackDone {
    /// The live bytes packed.
    pub live_bytes: u64,
    /// The buffer's size class.
    pub class: SizeClass,
    /// The pages given back (freed, or put into the magazine if clean).
    pub pages_given_back: u8,
}

/// What became of a restore.
#[must_use = "a stack that was not restored, or restored wrong, must not run"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The stack was not packed: nothing to do.
    NotPacked,
    /// Restored: its top page is mapped with its live bytes.
    Restored,
    /// No page in the magazine: the stack is still packed (counted as `dks_restore_wait`).
    Wait,
    /// Restored, but the bytes do not match the pack's checksum (counted as
    /// `dks_pack_csum_fail`): the thread must be stopped, never run.
    ChecksumMismatch {
        /// The checksum taken at pack.
        expected: Checksum,
        /// The checksum of the bytes as restored (or, in guard mode, of the kept frame).
        found: Checksum,
    },
}

/// Returns the lowest live byte of a stack switched out at `saved_sp`: the red zone below
/// the stack pointer is live too.
fn lowest_live(layout: &StackLayout, stack: &Stack, saved_sp: VirtAddr) -> VirtAddr {
    let bottom = layout.stack_bottom(stack.slot()).as_u64();
    VirtAddr::new(
        saved_sp
            .as_u64()
            .saturating_sub(RED_ZONE_IN_BYTES)
            .max(bottom),
    )
}

/// Packs the stack of a sleeping `pack` thread: see the module docs. `group` is the charge
/// of its group; clean dead pages refill `magazine` first. Runs where it may sleep (the
/// buffer is allocated with [`Urgency::Normal`]).
pub fn pack<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    stack: &mut Stack,
    mode: PackMode,
) -> Result<PackDone, NotPacked> {
    if !stack.policy().packs_while_asleep() {
        return Err(NotPacked::Policy);
    }
    if stack.is_packed() {
        return Err(NotPacked::AlreadyPacked);
    }
    let (true, Some(saved_sp)) = (stack.is_asleep(), stack.saved_sp()) else {
        return Err(NotPacked::Awake);
    };
    let top = layout.stack_top(stack.slot());
    let from = lowest_live(layout, stack, saved_sp);
    let live_bytes = top.as_u64() - from.as_u64();
    let Some(class) = SizeClass::for_len(live_bytes) else {
        return Err(NotPacked::TooDeep { live_bytes });
    };
    debug_assert!(stack.populated().contains(StackPage::TOP));
    let room = PackedRoom::try_new().ok_or(NotPacked::NoBuffer)?;
    let mut buffer = platform
        .alloc_buffer(class, Urgency::Normal)
        .ok_or(NotPacked::NoBuffer)?;
    let checksum = platform.stack_checksum(from, live_bytes);
    platform.copy_to_buffer(from, &mut buffer, live_bytes);

    // Unmap every populated page; flush once; then free (or keep) the frames.
    let owner = AbsentPte::unpopulated(stack.slot());
    let mut after_flush = NO_STACK_FRAMES;
    let mut flushes = FlushBatch::new();
    let mut kept = None;
    let mut given_back = 0u8;
    for (page, waiting) in stack.populated().iter().zip(after_flush.iter_mut()) {
        let (frame, flush) = platform.unmap_stack_page(layout.page_addr(stack.slot(), page), owner);
        if page == StackPage::TOP && mode == PackMode::Guard {
            // Kept, not given back: flushed below like the others, so no TLB reaches it.
            kept = Some(frame);
        } else if flush.need() == FlushNeed::NotCached {
            // Never accessed, so never written: still zero.
            given_back += 1;
            if let Err(frame) = magazine.put(frame) {
                platform.free_frame(frame);
            }
        } else {
            given_back += 1;
            *waiting = Some(frame);
        }
        flushes.add(flush);
    }
    platform.flush(flushes);
    for frame in after_flush.into_iter().flatten() {
        platform.free_frame(frame);
    }
    stack.note_packed(room.fill(Packed {
        buffer,
        len: live_bytes,
        checksum,
        kept,
    }));
    let account = stack.account();
    tally.count(account, Counter::Reclaimed, u64::from(given_back));
    tally.count(account, Counter::Packs, 1);
    tally.ledger().add_pages(account, -i64::from(given_back));
    tally.ledger().add_packed(account, 1, bytes_of(class));
    group.uncharge(u64::from(given_back));
    Ok(PackDone {
        live_bytes,
        class,
        pages_given_back: given_back,
    })
}

/// Returns the frames a restore on the wake path must leave in this CPU's magazine: the
/// need of the thread `running` there, if its policy was admitted on that need.
#[must_use]
pub fn wake_reserve(layout: &StackLayout, running: Option<&Stack>) -> u8 {
    match running {
        Some(stack) if stack.policy().needs_admission() => stack.need(layout),
        _ => 0,
    }
}

/// Restores a packed stack on the wake path, with a page from `magazine` (this CPU's;
/// interrupts off), leaving at least `reserve` frames in it ([`wake_reserve`]): refills it
/// with atomic allocations first if it holds no more than that. See [`restore`].
pub fn restore_on_wake<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    stack: &mut Stack,
    reserve: u8,
) -> Restore {
    let guard = stack.packed().is_some_and(|p| p.kept_frame().is_some());
    if stack.is_packed() && !guard && magazine.len() <= reserve {
        let _ = crate::switch::refill(platform, magazine, tally, stack.account());
        if magazine.len() <= reserve {
            tally.count(stack.account(), Counter::RestoreWait, 1);
            return Restore::Wait;
        }
    }
    restore(platform, layout, magazine, tally, group, stack)
}

/// Restores a packed stack, with a page from `magazine` (this CPU's; interrupts off) unless
/// it kept its frame (guard mode): see the module docs. `group` is the charge of its group.
/// Never allocates, never waits. Called where no admitted thread relies on the magazine
/// (before the switch-in, [`switch::prepare`](crate::switch::prepare)); the wake path calls
/// [`restore_on_wake`].
pub fn restore<P: Platform>(
    platform: &mut P,
    layout: &StackLayout,
    magazine: &mut Magazine,
    tally: Tally<'_>,
    group: &GroupCharge,
    stack: &mut Stack,
) -> Restore {
    let account = stack.account();
    let guard = match stack.packed() {
        None => return Restore::NotPacked,
        Some(packed) => packed.kept_frame().is_some(),
    };
    if !guard && magazine.is_empty() {
        tally.count(account, Counter::RestoreWait, 1);
        return Restore::Wait;
    }
    let Some(packed) = stack.take_packed(true) else {
        return Restore::NotPacked;
    };
    let Packed {
        buffer,
        len,
        checksum,
        kept,
    } = packed;
    let top_page = layout.page_addr(stack.slot(), StackPage::TOP);
    let from = VirtAddr::new(layout.stack_top(stack.slot()).as_u64() - len);
    let (frame, fresh) = match kept {
        Some(frame) => (frame, false),
        // Checked above: the magazine has a frame.
        None => match magazine.take() {
            Some(frame) => (frame, true),
            None => unreachable!("the magazine was not empty"),
        },
    };
    let mut flushes = FlushBatch::new();
    flushes.add(platform.map_stack_page(top_page, frame));
    platform.flush(flushes);
    // In guard mode the kept frame must still hold exactly what was packed.
    let untouched = if fresh {
        None
    } else {
        Some(platform.stack_checksum(from, len))
    };
    platform.copy_from_buffer(&buffer, from, len);
    let found = platform.stack_checksum(from, len);
    let class = buffer.class();
    platform.free_buffer(buffer);
    if fresh {
        tally.ledger().add_pages(account, 1);
        group.force_charge(1);
    }
    tally.ledger().add_packed(account, -1, -bytes_of(class));
    tally.count(account, Counter::Restores, 1);
    let found = match untouched {
        Some(kept) if kept != checksum => kept,
        _ => found,
    };
    if found == checksum {
        Restore::Restored
    } else {
        tally.count(account, Counter::PackChecksumFail, 1);
        Restore::ChecksumMismatch {
            expected: checksum,
            found,
        }
    }
}

/// Frees the buffer (and kept frame) of a stack whose thread exited packed: no restore can
/// come. The kept frame was already uncharged with the stack's pages.
pub(crate) fn discard<P: Platform>(
    platform: &mut P,
    tally: Tally<'_>,
    account: Account,
    packed: Packed,
) {
    let class = packed.buffer.class();
    platform.free_buffer(packed.buffer);
    if let Some(frame) = packed.kept {
        // Unmapped and flushed at pack.
        platform.free_frame(frame);
    }
    tally.ledger().add_packed(account, -1, -bytes_of(class));
}

/// The bytes of a class as a ledger delta (at most a page).
const fn bytes_of(class: SizeClass) -> i64 {
    class.bytes() as i64
}

#[cfg(test)]
mod tests;

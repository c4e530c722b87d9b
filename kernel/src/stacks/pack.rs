//! The `pack` policy in the kernel: packing long sleepers (from the stack-reclaim thread's
//! rounds, `stacks::trim`) and restoring them on the wake path (`docs/pack.md`).
//!
//! # Who holds the thread
//!
//! A pack runs under the slot's stack lock, and only on a stack that is asleep
//! (`Stack::is_asleep`): `switched_out` sets that after the thread's context is saved, and
//! admission clears it (`Stack::wake`) under the same lock before any CPU switches to the
//! thread. So a wake never meets half a pack: the wake-path restore and admission take the
//! same lock, and find the stack either not packed or packed whole. A packed stack is never
//! switched in: admission (`dks_core::switch::prepare`) restores it first or refuses
//! (`WaitRestore`, `Corrupt`), and the fault path refuses a touch of it
//! (`FatalReason::PackedStack`), so no page fault ever restores one.
//!
//! The pages a pack takes were used, so another CPU's TLB may still translate them: they are
//! unmapped with the shootdown deferred, their frames wait in the quarantine, and the slot
//! waits for the round's flush before its thread may run, exactly as a trim's
//! (`stacks::trim`). The copies go through the direct map of the frame an entry names
//! (`hw::pack_memory`), never through the stack address, so a stale translation on the CPU
//! that copies cannot misdirect them.
//!
//! # The wake path
//!
//! [`restore_on_wake`] runs when a wake-up queues a `pack` thread, with interrupts off, with
//! this CPU's magazine and the reserve of the thread this CPU runs
//! (`dks_core::pack::wake_reserve`). It holds this CPU's magazine lock, which this CPU's
//! fault handler takes with `try_lock`: so it runs only where no stack fault can come, on a
//! stack that never faults (an interrupt's IST stack, a CPU's scheduler stack, a `static`
//! thread's stack). A waker on a dynamic stack leaves the restore to admission on the CPU
//! that picks the thread (counted in [`WAKE_RESTORES_LEFT`]), which restores it before the
//! switch-in.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dks_core::pack::{self, NotPacked, PackDone, PackMode};
use dks_core::{Magazine, Policy, Restore, SlotIndex, VirtAddr};

use super::platform::X86Platform;
use super::{GROUPS, Slot, region, tally};
use crate::hw::cpu_ops::{self, IrqGuard};
use crate::hw::probes;

/// A `pack` thread asleep at least this long is packed (`pack_after_ms=`).
static AFTER_MS: AtomicU64 = AtomicU64::new(pack::DEFAULT_PACK_THRESHOLD_MS);

/// Packs keep the top page's frame to catch touches (`pack_guard=on`).
static GUARD: AtomicBool = AtomicBool::new(false);

/// Wake-path restores done (the stack was packed and got its page there).
pub static WAKE_RESTORES: AtomicU64 = AtomicU64::new(0);

/// Wakes of a packed stack that left the restore to admission: the waker ran on a stack
/// that may fault, or the restore had to wait for a page.
pub static WAKE_RESTORES_LEFT: AtomicU64 = AtomicU64::new(0);

/// Threads stopped because their restored bytes did not match their pack's checksum.
pub static CORRUPT_STOPS: AtomicU64 = AtomicU64::new(0);

/// Sets the sleep threshold and the mode (kernel arguments `pack_after_ms=`, `pack_guard=`).
pub fn configure(after_ms: u64, guard: bool) {
    AFTER_MS.store(after_ms, Ordering::Relaxed);
    GUARD.store(guard, Ordering::Relaxed);
}

/// How long a `pack` thread sleeps before it is packed, in milliseconds.
pub fn after_ms() -> u64 {
    AFTER_MS.load(Ordering::Relaxed)
}

/// Sets the sleep threshold alone (tests); returns the old one.
pub fn set_after_ms(ms: u64) -> u64 {
    AFTER_MS.swap(ms, Ordering::Relaxed)
}

/// Sets the mode alone (tests): `true` for guard mode; returns the old setting.
pub fn set_guard(guard: bool) -> bool {
    GUARD.swap(guard, Ordering::Relaxed)
}

/// The mode packs run in now.
pub fn mode() -> PackMode {
    if GUARD.load(Ordering::Relaxed) {
        PackMode::Guard
    } else {
        PackMode::Free
    }
}

/// Packs the stack of `cell` (its lock held: `stack`) for the scanner on CPU `cpu`; clean
/// frames go to `clean`, the others through `platform` (deferred shootdown) to the
/// quarantine. Marks the slot as waiting for the flush when one was deferred.
pub(super) fn pack_locked(
    cell: &Slot,
    stack: &mut dks_core::Stack,
    cpu: usize,
    clean: &mut Magazine,
    platform: &mut X86Platform,
) -> Result<PackDone, NotPacked> {
    let region = region();
    if cell.woken.load(Ordering::Relaxed) {
        // Its thread waits for admission: not packed before it runs.
        return Err(NotPacked::Awake);
    }
    let done = pack::pack(
        platform,
        &region.layout,
        clean,
        tally(cpu),
        &GROUPS[stack.group().as_usize()],
        stack,
        mode(),
    )?;
    cell.mirror(stack);
    if platform.deferred() {
        cell.flush_epoch
            .store(super::trim::TRIM_PENDING, Ordering::Relaxed);
    }
    Ok(done)
}

/// Whether this code runs on a stack that never takes a stack fault: outside the stack
/// region (an IST stack, a scheduler stack, the boot stack), or on a `static` stack.
fn on_stack_without_faults() -> bool {
    let region = region();
    match region.layout.locate(VirtAddr::new(probes::stack_pointer())) {
        None => true,
        Some(location) => region.slots[location.slot.as_usize()].policy() == Some(Policy::Static),
    }
}

/// What the wake path did with a woken stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeRestore {
    /// Not a packed stack: nothing to do.
    NotPacked,
    /// Restored, with its bytes checked.
    Restored,
    /// Left to admission (see the module docs); the thread is queued packed.
    Left,
    /// Restored, but its bytes do not match: admission will stop it (it finds the stack
    /// restored, so it must be told: the slot's flag).
    Corrupt,
}

/// Restores the stack of `slot`, woken now, before its thread is queued (see the module
/// docs). Cheap for every other policy: one look at the slot's policy mirror.
pub fn restore_on_wake(slot: SlotIndex) -> WakeRestore {
    let region = region();
    let cell = &region.slots[slot.as_usize()];
    if cell.policy() != Some(Policy::Pack) {
        return WakeRestore::NotPacked;
    }
    let irq = IrqGuard::new();
    restore_on_wake_here(&irq, cell)
}

fn restore_on_wake_here(irq: &IrqGuard, cell: &Slot) -> WakeRestore {
    let region = region();
    // Woken: runnable, never packed before its thread runs, whatever the restore below
    // does. A packed stack is marked awake: left asleep until admission, one restored here
    // (or left packed) would be packed again while its thread waits in a run queue, and one
    // whose restore found a mismatch would then be switched in packed to be stopped. A stack
    // not packed stays asleep for the trims, as a woken `reclaim` stack does until its
    // admission (its dead pages are trimmed while it waits in a run queue, which under load
    // is most of a short sleep), and is marked woken so that no round packs it: nothing more
    // to do (no magazine lock, no look at the running thread).
    let packed = cell.stack.lock().as_mut().is_some_and(|stack| {
        if stack.is_packed() {
            stack.wake();
            cell.asleep_since.store(0, Ordering::Relaxed);
            true
        } else {
            cell.woken.store(true, Ordering::Relaxed);
            false
        }
    });
    if !packed {
        return WakeRestore::NotPacked;
    }
    if !on_stack_without_faults() {
        WAKE_RESTORES_LEFT.fetch_add(1, Ordering::Relaxed);
        return WakeRestore::Left;
    }
    let cpu = cpu_ops::current_id(irq) as usize;
    // The reserve of the thread this CPU runs (none in its scheduler loop). Its slot lock is
    // free here: taken only by its own fault path (not interrupted: interrupts off there) and
    // by schedulers while it is off every CPU; `try_lock` all the same, and a busy lock
    // leaves the restore to admission.
    let reserve = match crate::sched::try_current() {
        None => Some(0),
        Some(running) => {
            let running_cell = &region.slots[running.stack.slot().as_usize()];
            if core::ptr::eq(running_cell, cell) {
                Some(0)
            } else {
                running_cell
                    .stack
                    .try_lock_irqs_off(irq)
                    .map(|live| pack::wake_reserve(&region.layout, live.as_ref()))
            }
        }
    };
    let Some(reserve) = reserve else {
        WAKE_RESTORES_LEFT.fetch_add(1, Ordering::Relaxed);
        return WakeRestore::Left;
    };
    let mut magazine = region.magazines[cpu].lock();
    let mut live = cell.stack.lock();
    let Some(stack) = live.as_mut() else {
        return WakeRestore::NotPacked;
    };
    if !stack.is_packed() {
        return WakeRestore::NotPacked;
    }
    let outcome = pack::restore_on_wake(
        &mut X86Platform::live(),
        &region.layout,
        &mut magazine,
        tally(cpu),
        &GROUPS[stack.group().as_usize()],
        stack,
        reserve,
    );
    cell.mirror(stack);
    super::switch::note_magazine(cpu, magazine.len());
    match outcome {
        Restore::NotPacked => WakeRestore::NotPacked,
        Restore::Restored => {
            WAKE_RESTORES.fetch_add(1, Ordering::Relaxed);
            WakeRestore::Restored
        }
        Restore::Wait => {
            WAKE_RESTORES_LEFT.fetch_add(1, Ordering::Relaxed);
            WakeRestore::Left
        }
        Restore::ChecksumMismatch { .. } => {
            cell.corrupt.store(true, Ordering::Relaxed);
            WakeRestore::Corrupt
        }
    }
}

/// Packs the stack in `slot` alone if it sleeps (whatever its age) and requests the TLB
/// flush its thread then waits for: what one pack costs, for `bench=costs` and tests.
pub fn pack_one(slot: SlotIndex) -> Result<PackDone, NotPacked> {
    super::trim::pack_one(slot)
}

/// Whether the stack in `slot` is packed now.
pub fn is_packed(slot: SlotIndex) -> bool {
    region().slots[slot.as_usize()]
        .stack
        .lock()
        .as_ref()
        .is_some_and(dks_core::Stack::is_packed)
}

/// The address of the top page of `slot`'s stack, and the checksum taken at its pack, while
/// it is packed (for tests that touch it on purpose).
pub fn packed_top(slot: SlotIndex) -> Option<(u64, u32)> {
    let region = region();
    let live = region.slots[slot.as_usize()].stack.lock();
    let packed = live.as_ref()?.packed()?;
    let top = region.layout.stack_top(slot).as_u64();
    Some((top - packed.len(), packed.checksum().as_u32()))
}

/// Flips a byte of the buffer of `slot`'s packed stack, as a stray write would (for tests of
/// the restore's checksum); returns whether the stack was packed.
pub fn corrupt_buffer(slot: SlotIndex) -> bool {
    let region = region();
    let live = region.slots[slot.as_usize()].stack.lock();
    let Some(packed) = live.as_ref().and_then(dks_core::Stack::packed) else {
        return false;
    };
    crate::hw::pack_memory::flip_buffer_byte(packed.buffer().handle(), packed.len() / 2);
    true
}

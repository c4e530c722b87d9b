use super::*;
use crate::counters::Counter;
use crate::fault::{FatalReason, FaultOutcome};
use crate::page_set::PageSet;
use crate::policy::Policy;
use crate::stack;
use crate::switch::{self, Admission, SwitchOut, SwitchOutReason};
use crate::test_fixture::Fixture;

/// A `pack` stack in slot 0 that grew to `grown` bytes, wrote `live` bytes of a pattern
/// below its top (red zone included) and went to sleep there. Returns the stack and the
/// bytes it wrote.
fn sleeper(fx: &mut Fixture, grown: u64, depth: u64) -> (Stack, Vec<u8>) {
    let mut stack = fx.create(Policy::Pack, 0);
    fx.refill();
    fx.touch_to_depth(&mut stack, grown);
    let from = fx.sp(&stack, depth + RED_ZONE_IN_BYTES);
    let bytes: Vec<u8> = (0..depth + RED_ZONE_IN_BYTES)
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    fx.platform.write_bytes(from, &bytes).unwrap();
    let saved_sp = fx.sp(&stack, depth);
    let out = switch::switch_out(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        &mut stack,
        SwitchOut {
            saved_sp,
            reason: SwitchOutReason::Asleep,
        },
    );
    assert_eq!(out, Ok(0));
    (stack, bytes)
}

fn pack_it(fx: &mut Fixture, stack: &mut Stack, mode: PackMode) -> Result<PackDone, NotPacked> {
    pack(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        stack,
        mode,
    )
}

fn restore_it(fx: &mut Fixture, stack: &mut Stack) -> Restore {
    restore(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        stack,
    )
}

fn prepare(fx: &mut Fixture, stack: &mut Stack) -> Admission {
    switch::prepare(
        &mut fx.platform,
        &fx.layout,
        &mut fx.cpu.magazine,
        fx.counters.tally(),
        &fx.group,
        stack,
    )
}

#[test]
fn a_pack_keeps_the_live_bytes_in_a_small_buffer_and_gives_back_every_page() {
    let mut fx = Fixture::new();
    let (mut stack, bytes) = sleeper(&mut fx, 0x3000, 700);
    let pages_before = fx.count(Counter::NrKernelStackKb);
    assert_eq!(pages_before, 12);
    let done = pack_it(&mut fx, &mut stack, PackMode::Free).unwrap();
    assert_eq!(done.live_bytes, 700 + RED_ZONE_IN_BYTES);
    assert_eq!(done.class.bytes(), 1024);
    assert_eq!(done.pages_given_back, 3);
    assert!(stack.is_packed());
    assert_eq!(stack.populated(), PageSet::EMPTY);
    assert_eq!(stack.held_pages(), 0);
    // Every page of the slot is unpopulated: a touch faults.
    fx.platform
        .check_slot(&fx.layout, stack.slot(), Some(PageSet::EMPTY))
        .unwrap();
    fx.platform.check_tlbs().unwrap();
    assert_eq!(fx.count(Counter::NrKernelStackKb), 1);
    assert_eq!(fx.count(Counter::NrPackedBytes), 1024);
    assert_eq!(fx.count(Counter::NrPackedThreads), 1);
    assert_eq!(fx.count(Counter::Packs), 1);
    assert_eq!(fx.count(Counter::Reclaimed), 3);
    assert_eq!(fx.group.charged_pages(), 0);
    assert_eq!(fx.platform.live_buffers().count(), 1);

    // Restore: one page from the magazine, the same bytes.
    let magazine_before = fx.cpu.magazine.len();
    assert_eq!(restore_it(&mut fx, &mut stack), Restore::Restored);
    assert_eq!(fx.cpu.magazine.len(), magazine_before - 1);
    assert_eq!(stack.populated(), PageSet::top(1));
    let from = fx.sp(&stack, 700 + RED_ZONE_IN_BYTES);
    assert_eq!(fx.platform.read_bytes(from, bytes.len() as u64), bytes);
    assert_eq!(fx.count(Counter::NrKernelStackKb), 4);
    assert_eq!(fx.count(Counter::NrPackedBytes), 0);
    assert_eq!(fx.count(Counter::NrPackedThreads), 0);
    assert_eq!(fx.count(Counter::Restores), 1);
    assert_eq!(fx.group.charged_pages(), 1);
    assert_eq!(fx.platform.live_buffers().count(), 0);
    assert_eq!(restore_it(&mut fx, &mut stack), Restore::NotPacked);
}

#[test]
fn only_sleeping_pack_stacks_whose_live_bytes_fit_a_page_are_packed() {
    let mut fx = Fixture::new();
    let mut running = fx.create(Policy::Pack, 1);
    assert_eq!(
        pack_it(&mut fx, &mut running, PackMode::Free),
        Err(NotPacked::Awake)
    );
    let mut reclaim = fx.create(Policy::Reclaim, 2);
    assert_eq!(
        pack_it(&mut fx, &mut reclaim, PackMode::Free),
        Err(NotPacked::Policy)
    );
    // 4096 - 128 bytes: with its red zone, exactly one page.
    let (mut fits, _) = sleeper(&mut fx, 0x1000, 0x1000 - RED_ZONE_IN_BYTES);
    let done = pack_it(&mut fx, &mut fits, PackMode::Free).unwrap();
    assert_eq!(done.class, SizeClass::LARGEST);
    assert_eq!(
        pack_it(&mut fx, &mut fits, PackMode::Free),
        Err(NotPacked::AlreadyPacked)
    );
    let mut fx = Fixture::new();
    let (mut deep, _) = sleeper(&mut fx, 0x2000, 0x1000 - RED_ZONE_IN_BYTES + 1);
    assert_eq!(
        pack_it(&mut fx, &mut deep, PackMode::Free),
        Err(NotPacked::TooDeep { live_bytes: 0x1001 })
    );
    assert!(!deep.is_packed());
}

#[test]
fn a_packed_stack_is_never_switched_in_before_its_restore_and_waits_for_a_page() {
    let mut fx = Fixture::new();
    let (mut stack, bytes) = sleeper(&mut fx, 0x1000, 200);
    let _ = pack_it(&mut fx, &mut stack, PackMode::Free).unwrap();
    stack.wake();
    // No page anywhere: the magazine is empty and atomic allocations fail.
    let _ = fx.cpu.magazine.drain(&mut fx.platform);
    fx.platform
        .set_failures(crate::emulated::FailurePattern::AllAtomic);
    assert_eq!(prepare(&mut fx, &mut stack), Admission::WaitRestore);
    assert!(stack.is_packed());
    assert_eq!(fx.count(Counter::RestoreWait), 1);
    assert_eq!(fx.count(Counter::Fatal), 0);
    // Memory comes back: restored, then admitted.
    fx.platform
        .set_failures(crate::emulated::FailurePattern::Never);
    assert_eq!(prepare(&mut fx, &mut stack), Admission::Admitted);
    assert!(!stack.is_packed());
    let from = fx.sp(&stack, 200 + RED_ZONE_IN_BYTES);
    assert_eq!(fx.platform.read_bytes(from, bytes.len() as u64), bytes);
}

#[test]
fn a_restore_on_the_wake_path_leaves_the_running_threads_reserve() {
    let mut fx = Fixture::new();
    let (mut stack, _) = sleeper(&mut fx, 0x1000, 200);
    let _ = pack_it(&mut fx, &mut stack, PackMode::Free).unwrap();
    fx.platform
        .set_failures(crate::emulated::FailurePattern::AllAtomic);
    let held = fx.cpu.magazine.len();
    let wake = |fx: &mut Fixture, stack: &mut Stack, reserve| {
        restore_on_wake(
            &mut fx.platform,
            &fx.layout,
            &mut fx.cpu.magazine,
            fx.counters.tally(),
            &fx.group,
            stack,
            reserve,
        )
    };
    assert_eq!(wake(&mut fx, &mut stack, held), Restore::Wait);
    assert_eq!(fx.cpu.magazine.len(), held);
    assert_eq!(wake(&mut fx, &mut stack, held - 1), Restore::Restored);
    assert_eq!(fx.cpu.magazine.len(), held - 1);
    // The reserve is the need of an admitted running thread, nothing for the others.
    let guaranteed = fx.create(Policy::Guaranteed, 3);
    assert_eq!(wake_reserve(&fx.layout, Some(&guaranteed)), 3);
    let fault = fx.create(Policy::Fault, 4);
    assert_eq!(wake_reserve(&fx.layout, Some(&fault)), 0);
    assert_eq!(wake_reserve(&fx.layout, None), 0);
}

#[test]
fn a_corrupted_buffer_is_reported_never_restored_silently() {
    let mut fx = Fixture::new();
    let (mut stack, _) = sleeper(&mut fx, 0x1000, 300);
    let _ = pack_it(&mut fx, &mut stack, PackMode::Free).unwrap();
    let packed = stack.packed().unwrap();
    let expected = packed.checksum();
    fx.platform.corrupt_buffer(packed.buffer(), 17, 0x01);
    stack.wake();
    match prepare(&mut fx, &mut stack) {
        Admission::Corrupt {
            expected: at_pack,
            found,
        } => {
            assert_eq!(at_pack, expected);
            assert_ne!(found, expected);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.count(Counter::PackChecksumFail), 1);
    assert_eq!(fx.platform.live_buffers().count(), 0);
}

#[test]
fn a_touch_of_a_packed_stack_is_refused_and_guard_mode_counts_it() {
    for mode in [PackMode::Free, PackMode::Guard] {
        let mut fx = Fixture::new();
        let (mut stack, bytes) = sleeper(&mut fx, 0x2000, 300);
        let _ = pack_it(&mut fx, &mut stack, mode).unwrap();
        let guard = mode == PackMode::Guard;
        // Guard mode keeps the top page: it still counts, in pages and in the group.
        assert_eq!(stack.held_pages(), u8::from(guard));
        assert_eq!(fx.group.charged_pages(), u64::from(guard));
        let addr = fx.sp(&stack, 16);
        let fault = fx.platform.touch(addr).unwrap_err();
        match fx.fault(&mut stack, fault.addr) {
            FaultOutcome::Fatal {
                addr: at,
                reason: FatalReason::PackedStack { guard: caught },
                ..
            } => assert_eq!((at, caught), (addr, guard)),
            other => panic!("{other:?}"),
        }
        assert!(stack.is_packed(), "a fault restored a packed stack");
        assert_eq!(fx.count(Counter::PackGuardCatches), i64::from(guard));
        // Refused, not served: the one fault is the growth to page 1.
        assert_eq!(fx.count(Counter::Faults), 1);
        assert_eq!(fx.count(Counter::Fatal), 1);
        stack.wake();
        assert_eq!(prepare(&mut fx, &mut stack), Admission::Admitted);
        let from = fx.sp(&stack, 300 + RED_ZONE_IN_BYTES);
        assert_eq!(fx.platform.read_bytes(from, bytes.len() as u64), bytes);
        assert_eq!(fx.group.charged_pages(), 1);
    }
}

#[test]
fn guard_mode_catches_a_write_to_the_kept_frame() {
    let mut fx = Fixture::new();
    let (mut stack, _) = sleeper(&mut fx, 0x1000, 300);
    let _ = pack_it(&mut fx, &mut stack, PackMode::Guard).unwrap();
    let kept = stack.packed().unwrap().kept_frame().unwrap().phys_addr();
    // A write to the live bytes through another mapping of the frame.
    fx.platform.corrupt_frame(kept, 4096 - 40, 0x80);
    assert!(matches!(
        restore_it(&mut fx, &mut stack),
        Restore::ChecksumMismatch { .. }
    ));
    assert_eq!(fx.count(Counter::PackChecksumFail), 1);
}

#[test]
fn releasing_a_stack_stopped_while_packed_frees_its_buffer_and_kept_frame() {
    for mode in [PackMode::Free, PackMode::Guard] {
        let mut fx = Fixture::new();
        let free_before = fx.platform.free_frames();
        let (mut stack, _) = sleeper(&mut fx, 0x2000, 300);
        let _ = pack_it(&mut fx, &mut stack, mode).unwrap();
        let released = stack::release(
            &mut fx.platform,
            &fx.layout,
            &mut fx.cpu.cache,
            fx.counters.tally(),
            &fx.group,
            stack::exit(stack),
            0,
        );
        assert_eq!(released, stack::Released::Cached);
        assert_eq!(fx.platform.live_buffers().count(), 0);
        assert_eq!(fx.count(Counter::NrKernelStackKb), 0);
        assert_eq!(fx.count(Counter::NrPackedThreads), 0);
        assert_eq!(fx.group.charged_pages(), 0);
        let _ = fx.cpu.magazine.drain(&mut fx.platform);
        assert_eq!(fx.platform.free_frames(), free_before, "{mode:?}");
    }
}

/// A stack table whose slot lock another CPU holds (a scanner packing it, a wake-path
/// restore, an admission): the fault path cannot look at the stack.
struct LockedSlot(crate::account::Account);

impl crate::fault::StackTable for LockedSlot {
    fn account(&self, _: SlotIndex) -> crate::account::Account {
        self.0
    }

    fn with_stack<R>(
        &mut self,
        _: SlotIndex,
        _: impl FnOnce(&mut Magazine, Option<(&mut Stack, &GroupCharge)>) -> R,
    ) -> Result<R, crate::fault::Busy> {
        Err(crate::fault::Busy::Stack)
    }
}

#[test]
fn a_touch_of_a_packed_stack_whose_lock_is_held_is_still_a_packed_stack_touch() {
    // The entry alone (`AbsentPte::packed` of the slot) says the page is a packed stack's:
    // the kernel stops the toucher for `packed_stack`, but for any other reason it stops the
    // owner's slot, which is not the thread it runs, so it stops the whole kernel.
    let mut fx = Fixture::new();
    let (mut stack, _) = sleeper(&mut fx, 0x2000, 300);
    let _ = pack_it(&mut fx, &mut stack, PackMode::Free).unwrap();
    let addr = fx.sp(&stack, 16);
    let fault = fx.platform.touch(addr).unwrap_err();
    let mut table = LockedSlot(stack.account());
    let outcome = crate::fault::handle(
        &mut fx.platform,
        &fx.layout,
        fx.counters.tally(),
        &mut table,
        fault.addr,
    );
    match outcome {
        FaultOutcome::Fatal {
            reason: FatalReason::PackedStack { .. },
            ..
        } => {}
        other => panic!("a touch of a packed stack refused as {other:?}"),
    }
    assert!(stack.is_packed());
}

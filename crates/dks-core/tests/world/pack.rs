//! The `pack` policy in the world: the scanner that packs sleepers, the restore on the wake
//! path, and what must never happen to a packed stack (a foreign touch, a corrupted buffer),
//! done on purpose to see it caught.

use dks_core::pack::{self, NotPacked, PackMode};
use dks_core::{CpuId, FatalReason, FaultOutcome, Restore, SlotIndex, Tally};

use super::{TaskState, World};

impl World {
    /// The pack scanner on `cpu`: packs every sleeping thread of a packing policy (the world
    /// has no clock: every sleeper counts as asleep past the threshold).
    pub fn scan(&mut self, cpu: usize, guard: bool) {
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let mode = if guard {
            PackMode::Guard
        } else {
            PackMode::Free
        };
        let Self {
            platform,
            layout,
            cpus,
            groups,
            tasks,
            ledger,
            seen,
            ..
        } = self;
        let this = &mut cpus[cpu];
        for task in tasks.values_mut() {
            let result = pack::pack(
                platform,
                layout,
                &mut this.percpu.magazine,
                Tally::new(&this.counters, ledger),
                &groups[task.stack.group().as_usize()],
                &mut task.stack,
                mode,
            );
            match result {
                Ok(done) => {
                    assert_eq!(task.state, TaskState::Asleep, "packed a thread not asleep");
                    assert!(done.class.bytes() >= done.live_bytes);
                    seen.packs += 1;
                    // Its pages are gone: the bytes are what must come back.
                    task.live_frames.clear();
                }
                Err(NotPacked::Awake) => assert_ne!(task.state, TaskState::Asleep),
                Err(NotPacked::AlreadyPacked) => assert!(task.stack.is_packed()),
                Err(NotPacked::Policy | NotPacked::TooDeep { .. } | NotPacked::NoBuffer) => {}
            }
        }
    }

    /// The wake path's restore of `slot` on `cpu` (the waker's CPU, and where it will run).
    pub(super) fn restore_on_wake(&mut self, slot: u32, cpu: usize) {
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let Self {
            platform,
            layout,
            cpus,
            groups,
            tasks,
            ledger,
            ..
        } = self;
        let this = &mut cpus[cpu];
        // The thread running on the waker's CPU keeps what it was admitted with.
        let running = this.running.map(|running| &tasks[&running].stack);
        let reserve = pack::wake_reserve(layout, running);
        let task = tasks.get_mut(&slot).expect("woken");
        let restore = pack::restore_on_wake(
            platform,
            layout,
            &mut this.percpu.magazine,
            Tally::new(&this.counters, ledger),
            &groups[task.stack.group().as_usize()],
            &mut task.stack,
            reserve,
        );
        self.note_restore(slot, restore);
    }

    /// Checks and notes what a restore of `slot` gave; stops the thread if its bytes are
    /// wrong.
    pub(super) fn note_restore(&mut self, slot: u32, restore: Restore) {
        let task = &self.tasks[&slot];
        match restore {
            Restore::NotPacked => assert!(!task.stack.is_packed()),
            Restore::Wait => {
                assert!(task.stack.is_packed());
                self.seen.restore_waits += 1;
            }
            Restore::Restored => {
                assert!(!task.corrupted, "a corrupted buffer restored silently");
                self.seen.restores += 1;
            }
            Restore::ChecksumMismatch { expected, found } => {
                assert_ne!(expected, found);
                assert!(task.corrupted, "a checksum mismatch with intact bytes");
                self.seen.restores += 1;
                self.seen.mismatches += 1;
                // The kernel stops the thread: it must never run on these bytes.
                let cpu = task.cpu;
                self.exit_task(cpu, slot);
            }
        }
    }

    /// Stops a thread that is not running (asleep, packed or not, or runnable).
    pub fn stop(&mut self, pick: usize) {
        let stoppable: Vec<(u32, usize)> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.state != TaskState::Running)
            .map(|(&slot, task)| (slot, task.cpu))
            .collect();
        if stoppable.is_empty() {
            return;
        }
        let (slot, cpu) = stoppable[pick % stoppable.len()];
        self.exit_task(cpu, slot);
    }

    fn packed(&self, pick: usize) -> Option<u32> {
        let packed: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.stack.is_packed())
            .map(|(&slot, _)| slot)
            .collect();
        (!packed.is_empty()).then(|| packed[pick % packed.len()])
    }

    /// Code on `cpu` reads a packed stack: the page fault must be refused, never served.
    pub fn foreign_touch(&mut self, pick: usize, cpu: usize) {
        let Some(slot) = self.packed(pick) else {
            return;
        };
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let stack = &self.tasks[&slot].stack;
        let guard = stack.packed().is_some_and(|p| p.kept_frame().is_some());
        let addr = self.layout.stack_top(SlotIndex::new(slot)).as_u64() - 8;
        let addr = dks_core::VirtAddr::new(addr);
        let fault = self
            .platform
            .touch(addr)
            .expect_err("a packed stack has no present page");
        match self.fault(cpu, fault.addr) {
            FaultOutcome::Fatal {
                slot: at,
                addr: culprit,
                reason: FatalReason::PackedStack { guard: caught },
                ..
            } => {
                assert_eq!((at.as_u32(), culprit, caught), (slot, addr, guard));
                self.seen.packed_touches += 1;
                self.seen.guard_catches += u64::from(guard);
            }
            other => panic!("a touch of packed slot {slot}: {other:?}"),
        }
        assert!(
            self.tasks[&slot].stack.is_packed(),
            "a fault restored a packed stack"
        );
    }

    /// Corrupts one byte of a packed stack's buffer.
    pub fn corrupt(&mut self, pick: usize) {
        let Some(slot) = self.packed(pick) else {
            return;
        };
        let task = self.tasks.get_mut(&slot).expect("packed");
        let packed = task.stack.packed().expect("packed");
        let offset = pick % packed.len() as usize;
        self.platform.corrupt_buffer(packed.buffer(), offset, 0x40);
        task.corrupted = true;
    }
}

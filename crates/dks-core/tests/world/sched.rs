//! Scheduling in the world: switching (admission, refill, switch-out), sleeping and waking,
//! memory pressure, and the work deferred to a CPU's next switch.

use dks_core::layout::RED_ZONE_IN_BYTES;
use dks_core::switch::{self, Admission, SwitchOut, SwitchOutReason};
use dks_core::{CpuId, Policy, Restore, SlotIndex, Tally, VirtAddr, cache, reclaim};

use super::{TaskState, World};

impl World {
    /// The scheduler of `cpu` picks the next runnable thread it may admit.
    pub fn schedule(&mut self, cpu: usize) {
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        self.run_deferred(cpu);
        let after = self.cpus[cpu].running.map_or(0, |slot| slot + 1);
        let mut candidates: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.cpu == cpu && task.state == TaskState::Runnable)
            .map(|(&slot, _)| slot)
            .collect();
        candidates.sort_by_key(|&slot| (slot < after, slot));
        for next in candidates {
            let Self {
                platform,
                layout,
                cpus,
                groups,
                tasks,
                ledger,
                ..
            } = self;
            let task = tasks.get_mut(&next).expect("candidate");
            let was_packed = task.stack.is_packed();
            let this = &mut cpus[cpu];
            let admission = switch::prepare(
                platform,
                layout,
                &mut this.percpu.magazine,
                Tally::new(&this.counters, ledger),
                &groups[task.stack.group().as_usize()],
                &mut task.stack,
            );
            let restored = was_packed && !self.tasks[&next].stack.is_packed();
            if restored && !matches!(admission, Admission::Corrupt { .. }) {
                // Restored before the switch-in (admitted or not).
                self.note_restore(next, Restore::Restored);
            }
            match admission {
                Admission::Admitted => {
                    self.switch_to(cpu, next);
                    return;
                }
                Admission::Wait { need, have } => {
                    assert!(have < need);
                    self.seen.admit_waits += 1;
                }
                Admission::WaitRestore => {
                    assert!(self.tasks[&next].stack.is_packed());
                    self.seen.restore_waits += 1;
                }
                Admission::Corrupt { expected, found } => {
                    self.note_restore(next, Restore::ChecksumMismatch { expected, found });
                }
            }
        }
    }

    pub(super) fn switch_to(&mut self, cpu: usize, next: u32) {
        let prev = self.cpus[cpu].running.replace(next);
        {
            let Self {
                platform,
                cpus,
                tasks,
                ledger,
                ..
            } = self;
            let task = tasks.get_mut(&next).expect("next");
            assert!(!task.stack.is_packed(), "slot {next} switched in packed");
            task.state = TaskState::Running;
            let this = &mut cpus[cpu];
            let _ = switch::finish(
                platform,
                &mut this.percpu.magazine,
                Tally::new(&this.counters, ledger),
                &mut task.stack,
            );
            for &(addr, phys) in &task.live_frames {
                assert_eq!(
                    platform.frame_at(addr),
                    Some(phys),
                    "live data of slot {next} lost"
                );
            }
            task.live_frames.clear();
            if let Some((from, bytes)) = task.live_bytes.take() {
                assert_eq!(
                    platform.read_bytes(from, bytes.len() as u64),
                    bytes,
                    "live bytes of slot {next} changed while it was switched out"
                );
                if task.stack.policy() == Policy::Pack {
                    self.seen.restored_bytes_checked += 1;
                }
            }
            if task.stack.policy() == Policy::Switch {
                assert_eq!(task.stack.populated(), self.layout.all_pages());
            }
        }
        if let Some(prev) = prev {
            self.switch_out(cpu, prev, SwitchOutReason::Preempted);
        }
    }

    pub(super) fn switch_out(&mut self, cpu: usize, slot: u32, reason: SwitchOutReason) {
        let Self {
            platform,
            layout,
            cpus,
            groups,
            tasks,
            ledger,
            ..
        } = self;
        let task = tasks.get_mut(&slot).expect("switched-out task");
        let top = layout.stack_top(SlotIndex::new(slot)).as_u64();
        let saved_sp = VirtAddr::new(top - task.sp_depth);
        // The thread's last writes: its live stack, red zone included, gets new bytes.
        self.generation += 1;
        let from = VirtAddr::new(top - task.sp_depth - RED_ZONE_IN_BYTES);
        let bytes: Vec<u8> = (0..task.sp_depth + RED_ZONE_IN_BYTES)
            .map(|i| (i.wrapping_mul(31) ^ self.generation ^ u64::from(slot)) as u8)
            .collect();
        platform
            .write_bytes(from, &bytes)
            .expect("live pages are present");
        task.live_bytes = Some((from, bytes));
        self.seen.bytes_written += 1;
        let this = &mut cpus[cpu];
        let result = switch::switch_out(
            platform,
            layout,
            &mut this.percpu.magazine,
            Tally::new(&this.counters, ledger),
            &groups[task.stack.group().as_usize()],
            &mut task.stack,
            SwitchOut { saved_sp, reason },
        );
        result.expect("saved pointer inside the stack");
        task.state = match reason {
            SwitchOutReason::Preempted => TaskState::Runnable,
            SwitchOutReason::Asleep => TaskState::Asleep,
        };
        // Computed here, not by dks: the thread wrote down to its red zone.
        let live = layout.pages_to_depth(task.sp_depth + RED_ZONE_IN_BYTES);
        assert!(
            live.is_subset(task.stack.populated()),
            "live pages unpopulated"
        );
        task.live_frames = live
            .iter()
            .map(|page| {
                let addr = layout.page_addr(SlotIndex::new(slot), page);
                (addr, platform.frame_at(addr).expect("live page mapped"))
            })
            .collect();
    }

    pub fn sleep(&mut self, cpu: usize) {
        let Some(slot) = self.cpus[cpu].running.take() else {
            return;
        };
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        self.switch_out(cpu, slot, SwitchOutReason::Asleep);
    }

    pub fn wake(&mut self, pick: usize, cpu: usize) {
        let asleep: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.state == TaskState::Asleep)
            .map(|(&slot, _)| slot)
            .collect();
        if asleep.is_empty() {
            return;
        }
        let slot = asleep[pick % asleep.len()];
        let task = self.tasks.get_mut(&slot).expect("asleep");
        task.state = TaskState::Runnable;
        // Woken onto `cpu`: a migration when it slept elsewhere.
        task.cpu = cpu;
        task.stack.wake();
        self.restore_on_wake(slot, cpu);
    }

    /// The stack-reclaim thread on `cpu`: releases exited stacks, gives back
    /// dead pages of sleeping threads, empties the stack cache.
    pub fn pressure(&mut self, cpu: usize) {
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        self.run_deferred(cpu);
        let Self {
            platform,
            layout,
            cpus,
            groups,
            tasks,
            free_slots,
            ledger,
            ..
        } = self;
        let this = &mut cpus[cpu];
        for task in tasks
            .values_mut()
            .filter(|task| task.state == TaskState::Asleep)
        {
            // As the kernel's reclaim thread does under pressure.
            let _ = reclaim::trim_asleep(
                platform,
                layout,
                &mut this.percpu.magazine,
                Tally::new(&this.counters, ledger),
                &groups[task.stack.group().as_usize()],
                &mut task.stack,
                reclaim::TrimCause::Pressure,
            );
        }
        let freed = cache::free_all(platform, layout, &mut this.percpu.cache);
        free_slots.extend(freed.into_iter().flatten());
    }

    pub(super) fn run_deferred(&mut self, cpu: usize) {
        while let Some(exited) = self.cpus[cpu].deferred.pop() {
            self.release(cpu, exited);
        }
    }
}

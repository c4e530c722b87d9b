//! The invariants of DESIGN §10, checked after every step: every frame in exactly one
//! place, every slot as its stack says, the counters agreeing with the stacks.

use dks_core::emulated::{FrameCounts, Place, SlotUse};
use dks_core::{Account, Counter, PageSet, Policy, SizeClass, SlotIndex};

use super::{TaskState, World};

impl World {
    pub(super) fn slot_use(&self, slot: SlotIndex) -> (SlotUse, Option<PageSet>) {
        if let Some(task) = self.tasks.get(&slot.as_u32()) {
            return (SlotUse::Live, Some(task.stack.populated()));
        }
        for cpu in &self.cpus {
            if let Some(exited) = cpu.deferred.iter().find(|exited| exited.slot() == slot) {
                return (SlotUse::Live, Some(exited.populated()));
            }
            if let Some(cached) = cpu.percpu.cache.iter().find(|cached| cached.slot() == slot) {
                return (SlotUse::Cached, Some(cached.populated()));
            }
        }
        (SlotUse::Unused, None)
    }

    /// Every frame in exactly one place; returns the counts.
    pub fn census(&self) -> FrameCounts {
        let mut census = self
            .platform
            .census(&self.layout, |slot| self.slot_use(slot).0)
            .expect("mapped pages belong to stacks");
        for cpu in &self.cpus {
            census
                .record_magazine(&cpu.percpu.magazine)
                .expect("magazine frames");
        }
        // Frames kept, unmapped, by stacks packed in guard mode.
        let kept = self
            .tasks
            .iter()
            .map(|(&slot, task)| (slot, task.stack.packed()))
            .chain(self.cpus.iter().flat_map(|cpu| {
                cpu.deferred
                    .iter()
                    .map(|exited| (exited.slot().as_u32(), exited.packed()))
            }));
        for (slot, packed) in kept {
            if let Some(frame) = packed.and_then(|packed| packed.kept_frame()) {
                census
                    .record(frame, Place::Stack(SlotIndex::new(slot)))
                    .expect("kept frames");
            }
        }
        for frame in &self.other {
            census.record(frame, Place::Other).expect("other frames");
        }
        census.finish().expect("every frame in exactly one place")
    }

    /// Checks the invariants of DESIGN §10.
    pub fn check(&self) {
        // Every frame in exactly one place (a frame mapped in two stacks is
        // a frame in two places).
        let counts = self.census();
        let mut live_pages = 0;
        let mut cached_pages = 0;
        let mut charged = vec![0u64; self.groups.len()];
        let mut slots_seen = 0;
        for slot in (0..self.layout.slot_count()).map(SlotIndex::new) {
            let (slot_use, populated) = self.slot_use(slot);
            // Page states add up, and the entries agree with dks's state.
            let pages = self
                .platform
                .check_slot(&self.layout, slot, populated)
                .unwrap_or_else(|mismatch| panic!("slot {slot:?}: {mismatch:?}"));
            if let Some(populated) = populated {
                assert_eq!(pages.total(), self.layout.slot_size_in_pages());
                assert_eq!(pages.populated, u64::from(populated.len()));
                // Only a packed stack (or a cached one that was released packed) lacks it.
                let packed = self
                    .tasks
                    .get(&slot.as_u32())
                    .is_some_and(|task| task.stack.is_packed())
                    || self.cpus.iter().any(|cpu| {
                        cpu.deferred
                            .iter()
                            .any(|exited| exited.slot() == slot && exited.packed().is_some())
                    });
                assert!(
                    populated.contains(dks_core::StackPage::TOP)
                        || packed
                        || (slot_use == SlotUse::Cached && populated.is_empty()),
                    "top page unpopulated"
                );
                slots_seen += 1;
            }
            let kept = self.tasks.get(&slot.as_u32()).map_or(0, |task| {
                task.stack.held_pages() - task.stack.populated_pages()
            }) + self
                .cpus
                .iter()
                .flat_map(|cpu| cpu.deferred.iter())
                .filter(|exited| exited.slot() == slot)
                .map(|exited| exited.held_pages() - exited.populated().len())
                .sum::<u8>();
            match slot_use {
                SlotUse::Live => {
                    live_pages += u64::from(populated.map_or(0, PageSet::len)) + u64::from(kept);
                }
                SlotUse::Cached => cached_pages += u64::from(populated.map_or(0, PageSet::len)),
                SlotUse::Unused => {}
            }
        }
        assert_eq!(counts.stack, live_pages);
        assert_eq!(counts.cache, cached_pages);
        assert_eq!(
            slots_seen + self.free_slots.len(),
            self.layout.slot_count() as usize
        );

        for task in self.tasks.values() {
            // The stack's kept count is its set's size (the fault path reads the count).
            assert_eq!(
                task.stack.populated_pages(),
                task.stack.populated().len(),
                "populated count of slot {:?}",
                task.stack.slot()
            );
            charged[task.stack.group().as_usize()] += u64::from(task.stack.held_pages());
        }
        for cpu in &self.cpus {
            for exited in cpu.deferred.iter() {
                charged[exited.group().as_usize()] += u64::from(exited.held_pages());
            }
            let magazine = &cpu.percpu.magazine;
            assert!(magazine.len() <= magazine.capacity());
            for frame in magazine.frames() {
                assert!(
                    self.platform.is_clean(frame.phys_addr()),
                    "dirty frame in a magazine"
                );
            }
            if let Some(slot) = cpu.running {
                let task = &self.tasks[&slot];
                assert_eq!(task.state, TaskState::Running);
                assert!(!task.stack.is_packed(), "slot {slot} runs packed");
                if task.stack.policy() == Policy::Switch {
                    assert_eq!(task.stack.populated(), self.layout.all_pages());
                }
            }
        }
        for (group, &pages) in self.groups.iter().zip(&charged) {
            assert_eq!(group.charged_pages(), pages, "group charge");
        }

        // No CPU can reach a frame through a stale translation.
        self.platform
            .check_tlbs()
            .expect("TLBs agree with the page table");

        // Every pack buffer handed out belongs to exactly one stack that is packed, live or
        // exited: none is freed while its thread may restore, none is lost.
        let mut owned: Vec<(u64, SizeClass, Account)> = self
            .tasks
            .values()
            .filter_map(|task| task.stack.packed().map(|p| (p, task.stack.account())))
            .chain(self.cpus.iter().flat_map(|cpu| {
                cpu.deferred
                    .iter()
                    .filter_map(|exited| exited.packed().map(|p| (p, exited.account())))
            }))
            .map(|(packed, account)| (packed.buffer().handle(), packed.buffer().class(), account))
            .collect();
        owned.sort_by_key(|&(handle, ..)| handle);
        let handed_out: Vec<(u64, SizeClass)> = self.platform.live_buffers().collect();
        assert_eq!(
            owned.iter().map(|&(h, c, _)| (h, c)).collect::<Vec<_>>(),
            handed_out,
            "pack buffers and packed stacks"
        );

        let totals = self.totals();
        let buffer_kib: i64 = Account::ALL
            .iter()
            .map(|&account| {
                let bytes: u64 = owned
                    .iter()
                    .filter(|&&(_, _, a)| a == account)
                    .map(|&(_, class, _)| class.bytes())
                    .sum();
                let snapshot = totals.account(account);
                assert_eq!(
                    snapshot.packed_bytes_now, bytes as i64,
                    "{account:?} buffers"
                );
                assert_eq!(
                    snapshot.packed_threads_now,
                    owned.iter().filter(|&&(_, _, a)| a == account).count() as i64
                );
                (bytes as i64 + 1023) / 1024
            })
            .sum();
        assert_eq!(
            totals.get(Counter::NrKernelStackKb),
            4 * live_pages as i64 + buffer_kib
        );
        // Each account holds exactly the populated pages of its stacks not yet released.
        for account in Account::ALL {
            let live: u64 = self
                .tasks
                .values()
                .filter(|task| task.stack.account() == account)
                .map(|task| u64::from(task.stack.held_pages()))
                .sum();
            let exited: u64 = self
                .cpus
                .iter()
                .flat_map(|cpu| cpu.deferred.iter())
                .filter(|exited| exited.account() == account)
                .map(|exited| u64::from(exited.held_pages()))
                .sum();
            let pages = live + exited;
            assert_eq!(
                totals.account(account).pages_now,
                pages as i64,
                "{account:?}"
            );
        }
        let count = |counter| totals.get(counter) as u64;
        assert_eq!(
            count(Counter::Fatal),
            self.seen.fatal_faults + self.seen.packed_touches
        );
        assert_eq!(count(Counter::GuardHits), self.seen.guard_hits);
        assert_eq!(count(Counter::Packs), self.seen.packs);
        assert_eq!(count(Counter::Restores), self.seen.restores);
        assert_eq!(count(Counter::RestoreWait), self.seen.restore_waits);
        assert_eq!(count(Counter::PackChecksumFail), self.seen.mismatches);
        assert_eq!(count(Counter::PackGuardCatches), self.seen.guard_catches);
        assert_eq!(count(Counter::Faults), self.seen.served_faults);
        assert_eq!(count(Counter::AdmitWait), self.seen.admit_waits);
        assert!(count(Counter::RefillFail) <= count(Counter::Refills));
        let dynamic_only = self.policies.iter().all(|&policy| policy != Policy::Fault);
        if dynamic_only {
            assert_eq!(
                count(Counter::Fatal) - self.seen.packed_touches,
                0,
                "a fatal stack fault under {:?}",
                self.policies
            );
        }
        self.check_trim_causes();
    }
}

impl World {
    /// Pages trimmed dead below a sleeper's saved stack pointer are counted under their cause
    /// as well as under `dks_reclaimed`; a `reclaim` stack gives pages back no other way.
    fn check_trim_causes(&self) {
        use dks_core::{Account, Counter};
        let totals = self.totals();
        for account in Account::ALL {
            let snapshot = totals.account(account);
            let dead = snapshot.events(Counter::ReclaimedDeadPressure)
                + snapshot.events(Counter::ReclaimedDeadAsleep);
            let reclaimed = snapshot.events(Counter::Reclaimed);
            assert!(
                dead <= reclaimed,
                "{account:?}: {dead} dead of {reclaimed} reclaimed"
            );
            if account == Account::Policy(dks_core::Policy::Reclaim) {
                assert_eq!(dead, reclaimed, "reclaim gives pages back only by trims");
            }
        }
    }
}

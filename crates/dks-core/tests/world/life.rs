//! A thread's life in the world: creation, growth by faults, overflow, exit, release and
//! the final tear-down.

use dks_core::layout::RED_ZONE_IN_BYTES;
use dks_core::stack::{self, ExitedStack, Released};
use dks_core::{
    Counter, CpuId, FatalReason, FaultOutcome, GroupId, Platform, Policy, SlotIndex, StackSource,
    StackSpec, Tally, Totals, VirtAddr, cache, counters, fault,
};

use super::{INITIAL_DEPTH_IN_BYTES, Task, TaskState, Tasks, World};

impl World {
    /// Creates a thread on `cpu`, as the kernel's fork would.
    pub fn create(&mut self, cpu: usize, policy: Policy, group: usize) -> Option<SlotIndex> {
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let source = match self.cpus[cpu].percpu.cache.take() {
            Some(cached) => StackSource::Cached(cached),
            None => StackSource::Fresh(self.free_slots.pop()?),
        };
        let spec = StackSpec::new(policy, GroupId::new(group as u16));
        let result = stack::create(
            &mut self.platform,
            &self.layout,
            Tally::new(&self.cpus[cpu].counters, &self.ledger),
            &self.groups[group],
            spec,
            source,
        );
        let created = match result {
            Ok(created) => created,
            Err(error) => {
                self.seen.create_failures += 1;
                match error.source {
                    StackSource::Fresh(slot) => self.free_slots.push(slot),
                    StackSource::Cached(cached) => {
                        let back = self.cpus[cpu].percpu.cache.put(cached);
                        assert!(back.is_ok(), "the cache had room for what it gave");
                    }
                }
                return None;
            }
        };
        let slot = created.stack.slot();
        // Fresh frames come zeroed; only the inherited pages need zeroing.
        for page in created.stack.populated().iter() {
            let addr = self.layout.page_addr(slot, page);
            let phys = self.platform.frame_at(addr).expect("populated page mapped");
            if created.pages_to_zero.contains(page) {
                self.platform.zero_page(addr);
            } else {
                assert!(
                    self.platform.is_clean(phys),
                    "fresh page {addr} is not zeroed"
                );
            }
        }
        self.seen.created += 1;
        self.tasks.insert(
            slot.as_u32(),
            Task {
                stack: created.stack,
                state: TaskState::Runnable,
                cpu,
                sp_depth: INITIAL_DEPTH_IN_BYTES,
                live_frames: Vec::new(),
                live_bytes: None,
                corrupted: false,
            },
        );
        Some(slot)
    }

    /// The running thread on `cpu` touches its stack down to `depth` bytes
    /// (and its red zone below), taking stack faults as the CPU would.
    pub fn grow(&mut self, cpu: usize, depth: u64) {
        let Some(slot) = self.cpus[cpu].running else {
            return;
        };
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let pages = self.layout.pages_to_depth(depth + RED_ZONE_IN_BYTES);
        for page in pages.iter() {
            let addr = self.layout.page_addr(SlotIndex::new(slot), page);
            let Err(page_fault) = self.platform.touch(addr) else {
                continue;
            };
            match self.fault(cpu, page_fault.addr) {
                FaultOutcome::Served {
                    slot: served,
                    page: served_page,
                } => {
                    assert_eq!((served.as_u32(), served_page), (slot, page));
                    let policy = self.tasks[&slot].stack.policy();
                    assert!(policy.grows_by_fault(), "{policy} stack took a fault");
                    self.seen.served_faults += 1;
                    self.platform.touch(addr).expect("served page is present");
                }
                FaultOutcome::Fatal {
                    reason: FatalReason::MagazineEmpty,
                    slot: fatal,
                    ..
                } => {
                    assert_eq!(fatal.as_u32(), slot);
                    let policy = self.tasks[&slot].stack.policy();
                    assert_eq!(policy, Policy::Fault, "fatal stack fault under {policy}");
                    self.seen.fatal_faults += 1;
                    // The kernel kills the thread.
                    self.exit_running(cpu);
                    return;
                }
                other => panic!("stack growth of slot {slot} page {page:?}: {other:?}"),
            }
        }
        self.tasks.get_mut(&slot).expect("running task").sp_depth = depth;
    }

    /// Takes a page fault at `addr` on `cpu`, as the kernel's #PF handler.
    pub fn fault(&mut self, cpu: usize, addr: VirtAddr) -> FaultOutcome {
        let Self {
            platform,
            layout,
            cpus,
            groups,
            tasks,
            ledger,
            ..
        } = self;
        let cpu = &mut cpus[cpu];
        let mut table = Tasks {
            magazine: &mut cpu.percpu.magazine,
            tasks,
            groups,
        };
        fault::handle(
            platform,
            layout,
            Tally::new(&cpu.counters, ledger),
            &mut table,
            addr,
        )
    }

    /// The counters of every CPU and account, summed.
    pub fn totals(&self) -> Totals {
        counters::sum(self.cpus.iter().map(|cpu| &cpu.counters), &self.ledger)
    }

    /// The running thread on `cpu` runs off the bottom of its stack.
    pub fn overflow(&mut self, cpu: usize) {
        let Some(slot) = self.cpus[cpu].running else {
            return;
        };
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let slot_index = SlotIndex::new(slot);
        let addr = VirtAddr::new(self.layout.stack_bottom(slot_index).as_u64() - 8);
        let page_fault = self
            .platform
            .touch(addr)
            .expect_err("guard pages are never mapped");
        match self.fault(cpu, page_fault.addr) {
            FaultOutcome::GuardHit {
                slot: hit,
                addr: at,
                depth_in_bytes,
            } => {
                assert_eq!((hit, at), (slot_index, addr));
                assert_eq!(depth_in_bytes, self.layout.max_stack().bytes() + 8);
                self.seen.guard_hits += 1;
            }
            other => panic!("overflow of slot {slot}: {other:?}"),
        }
        self.exit_running(cpu);
    }

    /// The running thread on `cpu` exits: its stack waits in the deferred
    /// queue until work on another stack releases it.
    pub fn exit_running(&mut self, cpu: usize) {
        let Some(slot) = self.cpus[cpu].running.take() else {
            return;
        };
        self.exit_task(cpu, slot);
    }

    pub(super) fn exit_task(&mut self, cpu: usize, slot: u32) {
        let task = self.tasks.remove(&slot).expect("exiting task");
        if let Err(exited) = self.cpus[cpu].deferred.push(stack::exit(task.stack)) {
            // The queue is full: the work runs now.
            self.release(cpu, exited);
        }
    }

    pub(super) fn release(&mut self, cpu: usize, exited: ExitedStack) {
        self.platform.set_current_cpu(CpuId::new(cpu as u32));
        let group = exited.group().as_usize();
        let this = &mut self.cpus[cpu];
        let released = stack::release(
            &mut self.platform,
            &self.layout,
            &mut this.percpu.cache,
            Tally::new(&this.counters, &self.ledger),
            &self.groups[group],
            exited,
            0,
        );
        if let Released::Freed(slot) = released {
            self.free_slots.push(slot);
        }
    }

    /// Every thread exits and every exited stack is released; then stack
    /// memory must be back at its baseline. Then caches and magazines are
    /// emptied and every frame must be free.
    pub fn tear_down(&mut self) {
        let slots: Vec<(u32, usize)> = self
            .tasks
            .iter()
            .map(|(&slot, task)| (slot, task.cpu))
            .collect();
        for cpu in &mut self.cpus {
            cpu.running = None;
        }
        for (slot, cpu) in slots {
            self.exit_task(cpu, slot);
        }
        for cpu in 0..self.cpus.len() {
            self.run_deferred(cpu);
        }
        self.check();
        let totals = self.totals();
        assert_eq!(
            totals.get(Counter::NrKernelStackKb),
            0,
            "stack memory back at baseline"
        );
        assert!(self.groups.iter().all(|group| group.charged_pages() == 0));
        assert_eq!(self.census().stack, 0);

        for cpu in 0..self.cpus.len() {
            self.platform.set_current_cpu(CpuId::new(cpu as u32));
            let Self {
                platform,
                layout,
                cpus,
                free_slots,
                ..
            } = self;
            let freed = cache::free_all(platform, layout, &mut cpus[cpu].percpu.cache);
            free_slots.extend(freed.into_iter().flatten());
            let _ = cpus[cpu].percpu.magazine.drain(platform);
        }
        for frame in self.other.drain(..) {
            self.platform.free_frame(frame);
        }
        self.check();
        assert_eq!(
            self.platform.live_buffers().count(),
            0,
            "a pack buffer leaked"
        );
        assert_eq!(
            self.platform.free_frames(),
            self.platform.total_frames() as usize
        );
        assert_eq!(self.platform.mapped_pages(), 0);
        assert_eq!(self.free_slots.len(), self.layout.slot_count() as usize);
    }
}

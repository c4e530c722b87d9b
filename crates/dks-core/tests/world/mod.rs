//! A small machine that drives dks-core the way the kernel will: CPUs with
//! run queues, tasks that grow their stacks, switch, sleep, wake and exit,
//! memory pressure and allocation failures, all on the emulated platform.
//! After every step, [`World::check`] checks the invariants of DESIGN §10.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use std::collections::BTreeMap;

use dks_core::emulated::{
    EmulatedConfig, EmulatedPlatform, FailurePattern, FrameCounts, Place, SlotUse,
};
use dks_core::layout::RED_ZONE_IN_BYTES;
use dks_core::stack::{self, ExitedStack, Released};
use dks_core::switch::{self, Admission, SwitchOut, SwitchOutReason};
use dks_core::{
    Account, Busy, Counter, CpuCounters, CpuId, DeferredFree, FatalReason, FaultOutcome, Frame,
    GroupCharge, GroupCharge as Charge, GroupId, Ledger, Magazine, PageSet, PerCpu, Platform,
    Policy, SlotIndex, Stack, StackLayout, StackSource, StackSpec, StackTable, Tally, Totals,
    Urgency, VirtAddr, cache, counters, fault, reclaim,
};

/// Bytes a freshly created thread uses on its top page.
pub const INITIAL_DEPTH_IN_BYTES: u64 = 64;

/// How a world is built.
#[derive(Clone, Copy, Debug)]
pub struct WorldConfig {
    pub cpus: u32,
    pub slots: u32,
    pub max_stack_bytes: u64,
    pub frames: u32,
    pub atomic_reserve_frames: u32,
    pub failures: FailurePattern,
    pub seed: u64,
    pub groups: usize,
    /// A limit for group 1, if any (group 0 has none).
    pub group_limit_pages: Option<u64>,
}

/// A stack depth, relative to the stack size.
#[derive(Clone, Copy, Debug)]
pub enum Depth {
    /// Thousandths of the usable stack.
    PerMille(u16),
    /// Just above the end of page `page`, so close that the red zone below
    /// the stack pointer reaches into the next page: `offset` bytes (1 to
    /// 128) above the page boundary.
    NearPageEnd { page: u8, offset: u8 },
}

/// One step of a run.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// A new thread on `cpu` (policy picked from the run's set by index).
    Create {
        cpu: usize,
        policy: usize,
        group: usize,
    },
    /// The running thread on `cpu` uses its stack down to `depth`.
    Grow { cpu: usize, depth: Depth },
    /// The running thread on `cpu` returns to a shallower depth.
    Shrink { cpu: usize, depth: Depth },
    /// The scheduler of `cpu` switches to the next admitted runnable thread.
    Switch { cpu: usize },
    /// The running thread on `cpu` goes to sleep.
    Sleep { cpu: usize },
    /// A sleeping thread (picked by index) is woken onto `cpu`.
    Wake { pick: usize, cpu: usize },
    /// The stack-reclaim thread runs on `cpu`.
    Pressure { cpu: usize },
    /// The running thread on `cpu` exits.
    Exit { cpu: usize },
    /// The running thread on `cpu` overflows into its guard page.
    Overflow { cpu: usize },
    /// Something else takes `frames` frames.
    Squeeze { frames: u32 },
    /// Something else gives back `frames` frames.
    Unsqueeze { frames: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Runnable,
    Running,
    Asleep,
}

#[derive(Debug)]
pub struct Task {
    pub stack: Stack,
    pub state: TaskState,
    pub cpu: usize,
    pub sp_depth: u64,
    /// The frames of the live pages at the last switch-out: live data must
    /// still be there at the next switch-in.
    pub live_frames: Vec<(VirtAddr, u64)>,
}

#[derive(Debug)]
pub struct Cpu {
    pub percpu: PerCpu,
    pub counters: CpuCounters,
    pub running: Option<u32>,
    pub deferred: DeferredFree<4>,
}

/// Events the run saw, to compare with the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub fatal_faults: u64,
    pub guard_hits: u64,
    pub served_faults: u64,
    pub admit_waits: u64,
    pub created: u64,
    pub create_failures: u64,
}

#[derive(Debug)]
pub struct World {
    pub platform: EmulatedPlatform,
    pub layout: StackLayout,
    pub policies: Vec<Policy>,
    pub cpus: Vec<Cpu>,
    pub groups: Vec<GroupCharge>,
    pub tasks: BTreeMap<u32, Task>,
    pub ledger: Ledger,
    pub free_slots: Vec<SlotIndex>,
    pub other: Vec<Frame>,
    pub seen: Seen,
}

impl World {
    pub fn new(config: WorldConfig, policies: &[Policy]) -> Self {
        let layout = StackLayout::try_with_default_base(config.max_stack_bytes, config.slots)
            .expect("valid layout");
        let platform = EmulatedPlatform::new(EmulatedConfig {
            cpus: config.cpus,
            frames: config.frames,
            atomic_reserve_frames: config.atomic_reserve_frames,
            failures: config.failures,
            seed: config.seed,
        });
        let cpus = (0..config.cpus)
            .map(|cpu| Cpu {
                percpu: PerCpu::new(CpuId::new(cpu), &layout),
                counters: CpuCounters::new(),
                running: None,
                deferred: DeferredFree::new(),
            })
            .collect();
        let groups = (0..config.groups)
            .map(|group| {
                GroupCharge::new(if group == 1 {
                    config.group_limit_pages
                } else {
                    None
                })
            })
            .collect();
        Self {
            platform,
            layout,
            policies: policies.to_vec(),
            cpus,
            groups,
            tasks: BTreeMap::new(),
            ledger: Ledger::new(),
            free_slots: (0..config.slots).rev().map(SlotIndex::new).collect(),
            other: Vec::new(),
            seen: Seen::default(),
        }
    }

    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Create { cpu, policy, group } => {
                let policy = self.policies[policy % self.policies.len()];
                let _ = self.create(self.cpu(cpu), policy, group % self.groups.len());
            }
            Op::Grow { cpu, depth } => {
                let depth = self.depth(depth);
                self.grow(self.cpu(cpu), depth);
            }
            Op::Shrink { cpu, depth } => {
                let depth = self.depth(depth);
                if let Some(task) = self.running_mut(self.cpu(cpu)) {
                    task.sp_depth = task.sp_depth.min(depth);
                }
            }
            Op::Switch { cpu } => self.schedule(self.cpu(cpu)),
            Op::Sleep { cpu } => self.sleep(self.cpu(cpu)),
            Op::Wake { pick, cpu } => self.wake(pick, self.cpu(cpu)),
            Op::Pressure { cpu } => self.pressure(self.cpu(cpu)),
            Op::Exit { cpu } => self.exit_running(self.cpu(cpu)),
            Op::Overflow { cpu } => self.overflow(self.cpu(cpu)),
            Op::Squeeze { frames } => {
                for _ in 0..frames {
                    match self.platform.alloc_frame(Urgency::Normal) {
                        Some(frame) => self.other.push(frame),
                        None => break,
                    }
                }
            }
            Op::Unsqueeze { frames } => {
                for _ in 0..frames {
                    match self.other.pop() {
                        Some(frame) => self.platform.free_frame(frame),
                        None => break,
                    }
                }
            }
        }
    }

    fn cpu(&self, cpu: usize) -> usize {
        cpu % self.cpus.len()
    }

    /// A depth in bytes between the initial one and the bottom of the stack,
    /// leaving room for the red zone.
    fn depth(&self, depth: Depth) -> u64 {
        let deepest = self.layout.max_stack().bytes() - RED_ZONE_IN_BYTES;
        let usable = deepest - INITIAL_DEPTH_IN_BYTES;
        match depth {
            Depth::PerMille(per_mille) => {
                INITIAL_DEPTH_IN_BYTES + usable * u64::from(per_mille.min(1000)) / 1000
            }
            Depth::NearPageEnd { page, offset } => {
                let pages = u64::from(self.layout.stack_pages());
                let boundary =
                    (u64::from(page) % (pages - 1) + 1) * dks_core::layout::PAGE_SIZE_IN_BYTES;
                let offset = u64::from(offset).clamp(1, RED_ZONE_IN_BYTES);
                (boundary - offset).clamp(INITIAL_DEPTH_IN_BYTES, deepest)
            }
        }
    }

    fn running_mut(&mut self, cpu: usize) -> Option<&mut Task> {
        let slot = self.cpus[cpu].running?;
        self.tasks.get_mut(&slot)
    }

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
            let this = &mut cpus[cpu];
            let admission = switch::prepare(
                platform,
                layout,
                &mut this.percpu.magazine,
                Tally::new(&this.counters, ledger),
                &groups[task.stack.group().as_usize()],
                &mut task.stack,
            );
            match admission {
                Admission::Admitted => {
                    self.switch_to(cpu, next);
                    return;
                }
                Admission::Wait { need, have } => {
                    assert!(have < need);
                    self.seen.admit_waits += 1;
                }
            }
        }
    }

    fn switch_to(&mut self, cpu: usize, next: u32) {
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
            if task.stack.policy() == Policy::Switch {
                assert_eq!(task.stack.populated(), self.layout.all_pages());
            }
        }
        if let Some(prev) = prev {
            self.switch_out(cpu, prev, SwitchOutReason::Preempted);
        }
    }

    fn switch_out(&mut self, cpu: usize, slot: u32, reason: SwitchOutReason) {
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
        let task = self
            .tasks
            .get_mut(&asleep[pick % asleep.len()])
            .expect("asleep");
        task.state = TaskState::Runnable;
        task.cpu = cpu;
        task.stack.wake();
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
            let _ = reclaim::reclaim_asleep(
                platform,
                layout,
                &mut this.percpu.magazine,
                Tally::new(&this.counters, ledger),
                &groups[task.stack.group().as_usize()],
                &mut task.stack,
            );
        }
        let freed = cache::free_all(platform, layout, &mut this.percpu.cache);
        free_slots.extend(freed.into_iter().flatten());
    }

    /// The running thread on `cpu` exits: its stack waits in the deferred
    /// queue until work on another stack releases it.
    pub fn exit_running(&mut self, cpu: usize) {
        let Some(slot) = self.cpus[cpu].running.take() else {
            return;
        };
        self.exit_task(cpu, slot);
    }

    fn exit_task(&mut self, cpu: usize, slot: u32) {
        let task = self.tasks.remove(&slot).expect("exiting task");
        if let Err(exited) = self.cpus[cpu].deferred.push(stack::exit(task.stack)) {
            // The queue is full: the work runs now.
            self.release(cpu, exited);
        }
    }

    fn run_deferred(&mut self, cpu: usize) {
        while let Some(exited) = self.cpus[cpu].deferred.pop() {
            self.release(cpu, exited);
        }
    }

    fn release(&mut self, cpu: usize, exited: ExitedStack) {
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
            self.platform.free_frames(),
            self.platform.total_frames() as usize
        );
        assert_eq!(self.platform.mapped_pages(), 0);
        assert_eq!(self.free_slots.len(), self.layout.slot_count() as usize);
    }

    fn slot_use(&self, slot: SlotIndex) -> (SlotUse, Option<PageSet>) {
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
                assert!(
                    populated.contains(dks_core::StackPage::TOP),
                    "top page unpopulated"
                );
                slots_seen += 1;
            }
            match slot_use {
                SlotUse::Live => live_pages += u64::from(populated.map_or(0, PageSet::len)),
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
            charged[task.stack.group().as_usize()] += u64::from(task.stack.populated_pages());
        }
        for cpu in &self.cpus {
            for exited in cpu.deferred.iter() {
                charged[exited.group().as_usize()] += u64::from(exited.populated().len());
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

        let totals = self.totals();
        assert_eq!(totals.get(Counter::NrKernelStackKb), 4 * live_pages as i64);
        // Each account holds exactly the populated pages of its stacks not yet released.
        for account in Account::ALL {
            let live: u64 = self
                .tasks
                .values()
                .filter(|task| task.stack.account() == account)
                .map(|task| u64::from(task.stack.populated_pages()))
                .sum();
            let exited: u64 = self
                .cpus
                .iter()
                .flat_map(|cpu| cpu.deferred.iter())
                .filter(|exited| exited.account() == account)
                .map(|exited| u64::from(exited.populated().len()))
                .sum();
            let pages = live + exited;
            assert_eq!(
                totals.account(account).pages_now,
                pages as i64,
                "{account:?}"
            );
        }
        let count = |counter| totals.get(counter) as u64;
        assert_eq!(count(Counter::Fatal), self.seen.fatal_faults);
        assert_eq!(count(Counter::GuardHits), self.seen.guard_hits);
        assert_eq!(count(Counter::Faults), self.seen.served_faults);
        assert_eq!(count(Counter::AdmitWait), self.seen.admit_waits);
        assert!(count(Counter::RefillFail) <= count(Counter::Refills));
        let dynamic_only = self.policies.iter().all(|&policy| policy != Policy::Fault);
        if dynamic_only {
            assert_eq!(
                count(Counter::Fatal),
                0,
                "a fatal stack fault under {:?}",
                self.policies
            );
        }
    }
}

/// The world's live stacks, as the fault path of one CPU sees them.
struct Tasks<'a> {
    magazine: &'a mut Magazine,
    tasks: &'a mut BTreeMap<u32, Task>,
    groups: &'a [Charge],
}

impl StackTable for Tasks<'_> {
    fn account(&self, slot: SlotIndex) -> Account {
        self.tasks
            .get(&slot.as_u32())
            .map_or(Account::System, |task| task.stack.account())
    }

    fn with_stack<R>(
        &mut self,
        owner: SlotIndex,
        serve: impl FnOnce(&mut Magazine, Option<(&mut Stack, &Charge)>) -> R,
    ) -> Result<R, Busy> {
        let live = self.tasks.get_mut(&owner.as_u32()).map(|task| {
            let group = &self.groups[task.stack.group().as_usize()];
            (&mut task.stack, group)
        });
        Ok(serve(self.magazine, live))
    }
}

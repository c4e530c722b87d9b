//! A small machine that drives dks-core the way the kernel will: CPUs with
//! run queues, tasks that grow their stacks, switch, sleep, wake and exit,
//! memory pressure and allocation failures, all on the emulated platform.
//! After every step, [`World::check`] checks the invariants of DESIGN §10.
//!
//! Here: the world, its configuration and the operations it applies. A thread's life is in
//! `life.rs`, scheduling and memory pressure in `sched.rs`, the invariants in `check.rs`.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

mod check;
mod life;
mod pack;
mod sched;

use std::collections::BTreeMap;

use dks_core::emulated::{EmulatedConfig, EmulatedPlatform, FailurePattern};
use dks_core::layout::RED_ZONE_IN_BYTES;
use dks_core::{
    Account, Busy, CpuCounters, CpuId, DeferredFree, Frame, GroupCharge, GroupCharge as Charge,
    Ledger, Magazine, PerCpu, Platform, Policy, SlotIndex, Stack, StackLayout, StackTable, Urgency,
    VirtAddr,
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
    /// The pack scanner runs on `cpu`: it packs every sleeping `pack` thread.
    Pack { cpu: usize, guard: bool },
    /// A thread that is not running (picked by index) is stopped (killed).
    Stop { pick: usize },
    /// Another CPU touches a packed stack (picked by index): a bug the fault path catches.
    ForeignTouch { pick: usize, cpu: usize },
    /// A packed stack's buffer (picked by index) is corrupted: its restore must say so.
    Corrupt { pick: usize },
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
    /// still be there at the next switch-in (unless the stack was packed since).
    pub live_frames: Vec<(VirtAddr, u64)>,
    /// The live bytes the thread wrote at its last switch-out, and where: they must be
    /// there, byte for byte, at the next switch-in (packed and restored or not).
    pub live_bytes: Option<(VirtAddr, Vec<u8>)>,
    /// Its pack buffer was corrupted on purpose: its restore must report a mismatch.
    pub corrupted: bool,
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
    pub packs: u64,
    pub restores: u64,
    pub restore_waits: u64,
    pub mismatches: u64,
    pub packed_touches: u64,
    pub guard_catches: u64,
    /// Switch-outs that wrote live bytes (each checked at the next switch-in).
    pub bytes_written: u64,
    /// Switch-ins whose live bytes were checked after a restore.
    pub restored_bytes_checked: u64,
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
    /// Changes the bytes each switch-out writes.
    pub generation: u64,
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
            generation: 0,
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
            Op::Pack { cpu, guard } => self.scan(self.cpu(cpu), guard),
            Op::Stop { pick } => self.stop(pick),
            Op::ForeignTouch { pick, cpu } => self.foreign_touch(pick, self.cpu(cpu)),
            Op::Corrupt { pick } => self.corrupt(pick),
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

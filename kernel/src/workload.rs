//! Workloads (DESIGN §8): a population of threads that enter "kernel paths" of drawn depths,
//! block at their deepest point, sleep at shallow depths, and are preempted while deep.
//!
//! The plan comes from the host (`workload=initrd`: a JSON `dks_protocol::scenario::Plan` in
//! the first boot module) or is built in (`workload=mixed`: a little of everything, under
//! every implemented policy). Every policy's threads run side by side in one boot.
//!
//! A path of depth `d` recurses through frames that touch their locals until the stack is
//! about `d - 1 KiB` deep and then writes the byte exactly `d` below the stack top: so the
//! deepest byte a path touches is `d` (unless the thread's own base usage is deeper, or an
//! interrupt lands on it while it is deep, as in a real kernel). While a thread is blocked or
//! asleep, its *live depth* is where it sleeps; the sampler sums, per policy, the pages these
//! live depths touch (the live-data bound) next to the pages populated.
//!
//! A share of paths (`irqoff_percent`) runs from its start to its deepest byte with interrupts
//! off, holding a spin lock of its group, as kernel code deep under a spin lock does; such a
//! path never blocks. A stack fault there that cannot be served would stop a real kernel: the
//! thread may hold a lock nobody can release. The section is registered per CPU
//! ([`in_irqoff_section`]), so the fault path can count that kernel stop, give the section's
//! lock up and stop only the thread, and one boot still measures every policy (the count is
//! the `kernel_stops` of `policy_stat`).

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use dks_core::SlotIndex;
use dks_protocol::record::{Record, Sample, SpawnFailure, WorkloadStat};
use dks_protocol::scenario::{Bucket, GroupPlan, Histogram, Lifetime, PLAN_VERSION, Plan, Wake};

use crate::hw::apic;
use crate::hw::cpu_ops::{self, IrqGuard, MAX_CPUS};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes::{self, stack_pointer};
use crate::hw::sync::IrqMutex;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy, StackError};
use crate::{mce, overhead, report, tlb, vmstat};

/// A small, seedable PRNG (xorshift64*).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A value of `histogram` (see `dks_protocol::scenario::Histogram`).
    fn draw(&mut self, histogram: &Histogram) -> u64 {
        let total: u64 = histogram.buckets.iter().map(|b| b.weight).sum();
        let mut pick = self.below(total);
        let mut low = 0u64;
        for bucket in &histogram.buckets {
            let high = u64::from(bucket.up_to_bytes);
            if pick < bucket.weight {
                return low + 1 + self.below(high - low);
            }
            pick -= bucket.weight;
            low = high;
        }
        low
    }

    /// A time around `mean_ms`: uniform in [mean/2, 3·mean/2], at least 1.
    fn around(&mut self, mean_ms: u32) -> u64 {
        let mean = u64::from(mean_ms.max(1));
        (mean / 2 + self.below(mean + 1)).max(1)
    }
}

/// What the sampler needs to know of the workload thread in each stack slot, one word per slot
/// (a million threads keep no record of their own for it): 0 while no workload thread lives
/// there, else its policy's index + 1 in the high byte and, below, the bytes under the stack
/// top that its live stack reaches now (where it is, or sleeps).
struct Members {
    slots: Box<[AtomicU32]>,
}

/// The bits of a [`Members`] word that hold the depth.
const DEPTH_BITS: u32 = 24;

impl Members {
    fn new(slots: u32) -> Members {
        Members {
            slots: (0..slots).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Notes that the thread of `policy` in `slot` lives and its live stack reaches `depth`
    /// bytes below the top now.
    fn note_depth(&self, slot: SlotIndex, policy: Policy, depth: u64) {
        // Depths never exceed the largest stack (the plan's check), far below 2^24 bytes.
        let depth = u32::try_from(depth).map_or(0, |d| d.min((1 << DEPTH_BITS) - 1));
        let word = ((policy.index() as u32 + 1) << DEPTH_BITS) | depth;
        self.slots[slot.as_usize()].store(word, Ordering::Relaxed);
    }

    /// Notes that no workload thread lives in `slot` any more.
    fn leave(&self, slot: SlotIndex) {
        self.slots[slot.as_usize()].store(0, Ordering::Release);
    }

    /// Per policy (by `Policy::index()`): its live threads and the pages their live stacks
    /// reach.
    fn census(&self) -> [(u64, u64); Policy::COUNT] {
        let layout = stacks::layout();
        let mut per_policy = [(0u64, 0u64); Policy::COUNT];
        for word in self.slots.iter().map(|w| w.load(Ordering::Acquire)) {
            let Some(index) = (word >> DEPTH_BITS).checked_sub(1) else {
                continue;
            };
            let depth = u64::from(word & ((1 << DEPTH_BITS) - 1));
            let entry = &mut per_policy[index as usize];
            entry.0 += 1;
            entry.1 += u64::from(layout.pages_to_depth(depth).len());
        }
        per_policy
    }
}

/// The spin locks that interrupts-off paths hold (group `i` takes lock `i % SECTION_LOCKS`).
const SECTION_LOCKS: usize = 8;
static SECTION_LOCK: [AtomicBool; SECTION_LOCKS] =
    [const { AtomicBool::new(false) }; SECTION_LOCKS];
/// Per CPU, the section its thread is in: the thread's stack slot + 1 (0: none) in the low
/// 32 bits, the lock in the high 32 bits. Written only by that CPU, with interrupts off.
static IN_SECTION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// An interrupts-off section: interrupts off, one of [`SECTION_LOCK`] held, registered in
/// [`IN_SECTION`]. Left when dropped.
struct IrqOffSection {
    lock: usize,
    /// The CPU it runs on (registered in `IN_SECTION`).
    cpu: usize,
    // Dropped after `drop` released the lock: interrupts come back last.
    _irq: IrqGuard,
}

impl IrqOffSection {
    fn enter(lock: usize, slot: dks_core::SlotIndex) -> IrqOffSection {
        let irq = IrqGuard::new();
        while SECTION_LOCK[lock].swap(true, Ordering::Acquire) {
            // As `IrqMutex` does: a holder may be waiting for this CPU's TLB flush.
            tlb::serve(&irq);
            cpu_ops::relax();
        }
        let entry = (u64::from(slot.as_u32()) + 1) | ((lock as u64) << 32);
        // The section never leaves this CPU: interrupts stay off and its body never switches.
        let cpu = cpu_ops::current_id(&irq) as usize;
        IN_SECTION[cpu].store(entry, Ordering::Relaxed);
        IrqOffSection {
            lock,
            cpu,
            _irq: irq,
        }
    }
}

impl Drop for IrqOffSection {
    fn drop(&mut self) {
        IN_SECTION[self.cpu].store(0, Ordering::Relaxed);
        SECTION_LOCK[self.lock].store(false, Ordering::Release);
    }
}

/// Runs `body` in an interrupts-off section on section lock `lock` (as a workload path with
/// `irqoff_percent` does), in the calling thread.
pub fn with_irqoff_section(lock: usize, body: impl FnOnce()) {
    let me = sched::current().expect("a thread");
    let section = IrqOffSection::enter(lock % SECTION_LOCKS, me.stack.slot());
    drop(me);
    body();
    drop(section);
}

/// Whether the thread of `slot`, running on this CPU with interrupts off, is inside a
/// workload's interrupts-off section (for the fault path; takes no lock).
pub fn in_irqoff_section(irq: &IrqGuard, slot: dks_core::SlotIndex) -> bool {
    let entry = IN_SECTION[cpu_ops::current_id(irq) as usize].load(Ordering::Relaxed);
    entry & 0xffff_ffff == u64::from(slot.as_u32()) + 1
}

/// Gives up the section of this CPU's thread, which is being stopped inside it: releases its
/// lock (nothing else is held in a section) and forgets it.
pub fn abandon_irqoff_section(irq: &IrqGuard) {
    let entry = IN_SECTION[cpu_ops::current_id(irq) as usize].swap(0, Ordering::Relaxed);
    if entry != 0 {
        SECTION_LOCK[(entry >> 32) as usize % SECTION_LOCKS].store(false, Ordering::Release);
    }
}

/// Held by a workload thread's body: its slot's member word is cleared when the body is
/// dropped, whether the thread finished or was stopped (a stopped thread's frames are
/// abandoned, so this cannot live in `behave`'s frame).
struct Alive {
    run: Arc<Run>,
    /// The thread's slot, once `behave` knows it (`u32::MAX` before).
    slot: AtomicU32,
}

impl Drop for Alive {
    fn drop(&mut self) {
        let slot = self.slot.load(Ordering::Relaxed);
        if slot != u32::MAX {
            self.run.members.leave(SlotIndex::new(slot));
        }
    }
}

/// One group while it runs.
#[derive(Debug)]
struct Group {
    plan: GroupPlan,
    /// The plan's name, which every thread of the group shares as its own.
    name: Arc<str>,
    policy: Policy,
    /// Its lock in [`SECTION_LOCK`].
    lock: usize,
    /// Peers blocked until another thread of the group finishes a path.
    peers: WaitQueue,
    /// Bumped by every finished path; a blocked peer waits for a change.
    peer_token: AtomicU64,
    /// Threads created, first ones and replacements.
    created: AtomicU64,
    /// Creations refused, by cause: no slot, no memory, the group's limit.
    refused: [AtomicU64; 3],
    /// First threads never tried once memory ran out (see `SpawnFailure::not_attempted`).
    not_attempted: AtomicU64,
    /// Of the refusals for want of memory, those of the heap (see `mm::heap`).
    out_of_heap: AtomicU64,
}

/// The whole run.
struct Run {
    plan: Plan,
    groups: Vec<Arc<Group>>,
    members: Members,
    threads: IrqMutex<Vec<Arc<Thread>>>,
    stop: AtomicBool,
    next_seed: AtomicU64,
}

/// Parses and checks a plan from a boot module.
pub fn parse(bytes: &[u8]) -> Result<Plan, String> {
    let plan: Plan =
        serde_json::from_slice(bytes).map_err(|e| alloc::format!("not a plan: {e}"))?;
    plan.check().map_err(|e| alloc::format!("{e}"))?;
    Ok(plan)
}

/// Whether this kernel implements `policy` (a plan naming another one is refused).
pub fn implemented(policy: Policy) -> bool {
    crate::stacks::IMPLEMENTED.contains(&policy)
}

/// Checks that every policy the plan names is implemented.
pub fn check_policies(plan: &Plan) -> Result<(), String> {
    for (i, group) in plan.groups.iter().enumerate() {
        if !implemented(group.policy) {
            let names: Vec<&str> = crate::stacks::IMPLEMENTED
                .iter()
                .map(|p| p.name())
                .collect();
            return Err(alloc::format!(
                "groups[{i}].policy: {:?} is not implemented by this kernel (it runs {})",
                group.policy.name(),
                names.join(", ")
            ));
        }
    }
    Ok(())
}

fn fixed(bytes: u32) -> Histogram {
    Histogram {
        buckets: alloc::vec![
            Bucket {
                up_to_bytes: bytes - 1,
                weight: 0
            },
            Bucket {
                up_to_bytes: bytes,
                weight: 1
            }
        ],
    }
}

/// The built-in `mixed` workload: for every implemented policy, long-lived threads that
/// sleep shallow and sometimes go deep, and short-lived ones.
pub fn mixed(max_stack_bytes: u32) -> Plan {
    let mut groups = Vec::new();
    for policy in crate::stacks::IMPLEMENTED {
        groups.push(GroupPlan {
            name: alloc::format!("sleepers-{}", policy.name()),
            policy,
            threads: 24,
            lifetime: Lifetime::Long,
            calls: 3,
            respawn: false,
            depth: Histogram {
                buckets: alloc::vec![
                    Bucket {
                        up_to_bytes: 2048,
                        weight: 70
                    },
                    Bucket {
                        up_to_bytes: 6000,
                        weight: 25
                    },
                    Bucket {
                        up_to_bytes: 11_000,
                        weight: 5
                    },
                ],
            },
            sleep_depth: fixed(700),
            block_percent: 20,
            irqoff_percent: 0,
            sleep_ms: 5,
            wake: Wake::Timer,
        });
        groups.push(GroupPlan {
            name: alloc::format!("short-{}", policy.name()),
            policy,
            threads: 8,
            lifetime: Lifetime::Short,
            calls: 4,
            respawn: true,
            depth: Histogram {
                buckets: alloc::vec![Bucket {
                    up_to_bytes: 3000,
                    weight: 1
                }],
            },
            sleep_depth: fixed(700),
            block_percent: 10,
            irqoff_percent: 0,
            sleep_ms: 2,
            wake: Wake::Peer,
        });
    }
    Plan {
        version: PLAN_VERSION,
        name: "mixed".into(),
        seed: 1,
        duration_ms: 1500,
        sample_ms: 100,
        max_stack_bytes,
        groups,
    }
}

/// The longest the run's loop sleeps between forgetting exited threads.
const HOUSEKEEPING_MS: u64 = 20;

/// Runs `plan` to its end and prints its samples and final statistics. Returns how it ended: a
/// run that could not create every thread its plan asks for (`SpawnFailure` records), or whose
/// threads were never admitted because memory never came back (`AdmissionStall` records), has
/// failed, whatever its figures say. Memory before the threads were created and after they
/// all exited is printed as a `MemoryBalance` record, what they cost beyond their stacks as
/// `ThreadOverhead` records (see `overhead`).
pub fn run(plan: Plan) -> Ending {
    // Cached stacks of earlier work would blur both balances.
    stacks::drain_caches();
    let before = overhead::Snapshot::take();
    let ending = run_plan(plan, &before);
    crate::work::drain();
    stacks::drain_caches();
    overhead::emit_balance(&before);
    ending
}

/// Log a line every this many threads created (for plans that create many).
const CREATION_LOG_EVERY: u64 = 100_000;

fn run_plan(plan: Plan, before: &overhead::Snapshot) -> Ending {
    let groups = plan
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Arc::new(Group {
                plan: g.clone(),
                name: Arc::from(g.name.as_str()),
                policy: g.policy,
                lock: i % SECTION_LOCKS,
                peers: WaitQueue::new(),
                peer_token: AtomicU64::new(0),
                created: AtomicU64::new(0),
                refused: [const { AtomicU64::new(0) }; 3],
                not_attempted: AtomicU64::new(0),
                out_of_heap: AtomicU64::new(0),
            })
        })
        .collect();
    // Room for every thread at once, taken now: doubling these lists one thread at a time
    // would ask the heap for ever larger blocks while it fills up. Without the room they
    // grow as before (and creations are refused when the heap cannot).
    let at_once: usize = plan.groups.iter().map(|g| g.threads as usize).sum();
    let mut threads = Vec::new();
    let _ = threads.try_reserve_exact(at_once);
    let run = Arc::new(Run {
        groups,
        members: Members::new(stacks::layout().slot_count()),
        threads: IrqMutex::new(threads),
        stop: AtomicBool::new(false),
        next_seed: AtomicU64::new(plan.seed),
        plan,
    });
    report::log(format_args!(
        "workload {}: {} groups for {} ms",
        run.plan.name,
        run.groups.len(),
        run.plan.duration_ms
    ));
    let mut created = 0u64;
    let creation_start = sched::uptime_ms();
    for group in &run.groups {
        for index in 0..group.plan.threads {
            if start_member(&run, group) == Err(StackError::OutOfMemory) {
                // Memory has run out: every further creation would fail the same way, and
                // each failure costs a purge of the TLB quarantine. How far the group got is
                // what the `SpawnFailure` record says.
                let rest = u64::from(group.plan.threads - index - 1);
                group.not_attempted.store(rest, Ordering::Relaxed);
                report::log(format_args!(
                    "workload {}: out of memory after {} threads of group {}",
                    run.plan.name,
                    group.created.load(Ordering::Relaxed),
                    group.plan.name
                ));
                break;
            }
            created += 1;
            if created.is_multiple_of(CREATION_LOG_EVERY) {
                report::log(format_args!(
                    "workload {}: {created} threads created",
                    run.plan.name
                ));
            }
        }
    }
    // The duration counts from when every thread exists: creating a million takes a while.
    let start = sched::uptime_ms();
    report::log(format_args!(
        "workload {}: {created} threads created in {} ms",
        run.plan.name,
        start - creation_start
    ));
    let end = start + u64::from(run.plan.duration_ms);
    let mut next_sample = start;
    loop {
        let now = sched::uptime_ms();
        if now >= next_sample {
            sample(&run, now - start);
            next_sample += u64::from(run.plan.sample_ms);
            // The timer fallback of peer wake-ups: nobody sleeps forever.
            for group in &run.groups {
                group.peers.wake_one();
            }
        }
        if now >= end {
            break;
        }
        // Forget threads that are gone (short-lived ones come and go by the thousand), at
        // least every `HOUSEKEEPING_MS` whatever the sampling period: with a long period the
        // records of exited threads would otherwise pile up on the heap between samples.
        run.threads.lock().retain(|t| !t.has_exited());
        let until = next_sample.min(end).saturating_sub(now);
        sched::sleep_ms(until.clamp(1, HOUSEKEEPING_MS));
    }
    // The state at the end of the run, before its threads are told to stop.
    vmstat::emit_counters("end");
    overhead::emit_thread_overhead(before, run_policies(&run));
    run.stop.store(true, Ordering::Release);
    let stop_start = sched::uptime_ms();
    // Threads asleep on a timer (between rounds, or blocked at a path's bottom) see the stop
    // now, not when their sleep would have ended: a population asleep for a minute would
    // otherwise keep the run waiting that long. Only workload threads are not the kernel's own.
    sched::wake_sleepers(|thread| !stacks::is_system(thread.stack.slot()));
    let mut stalled: Vec<Arc<Thread>> = Vec::new();
    loop {
        for group in &run.groups {
            group.peer_token.fetch_add(1, Ordering::AcqRel);
            group.peers.wake_all();
        }
        let threads: Vec<Arc<Thread>> = core::mem::take(&mut *run.threads.lock());
        if threads.is_empty() {
            break;
        }
        for thread in threads {
            if !join_unless_stalled(&thread) {
                stalled.push(thread);
            }
        }
    }
    for thread in &stalled {
        let waited_ms = thread.admission_wait_since().map_or(0, |since| {
            cpu_ops::rdtsc().saturating_sub(since) / (apic::tsc_per_us() * 1000).max(1)
        });
        sched::report_admission_stall(thread.admission_refused_by(), thread, waited_ms, "at_end");
    }
    report::log(format_args!(
        "workload {}: every thread stopped in {} ms",
        run.plan.name,
        sched::uptime_ms() - stop_start
    ));
    let irqoff = IRQOFF_PATHS.swap(0, Ordering::Relaxed);
    if irqoff > 0 {
        report::log(format_args!(
            "workload {}: {irqoff} paths ran with interrupts off",
            run.plan.name
        ));
    }
    // The pages each thread peaked at are known once every thread has exited.
    crate::work::drain();
    vmstat::emit_thread_pages();
    let corrupted_frames = emit_checks(&run);
    Ending {
        refused_creations: report_refusals(&run),
        never_admitted: stalled.len() as u64,
        corrupted_frames,
    }
}

/// How a run ended, beyond its figures: either count above 0 means the plan was not carried
/// out, and the boot fails (the records say why).
#[derive(Clone, Copy, Debug)]
pub struct Ending {
    /// Thread creations refused (`SpawnFailure` records).
    pub refused_creations: u64,
    /// Threads still waiting for admission when the run ended (`AdmissionStall` records with
    /// `at_end`): their stacks could not be covered because memory never came back.
    pub never_admitted: u64,
    /// Frames whose locals changed while they were live (`WorkloadStat` records): stack data
    /// was corrupted.
    pub corrupted_frames: u64,
}

/// How long a thread of a finished run may keep waiting for admission before the run gives it
/// up as never admitted, milliseconds.
const END_ADMISSION_GRACE_MS: u64 = 2 * sched::ADMISSION_STALL_REPORT_MS;

/// Waits until `thread` has exited, unless it has been waiting for admission for longer than
/// [`END_ADMISSION_GRACE_MS`]: returns whether it exited.
fn join_unless_stalled(thread: &Thread) -> bool {
    let per_ms = (apic::tsc_per_us() * 1000).max(1);
    while !thread.has_exited() {
        if let Some(since) = thread.admission_wait_since()
            && cpu_ops::rdtsc().saturating_sub(since) / per_ms >= END_ADMISSION_GRACE_MS
        {
            return false;
        }
        sched::sleep_ms(1);
    }
    true
}

/// Emits one `SpawnFailure` record per group some of whose threads could not be created, and
/// returns how many creations were refused in all.
fn report_refusals(run: &Run) -> u64 {
    let mut refused_in_all = 0;
    for group in &run.groups {
        let [no_slot, out_of_memory, group_limit] =
            group.refused.each_ref().map(|n| n.load(Ordering::Relaxed));
        let refused = no_slot + out_of_memory + group_limit;
        let not_attempted = group.not_attempted.load(Ordering::Relaxed);
        if refused == 0 && not_attempted == 0 {
            continue;
        }
        refused_in_all += refused + not_attempted;
        report::emit(&Record::SpawnFailure(SpawnFailure {
            group: Cow::Borrowed(&group.plan.name),
            policy: group.policy,
            created: group.created.load(Ordering::Relaxed),
            no_slot,
            out_of_memory,
            group_limit,
            planned: u64::from(group.plan.threads),
            not_attempted,
            out_of_heap: group.out_of_heap.load(Ordering::Relaxed),
        }));
    }
    refused_in_all
}

/// The policies a run's groups use, in `Policy::ALL` order.
fn run_policies(run: &Run) -> impl Iterator<Item = Policy> + Clone + '_ {
    Policy::ALL
        .into_iter()
        .filter(|&policy| run.groups.iter().any(|g| g.policy == policy))
}

/// Creates one thread of `group`; a refusal is counted in the group and returned.
fn start_member(run: &Arc<Run>, group: &Arc<Group>) -> Result<(), StackError> {
    // The run's entry for the thread comes from the heap too (see `mm::heap`).
    if !crate::mm::heap::ensure_free(core::mem::size_of::<Arc<Thread>>() as u64 + 64) {
        group.refused[1].fetch_add(1, Ordering::Relaxed);
        group.out_of_heap.fetch_add(1, Ordering::Relaxed);
        return Err(StackError::OutOfMemory);
    }
    let heap_refusals = crate::mm::heap::refusals();
    let seed = run.next_seed.fetch_add(0x1000_0001, Ordering::Relaxed);
    let options = SpawnOptions {
        policy: group.policy,
        ..SpawnOptions::default()
    };
    // The body's captures are owned by the thread's entry and dropped when the thread ends,
    // also when it is stopped: the member stops counting as alive then, not earlier or never.
    let body = {
        let group = group.clone();
        let alive = Alive {
            run: run.clone(),
            slot: AtomicU32::new(u32::MAX),
        };
        move || behave(&group, &alive, seed)
    };
    match sched::spawn(group.name.clone(), options, body) {
        Ok(thread) => {
            group.created.fetch_add(1, Ordering::Relaxed);
            run.threads.lock().push(thread);
            Ok(())
        }
        Err(error) => {
            // Another CPU's refusal may land in between: close enough for a cause.
            if crate::mm::heap::refusals() != heap_refusals {
                group.out_of_heap.fetch_add(1, Ordering::Relaxed);
            }
            let cause = match error {
                StackError::NoSlot => 0,
                StackError::OutOfMemory => 1,
                StackError::GroupLimit => 2,
            };
            group.refused[cause].fetch_add(1, Ordering::Relaxed);
            Err(error)
        }
    }
}

/// A workload thread's life.
fn behave(group: &Arc<Group>, alive: &Alive, seed: u64) {
    let run = &alive.run;
    let mut rng = Rng::new(seed);
    // Nothing owned stays in this frame: a stopped thread's frames are abandoned.
    let (top, slot) = {
        let me = sched::current().expect("a workload thread");
        (me.stack.top(), me.stack.slot())
    };
    alive.slot.store(slot.as_u32(), Ordering::Relaxed);
    let bottom = stacks::layout().stack_bottom(slot).as_u64();
    let base = top - stack_pointer();
    let member = |depth| run.members.note_depth(slot, group.policy, depth);
    member(base);
    let checks = checks_of(group.policy);
    // Each path's pattern: from the thread's seed and the path's number, not from `rng`, so
    // that the random sequence of every plan stays what it was.
    let mut paths = 0u64;
    let mut salt = || {
        paths += 1;
        seed.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ paths
    };
    loop {
        for _ in 0..group.plan.calls {
            if run.stop.load(Ordering::Acquire) {
                break;
            }
            let depth = rng.draw(&group.plan.depth).max(base);
            let block = rng.below(100) < u64::from(group.plan.block_percent);
            let nap = rng.around(group.plan.sleep_ms);
            // Drawn only when the plan asks for it, so other plans keep their random sequence.
            let irqoff = group.plan.irqoff_percent > 0
                && rng.below(100) < u64::from(group.plan.irqoff_percent);
            if irqoff {
                let section = IrqOffSection::enter(group.lock, slot);
                let check = path(top, bottom, depth, salt(), &mut || {
                    member(depth);
                });
                drop(section);
                checks.add(check);
                IRQOFF_PATHS.fetch_add(1, Ordering::Relaxed);
            } else {
                let check = path(top, bottom, depth, salt(), &mut || {
                    member(depth);
                    if block {
                        wait(run, group, nap);
                    }
                });
                checks.add(check);
            }
            member(base);
            group.peer_token.fetch_add(1, Ordering::AcqRel);
            group.peers.wake_one();
        }
        if group.plan.lifetime == Lifetime::Short || run.stop.load(Ordering::Acquire) {
            break;
        }
        let depth = rng.draw(&group.plan.sleep_depth).max(base);
        let nap = rng.around(group.plan.sleep_ms);
        let check = path(top, bottom, depth, salt(), &mut || {
            member(depth);
            sched::sleep_ms(nap);
        });
        checks.add(check);
        member(base);
    }
    checks.threads_finished.fetch_add(1, Ordering::Relaxed);
    if paths == 0 {
        checks.threads_idle.fetch_add(1, Ordering::Relaxed);
    }
    run.members.leave(slot);
    if group.plan.lifetime == Lifetime::Short
        && group.plan.respawn
        && !run.stop.load(Ordering::Acquire)
    {
        // A refusal is counted in the group (and fails the run); nothing else to do here.
        let _ = start_member(run, group);
    }
}

fn wait(run: &Run, group: &Group, nap_ms: u64) {
    match group.plan.wake {
        Wake::Timer => sched::sleep_ms(nap_ms),
        Wake::Peer => {
            let seen = group.peer_token.load(Ordering::Acquire);
            group.peers.wait_until(|| {
                group.peer_token.load(Ordering::Acquire) != seen || run.stop.load(Ordering::Acquire)
            });
        }
    }
}

/// Bytes of stack one level of [`descend`] uses, at most (a 256-byte frame and its overhead).
const LEVEL_BYTES: u64 = 512;
/// How far above the target depth the recursion stops (room for what runs at the bottom).
const BOTTOM_ROOM: u64 = 1024;
const _: () = assert!(
    BOTTOM_ROOM > 512 + 256,
    "the probe needs 512 bytes below its own frame"
);

/// Goes `depth` bytes deep on this thread's stack (`top`, `bottom` its ends) and runs
/// `at_bottom` there.
fn path(top: u64, bottom: u64, depth: u64, salt: u64, at_bottom: &mut dyn FnMut()) -> PathCheck {
    let depth = depth.min(top - bottom - PAGE_BYTES / 4);
    let mut check = PathCheck::default();
    descend(top, bottom, depth, 0, salt, at_bottom, &mut check);
    check
}

/// What the frames of one path found on the way back up.
#[derive(Clone, Copy, Debug, Default)]
struct PathCheck {
    /// Frames checked.
    frames: u64,
    /// Frames whose locals had changed.
    corrupted: u64,
    /// Wrapping sum of their words.
    sum: u64,
}

fn descend(
    top: u64,
    bottom: u64,
    depth: u64,
    level: u64,
    salt: u64,
    at_bottom: &mut dyn FnMut(),
    check: &mut PathCheck,
) {
    // The frame's locals: a pattern of this level and path, checked after everything below
    // (deeper frames, stack faults, interrupts, a sleep, a migration) has run.
    let word = level.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    let mut frame = [word; 32];
    black_box(&mut frame);
    let used = top - stack_pointer();
    if used + LEVEL_BYTES + BOTTOM_ROOM < depth {
        descend(top, bottom, depth, level + 1, salt, at_bottom, check);
    } else {
        if depth > used + BOTTOM_ROOM {
            // The deepest byte of the path, exactly. With interrupts on, a fault here that
            // cannot be served stops this thread; in an interrupts-off section it would stop
            // the kernel (counted, see the module docs).
            probes::touch_stack(bottom, top - depth);
        }
        at_bottom();
    }
    let frame = black_box(&frame);
    check.frames += 1;
    if frame.iter().any(|&w| w != word) {
        check.corrupted += 1;
    }
    check.sum = frame.iter().fold(check.sum, |sum, &w| sum.wrapping_add(w));
}

/// Per policy (in `Policy::ALL` order): what its workload threads did and found.
struct PolicyChecks {
    threads_finished: AtomicU64,
    /// Of those, threads that ended without a single path (the run stopped first).
    threads_idle: AtomicU64,
    paths: AtomicU64,
    frames: AtomicU64,
    corrupted: AtomicU64,
    sum: AtomicU64,
}

static CHECKS: [PolicyChecks; Policy::COUNT] = [const {
    PolicyChecks {
        threads_finished: AtomicU64::new(0),
        threads_idle: AtomicU64::new(0),
        paths: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        corrupted: AtomicU64::new(0),
        sum: AtomicU64::new(0),
    }
}; Policy::COUNT];

fn checks_of(policy: Policy) -> &'static PolicyChecks {
    &CHECKS[policy.index()]
}

impl PolicyChecks {
    fn add(&self, check: PathCheck) {
        self.paths.fetch_add(1, Ordering::Relaxed);
        self.frames.fetch_add(check.frames, Ordering::Relaxed);
        self.corrupted.fetch_add(check.corrupted, Ordering::Relaxed);
        self.sum.fetch_add(check.sum, Ordering::Relaxed);
    }
}

/// Prints one `WorkloadStat` per policy the run used, starts the next run from zero, and
/// returns the corrupted frames of all policies.
fn emit_checks(run: &Run) -> u64 {
    let mut corrupted = 0;
    for policy in Policy::ALL {
        if !run.groups.iter().any(|g| g.policy == policy) {
            continue;
        }
        let c = checks_of(policy);
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let stat = WorkloadStat {
            policy,
            threads_finished: take(&c.threads_finished),
            threads_idle: take(&c.threads_idle),
            paths: take(&c.paths),
            frames_checked: take(&c.frames),
            frames_corrupted: take(&c.corrupted),
            checksum: take(&c.sum),
        };
        corrupted += stat.frames_corrupted;
        report::emit(&Record::WorkloadStat(stat));
    }
    corrupted
}

/// Interrupts-off paths completed (all groups, for the final log line).
static IRQOFF_PATHS: AtomicUsize = AtomicUsize::new(0);

fn sample(run: &Run, t_ms: u64) {
    // Machine-check records wait in per-CPU queues until normal context prints them.
    mce::drain();
    let census = run.members.census();
    let totals = stacks::totals();
    for policy in Policy::ALL {
        if !run.groups.iter().any(|g| g.policy == policy) {
            continue;
        }
        let (threads, live_pages) = census[policy.index()];
        let stack_pages = totals
            .account(dks_core::Account::Policy(policy))
            .pages_now
            .max(0) as u64;
        report::emit(&Record::Sample(Sample {
            t_ms,
            policy,
            stack_kib: stack_pages * PAGE_BYTES / 1024,
            live_kib: live_pages * PAGE_BYTES / 1024,
            threads,
        }));
    }
}

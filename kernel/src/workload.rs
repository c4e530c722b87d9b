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
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use dks_core::SlotIndex;
use dks_protocol::record::{Record, Sample, SpawnFailure, WorkloadStat};
use dks_protocol::scenario::{GroupPlan, Lifetime, Plan, Wake};

mod irqoff;
mod members;
mod mixed;
mod path;
mod rng;

use self::members::Members;
pub use self::mixed::mixed;
use self::rng::Rng;

use self::irqoff::{IrqOffSection, SECTION_LOCKS};
pub use self::irqoff::{abandon_irqoff_section, in_irqoff_section, with_irqoff_section};
pub use self::path::{PAD_BYTES_AT_MOST, sleep_path_bytes};
use self::path::{PathCheck, Slept, checks_of, path, sleep_path};
use crate::hw::apic;
use crate::hw::cpu_ops;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes::stack_pointer;
use crate::hw::sync::IrqMutex;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy, StackError};
use crate::{mce, overhead, report, vmstat};

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
    sleeps: Sleeps,
}

/// Where the long-lived threads' sleeps between rounds landed (the run's last log lines).
#[derive(Default)]
struct Sleeps {
    /// Sleeps whose saved stack pointer could land at the drawn depth.
    at_depth: AtomicU64,
    /// Of those, the most the saved stack pointer landed away from the drawn depth, bytes.
    worst_miss: AtomicU64,
    /// Sleeps drawn shallower than this kernel's floor, which slept at the floor.
    at_floor: AtomicU64,
    /// Their floors and drawn depths, summed (bytes).
    floor_sum: AtomicU64,
    drawn_at_floor_sum: AtomicU64,
}

impl Sleeps {
    fn add(&self, drawn: u64, slept: Slept) {
        if slept.floor > 0 {
            self.at_floor.fetch_add(1, Ordering::Relaxed);
            self.floor_sum.fetch_add(slept.floor, Ordering::Relaxed);
            self.drawn_at_floor_sum.fetch_add(drawn, Ordering::Relaxed);
        } else if slept.saved > 0 {
            self.at_depth.fetch_add(1, Ordering::Relaxed);
            self.worst_miss
                .fetch_max(slept.saved.abs_diff(drawn), Ordering::Relaxed);
        }
    }

    fn log(&self, name: &str) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let at_floor = load(&self.at_floor);
        if load(&self.at_depth) + at_floor == 0 {
            return;
        }
        report::log(format_args!(
            "workload {name}: sleeps between rounds: {} with the saved stack pointer at the drawn \
             depth (at most {} bytes off), {at_floor} drawn below this kernel's floor and slept \
             there (floor {} bytes on average, drawn {}); sleep path {} bytes",
            load(&self.at_depth),
            load(&self.worst_miss),
            load(&self.floor_sum).checked_div(at_floor).unwrap_or(0),
            load(&self.drawn_at_floor_sum)
                .checked_div(at_floor)
                .unwrap_or(0),
            path::sleep_path_bytes(),
        ));
    }
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
        sleeps: Sleeps::default(),
        plan,
    });
    // This kernel's own sleep path, measured before any thread sleeps (docs/compare.md).
    path::calibrate();
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
    run.sleeps.log(&run.plan.name);
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
    // Nothing owned stays in this frame: a stopped thread's frames are abandoned.
    let (top, slot) = {
        let me = sched::current().expect("a workload thread");
        (me.stack.top(), me.stack.slot())
    };
    alive.slot.store(slot.as_u32(), Ordering::Relaxed);
    let mut life = Life {
        run,
        group,
        rng: Rng::new(seed),
        top,
        bottom: stacks::layout().stack_bottom(slot).as_u64(),
        base: top - stack_pointer(),
        slot,
        seed,
        paths: 0,
    };
    life.member(life.base);
    // The paths and the sleeps are out of line, each with its own frame: this frame, under
    // every sleep between rounds, stays small (docs/compare.md, the sleep path).
    loop {
        life.round();
        if group.plan.lifetime == Lifetime::Short || run.stop.load(Ordering::Acquire) {
            break;
        }
        // The sleep between two rounds. The census's sleeping depth is a saved stack
        // pointer's: the sleep path lands this thread's saved stack pointer there, or at
        // this kernel's floor (counted), from this frame.
        let (depth, nap, salt) = life.draw_sleep();
        let (check, slept) = sleep_path(top, life.bottom, depth, salt, nap, &mut |at| {
            life.member(at);
        });
        life.after_sleep(depth, check, slept);
    }
    let checks = checks_of(group.policy);
    checks.threads_finished.fetch_add(1, Ordering::Relaxed);
    if life.paths == 0 {
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

/// A workload thread's state between its paths.
struct Life<'a> {
    run: &'a Run,
    group: &'a Group,
    rng: Rng,
    /// Its stack's ends.
    top: u64,
    bottom: u64,
    /// Its stack's depth where its paths start.
    base: u64,
    slot: SlotIndex,
    seed: u64,
    /// Paths run so far.
    paths: u64,
}

impl Life<'_> {
    fn member(&self, depth: u64) {
        self.run
            .members
            .note_depth(self.slot, self.group.policy, depth);
    }

    /// The next path's pattern: from the thread's seed and the path's number, not from `rng`,
    /// so that the random sequence of every plan stays what it was.
    fn salt(&mut self) -> u64 {
        self.paths += 1;
        self.seed.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ self.paths
    }

    /// One round of `calls` paths.
    #[inline(never)]
    fn round(&mut self) {
        let (run, group) = (self.run, self.group);
        let checks = checks_of(group.policy);
        let (top, bottom, base) = (self.top, self.bottom, self.base);
        for _ in 0..group.plan.calls {
            if run.stop.load(Ordering::Acquire) {
                break;
            }
            let depth = self.rng.draw(&group.plan.depth).max(base);
            let block = self.rng.below(100) < u64::from(group.plan.block_percent);
            let nap = self.rng.around(group.plan.sleep_ms);
            // Drawn only when the plan asks for it, so other plans keep their random sequence.
            let irqoff = group.plan.irqoff_percent > 0
                && self.rng.below(100) < u64::from(group.plan.irqoff_percent);
            let salt = self.salt();
            if irqoff {
                let section = IrqOffSection::enter(group.lock, self.slot);
                let check = path(top, bottom, depth, salt, &mut || {
                    self.member(depth);
                });
                drop(section);
                checks.add(check);
                IRQOFF_PATHS.fetch_add(1, Ordering::Relaxed);
            } else {
                let check = path(top, bottom, depth, salt, &mut || {
                    self.member(depth);
                    if block {
                        wait(run, group, nap);
                    }
                });
                checks.add(check);
            }
            self.member(base);
            group.peer_token.fetch_add(1, Ordering::AcqRel);
            group.peers.wake_one();
        }
    }

    /// The depth, length and pattern of the next sleep (out of line: the draws' frame is not
    /// under the sleep).
    #[inline(never)]
    fn draw_sleep(&mut self) -> (u64, u64, u64) {
        let depth = self.rng.draw(&self.group.plan.sleep_depth);
        let nap = self.rng.around(self.group.plan.sleep_ms);
        (depth, nap, self.salt())
    }

    #[inline(never)]
    fn after_sleep(&self, depth: u64, check: PathCheck, slept: Slept) {
        checks_of(self.group.policy).add(check);
        self.run.sleeps.add(depth, slept);
        self.member(self.base);
    }
}

/// Where one sleep of [`sleep_at_depth`] slept.
#[derive(Clone, Copy, Debug)]
pub struct SleepLanding {
    /// The saved stack pointer's depth below the stack top, bytes (0: it did not switch away).
    pub saved: u64,
    /// When the depth was below this kernel's floor: the floor, bytes (else 0).
    pub floor: u64,
    /// Frames of the path checked after the sleep, and of those corrupted.
    pub frames: u64,
    pub corrupted: u64,
}

/// For the kernel tests: runs on the calling thread one sleep path of `depth` bytes, sleeping
/// `nap_ms`, as a workload thread's sleep between rounds does.
pub fn sleep_at_depth(depth: u64, nap_ms: u64) -> SleepLanding {
    let (top, slot) = {
        let me = sched::current().expect("a thread");
        (me.stack.top(), me.stack.slot())
    };
    let bottom = stacks::layout().stack_bottom(slot).as_u64();
    let (check, slept) = sleep_path(top, bottom, depth, depth, nap_ms, &mut |_| {});
    SleepLanding {
        saved: slept.saved,
        floor: slept.floor,
        frames: check.frames,
        corrupted: check.corrupted,
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
        // Populated pages and, under `pack`, pack buffers.
        let stack_kib = totals
            .account(dks_core::Account::Policy(policy))
            .stack_kib_now()
            .max(0) as u64;
        report::emit(&Record::Sample(Sample {
            t_ms,
            policy,
            stack_kib,
            live_kib: live_pages * PAGE_BYTES / 1024,
            threads,
        }));
    }
}

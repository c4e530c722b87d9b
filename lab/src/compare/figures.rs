//! From records to figures: what the boots of a comparison reported ([`Measurements`]) and the
//! per-policy figures computed from it ([`Comparison`], which is also the JSON of
//! `dks compare --json`).
//!
//! Pure functions of the records, so every figure is unit-tested without QEMU:
//!
//! - stack memory at the end and at the peak: the policy's `PolicyStat` (`stack_kib_now`,
//!   `stack_kib_peak`), as fractions of `static`'s;
//! - the live-data bound: the largest `live_kib` of the policy's `Sample`s (the most its live
//!   stacks ever touched at one moment), and the peak memory as a fraction of it;
//! - events: faults, refills, refill failures, fatal faults, guard hits, admission waits, and
//!   `pack`'s packs, restores, restore waits, checksum failures, guard-mode catches and packed
//!   stacks at the end, from `PolicyStat`;
//! - costs: `total / samples` of the cost boot's `Cost` records (`stack_fault`, `switch`,
//!   `create`, `trim`, `pack`, `restore`, ... of the policy), and the ratio to `static`'s. A
//!   cost the kernel did not measure is `None` (`null` in JSON, `n/a` in the table), never a
//!   made-up number;
//! - injected faults (`--inject-nmi`, `--inject-mce`): per workload boot, what the lab injected
//!   and what the kernel says it handled ([`InjectionFigures`]).

use dks_core::Policy;
use dks_protocol::record::{
    Cost, PolicyStat, Record, Sample, SpawnFailure, StackFault, ThreadOverhead, ThreadPages,
    WorkloadStat,
};
use serde::Serialize;

use crate::inject;

/// The `Cost` kinds, as the kernel names them.
pub mod what {
    /// A stack fault served from the magazine (per dynamic policy).
    pub const STACK_FAULT: &str = "stack_fault";
    /// A non-stack page fault handled on the interrupted stack (bounced off the IST stack).
    pub const BOUNCE_FAULT: &str = "bounce_fault";
    /// A non-stack page fault handled directly on the IST stack.
    pub const DIRECT_FAULT: &str = "direct_fault";
    /// A context switch (per policy).
    pub const SWITCH: &str = "switch";
    /// A thread creation (per policy); one exists for every policy the kernel implements.
    pub const CREATE: &str = "create";
    /// The trim of one sleeping thread's dead pages (`reclaim`).
    pub const TRIM: &str = "trim";
    /// The stack policy's part of switching to a thread (admission, and under `switch` the
    /// mapping of every page), per policy.
    pub const SWITCH_IN: &str = "switch_in";
    /// The stack policy's part of switching a thread out (under `switch` the Accessed-bit scan
    /// and the unmapping of clear dead pages), per policy.
    pub const SWITCH_OUT: &str = "switch_out";
    /// The pack of one sleeping thread's live stack bytes into a buffer, its pages given back
    /// (`pack`; docs/pack.md).
    pub const PACK: &str = "pack";
    /// The restore of one packed stack into a page on the wake path (`pack`).
    pub const RESTORE: &str = "restore";
}

/// Everything the boots of one comparison reported, in the order it came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measurements {
    /// The cost boot's measurements.
    pub costs: Vec<Cost<'static>>,
    /// Stack memory over time, per policy.
    pub samples: Vec<Sample>,
    /// One per policy per workload boot.
    pub stats: Vec<PolicyStat>,
    /// Pages held per thread, per policy.
    pub thread_pages: Vec<ThreadPages>,
    /// Stack faults that could not be served.
    pub stack_faults: Vec<StackFault<'static>>,
    /// What each policy's workload threads did, and the check of their stacks' data.
    pub workload_stats: Vec<WorkloadStat>,
    /// What was injected into each workload boot (its policies, the report), in boot order.
    pub injections: Vec<(Vec<Policy>, inject::Report)>,
    /// What each policy's threads cost beyond their stacks.
    pub overheads: Vec<ThreadOverhead>,
    /// Policies whose boot ran out of memory before it had created every thread (only for a
    /// scenario with `out_of_memory = "report"`).
    pub incomplete: Vec<IncompletePolicy>,
}

/// A policy that could not run the scenario: memory ran out while its threads were created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncompletePolicy {
    /// The policy.
    pub policy: Policy,
    /// Threads created before memory ran out (all its groups).
    pub threads_created: u64,
    /// Threads its plan runs at once (all its groups).
    pub threads_planned: u64,
    /// Why: `out_of_memory`.
    pub cause: String,
}

impl IncompletePolicy {
    /// Returns the incompleteness of the boot of `policy` whose `SpawnFailure` records are
    /// `failures`, if memory (and nothing else) refused its threads: `None` when a thread was
    /// refused for another reason (no slot, the group's limit), which no scenario accepts.
    pub fn out_of_memory(
        policy: Policy,
        failures: &[&SpawnFailure<'_>],
        planned: u64,
    ) -> Option<IncompletePolicy> {
        let other = failures.iter().any(|f| f.no_slot + f.group_limit > 0);
        if failures.is_empty() || other {
            return None;
        }
        Some(IncompletePolicy {
            policy,
            threads_created: failures.iter().map(|f| f.created).sum(),
            threads_planned: planned,
            cause: "out_of_memory".to_owned(),
        })
    }
}

impl Measurements {
    /// Adds the records of a cost boot.
    pub fn add_cost_boot<'a>(&mut self, records: impl IntoIterator<Item = &'a Record<'static>>) {
        for record in records {
            if let Record::Cost(cost) = record {
                self.costs.push(cost.clone());
            }
        }
    }

    /// Adds the records of a workload boot that ran `policies`. Records of other policies
    /// (the kernel's own threads, e.g. under `static` in a boot of `fault` alone) are left
    /// out: each policy's figures come from the boot that ran its workload.
    pub fn add_workload_boot<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a Record<'static>>,
        policies: &[Policy],
    ) {
        let ran = |policy: &Policy| policies.contains(policy);
        for record in records {
            match record {
                Record::Sample(sample) if ran(&sample.policy) => self.samples.push(sample.clone()),
                Record::PolicyStat(stat) if ran(&stat.policy) => self.stats.push(stat.clone()),
                Record::ThreadPages(pages) if ran(&pages.policy) => {
                    self.thread_pages.push(pages.clone())
                }
                Record::StackFault(fault) if fault.policy.is_some_and(|p| ran(&p)) => {
                    self.stack_faults.push(fault.clone())
                }
                Record::WorkloadStat(stat) if ran(&stat.policy) => {
                    self.workload_stats.push(stat.clone())
                }
                Record::ThreadOverhead(overhead) if ran(&overhead.policy) => {
                    self.overheads.push(overhead.clone())
                }
                _ => {}
            }
        }
    }

    /// Returns the policies the kernel implements: those with a `create` cost, in report order.
    pub fn implemented_policies(&self) -> Vec<Policy> {
        Policy::ALL
            .into_iter()
            .filter(|&p| self.cost(what::CREATE, Some(p)).is_some())
            .collect()
    }

    /// Returns the cost record of `what` under `policy` (`None` when none applies).
    pub fn cost(&self, what: &str, policy: Option<Policy>) -> Option<&Cost<'static>> {
        self.costs
            .iter()
            .find(|c| c.what == what && c.policy == policy)
    }

    /// Returns the cost per operation of `what` under `policy`: `total / samples`; `None` when
    /// it was not measured.
    pub fn per_op(&self, what: &str, policy: Option<Policy>) -> Option<f64> {
        self.cost(what, policy)
            .filter(|c| c.samples > 0)
            .map(|c| c.total as f64 / c.samples as f64)
    }

    /// Returns the samples of `policy`, in time order.
    pub fn samples_of(&self, policy: Policy) -> Vec<&Sample> {
        let mut samples: Vec<_> = self.samples.iter().filter(|s| s.policy == policy).collect();
        samples.sort_by_key(|s| s.t_ms);
        samples
    }
}

/// What a comparison was: the scenario and how it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The scenario's name.
    pub scenario: String,
    /// What it models.
    pub description: String,
    /// CPUs of the workload boots.
    pub cpus: u8,
    /// The scenario's `max_stack`, KiB.
    pub max_stack_kib: u32,
    /// How many workload boots ran (1 when all policies ran side by side).
    pub workload_boots: usize,
    /// What was injected into the workload boots, if anything.
    pub injection: Option<inject::Plan>,
}

/// The figures of one comparison: the JSON of `dks compare --json`, and what the table shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The scenario's name.
    pub scenario: String,
    /// What it models.
    pub description: String,
    /// CPUs of the workload boots.
    pub cpus: u8,
    /// The scenario's `max_stack`, KiB.
    pub max_stack_kib: u32,
    /// How many workload boots ran (1 when all policies ran side by side).
    pub workload_boots: usize,
    /// What the costs count: `instructions` (guest instructions: the TSC under
    /// `-icount shift=0`).
    pub cost_unit: &'static str,
    /// One entry per policy that ran the scenario, in report order.
    pub policies: Vec<PolicyFigures>,
    /// Policies that could not run it: memory ran out before all their threads existed
    /// (scenarios with `out_of_memory = "report"`); empty otherwise.
    pub incomplete: Vec<IncompletePolicy>,
    /// The cost of a page fault that is not a stack fault, both ways the kernel handles one.
    pub fault_paths: FaultPaths,
    /// Every operation the cost boot measured, with its spread, in the order it reported them.
    pub costs: Vec<CostSpread>,
    /// Faults injected into the workload boots; `null` when none were asked for.
    pub injection: Option<InjectionFigures>,
}

/// Faults injected into the workload boots (`--inject-nmi`, `--inject-mce`; never into the cost
/// boot, whose figures they would disturb).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InjectionFigures {
    /// `--inject-nmi` as given (`COUNT` or `RATE/s`), or `null`.
    pub nmi: Option<String>,
    /// `--inject-mce` as given (`corrected:COUNT`, `recoverable:COUNT`), or `null`.
    pub mce: Option<String>,
    /// One entry per workload boot, in boot order.
    pub boots: Vec<BootInjection>,
}

/// What one workload boot got and handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootInjection {
    /// The policies of the boot.
    pub policies: Vec<Policy>,
    /// CPUs the kernel reported (each injected NMI reaches every one).
    pub cpus: Option<u32>,
    /// NMIs QEMU accepted.
    pub nmis_injected: u64,
    /// NMIs the kernel handled, all CPUs (its last `TrapStat`); `null` without one. NMIs that
    /// arrive while one is pending merge, so this can be below `nmis_injected × cpus`.
    pub nmis_handled: Option<u64>,
    /// Of those, NMIs that interrupted another trap handler.
    pub nmis_nested: Option<u64>,
    /// Machine checks QEMU acted on.
    pub machine_checks_injected: u64,
    /// `MachineCheck` records of the injected severity.
    pub machine_checks_reported: u64,
    /// #MC exceptions the kernel took (its last `TrapStat`).
    pub machine_check_exceptions: Option<u64>,
    /// Why injection stopped short because of the kernel, if it did.
    pub shortfall: Option<String>,
    /// What else the driver noted (the boot ended before all NMIs were sent, QEMU's words).
    pub notes: Vec<String>,
}

/// Returns the injection figures of `setup`'s plan from `measurements`.
fn injection_figures(setup: &Setup, measurements: &Measurements) -> Option<InjectionFigures> {
    let plan = setup.injection.filter(|plan| !plan.is_empty())?;
    let boots = measurements
        .injections
        .iter()
        .map(|(policies, report)| BootInjection {
            policies: policies.clone(),
            cpus: report.cpus,
            nmis_injected: report.injected.nmis,
            nmis_handled: report.handled.nmis,
            nmis_nested: report.handled.nmis_nested,
            machine_checks_injected: report.injected.machine_checks,
            machine_checks_reported: plan
                .mce
                .map_or(0, |mce| report.handled.machine_checks(mce.kind)),
            machine_check_exceptions: report.handled.machine_check_exceptions,
            shortfall: report.injected.shortfall.clone(),
            notes: report.injected.notes.clone(),
        })
        .collect();
    Some(InjectionFigures {
        nmi: plan.nmi.map(|n| n.to_string()),
        mce: plan.mce.map(|m| m.to_string()),
        boots,
    })
}

/// The figures of one policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyFigures {
    /// The policy.
    pub policy: Policy,
    /// Threads created with it.
    pub threads_created: u64,
    /// Its populated stack memory when the run ended, KiB.
    pub stack_kib_end: u64,
    /// The most its populated stack memory ever was, KiB.
    pub stack_kib_peak: u64,
    /// `stack_kib_end` / `static`'s.
    pub stack_end_vs_static: Option<f64>,
    /// `stack_kib_peak` / `static`'s.
    pub stack_peak_vs_static: Option<f64>,
    /// The live-data bound: the most its threads' live stacks touched at one sample, KiB.
    pub live_bound_kib: Option<u64>,
    /// `stack_kib_peak` / `live_bound_kib`.
    pub stack_peak_vs_live_bound: Option<f64>,
    /// Stack faults served.
    pub faults: u64,
    /// Magazine refills that had to allocate.
    pub refills: u64,
    /// Refills that fell short.
    pub refill_failures: u64,
    /// Stack faults that could not be served.
    pub fatal_faults: u64,
    /// Stack overflows into a guard page.
    pub guard_hits: u64,
    /// Threads stopped by a fatal fault or a guard hit.
    pub killed: u64,
    /// Fatal stack faults with interrupts off: each would have stopped a real kernel (the
    /// testbed stops only the thread, see `PolicyStat::kernel_stops`).
    pub kernel_stops: u64,
    /// Pages given back before their thread exited.
    pub reclaimed: u64,
    /// Of those, pages dead below a sleeping thread's saved stack pointer (trimmed).
    pub reclaimed_dead: u64,
    /// Of those, pages given back at switch-out because their Accessed bit was clear (`switch`).
    pub reclaimed_accessed_clear: u64,
    /// TLB shootdowns not needed: switch-outs that gave pages back with no flush (`switch`).
    pub flushes_avoided: u64,
    /// Stack faults of `switch` threads: each is a bug (they map every page while running).
    pub switch_faults: u64,
    /// The most stack memory running threads held at once beyond what they held switched out
    /// (the pages `switch`'s admissions mapped), KiB; `None` from a kernel that does not say.
    pub running_extra_kib_peak: Option<u64>,
    /// Stacks of sleeping threads packed into a buffer (`pack`).
    pub packs: u64,
    /// Packed stacks restored into a page (`pack`).
    pub restores: u64,
    /// Restores refused for want of a page; the thread waited (`pack`).
    pub restore_waits: u64,
    /// Restores whose bytes did not match the pack's checksum (`pack`): each is a bug.
    pub pack_checksum_failures: u64,
    /// Faults on a stack packed in guard mode (`pack`): each is a thread touching another's
    /// sleeping stack.
    pub pack_guard_catches: u64,
    /// Its stacks packed at the end of the run (`pack`).
    pub packed_threads_end: u64,
    /// The pack buffers of those stacks then, KiB (in `stack_kib_end` too).
    pub packed_kib_end: u64,
    /// Times a thread was refused by admission.
    pub admission_waits: u64,
    /// Total time threads waited for admission, microseconds.
    pub admit_wait_us_total: u64,
    /// Longest single wait for admission, microseconds.
    pub admit_wait_us_max: u64,
    /// Mean high-water mark of its exited threads (as Linux's `stack_not_used()` finds it),
    /// bytes.
    pub high_water_mean_bytes: u64,
    /// The deepest high-water mark of its exited threads, bytes.
    pub high_water_max_bytes: u64,
    /// Guest instructions per stack fault.
    pub insns_per_fault: Option<f64>,
    /// Guest instructions per context switch.
    pub insns_per_switch: Option<f64>,
    /// Guest instructions of the policy's part of a switch-in (admission, mapping).
    pub insns_per_switch_in: Option<f64>,
    /// Guest instructions of the policy's part of a switch-out (Accessed-bit scan, unmapping).
    pub insns_per_switch_out: Option<f64>,
    /// Guest instructions per thread creation.
    pub insns_per_create: Option<f64>,
    /// Guest instructions per trim of one sleeping thread (`reclaim`).
    pub insns_per_trim: Option<f64>,
    /// Guest instructions per pack of one sleeping thread's stack (`pack`).
    pub insns_per_pack: Option<f64>,
    /// Guest instructions per restore of one packed stack on the wake path (`pack`).
    pub insns_per_restore: Option<f64>,
    /// `insns_per_switch` / `static`'s.
    pub insns_per_switch_vs_static: Option<f64>,
    /// `insns_per_create` / `static`'s.
    pub insns_per_create_vs_static: Option<f64>,
    /// What its workload threads did and whether their stacks kept their data (`None` from a
    /// kernel that does not report it).
    pub work: Option<WorkFigures>,
    /// Its threads alive at the end of the run's duration (`ThreadOverhead.threads`).
    pub threads_at_end: Option<u64>,
    /// Populated stack memory per thread alive at the end, KiB.
    pub stack_kib_per_thread: Option<f64>,
    /// Stack and everything else a thread costs (heap, FPU save area, slot metadata, stack
    /// page tables) per thread alive at the end, KiB.
    pub total_kib_per_thread: Option<f64>,
    /// What makes up the difference (`None` from a kernel that does not report it).
    pub overhead: Option<OverheadFigures>,
}

/// What a policy's threads cost beyond their stack pages, at the end of the run's duration
/// (the kernel's `ThreadOverhead`): bytes, all its live threads together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OverheadFigures {
    /// Populated stack memory.
    pub stack_bytes: u64,
    /// Their share of the kernel heap (thread structures and everything a thread brings).
    pub heap_bytes: u64,
    /// FPU/SSE save areas (one per thread ever preempted).
    pub fpu_bytes: u64,
    /// How many save areas.
    pub fpu_areas: u64,
    /// Stack-slot metadata, their share.
    pub slot_bytes: u64,
    /// Page tables of the stack region, their share.
    pub page_table_bytes: u64,
}

impl OverheadFigures {
    fn of(o: &ThreadOverhead) -> OverheadFigures {
        OverheadFigures {
            stack_bytes: o.stack_bytes,
            heap_bytes: o.heap_bytes,
            fpu_bytes: o.fpu_bytes,
            fpu_areas: o.fpu_areas,
            slot_bytes: o.slot_bytes,
            page_table_bytes: o.page_table_bytes,
        }
    }

    /// Everything but the stack, bytes.
    pub fn beyond_stack_bytes(&self) -> u64 {
        self.heap_bytes + self.fpu_bytes + self.slot_bytes + self.page_table_bytes
    }
}

/// What one policy's workload threads did, and the check of their stacks' data: each frame of
/// a path fills its locals with a pattern and checks it on the way back up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkFigures {
    /// Threads whose body ran to its end.
    pub threads_finished: u64,
    /// Of those, threads that completed no path (they first ran after the run was told to
    /// stop).
    pub threads_idle: u64,
    /// Paths completed.
    pub paths: u64,
    /// Frames checked.
    pub frames_checked: u64,
    /// Frames whose locals changed while they were live (the kernel fails the boot if any).
    pub frames_corrupted: u64,
    /// Wrapping sum of the checked words: equal across runs of a plan whose threads run a
    /// fixed number of paths (short-lived, not replaced, all finished).
    pub checksum: u64,
}

/// One operation of the cost boot: how many were measured and what they cost (guest
/// instructions), as a mean and as a spread.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostSpread {
    /// The operation (`stack_fault`, `bounce_fault`, `direct_fault`, `switch`, `create`).
    pub what: String,
    /// The policy it was measured under (empty when it does not apply).
    pub policy: String,
    /// Operations measured.
    pub samples: u64,
    /// `total / samples`.
    pub mean: f64,
    /// The cheapest operation.
    pub min: u64,
    /// The median operation (the lower middle one of an even count).
    pub median: u64,
    /// The dearest operation.
    pub max: u64,
}

impl CostSpread {
    /// The spread of `cost`; `None` when it measured nothing.
    pub fn of(cost: &Cost<'_>) -> Option<Self> {
        (cost.samples > 0).then(|| CostSpread {
            what: cost.what.to_string(),
            policy: cost.policy.map_or("", Policy::name).to_owned(),
            samples: cost.samples,
            mean: cost.total as f64 / cost.samples as f64,
            min: cost.min,
            median: cost.median,
            max: cost.max,
        })
    }
}

/// The two ways of handling a page fault that is not a stack fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultPaths {
    /// Guest instructions per fault handled directly on the IST stack.
    pub insns_direct: Option<f64>,
    /// Guest instructions per fault moved back to the interrupted stack.
    pub insns_bounce: Option<f64>,
}

/// Returns `part / whole`, or `None` when either is missing or `whole` is 0.
fn ratio(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    match (part, whole) {
        (Some(part), Some(whole)) if whole > 0.0 => Some(part / whole),
        _ => None,
    }
}

/// Computes the figures of `policies` (in report order) from `measurements`. The error says
/// what the kernel failed to report: a policy without exactly one `PolicyStat`.
///
/// Costs are read as guest instructions: the cost boot runs under `-icount shift=0`, where
/// QEMU's TSC advances by one per executed instruction, and tells the kernel so
/// (`tsc=instructions`), whose `Cost` records then carry `instructions: true`.
pub fn compare(
    setup: &Setup,
    policies: &[Policy],
    measurements: &Measurements,
) -> Result<Comparison, String> {
    let incomplete: Vec<IncompletePolicy> = measurements
        .incomplete
        .iter()
        .filter(|i| policies.contains(&i.policy))
        .cloned()
        .collect();
    let ran = |policy: Policy| !incomplete.iter().any(|i| i.policy == policy);
    let stat_of = |policy: Policy| -> Result<&PolicyStat, String> {
        let mut stats = measurements.stats.iter().filter(|s| s.policy == policy);
        match (stats.next(), stats.next()) {
            (Some(stat), None) => Ok(stat),
            (None, _) => Err(format!("no PolicyStat record for policy {policy}")),
            (Some(_), Some(_)) => Err(format!("several PolicyStat records for policy {policy}")),
        }
    };
    let static_stat = match policies.contains(&Policy::Static) && ran(Policy::Static) {
        true => Some(stat_of(Policy::Static)?),
        false => None,
    };
    let of_static = |value: u64, static_value: fn(&PolicyStat) -> u64| {
        ratio(
            Some(value as f64),
            static_stat.map(|s| static_value(s) as f64),
        )
    };
    let static_switch = measurements.per_op(what::SWITCH, Some(Policy::Static));
    let static_create = measurements.per_op(what::CREATE, Some(Policy::Static));
    let mut figures = Vec::new();
    for &policy in policies.iter().filter(|&&p| ran(p)) {
        let stat = stat_of(policy)?;
        let overhead = measurements
            .overheads
            .iter()
            .find(|o| o.policy == policy)
            .filter(|o| o.threads > 0);
        let per_thread_kib =
            |bytes: u64| overhead.map(|o| bytes as f64 / o.threads as f64 / 1024.0);
        let live_bound_kib = measurements
            .samples_of(policy)
            .iter()
            .map(|s| s.live_kib)
            .max();
        let insns_per_switch = measurements.per_op(what::SWITCH, Some(policy));
        let insns_per_create = measurements.per_op(what::CREATE, Some(policy));
        figures.push(PolicyFigures {
            policy,
            threads_created: stat.threads_created,
            stack_kib_end: stat.stack_kib_now,
            stack_kib_peak: stat.stack_kib_peak,
            stack_end_vs_static: of_static(stat.stack_kib_now, |s| s.stack_kib_now),
            stack_peak_vs_static: of_static(stat.stack_kib_peak, |s| s.stack_kib_peak),
            live_bound_kib,
            stack_peak_vs_live_bound: ratio(
                Some(stat.stack_kib_peak as f64),
                live_bound_kib.map(|kib| kib as f64),
            ),
            faults: stat.faults,
            refills: stat.refills,
            refill_failures: stat.refill_failures,
            fatal_faults: stat.fatal,
            guard_hits: stat.guard_hits,
            killed: stat.killed,
            kernel_stops: stat.kernel_stops,
            reclaimed: stat.reclaimed,
            reclaimed_dead: stat.reclaimed_dead,
            reclaimed_accessed_clear: stat.reclaimed_accessed_clear,
            flushes_avoided: stat.flushes_avoided,
            switch_faults: stat.switch_faults,
            running_extra_kib_peak: stat.running_extra_kib_peak,
            packs: stat.packs,
            restores: stat.restores,
            restore_waits: stat.restore_waits,
            pack_checksum_failures: stat.pack_checksum_failures,
            pack_guard_catches: stat.pack_guard_catches,
            packed_threads_end: stat.packed_threads,
            packed_kib_end: stat.packed_kib,
            admission_waits: stat.admit_waits,
            admit_wait_us_total: stat.admit_wait_us_total,
            admit_wait_us_max: stat.admit_wait_us_max,
            high_water_mean_bytes: stat.high_water_mean_bytes,
            high_water_max_bytes: stat.high_water_max_bytes,
            insns_per_fault: measurements.per_op(what::STACK_FAULT, Some(policy)),
            insns_per_switch,
            insns_per_switch_in: measurements.per_op(what::SWITCH_IN, Some(policy)),
            insns_per_switch_out: measurements.per_op(what::SWITCH_OUT, Some(policy)),
            insns_per_create,
            insns_per_trim: measurements.per_op(what::TRIM, Some(policy)),
            insns_per_pack: measurements.per_op(what::PACK, Some(policy)),
            insns_per_restore: measurements.per_op(what::RESTORE, Some(policy)),
            insns_per_switch_vs_static: ratio(insns_per_switch, static_switch),
            insns_per_create_vs_static: ratio(insns_per_create, static_create),
            work: measurements
                .workload_stats
                .iter()
                .find(|w| w.policy == policy)
                .map(|w| WorkFigures {
                    threads_finished: w.threads_finished,
                    threads_idle: w.threads_idle,
                    paths: w.paths,
                    frames_checked: w.frames_checked,
                    frames_corrupted: w.frames_corrupted,
                    checksum: w.checksum,
                }),
            threads_at_end: overhead.map(|o| o.threads),
            stack_kib_per_thread: overhead.and_then(|o| per_thread_kib(o.stack_bytes)),
            total_kib_per_thread: overhead.and_then(|o| {
                per_thread_kib(o.stack_bytes + OverheadFigures::of(o).beyond_stack_bytes())
            }),
            overhead: overhead.map(OverheadFigures::of),
        });
    }
    Ok(Comparison {
        scenario: setup.scenario.clone(),
        description: setup.description.clone(),
        cpus: setup.cpus,
        max_stack_kib: setup.max_stack_kib,
        workload_boots: setup.workload_boots,
        cost_unit: "instructions",
        policies: figures,
        incomplete,
        fault_paths: FaultPaths {
            insns_direct: measurements.per_op(what::DIRECT_FAULT, None),
            insns_bounce: measurements.per_op(what::BOUNCE_FAULT, None),
        },
        costs: measurements
            .costs
            .iter()
            .filter_map(CostSpread::of)
            .collect(),
        injection: injection_figures(setup, measurements),
    })
}

#[cfg(test)]
pub(crate) mod tests;

//! Scenarios: the workloads `dks compare` runs, and the plans the kernel gets from them.
//!
//! A scenario is a TOML file (in the repository's `scenarios/`, or anywhere) or one of the
//! built-ins embedded from those files ([`builtin`]). [`load`] reads one and checks it
//! strictly ([`file`]): an unknown key, a count out of range, a depth beyond `max_stack`, an
//! unknown policy or distribution, an unreadable file each give one [`ScenarioError`] naming
//! the file, the key and what is accepted, and nothing runs.
//!
//! A checked [`Scenario`] holds its groups with their policy still open (`"each"`): the
//! comparison picks the policies, and [`Scenario::boots`] expands every `"each"` group into one
//! [`GroupPlan`] per policy. All policies run side by side in one boot when the threads fit in
//! one boot ([`SIDE_BY_SIDE_THREADS`]); otherwise each policy gets a boot of its own. The plan
//! format itself ([`Plan`]) belongs to `dks-protocol`: the kernel parses the same types.

pub mod builtin;
mod distribution;
mod file;

use std::fmt;
use std::path::{Path, PathBuf};

use dks_core::Policy;
use dks_protocol::scenario::{GroupPlan, PLAN_VERSION, Plan, slots_for};

use crate::config::MemorySize;

/// Where a scenario came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A built-in, by name.
    Builtin(String),
    /// A file.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(name) => write!(f, "built-in scenario {name:?}"),
            Origin::File(path) => write!(f, "scenario file {}", path.display()),
        }
    }
}

/// Why a scenario cannot run: where, which key, what is wrong and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file or built-in (or the `--scenario` value when it is neither).
    pub origin: String,
    /// The key at fault, e.g. `[[group]] #2 ("short-lived").threads`; empty for the whole file.
    pub key: String,
    /// What is wrong, and what would be accepted.
    pub problem: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.problem)
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Which policy a group's threads get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyChoice {
    /// Every policy of the comparison in turn: one copy of the group per policy.
    Each,
    /// This policy only.
    One(Policy),
}

/// One `[[group]]` of a scenario, checked. A replayed population is several plan groups
/// (one per distinct thread); any other group is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The group's name, as written.
    pub name: String,
    /// Its policy.
    pub policy: PolicyChoice,
    /// Its plan groups; their `policy` is a placeholder that [`Scenario::boots`] replaces.
    pub plans: Vec<GroupPlan>,
}

impl Group {
    /// Threads of this group alive at once, for one policy.
    pub fn threads(&self) -> u32 {
        self.plans.iter().map(|p| p.threads).sum()
    }
}

/// A scenario, checked: everything needed to build the plans and boot them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Where it came from.
    pub origin: Origin,
    /// Its name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// What it models, for people.
    pub description: String,
    /// How long the workload runs, milliseconds.
    pub duration_ms: u32,
    /// How often the kernel samples stack memory, milliseconds.
    pub sample_ms: u32,
    /// The largest stack, bytes: 16, 32 or 64 KiB.
    pub max_stack_bytes: u32,
    /// Guest RAM.
    pub memory: MemorySize,
    /// CPUs, unless the command line says otherwise.
    pub cpus: u8,
    /// The kernel's `inject=` pattern, when allocations are made to fail.
    pub inject: Option<String>,
    /// The kernel's `reserve=` frame count, when set.
    pub reserve: Option<u64>,
    /// Seeds every random draw of the run.
    pub seed: u64,
    /// What a boot whose threads could not all be created for want of memory means.
    pub out_of_memory: OutOfMemory,
    /// The kernel's `pack_after_ms=`: how long a `pack` thread sleeps before it is packed,
    /// milliseconds; `None` for the kernel's default (`dks_core::pack::DEFAULT_PACK_THRESHOLD_MS`).
    pub pack_after_ms: Option<u32>,
    /// The kernel's `pack_guard=on`: packed pages are unmapped but kept, so a touch is caught
    /// (docs/pack.md, "Guard mode").
    pub pack_guard: bool,
    /// The thread groups, in file order.
    pub groups: Vec<Group>,
}

/// What `dks compare` makes of a policy whose boot ran out of memory before it had created
/// every thread of the plan (the scenario's `out_of_memory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfMemory {
    /// The comparison fails (exit 3) and writes no figures: the default, since figures for
    /// fewer threads under one policy than under another compare nothing.
    Fail,
    /// The policy gets a line saying how far it got (threads created of those planned) and no
    /// figures; the other policies are compared. For scenarios built to exceed what some
    /// policy can hold (the `million` built-in under `static`). Only with one boot per policy.
    Report,
}

/// The most threads all policies may run at once in one boot side by side; beyond it every
/// policy gets a boot of its own (shorter boots, and one policy's memory never crowds
/// another's).
pub const SIDE_BY_SIDE_THREADS: u64 = 6000;

/// One boot of a comparison: the policies it runs and its plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// The policies present in the plan, in report order.
    pub policies: Vec<Policy>,
    /// The plan the kernel gets.
    pub plan: Plan,
}

/// Reads the scenario `spec`: a built-in's name, or the path of a TOML file.
pub fn load(spec: &str) -> Result<Scenario, ScenarioError> {
    load_with(spec, None)
}

/// Reads the scenario `spec` as [`load`] does, with its `max_stack` replaced by `max_stack`
/// (`"16K"`, `"32K"` or `"64K"`, e.g. from `dks compare --max-stack`): every depth is checked
/// against that size, and an error names the override.
pub fn load_at_max_stack(spec: &str, max_stack: &str) -> Result<Scenario, ScenarioError> {
    load_with(spec, Some(max_stack))
}

fn load_with(spec: &str, max_stack: Option<&str>) -> Result<Scenario, ScenarioError> {
    let parse = |text: &str, origin: Origin| file::parse_with(text, origin, max_stack);
    if let Some(text) = builtin::text(spec) {
        return parse(text, Origin::Builtin(spec.to_owned()));
    }
    let path = Path::new(spec);
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, Origin::File(path.to_owned())),
        Err(error) if !spec.contains(['/', '.']) => Err(ScenarioError {
            origin: format!("--scenario {spec}"),
            key: String::new(),
            problem: format!(
                "no built-in scenario of that name (built-ins: {}) and no readable file: {error}",
                builtin::NAMES.join(", ")
            ),
        }),
        Err(error) => Err(ScenarioError {
            origin: Origin::File(path.to_owned()).to_string(),
            key: String::new(),
            problem: format!(
                "cannot read it: {error}; accepted: a readable TOML file or a built-in ({})",
                builtin::NAMES.join(", ")
            ),
        }),
    }
}

/// Parses and checks the TOML `text` of a scenario from `origin`.
pub fn parse(text: &str, origin: Origin) -> Result<Scenario, ScenarioError> {
    file::parse(text, origin)
}

impl Scenario {
    /// Returns the policies named by groups that are not `"each"`, in report order.
    pub fn fixed_policies(&self) -> Vec<Policy> {
        Policy::ALL
            .into_iter()
            .filter(|&p| self.groups.iter().any(|g| g.policy == PolicyChoice::One(p)))
            .collect()
    }

    /// Returns whether any group runs under every policy.
    pub fn has_each(&self) -> bool {
        self.groups.iter().any(|g| g.policy == PolicyChoice::Each)
    }

    /// Returns the boots that run this scenario with its `"each"` groups under `each` (in any
    /// order; reports follow [`Policy::ALL`]): one boot when every thread fits in one plan,
    /// otherwise one boot per policy. Every plan passes [`Plan::check`].
    pub fn boots(&self, each: &[Policy]) -> Result<Vec<BootPlan>, ScenarioError> {
        let policies: Vec<Policy> = Policy::ALL
            .into_iter()
            .filter(|p| (self.has_each() && each.contains(p)) || self.fixed_policies().contains(p))
            .collect();
        if policies.is_empty() {
            return Err(self.error("", "no group runs under any selected policy"));
        }
        let total: u64 = policies
            .iter()
            .map(|&p| u64::from(self.threads_under(p, each)))
            .sum();
        let side_by_side = total <= SIDE_BY_SIDE_THREADS && self.out_of_memory == OutOfMemory::Fail;
        let sets: Vec<Vec<Policy>> = if side_by_side {
            vec![policies]
        } else {
            policies.into_iter().map(|p| vec![p]).collect()
        };
        sets.into_iter()
            .map(|policies| {
                let plan = self.plan(&policies, each);
                plan.check()
                    .map_err(|e| self.error(&e.field, &format!("the plan fails: {}", e.problem)))?;
                Ok(BootPlan { policies, plan })
            })
            .collect()
    }

    /// Returns the kernel arguments of the workload boot of `plan` (one of [`Scenario::boots`]):
    /// stack slots for its threads ([`slots_for`]); the heap grows as the kernel needs it. The
    /// `pack` settings go only to a boot with `pack` threads, so a scenario that sets them
    /// still runs its other policies on a kernel without `pack`.
    pub fn kernel_args(&self, plan: &Plan) -> Vec<String> {
        let threads: u32 = plan.groups.iter().map(|g| g.threads).sum();
        let churn = plan.groups.iter().any(|g| g.respawn);
        let mut args = vec![
            "workload=initrd".to_owned(),
            format!("max_stack={}K", self.max_stack_bytes / 1024),
            format!("slots={}", slots_for(threads, churn)),
        ];
        if let Some(inject) = &self.inject {
            args.push(format!("inject={inject}"));
        }
        if let Some(reserve) = self.reserve {
            args.push(format!("reserve={reserve}"));
        }
        if plan.groups.iter().any(|g| g.policy == Policy::Pack) {
            if let Some(ms) = self.pack_after_ms {
                args.push(format!("pack_after_ms={ms}"));
            }
            if self.pack_guard {
                args.push("pack_guard=on".to_owned());
            }
        }
        args
    }

    /// Threads alive at once under `policy` when `"each"` groups run under `each`.
    fn threads_under(&self, policy: Policy, each: &[Policy]) -> u32 {
        self.groups
            .iter()
            .filter(|g| match g.policy {
                PolicyChoice::Each => each.contains(&policy),
                PolicyChoice::One(p) => p == policy,
            })
            .map(Group::threads)
            .sum()
    }

    /// The plan of one boot running `policies` (each of which is in `each` or fixed).
    fn plan(&self, policies: &[Policy], each: &[Policy]) -> Plan {
        let mut groups = Vec::new();
        for &policy in policies {
            for group in &self.groups {
                let runs = match group.policy {
                    PolicyChoice::Each => each.contains(&policy),
                    PolicyChoice::One(p) => p == policy,
                };
                if runs {
                    groups.extend(group.plans.iter().map(|plan| GroupPlan {
                        policy,
                        ..plan.clone()
                    }));
                }
            }
        }
        Plan {
            version: PLAN_VERSION,
            name: self.name.clone(),
            seed: self.seed,
            duration_ms: self.duration_ms,
            sample_ms: self.sample_ms,
            max_stack_bytes: self.max_stack_bytes,
            groups,
        }
    }

    fn error(&self, key: &str, problem: &str) -> ScenarioError {
        ScenarioError {
            origin: self.origin.to_string(),
            key: key.to_owned(),
            problem: problem.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;

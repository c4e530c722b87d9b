//! The scenario file format (TOML) and its strict check.
//!
//! The file is read into [`RawScenario`] with `deny_unknown_fields`, so an unknown key is
//! refused by the TOML parser with the list of accepted keys. Numbers are read as TOML's
//! signed integers and range-checked here, so a negative or zero count gets a message naming
//! the key and the range, not a type error. Every other check (names, policies, sizes, depths
//! against `max_stack`, which keys go with which lifetime) is in [`check`]; the first problem
//! found is the error.

use std::collections::BTreeSet;
use std::path::Path;

use dks_core::{MaxStack, Policy};
use dks_protocol::scenario::{
    GroupPlan, Histogram, Lifetime, MAX_PLAN_THREADS, MAX_STACK_BYTES, Wake,
};
use serde::Deserialize;

use super::OutOfMemory;
use super::{Group, Origin, PolicyChoice, Scenario, ScenarioError, distribution};
use crate::census;
use crate::config::{self, MemorySize};

/// The longest run a scenario may ask for (the plan's bound), milliseconds.
const MAX_DURATION_MS: i64 = 600_000;
/// The most paths per thread (per round for long-lived threads).
const MAX_CALLS: i64 = 1_000_000;
/// The longest mean sleep, milliseconds.
const MAX_SLEEP_MS: i64 = 60_000;
/// The kernel's bound on `reserve=`.
const MAX_RESERVE_FRAMES: i64 = 1 << 20;
/// The kernel's bound on `pack_after_ms=`: the longest a `pack` thread may have to sleep
/// before it is packed, milliseconds.
const MAX_PACK_AFTER_MS: i64 = 60_000;
/// The longest scenario or group name.
const MAX_NAME_LEN: usize = 64;

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    description: Option<String>,
    duration_ms: i64,
    sample_ms: Option<i64>,
    max_stack: Option<String>,
    memory: Option<String>,
    cpus: Option<i64>,
    inject: Option<String>,
    reserve: Option<i64>,
    seed: Option<i64>,
    out_of_memory: Option<String>,
    pack_after_ms: Option<i64>,
    pack_guard: Option<toml::Value>,
    group: Vec<RawGroup>,
}

/// One `[[group]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    policy: String,
    threads: Option<i64>,
    population: Option<toml::Value>,
    lifetime: String,
    calls: Option<i64>,
    respawn: Option<bool>,
    block_percent: Option<i64>,
    irqoff_percent: Option<i64>,
    sleep_ms: Option<i64>,
    wake: Option<String>,
    depth: Option<toml::Value>,
    sleep_depth: Option<toml::Value>,
}

/// Parses and checks `text`.
pub(super) fn parse(text: &str, origin: Origin) -> Result<Scenario, ScenarioError> {
    parse_with(text, origin, None)
}

/// Parses and checks `text`, with its `max_stack` replaced by `max_stack` when given.
pub(super) fn parse_with(
    text: &str,
    origin: Origin,
    max_stack: Option<&str>,
) -> Result<Scenario, ScenarioError> {
    let mut raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError {
        origin: origin.to_string(),
        key: String::new(),
        problem: e.to_string().trim_end().to_owned(),
    })?;
    let origin_text = match max_stack {
        Some(size) => {
            raw.max_stack = Some(size.to_owned());
            format!("{origin} at --max-stack {size}")
        }
        None => origin.to_string(),
    };
    check(raw, &origin).map_err(|(key, problem)| ScenarioError {
        origin: origin_text,
        key,
        problem,
    })
}

/// A problem: the key and what is wrong with it.
type Problem = (String, String);

fn problem(key: impl Into<String>, what: impl Into<String>) -> Problem {
    (key.into(), what.into())
}

/// `value` when it lies in `min..=max`, else a problem naming `key` and the range.
fn in_range(key: &str, value: i64, min: i64, max: i64) -> Result<i64, Problem> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(problem(
            key,
            format!("{value} is out of range; accepted: a whole number from {min} to {max}"),
        ))
    }
}

fn check_name(key: &str, name: &str) -> Result<(), Problem> {
    let fine = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(problem(
            key,
            format!(
                "{name:?} is not a name; accepted: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            ),
        ))
    }
}

fn check(raw: RawScenario, origin: &Origin) -> Result<Scenario, Problem> {
    // Census files are named relative to the scenario file; a built-in names none.
    let base = match origin {
        Origin::File(path) => Some(match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }),
        Origin::Builtin(_) => None,
    };
    check_name("name", &raw.name)?;
    let duration_ms = in_range("duration_ms", raw.duration_ms, 1, MAX_DURATION_MS)? as u32;
    let sample_ms = match raw.sample_ms {
        Some(ms) => in_range("sample_ms", ms, 1, i64::from(duration_ms))? as u32,
        None => 100.min(duration_ms),
    };
    let max_stack = raw.max_stack.as_deref().unwrap_or(MaxStack::Kib16.name());
    let Some(max_stack) = MaxStack::from_name(max_stack) else {
        return Err(problem(
            "max_stack",
            format!("{max_stack:?} is not a stack size; accepted: \"16K\", \"32K\" or \"64K\""),
        ));
    };
    let max_stack_bytes = u32::try_from(max_stack.bytes()).expect("64 KiB at most");
    debug_assert!(max_stack_bytes <= MAX_STACK_BYTES);
    let memory = match &raw.memory {
        Some(text) => text
            .parse::<MemorySize>()
            .map_err(|e| problem("memory", e.to_string()))?,
        None => MemorySize::DEFAULT,
    };
    let cpus = match raw.cpus {
        Some(n) => in_range(
            "cpus",
            n,
            i64::from(config::MIN_CPUS),
            i64::from(config::MAX_CPUS),
        )? as u8,
        None => 2,
    };
    let inject = match raw.inject {
        Some(pattern) => {
            check_inject(&pattern)?;
            (pattern != "none").then_some(pattern)
        }
        None => None,
    };
    let reserve = raw
        .reserve
        .map(|n| in_range("reserve", n, 0, MAX_RESERVE_FRAMES))
        .transpose()?
        .map(|n| n as u64);
    let seed = raw
        .seed
        .map(|n| in_range("seed", n, 0, i64::MAX))
        .transpose()?
        .map_or(1, |n| n as u64);
    let out_of_memory = match raw.out_of_memory.as_deref() {
        None | Some("fail") => OutOfMemory::Fail,
        Some("report") => OutOfMemory::Report,
        Some(other) => {
            return Err(problem(
                "out_of_memory",
                format!("{other:?} is not a choice; accepted: \"fail\" or \"report\""),
            ));
        }
    };
    let pack_after_ms = raw
        .pack_after_ms
        .map(|ms| in_range("pack_after_ms", ms, 1, MAX_PACK_AFTER_MS))
        .transpose()?
        .map(|ms| ms as u32);
    let pack_guard = match raw.pack_guard {
        None => false,
        Some(toml::Value::Boolean(on)) => on,
        Some(other) => {
            return Err(problem(
                "pack_guard",
                format!("{other} is not a choice; accepted: true or false"),
            ));
        }
    };
    if raw.group.is_empty() {
        return Err(problem(
            "group",
            "no groups; accepted: one or more [[group]] tables",
        ));
    }
    let mut names = BTreeSet::new();
    let mut groups = Vec::new();
    for (i, group) in raw.group.into_iter().enumerate() {
        let key = format!("[[group]] #{} ({:?})", i + 1, group.name);
        if !names.insert(group.name.clone()) {
            return Err(problem(
                format!("{key}.name"),
                "another group has this name; accepted: a name used once",
            ));
        }
        groups.push(check_group(group, &key, max_stack_bytes, base)?);
    }
    for policy in Policy::ALL {
        let threads: u64 = groups
            .iter()
            .filter(|g: &&Group| match g.policy {
                PolicyChoice::Each => true,
                PolicyChoice::One(p) => p == policy,
            })
            .map(|g| u64::from(g.threads()))
            .sum();
        if threads > u64::from(MAX_PLAN_THREADS) {
            return Err(problem(
                "group",
                format!(
                    "{threads} threads at once under policy {policy}; accepted: at most \
                     {MAX_PLAN_THREADS} per policy"
                ),
            ));
        }
    }
    Ok(Scenario {
        origin: origin.clone(),
        name: raw.name,
        description: raw.description.unwrap_or_default(),
        duration_ms,
        sample_ms,
        max_stack_bytes,
        memory,
        cpus,
        inject,
        reserve,
        seed,
        out_of_memory,
        pack_after_ms,
        pack_guard,
        groups,
    })
}

/// What `inject` accepts: the kernel's syntax.
const INJECT_ACCEPTED: &str = "none, every:N (N >= 1), percent:P:SEED (P 0 to 100), \
                               atomic-window:START:LEN, all-atomic";

fn check_inject(pattern: &str) -> Result<(), Problem> {
    let number = |text: &str, min: u64, max: u64| {
        !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && text.parse::<u64>().is_ok_and(|n| (min..=max).contains(&n))
    };
    let mut parts = pattern.split(':');
    let kind = parts.next().unwrap_or("");
    let numbers: Vec<&str> = parts.collect();
    let fine = match (kind, numbers.as_slice()) {
        ("none" | "all-atomic", []) => true,
        ("every", [n]) => number(n, 1, u64::MAX),
        ("percent", [p, seed]) => number(p, 0, 100) && number(seed, 0, u64::MAX),
        ("atomic-window", [start, len]) => number(start, 0, u64::MAX) && number(len, 0, u64::MAX),
        _ => false,
    };
    if fine {
        Ok(())
    } else {
        Err(problem(
            "inject",
            format!("{pattern:?} is not an injection pattern; accepted: {INJECT_ACCEPTED}"),
        ))
    }
}

fn check_group(
    raw: RawGroup,
    key: &str,
    max_stack_bytes: u32,
    base: Option<&Path>,
) -> Result<Group, Problem> {
    let at = |field: &str| format!("{key}.{field}");
    check_name(&at("name"), &raw.name)?;
    let policy = match raw.policy.as_str() {
        "each" => PolicyChoice::Each,
        name if let Ok(policy) = name.parse() => PolicyChoice::One(policy),
        other => {
            return Err(problem(
                at("policy"),
                format!(
                    "unknown policy {other:?}; accepted: \"each\", {}",
                    Policy::ALL
                        .iter()
                        .map(|p| format!("{:?}", p.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
    let lifetime = match raw.lifetime.as_str() {
        "long" => Lifetime::Long,
        "short" => Lifetime::Short,
        other => {
            return Err(problem(
                at("lifetime"),
                format!("{other:?} is not a lifetime; accepted: \"long\" or \"short\""),
            ));
        }
    };
    let wake = match raw.wake.as_deref().unwrap_or("timer") {
        "timer" => Wake::Timer,
        "peer" => Wake::Peer,
        other => {
            return Err(problem(
                at("wake"),
                format!("{other:?} is not a waker; accepted: \"timer\" or \"peer\""),
            ));
        }
    };
    let calls = in_range(&at("calls"), raw.calls.unwrap_or(1), 1, MAX_CALLS)? as u32;
    let block_percent =
        in_range(&at("block_percent"), raw.block_percent.unwrap_or(0), 0, 100)? as u8;
    let irqoff_percent = in_range(
        &at("irqoff_percent"),
        raw.irqoff_percent.unwrap_or(0),
        0,
        100,
    )? as u8;
    let sleep_ms = in_range(&at("sleep_ms"), raw.sleep_ms.unwrap_or(10), 0, MAX_SLEEP_MS)? as u32;
    let respawn = raw.respawn.unwrap_or(false);
    if respawn && lifetime == Lifetime::Long {
        return Err(problem(
            at("respawn"),
            "applies to short-lived groups only (lifetime = \"short\")",
        ));
    }
    if raw.sleep_depth.is_some() && lifetime == Lifetime::Short {
        return Err(problem(
            at("sleep_depth"),
            "applies to long-lived groups only (lifetime = \"long\"): short-lived threads \
             sleep only where their paths block",
        ));
    }
    let template = |threads, depth: Histogram, sleep_depth: Histogram, name: String| GroupPlan {
        name,
        // A placeholder: `Scenario::boots` gives each copy of the group its policy.
        policy: Policy::Static,
        threads,
        lifetime,
        calls,
        respawn,
        depth,
        sleep_depth,
        block_percent,
        irqoff_percent,
        sleep_ms,
        wake,
    };

    if let Some(population) = &raw.population {
        for (field, given) in [
            ("threads", raw.threads.is_some()),
            ("depth", raw.depth.is_some()),
            ("sleep_depth", raw.sleep_depth.is_some()),
        ] {
            if given {
                return Err(problem(
                    at(field),
                    "a replayed population sets threads, depth and sleep_depth itself; \
                     accepted: population alone, or threads with depth (and sleep_depth)",
                ));
            }
        }
        if lifetime != Lifetime::Long {
            return Err(problem(
                at("population"),
                "replays live threads; accepted: with lifetime = \"long\" only",
            ));
        }
        let accepted = format!(
            "accepted: {} or a live snapshot {{ file = \"SNAPSHOT.tsv\" }}",
            census::POPULATIONS
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let threads = match population {
            toml::Value::String(name) => census::live_population(name).ok_or_else(|| {
                problem(
                    at("population"),
                    format!("unknown population {name:?}; {accepted}"),
                )
            })?,
            toml::Value::Table(table) => distribution::population_file(table, base)
                .map_err(|what| problem(at("population"), what))?,
            other => {
                return Err(problem(
                    at("population"),
                    format!("{} is not a population; {accepted}", other.type_str()),
                ));
            }
        };
        let mut plans = Vec::new();
        for (thread, count) in threads {
            for (field, bytes) in [
                ("population", thread.used_bytes),
                ("population", thread.sleeping_depth_bytes),
            ] {
                if bytes > max_stack_bytes {
                    return Err(problem(
                        at(field),
                        format!(
                            "reaches {bytes} bytes, beyond max_stack ({max_stack_bytes} bytes)"
                        ),
                    ));
                }
            }
            plans.push(template(
                count,
                census::exact_histogram([(thread.used_bytes, 1)]),
                census::exact_histogram([(thread.sleeping_depth_bytes, 1)]),
                format!(
                    "{}:{}/{}",
                    raw.name, thread.used_bytes, thread.sleeping_depth_bytes
                ),
            ));
        }
        return Ok(Group {
            name: raw.name,
            policy,
            plans,
        });
    }

    let threads = match raw.threads {
        Some(n) => in_range(&at("threads"), n, 1, i64::from(MAX_PLAN_THREADS))? as u32,
        None => {
            return Err(problem(
                at("threads"),
                "missing; accepted: a whole number of threads, or population = NAME",
            ));
        }
    };
    let histogram = |field: &str, value: &Option<toml::Value>| match value {
        Some(value) => distribution::parse(value, max_stack_bytes, base)
            .map(Some)
            .map_err(|what| problem(at(field), what)),
        None => Ok(None),
    };
    let depth = histogram("depth", &raw.depth)?.ok_or_else(|| {
        problem(
            at("depth"),
            format!("missing; accepted: {}", distribution::accepted()),
        )
    })?;
    let sleep_depth = match (histogram("sleep_depth", &raw.sleep_depth)?, lifetime) {
        (Some(sleep_depth), _) => sleep_depth,
        // Unused for short-lived threads; the plan still needs a valid histogram.
        (None, Lifetime::Short) => depth.clone(),
        (None, Lifetime::Long) => {
            return Err(problem(
                at("sleep_depth"),
                format!(
                    "missing: a long-lived group sleeps between its rounds at this depth; \
                     accepted: {}",
                    distribution::accepted()
                ),
            ));
        }
    };
    Ok(Group {
        plans: vec![template(threads, depth, sleep_depth, raw.name.clone())],
        name: raw.name,
        policy,
    })
}

//! Depth distributions as a scenario file writes them, turned into the plan's [`Histogram`].
//!
//! Four forms are accepted for `depth` and `sleep_depth`:
//!
//! - a name: `"linux-census-exits"`, `"linux-census-live-used"`, `"linux-census-live-sleeping"`
//!   (the census data, [`crate::census`]);
//! - an inline histogram: `[[up_to_bytes, weight], ...]`, bounds increasing, a value drawn
//!   uniformly in `(previous bound, bound]` of a bucket chosen by weight;
//! - a fixed depth: `{ fixed = BYTES }`, exactly that many bytes every time (the buckets
//!   `(BYTES - 1, 0), (BYTES, 1)`);
//! - a census file: `{ file = "exits.tsv" }`, optionally with `column = "used_bytes"` (the
//!   default) or `"sleeping_depth_bytes"`, a path relative to the scenario file
//!   ([`crate::host_census::replay`]).
//!
//! Every error says which of the forms was meant and what is wrong with it.

use std::path::Path;

use dks_protocol::scenario::{Bucket, Histogram};

use crate::census::{self, LiveThread};
use crate::host_census::{Census, replay, tsv};

/// What a distribution may be, for error messages.
pub fn accepted() -> String {
    let names: Vec<String> = census::NAMED
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    format!(
        "a distribution name ({}), an inline histogram [[up_to_bytes, weight], ...], \
         {{ fixed = BYTES }} or a census file {{ file = \"CENSUS.tsv\" }}",
        names.join(", ")
    )
}

/// Reads the census file `value` names (a path relative to `base`, the scenario's folder;
/// `None` for a built-in, which names no files).
fn census_file(value: Option<&toml::Value>, base: Option<&Path>) -> Result<Census, String> {
    let name = match value {
        Some(toml::Value::String(name)) if !name.is_empty() => name,
        _ => {
            return Err(
                "file must be a census file's path (a string, relative to the scenario file)"
                    .to_owned(),
            );
        }
    };
    let base = base.ok_or("a built-in scenario names no census files")?;
    tsv::read(&base.join(name))
}

/// The keys of `table` that are not in `allowed`, for errors.
fn unknown_keys<'t>(table: &'t toml::Table, allowed: &[&str]) -> Vec<&'t str> {
    table
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect()
}

/// Returns the live threads of the census file a `population = { file = ... }` table names.
pub fn population_file(
    table: &toml::Table,
    base: Option<&Path>,
) -> Result<Vec<(LiveThread, u32)>, String> {
    let unknown = unknown_keys(table, &["file"]);
    if !unknown.is_empty() {
        return Err(format!(
            "unknown key `{}`; accepted: {{ file = \"SNAPSHOT.tsv\" }}",
            unknown[0]
        ));
    }
    let census = census_file(table.get("file"), base)?;
    replay::population(&census).map_err(|problem| format!("{}: {problem}", table["file"]))
}

/// Returns the histogram `value` describes, whose depths all lie within `max_bytes`; the error
/// is the problem, without the key (the caller names it). `base` is the folder census files
/// are named relative to (`None` for a built-in).
pub fn parse(
    value: &toml::Value,
    max_bytes: u32,
    base: Option<&Path>,
) -> Result<Histogram, String> {
    let histogram = match value {
        toml::Value::String(name) => census::named(name)
            .ok_or_else(|| format!("unknown distribution {name:?}; accepted: {}", accepted()))?,
        toml::Value::Array(rows) => inline(rows, max_bytes)?,
        toml::Value::Table(table) if table.contains_key("file") => {
            let unknown = unknown_keys(table, &["file", "column"]);
            if !unknown.is_empty() {
                return Err(format!(
                    "a census-file table may only hold `file` and `column` (found `{}`); \
                     accepted: {}",
                    unknown[0],
                    accepted()
                ));
            }
            let column = match table.get("column") {
                None => "used_bytes",
                Some(toml::Value::String(column)) => column.as_str(),
                Some(other) => {
                    return Err(format!(
                        "column = {other} is not a column name; accepted: {}",
                        replay::COLUMNS
                            .iter()
                            .map(|c| format!("{c:?}"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ));
                }
            };
            let census = census_file(table.get("file"), base)?;
            replay::histogram(&census, column)
                .map_err(|problem| format!("file = {}: {problem}", table["file"]))?
        }
        toml::Value::Table(table) => {
            let keys: Vec<&String> = table.keys().collect();
            match (table.get("fixed"), keys.len()) {
                (Some(fixed), 1) => {
                    let bytes = depth_bytes(fixed, max_bytes)
                        .map_err(|problem| format!("fixed = {fixed}: {problem}"))?;
                    census::exact_histogram([(bytes, 1)])
                }
                _ => {
                    return Err(format!(
                        "a table here may only hold `fixed`, or `file` and `column` (found \
                         {}); accepted: {}",
                        keys.iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        accepted()
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "{} is not a distribution; accepted: {}",
                other.type_str(),
                accepted()
            ));
        }
    };
    if histogram.max_bytes() > max_bytes {
        return Err(format!(
            "reaches {} bytes, beyond max_stack ({max_bytes} bytes)",
            histogram.max_bytes()
        ));
    }
    Ok(histogram)
}

fn inline(rows: &[toml::Value], max_bytes: u32) -> Result<Histogram, String> {
    const FORM: &str = "accepted: [[up_to_bytes, weight], ...] with increasing bounds";
    if rows.is_empty() {
        return Err(format!("an empty histogram; {FORM}"));
    }
    let mut buckets = Vec::with_capacity(rows.len());
    let mut previous = 0;
    for (i, row) in rows.iter().enumerate() {
        let at = |problem: String| format!("bucket {} ({row}): {problem}", i + 1);
        let pair = match row.as_array() {
            Some(pair) if pair.len() == 2 => pair,
            _ => return Err(at(format!("not a pair [up_to_bytes, weight]; {FORM}"))),
        };
        let up_to_bytes = depth_bytes(&pair[0], max_bytes).map_err(&at)?;
        let weight = match pair[1].as_integer() {
            Some(weight) if weight >= 0 => weight as u64,
            _ => {
                return Err(at(format!(
                    "the weight {} is not a whole number of 0 or more",
                    pair[1]
                )));
            }
        };
        if up_to_bytes <= previous {
            return Err(at(format!(
                "bounds must increase ({up_to_bytes} follows {previous})"
            )));
        }
        previous = up_to_bytes;
        buckets.push(Bucket {
            up_to_bytes,
            weight,
        });
    }
    if buckets.iter().all(|b| b.weight == 0) {
        return Err("every weight is 0; at least one bucket needs weight".to_owned());
    }
    Ok(Histogram { buckets })
}

/// A depth in bytes: a whole number from 1 to `max_bytes`.
fn depth_bytes(value: &toml::Value, max_bytes: u32) -> Result<u32, String> {
    match value.as_integer() {
        Some(bytes) if bytes > i64::from(max_bytes) => Err(format!(
            "{bytes} bytes is beyond max_stack ({max_bytes} bytes)"
        )),
        Some(bytes) if bytes >= 1 => Ok(bytes as u32),
        _ => Err(format!(
            "{value} is not a depth; accepted: a whole number of bytes from 1 to {max_bytes}"
        )),
    }
}

#[cfg(test)]
mod tests;

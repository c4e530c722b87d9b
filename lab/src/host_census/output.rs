//! Where a census goes, checked before it is taken, and written whole or not at all.
//!
//! `--out FILE.tsv` names the census; its scenario goes beside it as `FILE.toml`. Before any
//! BPF program is loaded, [`check`] makes sure the name ends in `.tsv`, its folder exists and
//! can be written (by creating an unnamed temporary file there, which leaves nothing behind),
//! and neither output is a folder. [`write`] then writes each file to a new temporary file in
//! the same folder (created exclusively, with a random name, by the `tempfile` crate) and
//! renames it into place: a planted link at the final name is replaced, never followed, and a
//! reader never sees half a file. If the scenario cannot be placed after its census was, the
//! census is removed again, so an error leaves neither.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where a census and its scenario go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outputs {
    /// The census.
    pub tsv: PathBuf,
    /// Its scenario.
    pub toml: PathBuf,
    /// The folder of both.
    pub folder: PathBuf,
}

/// Checks `out` (the value of `flag`) and returns the two paths; the error says what is wrong
/// and what is accepted.
pub fn check(out: &Path, flag: &str) -> Result<Outputs, String> {
    let accepted = "accepted: a file name ending in .tsv in an existing, writable folder";
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() > ".tsv".len() && n.ends_with(".tsv"))
        .ok_or_else(|| format!("{flag} {}: not a .tsv file name; {accepted}", out.display()))?;
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "{flag} {}: the folder {} does not exist; {accepted}",
            out.display(),
            folder.display()
        ));
    }
    let toml = folder.join(format!("{}.toml", &name[..name.len() - ".tsv".len()]));
    for path in [out, toml.as_path()] {
        if path.is_dir() {
            return Err(format!(
                "{flag} {}: {} is a folder; {accepted}",
                out.display(),
                path.display()
            ));
        }
    }
    tempfile::tempfile_in(&folder).map_err(|error| {
        format!(
            "{flag} {}: the folder {} is not writable ({error}); {accepted}",
            out.display(),
            folder.display()
        )
    })?;
    Ok(Outputs {
        tsv: out.to_owned(),
        toml,
        folder,
    })
}

/// Writes `contents` to a new temporary file in `folder` and renames it to `path`.
fn place(folder: &Path, path: &Path, contents: &str) -> Result<(), String> {
    let mut file = tempfile::Builder::new()
        .prefix(".dks-census-")
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(folder)
        .map_err(|e| format!("cannot create a file in {}: {e}", folder.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", file.path().display()))?;
    file.persist(path)
        .map_err(|e| format!("cannot put {} in place: {}", path.display(), e.error))?;
    Ok(())
}

/// Writes the census, then (when there is one) its scenario after `check_scenario` accepted
/// it with the census in place; on any error neither file is left.
pub fn write(
    outputs: &Outputs,
    census: &str,
    scenario: Option<&str>,
    check_scenario: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    place(&outputs.folder, &outputs.tsv, census)?;
    let Some(scenario) = scenario else {
        return Ok(());
    };
    let placed = check_scenario().and_then(|()| place(&outputs.folder, &outputs.toml, scenario));
    if placed.is_err() {
        let _ = std::fs::remove_file(&outputs.tsv);
    }
    placed
}

#[cfg(test)]
mod tests;

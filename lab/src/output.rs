//! The files `dks` writes for its user (`--json`, `--report`, `--log`): checked before anything
//! boots, written only at the end, each through a temporary beside it and a rename.
//!
//! - [`check_file`] and [`check_folder`] run before the first boot: a path that cannot be
//!   written (a missing folder, a file where a folder must be, a folder without write
//!   permission) is one usage error, and nothing has been built or booted. They prove that the
//!   folder takes a new file by creating one (exclusively, with a random name) and removing it.
//! - [`write_all`] writes several files all or nothing: the folders it was asked to create (a
//!   missing report folder) are created, every temporary is written, then each is renamed over
//!   its target. A failure before the renames leaves nothing behind (temporaries are removed,
//!   folders it created too). Any other missing folder is an error, not created.
//! - Temporaries are created by `tempfile` (`O_EXCL`, a random name), so a link planted where a
//!   temporary will go cannot redirect the write; the rename replaces a link at the target
//!   instead of writing through it. The final file gets the usual permissions (0666 less the
//!   umask), like any file a program creates.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::NamedTempFile;

/// Returns the folder a file path lives in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates a temporary beside `path` (exclusively, random name, hidden), for writing `path`.
fn temporary_beside(path: &Path) -> std::io::Result<NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(folder_of(path))
}

/// Checks that `folder` takes a new file: creates one there and removes it.
fn probe(folder: &Path) -> Result<(), String> {
    tempfile::Builder::new()
        .prefix(".dks-probe.")
        .tempfile_in(folder)
        .map(drop)
        .map_err(|error| format!("cannot create a file in {}: {error}", folder.display()))
}

/// Checks, before anything boots, that `path` (the value of `flag`) can be written as a file:
/// it names a file, not an existing folder, in an existing folder that takes new files.
pub fn check_file(flag: &str, path: &Path) -> Result<(), String> {
    let accepted = "accepted: a file in an existing folder you can write to";
    if path.file_name().is_none() || path.is_dir() {
        return Err(format!(
            "{flag} {}: not a file name; {accepted}",
            path.display()
        ));
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        let what = if folder.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(format!(
            "{flag} {}: {} {what}; {accepted}",
            path.display(),
            folder.display()
        ));
    }
    probe(folder).map_err(|problem| format!("{flag} {}: {problem}; {accepted}", path.display()))
}

/// Checks, before anything boots, that `dir` (the value of `flag`) can hold output files: an
/// existing folder that takes new files, or a path whose nearest existing ancestor is one (the
/// missing folders are created at the end).
pub fn check_folder(flag: &str, dir: &Path) -> Result<(), String> {
    let accepted = "accepted: a folder you can write to (created if missing)";
    let mut existing = dir;
    while !existing.as_os_str().is_empty() && !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    if existing.as_os_str().is_empty() {
        existing = Path::new(".");
    }
    if !existing.is_dir() {
        let what = if existing == dir {
            "exists and is not a folder".to_owned()
        } else {
            format!("{} is not a folder", existing.display())
        };
        return Err(format!("{flag} {}: {what}; {accepted}", dir.display()));
    }
    probe(existing).map_err(|problem| format!("{flag} {}: {problem}; {accepted}", dir.display()))
}

/// Writes `contents` to `path` through a temporary beside it and a rename, so `path` holds
/// either its old contents or all of the new ones.
pub fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_all(&[(path.to_owned(), contents.to_vec())], &[])
}

/// Writes every `(path, contents)`, all or nothing: creates `folders` (and their missing
/// ancestors) where missing, writes every temporary, then renames each over its target.
/// Returns the first error; before the renames, an error leaves nothing behind.
pub fn write_all(files: &[(PathBuf, Vec<u8>)], folders: &[&Path]) -> anyhow::Result<()> {
    let mut created: Vec<PathBuf> = Vec::new();
    let result = folders
        .iter()
        .try_for_each(|dir| create_folders(dir, &mut created))
        .and_then(|()| prepare(files))
        .and_then(|temporaries| {
            for (temporary, (path, _)) in temporaries.into_iter().zip(files) {
                temporary
                    .persist(path)
                    .map_err(|e| e.error)
                    .with_context(|| {
                        format!("cannot move the new {} into place", path.display())
                    })?;
            }
            Ok(())
        });
    if result.is_err() {
        // Folders this call created, deepest first; only empty ones go.
        for dir in created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// Writes every temporary.
fn prepare(files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<Vec<NamedTempFile>> {
    let mut temporaries = Vec::new();
    for (path, contents) in files {
        path.file_name()
            .with_context(|| format!("{} names no file", path.display()))?;
        let mut temporary = temporary_beside(path)
            .with_context(|| format!("cannot create a file beside {}", path.display()))?;
        temporary
            .write_all(contents)
            .and_then(|()| temporary.flush())
            .with_context(|| format!("cannot write {}", temporary.path().display()))?;
        temporaries.push(temporary);
    }
    Ok(temporaries)
}

/// Creates `dir` and its missing ancestors, recording each one created, outermost first.
fn create_folders(dir: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at.to_owned());
        at = at.parent().unwrap_or(Path::new(""));
    }
    for dir in missing.into_iter().rev() {
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        created.push(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

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
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("dks-output-test.")
            .tempdir()
            .unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_writes_replace_the_whole_file_and_leave_no_temporary() {
        let dir = scratch();
        let file = dir.path().join("out.json");
        std::fs::write(&file, "old").unwrap();
        write_atomically(&file, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["out.json"]);
        // An ordinary file's permissions: readable by others under the usual umask.
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    }

    #[test]
    fn a_link_at_the_target_is_replaced_not_written_through() {
        let dir = scratch();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let out = dir.path().join("out.json");
        symlink(&victim, &out).unwrap();
        write_atomically(&out, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&out).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
    }

    #[test]
    fn all_or_nothing_leaves_nothing_when_one_file_fails() {
        let dir = scratch();
        let blocker = dir.path().join("X");
        std::fs::write(&blocker, "a file").unwrap();
        let json = dir.path().join("out.json");
        let rep = blocker.join("rep");
        let error = write_all(
            &[
                (json.clone(), b"{}".to_vec()),
                (rep.join("index.html"), b"<html>".to_vec()),
            ],
            &[&rep],
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("X/rep"), "{error:#}");
        assert_eq!(entries(dir.path()), ["X"]);

        // Folders asked for are created, and removed again when a file fails.
        let ab = dir.path().join("a/b");
        let error = write_all(
            &[
                (ab.join("index.html"), b"<html>".to_vec()),
                (blocker.join("c"), b"x".to_vec()),
            ],
            &[&ab],
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("X"), "{error:#}");
        assert_eq!(entries(dir.path()), ["X"]);

        // A folder not asked for is not created.
        let error = write_atomically(&dir.path().join("gone/out.json"), b"x").unwrap_err();
        assert!(format!("{error:#}").contains("gone"), "{error:#}");
        assert_eq!(entries(dir.path()), ["X"]);

        let rep = dir.path().join("rep");
        write_all(
            &[
                (json.clone(), b"{}".to_vec()),
                (rep.join("index.html"), b"<html>".to_vec()),
            ],
            &[&rep],
        )
        .unwrap();
        assert_eq!(entries(dir.path()), ["X", "out.json", "rep"]);
        assert_eq!(entries(&dir.path().join("rep")), ["index.html"]);
    }

    #[test]
    fn unwritable_paths_are_refused_before_anything_runs() {
        let dir = scratch();
        let file = dir.path().join("X");
        std::fs::write(&file, "a file").unwrap();
        let cases = [
            (
                check_file("--json", &dir.path().join("no/such/out.json")),
                "does not exist",
            ),
            (
                check_file("--json", &file.join("out.json")),
                "is not a folder",
            ),
            (check_file("--json", dir.path()), "not a file name"),
            (
                check_folder("--report", &file),
                "exists and is not a folder",
            ),
            (
                check_folder("--report", &file.join("rep/deeper")),
                "is not a folder",
            ),
        ];
        for (result, expected) in cases {
            let error = result.unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains("accepted:"), "{error}");
        }
        check_file("--json", &dir.path().join("out.json")).unwrap();
        check_folder("--report", &dir.path().join("new/rep")).unwrap();
        check_folder("--report", dir.path()).unwrap();
        // The checks leave nothing behind.
        assert_eq!(entries(dir.path()), ["X"]);
    }
}

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

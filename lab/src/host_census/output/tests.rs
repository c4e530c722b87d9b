use std::os::unix::fs::symlink;

use super::*;

#[test]
fn outputs_are_checked_before_anything_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("host.tsv");
    let outputs = check(&out, "--out").unwrap();
    assert_eq!(outputs.toml, dir.path().join("host.toml"));
    assert_eq!(outputs.folder, dir.path());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left"
    );
    assert_eq!(
        check(Path::new("x.tsv"), "--out").unwrap().folder,
        Path::new(".")
    );

    std::fs::create_dir(dir.path().join("d.toml")).unwrap();
    for (out, expected) in [
        (dir.path().join("host.txt"), "not a .tsv file name"),
        (dir.path().join(".tsv"), "not a .tsv file name"),
        (dir.path().join("none/host.tsv"), "the folder"),
        (dir.path().join("d.toml"), "not a .tsv file name"),
        (dir.path().join("d.tsv"), "d.toml is a folder"),
        (PathBuf::from("/proc/host.tsv"), "is not writable"),
    ] {
        let error = check(&out, "--out").unwrap_err();
        assert!(error.contains(expected), "{out:?}: {error}");
        assert!(
            error.contains("accepted: a file name ending in .tsv"),
            "{error}"
        );
    }
}

#[test]
fn files_are_placed_whole_and_planted_links_are_replaced_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let outputs = check(&dir.path().join("c.tsv"), "--out").unwrap();
    symlink(&victim, &outputs.tsv).unwrap();
    symlink(&victim, &outputs.toml).unwrap();
    write(&outputs, "census\n", Some("scenario\n"), || Ok(())).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(&outputs.tsv).unwrap(), "census\n");
    assert_eq!(
        std::fs::read_to_string(&outputs.toml).unwrap(),
        "scenario\n"
    );
    assert!(!outputs.tsv.is_symlink());
    let mode = std::fs::metadata(&outputs.tsv)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o022, 0, "not writable by others: {mode:o}");
    // Only the three files: no temporary one is left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn a_refused_scenario_leaves_no_census_either() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = check(&dir.path().join("c.tsv"), "--out").unwrap();
    let error = write(&outputs, "census\n", Some("s"), || Err("bad".to_owned())).unwrap_err();
    assert_eq!(error, "bad");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Without a scenario, the census alone.
    write(&outputs, "census\n", None, || unreachable!()).unwrap();
    assert!(outputs.tsv.exists() && !outputs.toml.exists());
}

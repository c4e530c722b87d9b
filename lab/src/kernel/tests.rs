use super::*;

#[test]
fn the_executable_comes_from_the_kernel_s_artifact_message() {
    let messages = r#"{"reason":"compiler-artifact","target":{"name":"spin"},"executable":null}
{"reason":"build-script-executed","package_id":"x"}
not json at all
{"reason":"compiler-artifact","target":{"name":"dks-kernel"},"executable":"/r/target/x86_64-unknown-linux-gnu/kernel/dks-kernel"}
{"reason":"build-finished","success":true}"#;
    assert_eq!(
        executable_from_messages(messages),
        Some(PathBuf::from(
            "/r/target/x86_64-unknown-linux-gnu/kernel/dks-kernel"
        ))
    );
    assert_eq!(executable_from_messages(""), None);
}

#[test]
fn the_repo_root_holds_the_kernel() {
    assert!(repo_root().join("kernel").join("Cargo.toml").is_file());
}

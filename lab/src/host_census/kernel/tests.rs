use super::*;

const CONFIG: &str = "\
# Automatically generated file; DO NOT EDIT.
CONFIG_VMAP_STACK=y
CONFIG_INIT_STACK_NONE=y
# CONFIG_INIT_STACK_ALL_ZERO is not set
CONFIG_RANDOMIZE_KSTACK_OFFSET=y
# CONFIG_KSTACK_ERASE is not set
# CONFIG_KASAN is not set
CONFIG_VMAP_STACK_EXTRA=y
";

#[test]
fn options_are_read_as_set_unset_or_unknown() {
    assert_eq!(option(CONFIG, "VMAP_STACK"), Some("y"));
    assert_eq!(option(CONFIG, "INIT_STACK_ALL_ZERO"), Some("n"));
    assert_eq!(option(CONFIG, "INIT_STACK_ALL_PATTERN"), None);
    assert_eq!(option(CONFIG, "VMAP"), None);
    let config = (CONFIG.to_owned(), "/proc/config.gz".to_owned());
    assert_eq!(
        stack_options(Some(&config)),
        "VMAP_STACK=y INIT_STACK_NONE=y INIT_STACK_ALL_ZERO=n KSTACK_ERASE=n \
             RANDOMIZE_KSTACK_OFFSET=y KASAN=n (from /proc/config.gz)"
    );
    assert!(stack_options(None).starts_with("unknown"));
}

#[test]
fn kasan_doubles_the_stack() {
    assert_eq!(thread_size(Some(CONFIG)), 16384);
    assert_eq!(thread_size(None), 16384);
    assert_eq!(thread_size(Some("CONFIG_KASAN=y\n")), 32768);
}

#[test]
fn this_host_has_a_release() {
    assert!(!release().is_empty());
}

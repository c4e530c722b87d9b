//! The skeleton libbpf-cargo generated from `bpf/census.bpf.c` (build.rs): the compiled BPF
//! object, embedded, with typed handles to its programs, maps and global variables.
//!
//! Generated code, not ours to edit: it is the one place of this crate with `unsafe` (the
//! skeleton's calls into libbpf), hence the lints allowed here and only here.

#![allow(
    // Generated FFI glue around libbpf's skeleton API.
    unsafe_code,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc,
    // Generated names and layouts follow the C program, not Rust style.
    missing_debug_implementations,
    non_camel_case_types,
    unused_imports,
    dead_code,
    clippy::all,
    clippy::pedantic
)]

include!(concat!(env!("OUT_DIR"), "/census.skel.rs"));

//! Compiles `src/bpf/census.bpf.c` with clang for the BPF target and generates its libbpf-rs
//! skeleton (`$OUT_DIR/census.skel.rs`), included by `src/skeleton.rs`.

use std::path::PathBuf;

const SOURCE: &str = "src/bpf/census.bpf.c";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(error) = libbpf_cargo::SkeletonBuilder::new()
        .source(SOURCE)
        .clang_args(["-Isrc/bpf", "-Wall", "-Werror"])
        .build_and_generate(out.join("census.skel.rs"))
    {
        // One readable message: the usual cause is a missing clang.
        panic!(
            "cannot build the census BPF programs ({SOURCE}): {error:#}\n\
             They need clang (Debian: apt-get install clang); ./dks and scripts/test install it."
        );
    }
    println!("cargo:rerun-if-changed=src/bpf");
}

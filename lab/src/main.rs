//! `dks`: the host CLI of the dks testbed. See `dks --help` and `docs/lab.md`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    dks_lab::cli::main()
}

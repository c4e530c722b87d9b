use clap::CommandFactory;

use super::*;

#[test]
fn compare_defaults_to_the_census_and_every_implemented_policy() {
    let Command::Compare(args) = parse(&["compare"]).unwrap().command else {
        panic!("not compare");
    };
    assert_eq!(args.scenario, "linux-census");
    assert_eq!(args.policies, None);
    assert_eq!((args.cpus, args.timeout), (None, None));
    assert_eq!((args.json, args.report, args.log), (None, None, None));
    let Command::Compare(args) =
        parse(&["compare", "--policies", "guaranteed,static", "--cpus", "1"])
            .unwrap()
            .command
    else {
        panic!("not compare");
    };
    assert_eq!(
        args.policies,
        Some(PolicyList(vec![Policy::Guaranteed, Policy::Static]))
    );
    assert_eq!(args.cpus, Some(1));
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("dks").chain(args.iter().copied()))
}

#[test]
fn the_cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn run_defaults_and_kernel_args() {
    let Command::Run(args) = parse(&["run", "--", "test=all", "x=1"]).unwrap().command else {
        panic!("not run");
    };
    assert_eq!(args.cpus, 1);
    assert_eq!(args.memory, MemorySize::DEFAULT);
    assert_eq!(args.accel, Accel::Tcg);
    assert_eq!(args.timeout, 60);
    assert_eq!(args.kernel, None);
    assert_eq!(args.kernel_args, ["test=all", "x=1"]);
}

#[test]
fn bad_values_name_the_flag_and_the_accepted_values() {
    for (args, flag, accepted) in [
        (&["run", "--cpus", "9"][..], "--cpus", "1..=4"),
        (&["run", "--cpus", "0"][..], "--cpus", "1..=4"),
        (
            &["run", "--memory", "15Q"][..],
            "--memory",
            "suffix K, M or G",
        ),
        (&["run", "--accel", "hvf"][..], "--accel", "tcg, kvm"),
        (&["run", "--timeout", "0"][..], "--timeout", "1.."),
        (&["compare", "--cpus", "5"][..], "--cpus", "1..=4"),
        (
            &["compare", "--policies", "static,lazy"][..],
            "--policies",
            "unknown policy \"lazy\"; accepted: a comma-separated list of static, fault",
        ),
        (
            &["compare", "--policies", "fault,fault"][..],
            "--policies",
            "named twice",
        ),
        (
            &["compare", "--policies", ""][..],
            "--policies",
            "unknown policy \"\"",
        ),
        (&["compare", "--timeout", "0"][..], "--timeout", "1.."),
        (
            &["compare", "--max-stack", "16K,48K"][..],
            "--max-stack",
            "\"48K\" is not a stack size; accepted: a comma-separated list of 16K, 32K, 64K",
        ),
        (
            &["compare", "--max-stack", "64K,64K"][..],
            "--max-stack",
            "64K is named twice",
        ),
        (
            &["compare", "--max-stack", ""][..],
            "--max-stack",
            "\"\" is not a stack size",
        ),
    ] {
        let error = parse(args).unwrap_err().to_string();
        assert!(error.contains(flag), "{args:?}: {error}");
        assert!(error.contains(accepted), "{args:?}: {error}");
    }
}

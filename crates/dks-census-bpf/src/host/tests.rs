use super::*;

const ROOT: u64 = 0x0000_01ff_ffff_ffff;

fn facts(caps: Option<u64>, btf: BtfFacts) -> HostFacts {
    HostFacts {
        effective_caps: caps,
        btf,
    }
}

fn full_btf() -> BtfFacts {
    BtfFacts::Present {
        task_iterator: true,
        sched_switch: true,
    }
}

#[test]
fn capabilities_are_read_from_proc_status() {
    let status = "Name:\tdks\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
    assert_eq!(effective_caps(status), Some(ROOT));
    assert_eq!(effective_caps("Name:\tdks\n"), None);
    assert_eq!(effective_caps("CapEff:\tzz\n"), None);
    assert!(caps_suffice(ROOT));
    assert!(caps_suffice((1 << CAP_BPF) | (1 << CAP_PERFMON)));
    assert!(caps_suffice(1 << CAP_SYS_ADMIN));
    assert!(!caps_suffice(1 << CAP_BPF));
    assert!(!caps_suffice(1 << CAP_PERFMON));
    assert!(!caps_suffice(0));
}

#[test]
fn a_capable_host_with_btf_passes() {
    for program in [Program::Snapshot, Program::Exits] {
        assert_eq!(check(&facts(Some(ROOT), full_btf()), program), Ok(()));
    }
}

#[test]
fn every_missing_piece_is_named_with_how_to_get_it() {
    let no_btf = BtfFacts::Missing(PathBuf::from("/nope"));
    let cases = [
        (
            facts(Some(0), full_btf()),
            Program::Snapshot,
            "CAP_BPF and CAP_PERFMON",
        ),
        (facts(None, full_btf()), Program::Exits, "run it as root"),
        (
            facts(Some(ROOT), no_btf.clone()),
            Program::Snapshot,
            "CONFIG_DEBUG_INFO_BTF=y",
        ),
        (
            facts(
                Some(ROOT),
                BtfFacts::Unreadable("/b".into(), "bad magic".into()),
            ),
            Program::Exits,
            "cannot read the kernel's BTF /b: bad magic",
        ),
        (
            facts(
                Some(ROOT),
                BtfFacts::Present {
                    task_iterator: false,
                    sched_switch: true,
                },
            ),
            Program::Snapshot,
            "Linux 5.8 or later",
        ),
        (
            facts(
                Some(ROOT),
                BtfFacts::Present {
                    task_iterator: true,
                    sched_switch: false,
                },
            ),
            Program::Exits,
            "Linux 5.5 or later",
        ),
    ];
    for (facts, program, expected) in cases {
        let error = check(&facts, program).unwrap_err().to_string();
        assert!(error.contains(expected), "{facts:?}: {error}");
    }
    // Missing capabilities are named first: they are the usual problem.
    assert_eq!(
        check(&facts(Some(0), no_btf), Program::Snapshot),
        Err(HostError::NotPermitted)
    );
}

#[test]
fn load_errors_are_classified_by_their_errno() {
    let enosys = libbpf_rs::Error::from_raw_os_error(38);
    let error = classify(&enosys, "");
    assert!(matches!(error, HostError::BpfDisabled(_)), "{error:?}");
    assert!(error.to_string().contains("CONFIG_BPF_SYSCALL"), "{error}");
    let eperm = classify(
        &libbpf_rs::Error::from_raw_os_error(1),
        "libbpf: lockdown\n",
    );
    assert!(matches!(eperm, HostError::Refused(_)), "{eperm:?}");
    assert!(eperm.to_string().contains("lockdown"), "{eperm}");
    assert!(
        eperm.to_string().contains("libbpf said:\nlibbpf: lockdown"),
        "{eperm}"
    );
    let other = classify(&libbpf_rs::Error::from_raw_os_error(22), "");
    assert!(matches!(other, HostError::Failed(_)), "{other:?}");
}

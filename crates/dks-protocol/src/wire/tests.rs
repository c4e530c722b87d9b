use alloc::borrow::Cow;

use dks_core::Policy;

use super::*;
use crate::exit::ExitCode;
use crate::record::*;

extern crate std;

fn samples() -> std::vec::Vec<Record<'static>> {
    std::vec![
        Record::Boot(Boot {
            version: Cow::Borrowed("0.1.0"),
            cpus: 2,
            memory_kib: 524_288,
            frames_total: 130_000,
            frames_free: 120_000,
            cmdline: Cow::Borrowed("test=all"),
        }),
        Record::ConfigError(ConfigError {
            key: Cow::Borrowed("no_such_key"),
            value: Cow::Borrowed("1"),
            problem: Cow::Borrowed("unknown key"),
            accepted: Cow::Borrowed("test, inject, reserve"),
        }),
        Record::TestPlan(TestPlan { count: 7 }),
        Record::TestBegin(TestBegin {
            name: Cow::Borrowed("boot")
        }),
        Record::TestEnd(TestEnd {
            name: Cow::Borrowed("boot"),
            outcome: Outcome::Fail,
            detail: Cow::Borrowed("expected \"3\"\n\tgot 4 \u{1}"),
        }),
        Record::Exception(Exception {
            cpu: 1,
            vector: 14,
            error_code: Some(2),
            rip: u64::MAX,
            rsp: 0xffff_c900_0000_4000,
            rflags: 0x202,
            cr2: 0xdead_b000,
            registers: Registers {
                rax: 1,
                r15: 15,
                ..Registers::default()
            },
        }),
        Record::GuardHit(GuardHit {
            cpu: 0,
            task: Cow::Borrowed("worker-3"),
            address: 0xffff_c900_0000_0ff8,
            depth_bytes: 16_392,
            rip: 0x10_2345,
        }),
        Record::TrapStat(TrapStat {
            nmis: 10_000,
            nmis_nested: 12,
            machine_check_exceptions: 1,
            mce_corrected: 100,
            mce_recoverable: 1,
        }),
        Record::MachineCheck(MachineCheck {
            cpu: 1,
            bank: 3,
            status: 0x9000_0000_0000_0000,
            address: 0x1234_5000,
            misc: 0,
            mcg_status: 0,
            severity: Cow::Borrowed("corrected"),
            found_by: Cow::Borrowed("poll"),
        }),
        Record::SpawnFailure(SpawnFailure {
            group: Cow::Borrowed("deep-fault"),
            policy: Policy::Fault,
            created: 389,
            no_slot: 0,
            out_of_memory: 11,
            group_limit: 0,
            planned: 400,
            not_attempted: 0,
            out_of_heap: 3,
        }),
        Record::ThreadOverhead(ThreadOverhead {
            policy: Policy::Guaranteed,
            threads: 1_000_000,
            stack_bytes: 4_500_000_000,
            heap_bytes: 400_000_000,
            fpu_bytes: 52_800,
            fpu_areas: 100,
            slot_bytes: 40_000_000,
            page_table_bytes: 40_000_000,
        }),
        Record::MemoryBalance(MemoryBalance {
            frames_before: 2_000_000,
            frames_after: 1_990_000,
            heap_grown_frames: 10_000,
            slots_before: 9,
            slots_after: 9,
            stack_kib_before: 160,
            stack_kib_after: 160,
            heap_bytes_before: 300_000,
            heap_bytes_after: 310_000,
        }),
        Record::AdmissionStall(AdmissionStall {
            cpu: 1,
            task: Cow::Borrowed("deep-guaranteed"),
            policy: Policy::Guaranteed,
            need_pages: 3,
            magazine_pages: 0,
            waited_ms: 1_500,
            when: Cow::Borrowed("waiting"),
        }),
        Record::WorkloadStat(WorkloadStat {
            policy: Policy::Switch,
            threads_finished: 24,
            threads_idle: 0,
            paths: 48,
            frames_checked: 960,
            frames_corrupted: 0,
            checksum: u64::MAX - 3,
        }),
        Record::Panic(Panic {
            cpu: 0,
            message: Cow::Borrowed("index out of bounds"),
            file: Cow::Borrowed("kernel/src/main.rs"),
            line: 42,
        }),
        Record::Log(Log {
            text: Cow::Borrowed("hello")
        }),
        Record::StackFault(StackFault {
            cpu: 1,
            task: Cow::Borrowed("deep-7"),
            policy: Some(Policy::Fault),
            address: 0xffff_c900_0000_9ff8,
            depth_bytes: 8200,
            reason: Cow::Borrowed("magazine_empty"),
        }),
        Record::Vmstat(Vmstat {
            reason: Cow::Borrowed("end"),
            nr_kernel_stack_kb: -4,
            dks_faults: 10,
            dks_refills: 3,
            dks_refill_fail: 1,
            dks_fatal: 1,
            dks_reclaimed: 12,
            dks_reclaimed_dead_pressure: 2,
            dks_reclaimed_dead_asleep: 3,
            dks_admit_wait: 2,
            dks_guard_hits: 1,
            dks_reclaimed_accessed_clear: 7,
            dks_flushes_avoided: 3,
            dks_switch_faults: 0,
            dks_packs: 5,
            dks_restores: 4,
            dks_restore_wait: 1,
            dks_pack_csum_fail: 0,
            dks_pack_guard_catches: 0,
            nr_packed_threads: 1,
            nr_packed_bytes: 768,
            frames_free: 1000,
            frames_total: 2000,
            magazine_frames: 6,
            cached_stacks: 2,
            cached_pages: 5,
            quarantined_frames: 12,
            slots_in_use: 40,
        }),
        Record::PolicyStat(PolicyStat {
            policy: Policy::Guaranteed,
            threads_created: 100,
            threads_live: 3,
            stack_kib_now: 12,
            stack_kib_peak: 400,
            faults: 150,
            fatal: 0,
            refills: 20,
            refill_failures: 1,
            guard_hits: 0,
            admit_waits: 4,
            admit_wait_us_total: 12_000,
            admit_wait_us_max: 10_000,
            killed: 0,
            kernel_stops: 0,
            reclaimed: 5,
            reclaimed_dead: 5,
            reclaimed_accessed_clear: 0,
            flushes_avoided: 0,
            switch_faults: 0,
            running_extra_kib_peak: None,
            high_water_mean_bytes: 2100,
            high_water_max_bytes: 9000,
            packs: 90,
            restores: 80,
            restore_waits: 2,
            pack_checksum_failures: 0,
            pack_guard_catches: 0,
            packed_threads: 10,
            packed_kib: 9,
        }),
        Record::Cost(Cost {
            what: Cow::Borrowed("stack_fault"),
            policy: Some(Policy::Fault),
            samples: 1000,
            total: u64::MAX / 2,
            min: 1,
            median: 7,
            max: u64::MAX,
            instructions: true,
            log2_histogram: [u64::MAX; 24],
        }),
        Record::Sample(Sample {
            t_ms: 10,
            policy: Policy::Static,
            stack_kib: 1600,
            live_kib: 420,
            threads: 100,
        }),
        Record::ThreadPages(ThreadPages {
            policy: Policy::Switch,
            pages: 2,
            threads: 77,
        }),
        Record::Exit(Exit {
            code: ExitCode::Success,
            reason: Cow::Borrowed("all tests passed")
        }),
    ]
}

#[test]
fn encode_is_one_prefixed_line_of_json() {
    let mut buf = [0u8; MAX_LINE_BYTES];
    for record in samples() {
        let line = encode(&record, &mut buf).unwrap();
        assert!(line.starts_with(PREFIX));
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        let json: serde_json::Value = serde_json::from_str(&line[PREFIX.len()..]).unwrap();
        assert!(json.is_object());
    }
}

#[test]
fn kind_is_the_json_tag() {
    let mut buf = [0u8; MAX_LINE_BYTES];
    for record in samples() {
        let line = encode(&record, &mut buf).unwrap();
        let json: serde_json::Value = serde_json::from_str(&line[PREFIX.len()..]).unwrap();
        let tag = json.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(record.kind(), tag);
    }
}

#[test]
fn encode_reports_a_short_buffer() {
    let record = Record::Log(Log {
        text: Cow::Borrowed("a long enough text"),
    });
    for len in [0, 3, PREFIX.len(), PREFIX.len() + 10] {
        let mut buf = std::vec![0u8; len];
        assert_eq!(encode(&record, &mut buf), Err(EncodeError::TooLong));
    }
}

#[cfg(feature = "host")]
#[test]
fn every_record_round_trips() {
    let mut buf = [0u8; MAX_LINE_BYTES];
    for record in samples() {
        let line = encode(&record, &mut buf).unwrap();
        let back = parse_line(line).unwrap().unwrap();
        assert_eq!(back, record);
    }
}

#[cfg(feature = "host")]
#[test]
fn free_text_is_not_a_record_and_bad_records_are_errors() {
    assert!(parse_line("Booting dks...").is_none());
    assert!(parse_line("").is_none());
    assert!(matches!(
        parse_line("@dks/1 {\"nope\":1}"),
        Some(Err(ParseError::Json(_)))
    ));
    assert!(matches!(
        parse_line("@dks/1 not json"),
        Some(Err(ParseError::Json(_)))
    ));
    match parse_line("@dks/9 {}") {
        Some(Err(ParseError::Version(v))) => assert_eq!(v, "9"),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn policies_travel_as_their_names_and_none_as_empty() {
    let mut buf = [0u8; MAX_LINE_BYTES];
    let cost = |policy| {
        Record::Cost(Cost {
            what: Cow::Borrowed("direct_fault"),
            policy,
            samples: 1,
            total: 1,
            min: 1,
            median: 1,
            max: 1,
            instructions: true,
            log2_histogram: [0; 24],
        })
    };
    let line = encode(&cost(None), &mut buf).unwrap();
    assert!(line.contains("\"policy\":\"\""), "{line}");
    let line = encode(&cost(Some(Policy::Guaranteed)), &mut buf).unwrap();
    assert!(line.contains("\"policy\":\"guaranteed\""), "{line}");
}

#[cfg(feature = "host")]
#[test]
fn a_record_naming_an_unknown_policy_is_an_error() {
    let good = "@dks/1 {\"thread_pages\":{\"policy\":\"fault\",\"pages\":2,\"threads\":7}}";
    assert!(matches!(parse_line(good), Some(Ok(Record::ThreadPages(_)))));
    for bad in [
        "@dks/1 {\"thread_pages\":{\"policy\":\"lazy\",\"pages\":2,\"threads\":7}}",
        "@dks/1 {\"thread_pages\":{\"policy\":\"\",\"pages\":2,\"threads\":7}}",
        "@dks/1 {\"cost\":{\"what\":\"x\",\"policy\":\"lazy\",\"samples\":1,\"total\":1,\
         \"min\":1,\"max\":1,\"instructions\":true,\"log2_histogram\":\
         [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}",
    ] {
        match parse_line(bad) {
            Some(Err(ParseError::Json(e))) => {
                assert!(std::format!("{e}").contains("unknown variant"), "{e}");
            }
            other => panic!("expected a parse error for {bad}, got {other:?}"),
        }
    }
}

/// A `PolicyStat` whose every figure is as large as a run could make it (a million threads of
/// 64 KiB stacks, 2^40 events) still fits one line: the kernel drops a record that does not,
/// and `dks compare` would then have no figures for the policy.
#[test]
fn the_largest_policy_stat_fits_one_line() {
    let events = 1u64 << 40;
    let stat = Record::PolicyStat(PolicyStat {
        policy: Policy::Guaranteed,
        threads_created: events,
        threads_live: 1_000_000,
        stack_kib_now: 64 * 1_000_000,
        stack_kib_peak: 64 * 1_000_000,
        faults: events,
        fatal: events,
        refills: events,
        refill_failures: events,
        guard_hits: events,
        admit_waits: events,
        admit_wait_us_total: events,
        admit_wait_us_max: events,
        killed: events,
        kernel_stops: events,
        reclaimed: events,
        reclaimed_dead: events,
        reclaimed_accessed_clear: events,
        flushes_avoided: events,
        switch_faults: events,
        running_extra_kib_peak: Some(64 * 4),
        high_water_mean_bytes: 65_536,
        high_water_max_bytes: 65_536,
        packs: events,
        restores: events,
        restore_waits: events,
        pack_checksum_failures: events,
        pack_guard_catches: events,
        packed_threads: 1_000_000,
        packed_kib: 4 * 1_000_000,
    });
    let mut buf = [0u8; MAX_LINE_BYTES];
    let line = encode(&stat, &mut buf).unwrap();
    assert!(line.len() < MAX_LINE_BYTES, "{} bytes", line.len());
}

/// A `PolicyStat` from a kernel without `pack` (no pack fields) reads with them all 0.
#[cfg(feature = "host")]
#[test]
fn a_policy_stat_without_pack_fields_reads_them_as_zero() {
    let mut buf = [0u8; MAX_LINE_BYTES];
    let Record::PolicyStat(full) = &samples()
        .into_iter()
        .find(|r| matches!(r, Record::PolicyStat(_)))
        .unwrap()
    else {
        unreachable!()
    };
    let line = encode(&Record::PolicyStat(full.clone()), &mut buf).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&line[PREFIX.len()..]).unwrap();
    let fields = json["policy_stat"].as_object_mut().unwrap();
    for key in [
        "packs",
        "restores",
        "restore_waits",
        "pack_checksum_failures",
        "pack_guard_catches",
        "packed_threads",
        "packed_kib",
    ] {
        assert!(fields.remove(key).is_some(), "{key}");
    }
    let old = std::format!("{PREFIX}{json}");
    let Some(Ok(Record::PolicyStat(read))) = parse_line(&old) else {
        panic!("{old}");
    };
    let expected = PolicyStat {
        packs: 0,
        restores: 0,
        restore_waits: 0,
        pack_checksum_failures: 0,
        pack_guard_catches: 0,
        packed_threads: 0,
        packed_kib: 0,
        ..full.clone()
    };
    assert_eq!(read, expected);
}

use dks_protocol::exit::ExitCode;
use dks_protocol::record::{
    ConfigError, Exception, Exit, GuardHit, Log, Registers, TestBegin, TestEnd,
};

use super::*;

#[test]
fn records_render_on_one_readable_line() {
    let cases = [
        (
            Record::ConfigError(ConfigError {
                key: "no_such_key".into(),
                value: "1".into(),
                problem: "unknown key".into(),
                accepted: "test".into(),
            }),
            "[config error] no_such_key=1: unknown key (accepted: test)",
        ),
        (
            Record::TestEnd(TestEnd {
                name: "boot".into(),
                outcome: Outcome::Pass,
                detail: "".into(),
            }),
            "[test] boot ... pass",
        ),
        (
            Record::TestEnd(TestEnd {
                name: "frames".into(),
                outcome: Outcome::Fail,
                detail: "expected 1\ngot 2".into(),
            }),
            "[test] frames ... FAIL: expected 1\\ngot 2",
        ),
        (
            Record::Exception(Exception {
                cpu: 0,
                vector: 14,
                error_code: Some(2),
                rip: 0x1000,
                rsp: 0x2000,
                rflags: 0x202,
                cr2: 0xdead_b000,
                registers: Registers::default(),
            }),
            "[exception] #PF (page fault) cpu0 rip=0x1000 rsp=0x2000 rflags=0x202 cr2=0xdeadb000 error=0x2",
        ),
        (
            Record::GuardHit(GuardHit {
                cpu: 1,
                task: "worker".into(),
                address: 0xff8,
                depth_bytes: 16392,
                rip: 0x10,
            }),
            "[guard hit] cpu1 task worker overflowed its stack: address=0xff8 depth=16392 bytes rip=0x10",
        ),
        (
            Record::Exit(Exit {
                code: ExitCode::Success,
                reason: "done".into(),
            }),
            "[exit] success: done",
        ),
    ];
    for (record, expected) in cases {
        assert_eq!(super::record(&record), expected);
    }
}

#[test]
fn workload_and_cost_records_render_on_one_line() {
    use dks_protocol::record::{Cost, PolicyStat, Sample, StackFault, ThreadPages};
    let mut log2_histogram = [0; 24];
    log2_histogram[10] = 4;
    let cases = [
        (
            Record::StackFault(StackFault {
                cpu: 1,
                task: "w7".into(),
                policy: Some(Policy::Fault),
                address: 0x1000,
                depth_bytes: 8200,
                reason: "magazine_empty".into(),
            }),
            "[stack fault] cpu1 task w7 (policy fault) could not be served: magazine_empty at address=0x1000 depth=8200 bytes",
        ),
        (
            Record::Cost(Cost {
                what: "stack_fault".into(),
                policy: Some(Policy::Guaranteed),
                samples: 4,
                total: 4100,
                min: 1000,
                median: 1050,
                max: 1100,
                instructions: true,
                log2_histogram,
            }),
            "[cost] stack_fault (guaranteed): 1025 instructions per operation over 4 (min 1000, max 1100)",
        ),
        (
            Record::Sample(Sample {
                t_ms: 100,
                policy: Policy::Static,
                stack_kib: 64,
                live_kib: 20,
                threads: 4,
            }),
            "[sample] t=100 ms static: stack 64 KiB, live 20 KiB, 4 thread(s)",
        ),
        (
            Record::ThreadPages(ThreadPages {
                policy: Policy::Fault,
                pages: 3,
                threads: 4,
            }),
            "[thread pages] fault: 4 thread(s) peaked at 3 page(s)",
        ),
    ];
    for (record, expected) in cases {
        assert_eq!(super::record(&record), expected);
    }
    let stat_record = Record::PolicyStat(PolicyStat {
        policy: Policy::Fault,
        threads_created: 5,
        threads_live: 0,
        stack_kib_now: 0,
        stack_kib_peak: 48,
        faults: 8,
        fatal: 1,
        refills: 3,
        refill_failures: 1,
        guard_hits: 0,
        admit_waits: 0,
        admit_wait_us_total: 0,
        admit_wait_us_max: 0,
        killed: 1,
        kernel_stops: 0,
        reclaimed: 0,
        reclaimed_dead: 0,
        reclaimed_accessed_clear: 0,
        flushes_avoided: 0,
        switch_faults: 0,
        running_extra_kib_peak: None,
        high_water_mean_bytes: 0,
        high_water_max_bytes: 0,
        packs: 0,
        restores: 0,
        restore_waits: 0,
        pack_checksum_failures: 0,
        pack_guard_catches: 0,
        packed_threads: 0,
        packed_kib: 0,
    });
    let stat = super::record(&stat_record);
    assert!(stat.starts_with("[policy fault] threads 5 created, 0 live; stack 0 KiB now, 48 KiB peak; faults=8 fatal=1"), "{stat}");
    assert!(!stat.contains('\n'), "{stat}");
    assert!(
        !stat.contains("packs="),
        "no pack figures for fault: {stat}"
    );
    let Record::PolicyStat(fault) = &stat_record else {
        unreachable!()
    };
    let pack = super::record(&Record::PolicyStat(PolicyStat {
        policy: Policy::Pack,
        packs: 90,
        restores: 80,
        restore_waits: 2,
        packed_threads: 10,
        packed_kib: 9,
        ..fault.clone()
    }));
    assert!(
        pack.ends_with(
            "; packs=90 restores=80 restore_waits=2 csum_fail=0 guard_catches=0, 10 packed (9 KiB)"
        ),
        "{pack}"
    );
}

#[test]
fn vectors_have_mnemonics() {
    assert_eq!(vector_name(13), "#GP (general protection)");
    assert_eq!(vector_name(8), "#DF (double fault)");
    assert_eq!(vector_name(15), "reserved exception 15");
    assert_eq!(vector_name(32), "interrupt 32");
}

#[test]
fn malformed_lines_are_marked() {
    let rendered = line(&ConsoleLine::parse("@dks/1 nope"));
    assert!(
        rendered.starts_with("[malformed record] @dks/1 nope (expected value"),
        "{rendered}"
    );
}

#[test]
fn the_printer_joins_a_test_begin_and_end() {
    let begin = |name: &'static str| {
        ConsoleLine::Record(Record::TestBegin(TestBegin { name: name.into() }))
    };
    let end = |name: &'static str| {
        ConsoleLine::Record(Record::TestEnd(TestEnd {
            name: name.into(),
            outcome: Outcome::Pass,
            detail: "".into(),
        }))
    };
    let log = ConsoleLine::Record(Record::Log(Log { text: "x".into() }));
    let mut out = Vec::new();
    let mut printer = StreamPrinter::new(&mut out);
    for line in [begin("a"), end("a"), begin("b"), log, end("b"), begin("c")] {
        printer.print(&line).unwrap();
    }
    printer.finish().unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[test] a ... pass\n[test] b ...\n[log] x\n[test] b ... pass\n[test] c ...\n"
    );
}

//! One readable line per console line: `[test] boot ... pass`, `[exception] #PF (page fault)
//! cpu0 rip=0x...`, `[config error] no_such_key=1: unknown key (accepted: ...)`.
//!
//! [`line`] and [`record`] are stateless. [`StreamPrinter`] is what `dks run` uses while a boot
//! streams: it joins a test's begin and end on one line when nothing comes between them, the way
//! `cargo test` does.

use std::io::Write;

use dks_core::Policy;
use dks_protocol::record::{Outcome, PolicyStat, Record};

use crate::console::ConsoleLine;

/// Returns the x86 mnemonic and name of exception `vector`, e.g. `#PF (page fault)`.
pub fn vector_name(vector: u8) -> String {
    let known = match vector {
        0 => "#DE (divide error)",
        1 => "#DB (debug)",
        2 => "NMI",
        3 => "#BP (breakpoint)",
        4 => "#OF (overflow)",
        5 => "#BR (bound range exceeded)",
        6 => "#UD (invalid opcode)",
        7 => "#NM (device not available)",
        8 => "#DF (double fault)",
        9 => "coprocessor segment overrun",
        10 => "#TS (invalid TSS)",
        11 => "#NP (segment not present)",
        12 => "#SS (stack-segment fault)",
        13 => "#GP (general protection)",
        14 => "#PF (page fault)",
        16 => "#MF (x87 floating-point error)",
        17 => "#AC (alignment check)",
        18 => "#MC (machine check)",
        19 => "#XM (SIMD floating-point)",
        20 => "#VE (virtualization exception)",
        21 => "#CP (control protection)",
        28 => "#HV (hypervisor injection)",
        29 => "#VC (VMM communication)",
        30 => "#SX (security exception)",
        15 | 22..=27 | 31 => return format!("reserved exception {vector}"),
        _ => return format!("interrupt {vector}"),
    };
    known.to_owned()
}

/// Returns `text` on one line: control characters (newlines, tabs, ...) are escaped.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The `pack` figures of a `policy_stat` line: for `pack`, or any policy that has some (a bug
/// elsewhere); empty otherwise, so the other policies' lines stay as they were.
fn pack_figures(p: &PolicyStat) -> String {
    let any = [
        p.packs,
        p.restores,
        p.restore_waits,
        p.pack_checksum_failures,
        p.pack_guard_catches,
        p.packed_threads,
    ]
    .iter()
    .any(|&n| n > 0);
    if !any && p.policy != Policy::Pack {
        return String::new();
    }
    format!(
        "; packs={} restores={} restore_waits={} csum_fail={} guard_catches={}, {} packed \
         ({} KiB)",
        p.packs,
        p.restores,
        p.restore_waits,
        p.pack_checksum_failures,
        p.pack_guard_catches,
        p.packed_threads,
        p.packed_kib
    )
}

/// Returns `record` as one readable line.
pub fn record(record: &Record<'_>) -> String {
    match record {
        Record::Boot(b) => format!(
            "[boot] dks {} on {} cpu(s), {} MiB usable, {} of {} frames free, cmdline {:?}",
            one_line(&b.version),
            b.cpus,
            b.memory_kib / 1024,
            b.frames_free,
            b.frames_total,
            b.cmdline
        ),
        Record::ConfigError(c) => {
            let entry = if c.value.is_empty() {
                one_line(&c.key)
            } else {
                format!("{}={}", one_line(&c.key), one_line(&c.value))
            };
            format!(
                "[config error] {entry}: {} (accepted: {})",
                one_line(&c.problem),
                one_line(&c.accepted)
            )
        }
        Record::TestPlan(plan) => format!("[test plan] {} test(s)", plan.count),
        Record::TestBegin(t) => format!("[test] {} ...", one_line(&t.name)),
        Record::TestEnd(t) => format!("[test] {} ... {}", one_line(&t.name), test_result(t)),
        Record::Exception(e) => {
            let error_code = e
                .error_code
                .map(|code| format!(" error={code:#x}"))
                .unwrap_or_default();
            format!(
                "[exception] {} cpu{} rip={:#x} rsp={:#x} rflags={:#x} cr2={:#x}{error_code}",
                vector_name(e.vector),
                e.cpu,
                e.rip,
                e.rsp,
                e.rflags,
                e.cr2
            )
        }
        Record::GuardHit(g) => format!(
            "[guard hit] cpu{} task {} overflowed its stack: address={:#x} depth={} bytes rip={:#x}",
            g.cpu,
            one_line(&g.task),
            g.address,
            g.depth_bytes,
            g.rip
        ),
        Record::Panic(p) => format!(
            "[panic] cpu{} at {}:{}: {}",
            p.cpu,
            one_line(&p.file),
            p.line,
            one_line(&p.message)
        ),
        Record::Log(l) => format!("[log] {}", one_line(&l.text)),
        Record::WorkloadStat(w) => format!(
            "[workload {}] {} thread(s) finished ({} without a path), {} path(s); {} frame(s) \
             checked, {} corrupted; checksum {:#018x}",
            w.policy,
            w.threads_finished,
            w.threads_idle,
            w.paths,
            w.frames_checked,
            w.frames_corrupted,
            w.checksum
        ),
        Record::AdmissionStall(a) => format!(
            "[admission stall] cpu{} task {} (policy {}) {} for admission for {} ms: it may \
             still need {} stack page(s), the CPU's magazine holds {}",
            a.cpu,
            one_line(&a.task),
            a.policy,
            if a.when == "at_end" {
                "was never admitted; the run ended after waiting"
            } else {
                "has waited"
            },
            a.waited_ms,
            a.need_pages,
            a.magazine_pages
        ),
        Record::SpawnFailure(f) => {
            let planned = if f.planned > 0 {
                format!(" of the {} it runs at once", f.planned)
            } else {
                String::new()
            };
            let heap = if f.out_of_heap > 0 {
                format!(
                    " ({} of them because the kernel heap could not grow)",
                    f.out_of_heap
                )
            } else {
                String::new()
            };
            let untried = if f.not_attempted > 0 {
                format!(
                    "; memory ran out, so the {} thread(s) after that were not attempted",
                    f.not_attempted
                )
            } else {
                String::new()
            };
            format!(
                "[spawn failure] group {} (policy {}): {} thread(s) created{planned}, {} could \
                 not be: {} for want of memory{heap}, {} with every stack slot in use, {} over \
                 the group's limit{untried}",
                one_line(&f.group),
                f.policy,
                f.created,
                f.out_of_memory + f.no_slot + f.group_limit,
                f.out_of_memory,
                f.no_slot,
                f.group_limit
            )
        }
        Record::ThreadOverhead(o) => format!(
            "[overhead {}] {} thread(s): stack {} B, heap {} B, FPU areas {} ({} B), slot \
             metadata {} B, stack page tables {} B",
            o.policy,
            o.threads,
            o.stack_bytes,
            o.heap_bytes,
            o.fpu_areas,
            o.fpu_bytes,
            o.slot_bytes,
            o.page_table_bytes
        ),
        Record::MemoryBalance(b) => format!(
            "[memory balance] frames available {} -> {} (heap grew by {} frames), slots in use \
             {} -> {}, stack {} -> {} KiB, heap in use {} -> {} B",
            b.frames_before,
            b.frames_after,
            b.heap_grown_frames,
            b.slots_before,
            b.slots_after,
            b.stack_kib_before,
            b.stack_kib_after,
            b.heap_bytes_before,
            b.heap_bytes_after
        ),
        Record::TrapStat(t) => format!(
            "[traps] nmis={} (nested {}) machine_check_exceptions={} mce_corrected={} mce_recoverable={}",
            t.nmis, t.nmis_nested, t.machine_check_exceptions, t.mce_corrected, t.mce_recoverable
        ),
        Record::MachineCheck(m) => format!(
            "[machine check] cpu{} bank {} {} (found by {}) status={:#x} addr={:#x} misc={:#x} mcg_status={:#x}",
            m.cpu,
            m.bank,
            one_line(&m.severity),
            one_line(&m.found_by),
            m.status,
            m.address,
            m.misc,
            m.mcg_status
        ),
        Record::StackFault(f) => format!(
            "[stack fault] cpu{} task {} (policy {}) could not be served: {} at address={:#x} depth={} bytes",
            f.cpu,
            one_line(&f.task),
            f.policy.map_or("", Policy::name),
            one_line(&f.reason),
            f.address,
            f.depth_bytes
        ),
        Record::Vmstat(v) => format!(
            "[vmstat {}] nr_kernel_stack_kb={} dks_faults={} dks_refills={} dks_refill_fail={} \
             dks_fatal={} dks_reclaimed={} dks_admit_wait={} dks_guard_hits={} \
             dks_reclaimed_accessed_clear={} dks_flushes_avoided={} dks_switch_faults={} frames_free={}/{} \
             magazine_frames={} cached_stacks={} cached_pages={} quarantined_frames={} slots_in_use={}",
            one_line(&v.reason),
            v.nr_kernel_stack_kb,
            v.dks_faults,
            v.dks_refills,
            v.dks_refill_fail,
            v.dks_fatal,
            v.dks_reclaimed,
            v.dks_admit_wait,
            v.dks_guard_hits,
            v.dks_reclaimed_accessed_clear,
            v.dks_flushes_avoided,
            v.dks_switch_faults,
            v.frames_free,
            v.frames_total,
            v.magazine_frames,
            v.cached_stacks,
            v.cached_pages,
            v.quarantined_frames,
            v.slots_in_use
        ),
        Record::PolicyStat(p) => format!(
            "[policy {}] threads {} created, {} live; stack {} KiB now, {} KiB peak; faults={} \
             fatal={} refills={} refill_failures={} guard_hits={} admit_waits={} \
             (total {} us, max {} us) killed={} kernel_stops={} reclaimed={} \
             (accessed_clear={} flushes_avoided={}) switch_faults={}; high-water mark \
             mean {} max {} bytes{}",
            p.policy,
            p.threads_created,
            p.threads_live,
            p.stack_kib_now,
            p.stack_kib_peak,
            p.faults,
            p.fatal,
            p.refills,
            p.refill_failures,
            p.guard_hits,
            p.admit_waits,
            p.admit_wait_us_total,
            p.admit_wait_us_max,
            p.killed,
            p.kernel_stops,
            p.reclaimed,
            p.reclaimed_accessed_clear,
            p.flushes_avoided,
            p.switch_faults,
            p.high_water_mean_bytes,
            p.high_water_max_bytes,
            pack_figures(p)
        ),
        Record::Cost(c) => {
            let unit = if c.instructions {
                "instructions"
            } else {
                "ticks"
            };
            let per_op = if c.samples == 0 {
                "-".to_owned()
            } else {
                format!("{:.0}", c.total as f64 / c.samples as f64)
            };
            let policy = c.policy.map_or_else(String::new, |p| format!(" ({p})"));
            format!(
                "[cost] {}{policy}: {per_op} {unit} per operation over {} (min {}, max {})",
                one_line(&c.what),
                c.samples,
                c.min,
                c.max
            )
        }
        Record::Sample(s) => format!(
            "[sample] t={} ms {}: stack {} KiB, live {} KiB, {} thread(s)",
            s.t_ms, s.policy, s.stack_kib, s.live_kib, s.threads
        ),
        Record::ThreadPages(t) => format!(
            "[thread pages] {}: {} thread(s) peaked at {} page(s)",
            t.policy, t.threads, t.pages
        ),
        Record::Exit(e) => format!("[exit] {}: {}", e.code.name(), one_line(&e.reason)),
    }
}

fn test_result(end: &dks_protocol::record::TestEnd<'_>) -> String {
    match end.outcome {
        Outcome::Pass => "pass".to_owned(),
        Outcome::Fail => format!("FAIL: {}", one_line(&end.detail)),
    }
}

/// Returns a console line as one readable line: records rendered, free text as it came,
/// malformed records marked as such.
pub fn line(line: &ConsoleLine) -> String {
    match line {
        ConsoleLine::Record(r) => record(r),
        ConsoleLine::Text(text) => text.clone(),
        ConsoleLine::Malformed { line, error } => {
            let error = error.trim_start_matches("malformed record: ");
            format!("[malformed record] {} ({error})", one_line(line))
        }
    }
}

/// Writes console lines as they stream in, joining a test's begin and end on one line when
/// nothing comes between them.
#[derive(Debug)]
pub struct StreamPrinter<W: Write> {
    out: W,
    /// The test whose `[test] NAME ...` is printed without its line ending yet.
    open_test: Option<String>,
}

impl<W: Write> StreamPrinter<W> {
    /// Returns a printer writing to `out`.
    pub fn new(out: W) -> Self {
        StreamPrinter {
            out,
            open_test: None,
        }
    }

    /// Writes `line`.
    pub fn print(&mut self, line: &ConsoleLine) -> std::io::Result<()> {
        if let (Some(open), ConsoleLine::Record(Record::TestEnd(end))) = (&self.open_test, line)
            && *open == end.name
        {
            self.open_test = None;
            writeln!(self.out, " {}", test_result(end))?;
            return self.out.flush();
        }
        self.finish()?;
        match line {
            ConsoleLine::Record(Record::TestBegin(begin)) => {
                write!(self.out, "[test] {} ...", one_line(&begin.name))?;
                self.open_test = Some(begin.name.to_string());
            }
            other => writeln!(self.out, "{}", self::line(other))?,
        }
        self.out.flush()
    }

    /// Ends a line left open by a test's beginning.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if self.open_test.take().is_some() {
            writeln!(self.out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

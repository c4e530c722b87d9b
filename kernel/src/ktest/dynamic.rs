//! Tests of the dynamic stack policies in the kernel (issue: dynamic stacks, DESIGN §3-§7).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::cpu_ops::{self, IrqGuard};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes::{self, stack_pointer};
use crate::hw::trap_entry::{PREEMPT_FRAME_BYTES, bounce_target};
use crate::hw::{paging, stack_pages};
use crate::mm::frames::{self, Injection};
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy};
use crate::{lazy, trap_handlers, work, workload};

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "faults_per_depth",
        run: faults_per_depth,
    },
    KernelTest {
        name: "no_frame_in_two_stacks",
        run: no_frame_in_two_stacks,
    },
    KernelTest {
        name: "deep_preempted_migrated",
        run: deep_preempted_migrated,
    },
    KernelTest {
        name: "nonstack_fault_on_unpopulated_edge",
        run: nonstack_fault_on_unpopulated_edge,
    },
    KernelTest {
        name: "preempted_near_unpopulated_page",
        run: preempted_near_unpopulated_page,
    },
    KernelTest {
        name: "bounce_over_a_gap",
        run: bounce_over_a_gap,
    },
    KernelTest {
        name: "irqoff_deep_paths_fault_vs_guaranteed",
        run: irqoff_deep_paths_fault_vs_guaranteed,
    },
    KernelTest {
        name: "cached_stack_reads_zero",
        run: cached_stack_reads_zero,
    },
    KernelTest {
        name: "atomic_failures_fault_vs_guaranteed",
        run: atomic_failures_fault_vs_guaranteed,
    },
    KernelTest {
        name: "guard_hit_stops_the_thread",
        run: guard_hit_stops_the_thread,
    },
    KernelTest {
        name: "group_limit",
        run: group_limit,
    },
    KernelTest {
        name: "high_water_mark",
        run: high_water_mark,
    },
];

const DYNAMIC: [Policy; 2] = [Policy::Fault, Policy::Guaranteed];

fn spawn_with(
    name: &str,
    policy: Policy,
    pinned: Option<u32>,
    body: impl Fn() + Send + Sync + 'static,
) -> Result<Arc<Thread>, alloc::string::String> {
    sched::spawn(
        name,
        SpawnOptions {
            policy,
            pinned,
            ..SpawnOptions::default()
        },
        body,
    )
    .map_err(|e| alloc::format!("spawn {name}: {e:?}"))
}

fn me() -> Arc<Thread> {
    sched::current().expect("tests run in threads")
}

/// Recurses through 256-byte frames that touch their locals until the stack is `depth` bytes
/// deep (measured from `top`), then runs `at_bottom` there; returns a checksum of the frames,
/// verified on the way back up.
fn recurse(top: u64, depth: u64, level: u64, at_bottom: &mut dyn FnMut()) -> Result<u64, u64> {
    let mut frame = [0u64; 32];
    for (i, word) in frame.iter_mut().enumerate() {
        *word = level.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
    }
    black_box(&mut frame);
    let below = if top - stack_pointer() < depth {
        recurse(top, depth, level + 1, at_bottom)?
    } else {
        at_bottom();
        0
    };
    black_box(&frame);
    for (i, word) in frame.iter().enumerate() {
        if *word != level.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64 {
            return Err(level);
        }
    }
    Ok(below.wrapping_add(frame.iter().sum::<u64>()))
}

/// Recurses until the stack pointer is `window` bytes above a page boundary whose page below
/// is not populated yet, at least `min_depth` deep; then runs `at_edge` with that stack
/// pointer.
fn recurse_to_edge(
    top: u64,
    min_depth: u64,
    window: &core::ops::Range<u64>,
    level: u64,
    at_edge: &mut dyn FnMut(u64),
) -> u64 {
    let mut frame = [level; 24];
    black_box(&mut frame);
    let sp = stack_pointer();
    let above_boundary = sp % PAGE_BYTES;
    let next_page = (sp & !(PAGE_BYTES - 1)) - PAGE_BYTES;
    let deep_enough = top - sp >= min_depth;
    if deep_enough && window.contains(&above_boundary) && paging::translate(next_page).is_none() {
        at_edge(sp);
    } else {
        black_box(recurse_to_edge(top, min_depth, window, level + 1, at_edge));
    }
    black_box(&frame);
    frame[0]
}

/// As [`recurse_to_edge`] with the stack pointer 96 to 352 bytes above the boundary.
fn recurse_to_unpopulated_edge(
    top: u64,
    min_depth: u64,
    level: u64,
    at_edge: &mut dyn FnMut(u64),
) -> u64 {
    recurse_to_edge(top, min_depth, &(96..352), level, at_edge)
}

fn fresh_stacks() {
    work::drain();
    stacks::drain_caches();
}

fn faults_per_depth() -> TestResult {
    for policy in [Policy::Static, Policy::Fault, Policy::Guaranteed] {
        for pages in 1..=4u64 {
            fresh_stacks();
            let result = Arc::new([const { AtomicU64::new(u64::MAX) }; 4]);
            let out = result.clone();
            let thread = spawn_with("deep", policy, None, move || {
                let me = me();
                let start_pages = u64::from(me.stack.populated_pages());
                let start_faults = u64::from(me.stack.faults());
                // No interrupt may push the stack deeper than the recursion itself.
                let irq = IrqGuard::new();
                let top = me.stack.top();
                let ok = recurse(top, (pages - 1) * PAGE_BYTES + 2048, 0, &mut || {}).is_ok();
                drop(irq);
                out[0].store(start_pages, Ordering::Relaxed);
                out[1].store(
                    u64::from(me.stack.faults()) - start_faults,
                    Ordering::Relaxed,
                );
                out[2].store(u64::from(me.stack.populated_pages()), Ordering::Relaxed);
                out[3].store(u64::from(ok), Ordering::Relaxed);
            })?;
            sched::join(&thread);
            let [start, faults, populated, ok] =
                [0, 1, 2, 3].map(|i| result[i].load(Ordering::Relaxed));
            check_eq!(ok, 1, "frames intact, {} {} pages", policy.name(), pages);
            if policy == Policy::Static {
                check_eq!(start, 4, "static starts fully populated");
                check_eq!(faults, 0, "static, {} pages deep", pages);
                check_eq!(populated, 4);
            } else {
                check_eq!(start, 1, "{} starts with its top page", policy.name());
                check_eq!(faults, pages - 1, "{}, {} pages deep", policy.name(), pages);
                check_eq!(populated, pages, "{}", policy.name());
            }
        }
    }
    Ok(())
}

fn baseline() -> (u64, i64) {
    fresh_stacks();
    let stats = stacks::stats();
    (
        frames::stats().free + stats.magazine_frames,
        stats.counters.nr_kernel_stack_kb,
    )
}

fn no_frame_in_two_stacks() -> TestResult {
    let before = baseline();
    let asleep = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(WaitQueue::new());
    let mut threads = Vec::new();
    for i in 0..48u64 {
        let policy = [Policy::Static, Policy::Fault, Policy::Guaranteed][(i % 3) as usize];
        let (asleep, release, gate) = (asleep.clone(), release.clone(), gate.clone());
        threads.push(spawn_with("sleeper", policy, None, move || {
            let top = me().stack.top();
            let depth = 1000 + (i * 2777) % 13_000;
            let _ = recurse(top, depth, 0, &mut || {
                asleep.fetch_add(1, Ordering::AcqRel);
                gate.wait_until(|| release.load(Ordering::Acquire));
            });
        })?);
    }
    while asleep.load(Ordering::Acquire) < threads.len() {
        sched::sleep_ms(1);
    }
    let mut frames: Vec<(u64, u32)> = stacks::mapped_frames();
    let mapped = frames.len();
    frames.sort_unstable();
    let shared: Vec<&[(u64, u32)]> = frames.windows(2).filter(|w| w[0].0 == w[1].0).collect();
    release.store(true, Ordering::Release);
    gate.wake_all();
    for thread in &threads {
        sched::join(thread);
    }
    check!(
        shared.is_empty(),
        "{} frames mapped twice, first {:?}",
        shared.len(),
        shared.first()
    );
    check!(
        mapped >= threads.len(),
        "only {mapped} stack pages mapped for {} sleeping threads",
        threads.len()
    );
    let after = baseline();
    check_eq!(
        after.1,
        before.1,
        "nr_kernel_stack_kb after every thread exited"
    );
    check_eq!(
        after.0,
        before.0,
        "free frames (plus magazines) after every thread exited"
    );
    Ok(())
}

/// Where a test parks a thread to be preempted: 200 bytes above a page boundary whose page
/// below is unpopulated. Less than [`PREEMPT_FRAME_BYTES`] plus the red zone, so every
/// preemption there must populate that page first.
const PARK_ABOVE_BOUNDARY: u64 = 200;
const _: () = assert!(PARK_ABOVE_BOUNDARY < PREEMPT_FRAME_BYTES as u64 + 128);

fn deep_preempted_migrated() -> TestResult {
    fresh_stacks();
    let cpus = sched::online_cpus();
    let mut threads = Vec::new();
    let grew = Arc::new(AtomicU32::new(0));
    let preempted = Arc::new(AtomicU32::new(0));
    let broken = Arc::new(AtomicU32::new(0));
    for i in 0..(2 * cpus as usize + 2) {
        let policy = DYNAMIC[i % 2];
        let (grew, preempted, broken) = (grew.clone(), preempted.clone(), broken.clone());
        threads.push(spawn_with("deep-spinner", policy, None, move || {
            let me = me();
            let top = me.stack.top();
            let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
            let _ = recurse_to_edge(top, 6 * 1024, &(1200..2400), 0, &mut |sp| {
                let boundary = sp & !(PAGE_BYTES - 1);
                let park = boundary + PARK_ABOVE_BOUNDARY;
                // Parked with interrupts on and without touching the stack: the only way the
                // page below can get populated is a preemption (the others keep the CPU
                // busy), whose frames need it; had the entry moved them there unpopulated,
                // the kernel would stop ("nested page fault"). Then the thread moves to the
                // next CPU, deep as it is, and is parked there again.
                for half in 0..2 {
                    let (faults, switches) = (me.stack.faults(), me.switches());
                    let ticks = &trap_handlers::TIMER_TICKS[cpu_ops::id_hint() as usize];
                    let until = ticks.load(Ordering::Relaxed) + 6;
                    probes::spin_at(bottom, park, ticks, until);
                    if half == 0 && me.stack.faults() > faults {
                        grew.fetch_add(1, Ordering::Relaxed);
                    }
                    if me.switches() > switches {
                        preempted.fetch_add(1, Ordering::Relaxed);
                    }
                    if half == 0 && cpus > 1 {
                        sched::migrate_to((cpu_ops::id_hint() + 1) % cpus);
                    }
                }
            });
            if recurse(top, 3 * PAGE_BYTES + 512, 0, &mut || sched::yield_now()).is_err() {
                broken.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    check_eq!(
        broken.load(Ordering::Relaxed),
        0,
        "threads that found a frame changed after being preempted deep"
    );
    check!(
        threads.iter().all(|t| !t.was_killed()),
        "a thread was killed"
    );
    check!(
        preempted.load(Ordering::Relaxed) as usize >= threads.len(),
        "only {} of {} parkings were preempted",
        preempted.load(Ordering::Relaxed),
        2 * threads.len()
    );
    check_eq!(
        grew.load(Ordering::Relaxed) as usize,
        threads.len(),
        "threads whose stack grew while parked (only a preemption's population can do it)"
    );
    if cpus > 1 {
        let moved = threads
            .iter()
            .filter(|t| t.cpus_ran_on().count_ones() > 1)
            .count();
        check!(moved > 0, "no deep thread migrated");
    }
    Ok(())
}

fn nonstack_fault_on_unpopulated_edge() -> TestResult {
    fresh_stacks();
    let target = lazy::BOUNCED.start + 5 * PAGE_BYTES + 24;
    let result = Arc::new([const { AtomicU64::new(0) }; 3]);
    let out = result.clone();
    let thread = spawn_with("edge-reader", Policy::Fault, None, move || {
        let me = me();
        let top = me.stack.top();
        let _ = recurse_to_unpopulated_edge(top, 4 * 1024, 0, &mut |_| {
            let faults = me.stack.faults();
            let bounced = lazy::BOUNCED_FAULTS.load(Ordering::Relaxed);
            crate::hw::catch::lazy_write(target, 0x1234_5678);
            let value = crate::hw::catch::lazy_read(target);
            out[0].store(value, Ordering::Relaxed);
            out[1].store(u64::from(me.stack.faults() - faults), Ordering::Relaxed);
            out[2].store(
                lazy::BOUNCED_FAULTS.load(Ordering::Relaxed) - bounced,
                Ordering::Relaxed,
            );
        });
    })?;
    sched::join(&thread);
    lazy::reset(lazy::BOUNCED.start..lazy::BOUNCED.start + 16 * PAGE_BYTES);
    check!(!thread.was_killed(), "the thread was killed");
    check_eq!(result[0].load(Ordering::Relaxed), 0x1234_5678);
    check!(
        result[1].load(Ordering::Relaxed) >= 1,
        "the bounce did not populate the next stack page"
    );
    check!(
        result[2].load(Ordering::Relaxed) >= 1,
        "no bounced lazy fault was counted"
    );
    Ok(())
}

/// Finding 2 of "sound under fire": a `fault` thread with an empty magazine (and every atomic
/// allocation failing) is preempted with its stack pointer at several distances above an
/// unpopulated page. Where the preemption's frames (red zone, light frame, switch frame) need
/// that page, the preemption must stop the thread (interrupts were on: it holds nothing);
/// where they fit, it must preempt and resume it. Either way the kernel lives (a page fault
/// while the entry moves the frames would stop it, reported as nested). Before the fix, at
/// 344 bytes the handler chain below the moved frame faulted with interrupts off and stopped
/// the kernel.
fn preempted_near_unpopulated_page() -> TestResult {
    let cpu = sched::online_cpus() - 1;
    let fault = stacks::policy_counters(Policy::Fault);
    let mut outcomes = Vec::new();
    for offset in [200u64, 272, 344, 400, 464] {
        fresh_stacks();
        let ready = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        // boundary, switches before the parking, switches after it (0: never came back)
        let seen = Arc::new([const { AtomicU64::new(0) }; 3]);
        let victim = {
            let (ready, go, seen) = (ready.clone(), go.clone(), seen.clone());
            spawn_with("edge-victim", Policy::Fault, Some(cpu), move || {
                let me = me();
                let top = me.stack.top();
                let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
                let _ = recurse_to_edge(top, PAGE_BYTES, &(1200..2400), 0, &mut |sp| {
                    let boundary = sp & !(PAGE_BYTES - 1);
                    seen[0].store(boundary, Ordering::Relaxed);
                    ready.store(true, Ordering::Release);
                    // Preemptions here need no new page: the frames fit above the boundary.
                    while !go.load(Ordering::Acquire) {
                        core::hint::spin_loop();
                    }
                    seen[1].store(me.switches(), Ordering::Relaxed);
                    let ticks = &trap_handlers::TIMER_TICKS[cpu as usize];
                    let until = ticks.load(Ordering::Relaxed) + 8;
                    probes::spin_at(bottom, boundary + offset, ticks, until);
                    seen[2].store(me.switches(), Ordering::Relaxed);
                });
            })?
        };
        let spinner = {
            let stop = stop.clone();
            spawn_with("edge-spinner", Policy::Static, Some(cpu), move || {
                while !stop.load(Ordering::Acquire) {
                    core::hint::spin_loop();
                }
            })?
        };
        while !ready.load(Ordering::Acquire) {
            sched::sleep_ms(1);
        }
        let old = frames::set_injection(Injection::AllAtomic);
        drain_all_magazines()?;
        let fatal_before = fault.fatal.load(Ordering::Relaxed);
        go.store(true, Ordering::Release);
        sched::join(&victim);
        stop.store(true, Ordering::Release);
        sched::join(&spinner);
        frames::set_injection(old);
        let boundary = seen[0].load(Ordering::Relaxed);
        let lowest = bounce_target(boundary + offset) - PREEMPT_FRAME_BYTES as u64;
        outcomes.push((
            offset,
            lowest < boundary,
            victim.was_killed(),
            seen[2]
                .load(Ordering::Relaxed)
                .saturating_sub(seen[1].load(Ordering::Relaxed)),
            fault.fatal.load(Ordering::Relaxed) - fatal_before,
        ));
    }
    fresh_stacks();
    for &(offset, needs_page, killed, preemptions, fatal) in &outcomes {
        if needs_page {
            check!(
                killed && fatal == 1,
                "{offset} bytes above an unpopulated page: killed {killed}, fatal faults \
                 {fatal}; expected the preemption to stop the thread ({outcomes:?})"
            );
        } else {
            check!(
                !killed && fatal == 0 && preemptions >= 1,
                "{offset} bytes above an unpopulated page: killed {killed}, fatal faults \
                 {fatal}, preempted {preemptions} times; expected it preempted and resumed \
                 ({outcomes:?})"
            );
        }
    }
    check!(
        outcomes.iter().any(|o| o.1) && outcomes.iter().any(|o| !o.1),
        "the offsets do not cover both cases: {outcomes:?}"
    );
    Ok(())
}

/// Deep paths with interrupts off under a spin lock (the workload's interrupts-off sections):
/// under `fault` with empty magazines and failing atomic allocations, the stack fault is one
/// that would stop a real kernel: it is counted as a kernel stop, the section's lock is given
/// up (another thread takes it afterwards) and only the thread stops. Under `guaranteed`, with
/// half of all atomic allocations failing, the same paths never fault fatally.
fn irqoff_deep_paths_fault_vs_guaranteed() -> TestResult {
    const LOCK: usize = 5;
    let fault = stacks::policy_counters(Policy::Fault);
    let guaranteed = stacks::policy_counters(Policy::Guaranteed);
    let (stops_before, killed_before) = (
        fault.kernel_stops.load(Ordering::Relaxed),
        fault.killed.load(Ordering::Relaxed),
    );
    let guaranteed_fatal = guaranteed.fatal.load(Ordering::Relaxed);

    fresh_stacks();
    let old = frames::set_injection(Injection::AllAtomic);
    drain_all_magazines()?;
    let victim = spawn_with("irqoff-victim", Policy::Fault, None, || {
        workload::with_irqoff_section(LOCK, || {
            let _ = recurse(me().stack.top(), 3 * PAGE_BYTES, 0, &mut || {});
        });
    })?;
    sched::join(&victim);
    frames::set_injection(old);
    // The lock was given up: another thread takes it and finishes.
    let taken = Arc::new(AtomicBool::new(false));
    let next = {
        let taken = taken.clone();
        spawn_with("irqoff-next", Policy::Static, None, move || {
            workload::with_irqoff_section(LOCK, || taken.store(true, Ordering::Release));
        })?
    };
    sched::join(&next);

    // Created first (creation needs memory), then let go while allocations fail.
    let completed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let mut crowd = Vec::new();
    for round in 0..12u64 {
        let (completed, gate, open) = (completed.clone(), gate.clone(), open.clone());
        crowd.push(spawn_with(
            "irqoff-crowd",
            Policy::Guaranteed,
            None,
            move || {
                gate.wait_until(|| open.load(Ordering::Acquire));
                workload::with_irqoff_section(LOCK + (round as usize % 2), || {
                    let _ = recurse(me().stack.top(), 3 * PAGE_BYTES + 1024, round, &mut || {});
                });
                completed.fetch_add(1, Ordering::AcqRel);
            },
        )?);
    }
    drain_all_magazines()?;
    let old = frames::set_injection(Injection::Percent {
        percent: 50,
        seed: 11,
    });
    open.store(true, Ordering::Release);
    gate.wake_all();
    for thread in &crowd {
        sched::join(thread);
    }
    frames::set_injection(old);
    fresh_stacks();

    check!(
        victim.was_killed(),
        "the fault thread survived an empty magazine"
    );
    check_eq!(
        fault.kernel_stops.load(Ordering::Relaxed) - stops_before,
        1,
        "kernel stops counted for `fault`"
    );
    check_eq!(
        fault.killed.load(Ordering::Relaxed) - killed_before,
        0,
        "a kernel stop is not counted as an ordinary thread stop"
    );
    check!(
        taken.load(Ordering::Acquire),
        "the next thread never took the section lock"
    );
    check_eq!(completed.load(Ordering::Acquire), crowd.len());
    check_eq!(
        guaranteed.fatal.load(Ordering::Relaxed),
        guaranteed_fatal,
        "fatal faults under guaranteed with interrupts off"
    );
    check_eq!(guaranteed.kernel_stops.load(Ordering::Relaxed), 0);
    Ok(())
}

/// Finding 3 of "sound under fire": a bounce whose frame spans a populated page (the lowest)
/// and an unpopulated one above it (a gap: the thread touched a deeper byte first). The bounce
/// must populate every page of the span; before the fix it checked only the lowest, and the
/// copy faulted and looped forever with interrupts off.
fn bounce_over_a_gap() -> TestResult {
    fresh_stacks();
    let address = lazy::BOUNCED.start + 9 * PAGE_BYTES + 16;
    let result = Arc::new([const { AtomicU64::new(0) }; 4]);
    let out = result.clone();
    let thread = spawn_with("gap-reader", Policy::Fault, None, move || {
        let me = me();
        let top = me.stack.top();
        let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
        // Page 1 below the top page stays unpopulated, page 2 is touched: a gap.
        let gap = top - 2 * PAGE_BYTES;
        probes::touch_stack(bottom, gap - 64);
        let irq = IrqGuard::new();
        let gap_before = paging::translate(gap).is_some();
        let faults = me.stack.faults();
        // The bounce target is 172 bytes above the gap's lower boundary, the 688-byte frame
        // reaches into page 2.
        let value = probes::lazy_read_at(bottom, gap + 300, address);
        out[0].store(value, Ordering::Relaxed);
        out[1].store(u64::from(gap_before), Ordering::Relaxed);
        out[2].store(
            u64::from(paging::translate(gap).is_some()),
            Ordering::Relaxed,
        );
        out[3].store(u64::from(me.stack.faults() - faults), Ordering::Relaxed);
        drop(irq);
    })?;
    sched::join(&thread);
    lazy::reset(lazy::BOUNCED.start..lazy::BOUNCED.start + 16 * PAGE_BYTES);
    check!(!thread.was_killed(), "the thread was killed");
    check_eq!(
        result[0].load(Ordering::Relaxed),
        0,
        "a fresh lazy page reads 0"
    );
    check_eq!(result[1].load(Ordering::Relaxed), 0, "page 1 was a gap");
    check_eq!(
        result[2].load(Ordering::Relaxed),
        1,
        "page 1 populated by the bounce"
    );
    check!(
        result[3].load(Ordering::Relaxed) >= 1,
        "no stack page populated for the bounce"
    );
    Ok(())
}

fn cached_stack_reads_zero() -> TestResult {
    fresh_stacks();
    // Interrupts off: every step below runs on this CPU, so its caches are the ones used.
    let irq = IrqGuard::new();
    stacks::refill_magazine_here(&irq);
    let layout = stacks::layout();
    let page_addr = |s: &stacks::ThreadStack, page: u8| {
        layout
            .page_addr(s.slot(), dks_core::StackPage::new(page))
            .as_u64()
    };
    let mut checks = Vec::new();
    // A static stack is cached with its four pages; a dynamic one only while it holds just its
    // top page (a grown one is freed instead, checked below).
    for (policy, dirty_pages) in [(Policy::Static, 4u8), (Policy::Fault, 1u8)] {
        let first = stacks::create(policy).map_err(|e| alloc::format!("create: {e:?}"))?;
        for page in 0..dirty_pages {
            stack_pages::fill(page_addr(&first, page), 0xab);
        }
        let populated = first.populated_pages();
        stacks::release(&first);
        let second = stacks::create(policy).map_err(|e| alloc::format!("create again: {e:?}"))?;
        let zero: Vec<Option<bool>> = (0..4)
            .map(|p| paging::page_is_zero(page_addr(&second, p)))
            .collect();
        checks.push((
            policy,
            populated,
            first.slot() == second.slot(),
            second.populated_pages(),
            zero,
        ));
        stacks::release(&second);
    }
    // A dynamic stack that grew is not passed on: the next stack of its policy is lean.
    let grown = stacks::create(Policy::Fault).map_err(|e| alloc::format!("create: {e:?}"))?;
    for page in 0..3 {
        stack_pages::fill(page_addr(&grown, page), 0xab);
    }
    let grown_pages = grown.populated_pages();
    stacks::release(&grown);
    let after_grown = stacks::create(Policy::Fault).map_err(|e| alloc::format!("create: {e:?}"))?;
    let after_grown_pages = after_grown.populated_pages();
    stacks::release(&after_grown);
    drop(irq);
    fresh_stacks();
    check_eq!(grown_pages, 3);
    check_eq!(
        after_grown_pages,
        1,
        "a new fault stack after a grown one was released"
    );
    for (policy, populated, same_slot, reused_populated, zero) in checks {
        check_eq!(
            populated,
            if policy == Policy::Static { 4 } else { 1 },
            "{} dirty pages",
            policy.name()
        );
        check!(
            same_slot,
            "{} did not reuse its cached stack",
            policy.name()
        );
        check_eq!(
            reused_populated,
            populated,
            "{}: a reused stack keeps its populated pages",
            policy.name()
        );
        for (page, state) in zero.iter().enumerate() {
            if (page as u8) < populated {
                check_eq!(
                    *state,
                    Some(true),
                    "{} page {} of the reused stack",
                    policy.name(),
                    page
                );
            } else {
                check_eq!(
                    *state,
                    None,
                    "{} page {} stays unpopulated",
                    policy.name(),
                    page
                );
            }
        }
    }
    Ok(())
}

/// Drains every CPU's magazine (from a pinned static thread on each).
fn drain_all_magazines() -> TestResult {
    for cpu in 0..sched::online_cpus() {
        let thread = spawn_with("drain", Policy::Static, Some(cpu), || {
            let irq = IrqGuard::new();
            stacks::drain_magazine_here(&irq);
        })?;
        sched::join(&thread);
    }
    Ok(())
}

fn atomic_failures_fault_vs_guaranteed() -> TestResult {
    let fault = stacks::policy_counters(Policy::Fault);
    let guaranteed = stacks::policy_counters(Policy::Guaranteed);
    let fault_fatal = fault.fatal.load(Ordering::Relaxed);
    let guaranteed_fatal = guaranteed.fatal.load(Ordering::Relaxed);
    let guaranteed_waits = guaranteed.admit_waits.load(Ordering::Relaxed);

    // 1. Every atomic allocation fails and the magazines are empty: a `fault` thread's first
    //    stack fault finds nothing (the RFC's risk), a `guaranteed` one is not admitted.
    fresh_stacks();
    let old = frames::set_injection(Injection::AllAtomic);
    drain_all_magazines()?;
    let victim = spawn_with("rfc-victim", Policy::Fault, None, || {
        let _ = recurse(me().stack.top(), 3 * PAGE_BYTES, 0, &mut || {});
    })?;
    sched::join(&victim);
    let waiting_done = Arc::new(AtomicBool::new(false));
    let done = waiting_done.clone();
    let patient = spawn_with("patient", Policy::Guaranteed, None, move || {
        let _ = recurse(me().stack.top(), 3 * PAGE_BYTES, 0, &mut || {});
        done.store(true, Ordering::Release);
    })?;
    sched::sleep_ms(50);
    let ran_while_failing = waiting_done.load(Ordering::Acquire);
    frames::set_injection(Injection::None);
    sched::join(&patient);

    // 2. Half of all atomic allocations fail at random while 24 guaranteed threads go 4 pages
    //    deep, repeatedly: every one completes, none faults fatally.
    let gate = Arc::new(WaitQueue::new());
    let open = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut crowd = Vec::new();
    for _ in 0..24 {
        let (gate, open, completed) = (gate.clone(), open.clone(), completed.clone());
        crowd.push(spawn_with("crowd", Policy::Guaranteed, None, move || {
            gate.wait_until(|| open.load(Ordering::Acquire));
            let top = me().stack.top();
            for round in 0..4 {
                let _ = recurse(top, 3 * PAGE_BYTES + 1024, round, &mut || {
                    sched::yield_now()
                });
            }
            completed.fetch_add(1, Ordering::AcqRel);
        })?);
    }
    drain_all_magazines()?;
    frames::set_injection(Injection::Percent {
        percent: 50,
        seed: 7,
    });
    open.store(true, Ordering::Release);
    gate.wake_all();
    for thread in &crowd {
        sched::join(thread);
    }
    frames::set_injection(old);

    check!(
        victim.was_killed(),
        "the fault-policy thread survived an empty magazine"
    );
    check!(
        fault.fatal.load(Ordering::Relaxed) > fault_fatal,
        "no fatal fault counted for `fault`"
    );
    check!(
        !ran_while_failing,
        "the guaranteed thread ran although its need could not be covered"
    );
    check!(!patient.was_killed(), "the guaranteed thread was killed");
    check!(
        guaranteed.admit_waits.load(Ordering::Relaxed) > guaranteed_waits,
        "no admission wait counted"
    );
    check_eq!(
        completed.load(Ordering::Acquire),
        crowd.len(),
        "guaranteed threads that completed"
    );
    check!(
        crowd.iter().all(|t| !t.was_killed()),
        "a guaranteed thread was killed"
    );
    check_eq!(
        guaranteed.fatal.load(Ordering::Relaxed),
        guaranteed_fatal,
        "fatal faults under guaranteed"
    );
    Ok(())
}

/// Recurses with 512-byte frames until the stack overflows.
#[allow(unconditional_recursion)] // reason: overflowing the stack is the point
fn overflow(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    black_box(&mut frame);
    let below = overflow(black_box(depth + 1));
    black_box(&frame);
    below
}

fn guard_hit_stops_the_thread() -> TestResult {
    for policy in [Policy::Static, Policy::Fault, Policy::Guaranteed] {
        let hits = stacks::policy_counters(policy)
            .guard_hits
            .load(Ordering::Relaxed);
        let victim = spawn_with("overflow-victim", policy, None, || {
            black_box(overflow(0));
        })?;
        sched::join(&victim);
        check!(
            victim.was_killed(),
            "{}: the overflowing thread was not stopped",
            policy.name()
        );
        check_eq!(
            trap_handlers::LAST_GUARD_HIT_THREAD.load(Ordering::Relaxed),
            victim.id(),
            "{}: the guard hit names its thread",
            policy.name()
        );
        check_eq!(
            stacks::policy_counters(policy)
                .guard_hits
                .load(Ordering::Relaxed),
            hits + 1,
            "{} guard hits",
            policy.name()
        );
    }
    check!(
        cpu_ops::interrupts_enabled(),
        "interrupts stay on in the test thread"
    );
    Ok(())
}

fn group_limit() -> TestResult {
    fresh_stacks();
    let group = dks_core::GroupId::new(3);
    let charge = stacks::group(group);
    let limit = 6;
    charge.set_limit(Some(limit));
    let mut made = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        match stacks::create_in_group(Policy::Fault, group) {
            Ok(stack) => made.push(stack),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let charged_full = charge.charged_pages();
    let static_refused = stacks::create_in_group(Policy::Static, group).err();
    for stack in &made {
        stacks::release(stack);
    }
    charge.set_limit(None);
    fresh_stacks();
    check_eq!(
        made.len() as u64,
        limit,
        "one-page stacks created under a {}-page limit",
        limit
    );
    check_eq!(refused, Some(stacks::StackError::GroupLimit));
    check_eq!(charged_full, limit);
    check_eq!(
        static_refused,
        Some(stacks::StackError::GroupLimit),
        "a 4-page static stack over the limit"
    );
    check_eq!(
        charge.charged_pages(),
        0,
        "charge after every stack was released"
    );
    Ok(())
}

fn high_water_mark() -> TestResult {
    for policy in [Policy::Static, Policy::Fault, Policy::Guaranteed] {
        fresh_stacks();
        let marks = Arc::new([const { AtomicU64::new(0) }; 2]);
        let out = marks.clone();
        let thread = spawn_with("high-water", policy, None, move || {
            let me = me();
            let irq = IrqGuard::new();
            let _ = recurse(me.stack.top(), 9000, 0, &mut || {});
            drop(irq);
            out[0].store(me.stack.high_water_bytes(), Ordering::Relaxed);
            out[1].store(u64::from(me.stack.populated_pages()), Ordering::Relaxed);
        })?;
        sched::join(&thread);
        let (mark, pages) = (
            marks[0].load(Ordering::Relaxed),
            marks[1].load(Ordering::Relaxed),
        );
        check!(
            (9000..9000 + 1024).contains(&mark),
            "{}: high-water mark {mark} after going 9000 bytes deep",
            policy.name()
        );
        let expected_pages = if policy == Policy::Static { 4 } else { 3 };
        check_eq!(pages, expected_pages, "{} pages populated", policy.name());
    }
    Ok(())
}

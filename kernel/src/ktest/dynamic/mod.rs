//! Tests of the dynamic stack policies in the kernel (issue: dynamic stacks, DESIGN §3-§7).
//!
//! Split by what they exercise: [`memory`], the stack memory; [`edges`], traps at the edge
//! of the populated stack; [`failures`], running out of memory and overflowing; [`switch`],
//! the `switch` policy; [`reclaim`] and [`pack`], the policies that give pages back asleep.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;

use dks_core::{Counter, StackPage};

use super::{KernelTest, TestResult};
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::paging;
use crate::hw::probes::stack_pointer;
use crate::mm::frames;
use crate::sched::{self, SpawnOptions, State, Thread};
use crate::stacks::{self, Policy};
use crate::work;

mod edges;
mod failures;
mod memory;
mod pack;
mod reclaim;
mod switch;

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "faults_per_depth",
        run: memory::faults_per_depth,
    },
    KernelTest {
        name: "no_frame_in_two_stacks",
        run: memory::no_frame_in_two_stacks,
    },
    KernelTest {
        name: "deep_preempted_migrated",
        run: edges::deep_preempted_migrated,
    },
    KernelTest {
        name: "nonstack_fault_on_unpopulated_edge",
        run: edges::nonstack_fault_on_unpopulated_edge,
    },
    KernelTest {
        name: "preempted_near_unpopulated_page",
        run: edges::preempted_near_unpopulated_page,
    },
    KernelTest {
        name: "bounce_over_a_gap",
        run: edges::bounce_over_a_gap,
    },
    KernelTest {
        name: "irqoff_deep_paths_fault_vs_guaranteed",
        run: failures::irqoff_deep_paths_fault_vs_guaranteed,
    },
    KernelTest {
        name: "cached_stack_reads_zero",
        run: memory::cached_stack_reads_zero,
    },
    KernelTest {
        name: "atomic_failures_fault_vs_guaranteed",
        run: failures::atomic_failures_fault_vs_guaranteed,
    },
    KernelTest {
        name: "guard_hit_stops_the_thread",
        run: failures::guard_hit_stops_the_thread,
    },
    KernelTest {
        name: "group_limit",
        run: memory::group_limit,
    },
    KernelTest {
        name: "high_water_mark",
        run: memory::high_water_mark,
    },
    KernelTest {
        name: "reclaim_trims_exactly_below_saved_sp",
        run: reclaim::reclaim_trims_exactly_below_saved_sp,
    },
    KernelTest {
        name: "reclaim_wake_races_trim",
        run: reclaim::reclaim_wake_races_trim,
    },
    KernelTest {
        name: "reclaim_under_injected_failures",
        run: reclaim::reclaim_under_injected_failures,
    },
    KernelTest {
        name: "reclaim_trims_long_sleepers",
        run: reclaim::reclaim_trims_long_sleepers,
    },
    KernelTest {
        name: "pack_trims_long_sleepers_like_reclaim",
        run: reclaim::pack_trims_long_sleepers_like_reclaim,
    },
    KernelTest {
        name: "reclaim_trims_under_pressure",
        run: reclaim::reclaim_trims_under_pressure,
    },
    KernelTest {
        name: "reclaim_waits_for_the_flush",
        run: reclaim::reclaim_waits_for_the_flush,
    },
    KernelTest {
        name: "pack_resumes_every_byte",
        run: pack::pack_resumes_every_byte,
    },
    KernelTest {
        name: "pack_foreign_read_stops_the_reader",
        run: pack::pack_foreign_read_stops_the_reader,
    },
    KernelTest {
        name: "pack_restore_waits_for_memory",
        run: pack::pack_restore_waits_for_memory,
    },
    KernelTest {
        name: "pack_scanner_packs_long_sleepers",
        run: pack::pack_scanner_packs_long_sleepers,
    },
    KernelTest {
        name: "pack_corrupt_restore_stops_the_thread",
        run: pack::pack_corrupt_restore_stops_the_thread,
    },
    KernelTest {
        name: "pack_woken_thread_is_not_packed_again",
        run: pack::pack_woken_thread_is_not_packed_again,
    },
    KernelTest {
        name: "switch_deep_recursion_never_faults",
        run: switch::switch_deep_recursion_never_faults,
    },
    KernelTest {
        name: "switch_returns_untouched_pages",
        run: switch::switch_returns_untouched_pages,
    },
    KernelTest {
        name: "switch_under_failing_allocations",
        run: switch::switch_under_failing_allocations,
    },
];

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

/// The count of `event` for the workload threads of `policy` now.
fn events(policy: Policy, event: Counter) -> u64 {
    stacks::policy_totals(policy).events(event)
}

fn baseline() -> (u64, i64) {
    fresh_stacks();
    let stats = stacks::stats();
    (
        frames::stats().free + stats.magazine_frames,
        stats.counters.get(Counter::NrKernelStackKb),
    )
}

/// The pages of `thread`'s stack mapped now, as a bit set (bit `i`: `StackPage::new(i)`).
fn mapped_pages(thread: &Thread) -> u32 {
    let layout = stacks::layout();
    let slot = thread.stack.slot();
    (0..layout.stack_pages())
        .filter(|&i| {
            paging::translate(layout.page_addr(slot, StackPage::new(i)).as_u64()).is_some()
        })
        .fold(0, |set, i| set | 1 << i)
}

/// Waits until every thread of `threads` is `Blocked`, at most five seconds.
fn all_blocked(threads: &[Arc<Thread>]) -> TestResult {
    for _ in 0..5000 {
        if threads.iter().all(|t| t.state() == State::Blocked) {
            return Ok(());
        }
        sched::sleep_ms(1);
    }
    Err(alloc::format!(
        "sleepers not blocked after 5 s: {:?}",
        threads.iter().map(|t| t.state()).collect::<Vec<_>>()
    ))
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

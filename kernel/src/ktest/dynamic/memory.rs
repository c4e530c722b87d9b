//! Stack memory under the dynamic policies: faults per depth, no frame in two stacks, a
//! reused stack reads zero, group limits, high-water marks.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::{baseline, fresh_stacks, me, recurse, spawn_with};
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::{paging, stack_pages};
use crate::ktest::{TestResult, check, check_eq};
use crate::sched;
use crate::sched::wait::WaitQueue;
use crate::stacks::{self, Policy};

pub(super) fn faults_per_depth() -> TestResult {
    for policy in stacks::IMPLEMENTED {
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
            if policy == Policy::Static || policy.maps_all_while_running() {
                // `switch` maps every page before its thread runs: it never faults.
                check_eq!(start, 4, "{} starts fully populated", policy.name());
                check_eq!(faults, 0, "{}, {} pages deep", policy.name(), pages);
                check_eq!(populated, 4, "{}", policy.name());
            } else {
                check_eq!(start, 1, "{} starts with its top page", policy.name());
                check_eq!(faults, pages - 1, "{}, {} pages deep", policy.name(), pages);
                check_eq!(populated, pages, "{}", policy.name());
            }
        }
    }
    Ok(())
}

pub(super) fn no_frame_in_two_stacks() -> TestResult {
    let before = baseline();
    let asleep = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(WaitQueue::new());
    let mut threads = Vec::new();
    for i in 0..48u64 {
        let policy = stacks::IMPLEMENTED[i as usize % stacks::IMPLEMENTED.len()];
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

pub(super) fn cached_stack_reads_zero() -> TestResult {
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

pub(super) fn group_limit() -> TestResult {
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

pub(super) fn high_water_mark() -> TestResult {
    for policy in stacks::IMPLEMENTED {
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
        let expected_pages = if policy == Policy::Static || policy.maps_all_while_running() {
            4
        } else {
            3
        };
        check_eq!(pages, expected_pages, "{} pages populated", policy.name());
    }
    Ok(())
}

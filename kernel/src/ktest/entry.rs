//! Attacks on the trap entry: traps that would move frames onto a stack whose pointer has
//! already run into its guard page.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::kstacks;
use crate::hw::layout::PAGE_BYTES;
use crate::hw::{catch, probes};
use crate::lazy;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::{self, Policy};
use crate::trap_handlers::{IDLE_STACK_POINTER, LAST_GUARD_HIT_THREAD, PREEMPTIONS};

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "trap_with_stack_pointer_in_guard",
        run: trap_with_stack_pointer_in_guard,
    },
    KernelTest {
        name: "scheduler_stacks_have_guard_pages",
        run: scheduler_stacks_have_guard_pages,
    },
];

/// Every CPU's scheduler loop runs on a kernel stack with a guard page below it, so that an
/// overflow there is a guard hit the #PF handler reports (`crash=guard` shows the report), not
/// a silent write into whatever lies below. The stack is seen from the timer interrupts that
/// find a CPU idle. The boot CPU's loop used to run on the boot stack in `.bss`, right above
/// the boot page tables, with no guard.
fn scheduler_stacks_have_guard_pages() -> TestResult {
    let idle = &IDLE_STACK_POINTER[..sched::online_cpus() as usize];
    for rsp in idle {
        rsp.store(0, Ordering::Release);
    }
    // This thread sleeps: every CPU idles and takes timer interrupts there.
    for _ in 0..50 {
        if idle.iter().all(|rsp| rsp.load(Ordering::Acquire) != 0) {
            break;
        }
        sched::sleep_ms(10);
    }
    for (cpu, rsp) in idle.iter().enumerate() {
        let rsp = rsp.load(Ordering::Acquire);
        check!(rsp != 0, "CPU {cpu} never idled at a timer interrupt");
        let stack = kstacks::containing(rsp);
        check!(
            stack.is_some(),
            "CPU {cpu}'s scheduler loop runs at {rsp:#x}, not on a kernel stack with a guard page"
        );
        let bottom = stack.map_or(0, |s| s.bottom());
        check!(
            kstacks::guard_containing(bottom - 1).is_some(),
            "no guard page below CPU {cpu}'s scheduler stack at {bottom:#x}"
        );
    }
    Ok(())
}

/// What a parked thread is told to do.
const WAIT: u64 = 0;
const PREEMPT_IN_GUARD: u64 = 1;
const BOUNCE_IN_GUARD: u64 = 2;
const EXIT: u64 = 3;

/// Parked threads, each waiting for its order on its own queue (so that waking one leaves
/// the others' stacks untouched).
struct Park {
    orders: Vec<AtomicU64>,
    queues: Vec<WaitQueue>,
    parked: AtomicUsize,
    all_parked: WaitQueue,
    /// Set by an attacker that came back from its trap (it should have been stopped).
    survived: AtomicU64,
}

/// Bytes of a victim's stack top compared before and after an attack.
const WATCHED_BYTES: u64 = 1024;

/// A thread's stack pointer runs into its guard page (a function's `sub rsp` for a frame
/// that overflows, before its first store) and a trap arrives right there: a timer tick that
/// preempts it, or a lazy-region fault that moves to the interrupted stack. The bounce
/// target (the stack pointer minus the red zone) then lies below the guard page, in the top
/// page of the stack of the next slot down, which is populated when that slot's thread is
/// alive. The entry must see the guard page in the span and stop the thread, not move its
/// frames into another thread's stack. Before, only the span below the target was checked:
/// it was all present, and the preemption's 256 bytes (or the fault's 688-byte frame, and
/// the handler after it) were written into the neighbour's live frames.
fn trap_with_stack_pointer_in_guard() -> TestResult {
    const CANDIDATES: usize = 24;
    let cpu = sched::online_cpus() - 1;
    let options = SpawnOptions {
        policy: Policy::Static,
        pinned: Some(cpu),
        ..SpawnOptions::default()
    };
    let park = Arc::new(Park {
        orders: (0..CANDIDATES).map(|_| AtomicU64::new(WAIT)).collect(),
        queues: (0..CANDIDATES).map(|_| WaitQueue::new()).collect(),
        parked: AtomicUsize::new(0),
        all_parked: WaitQueue::new(),
        survived: AtomicU64::new(0),
    });
    let stop_rival = Arc::new(AtomicU64::new(0));
    let rival = {
        let stop = stop_rival.clone();
        sched::spawn("guard-rival", options, move || {
            while stop.load(Ordering::Acquire) == 0 {
                core::hint::spin_loop();
            }
        })
        .map_err(|e| alloc::format!("spawn: {e:?}"))?
    };
    let mut threads: Vec<Arc<Thread>> = Vec::new();
    for index in 0..CANDIDATES {
        let park = park.clone();
        let thread = sched::spawn("guard-candidate", options, move || candidate(&park, index))
            .map_err(|e| alloc::format!("spawn: {e:?}"))?;
        threads.push(thread);
    }
    park.all_parked
        .wait_until(|| park.parked.load(Ordering::Acquire) == CANDIDATES);

    // Two pairs of slots next to each other: the victim's stack top is the attacker's guard.
    let slot = |i: usize| threads[i].stack.slot().as_u32();
    let mut pairs = (0..CANDIDATES).flat_map(|v| {
        (0..CANDIDATES)
            .filter(move |&a| a != v)
            .map(move |a| (v, a))
    });
    let mut used = Vec::new();
    let mut pick = || {
        pairs.find(|&(v, a)| {
            slot(a) == slot(v) + 1 && !used.contains(&v) && !used.contains(&a) && {
                used.extend([v, a]);
                true
            }
        })
    };
    let attacks = [(PREEMPT_IN_GUARD, pick()), (BOUNCE_IN_GUARD, pick())];
    let mut failures = Vec::new();
    for (order, pair) in attacks {
        let Some((victim, attacker)) = pair else {
            failures.push(alloc::format!(
                "no two adjacent slots among {CANDIDATES} stacks"
            ));
            continue;
        };
        check_eq!(
            threads[victim].stack.top(),
            stacks::layout()
                .guard_page_addr(threads[attacker].stack.slot(), 0)
                .as_u64()
        );
        let before = read_top(&threads[victim]);
        let guard_hits_before = LAST_GUARD_HIT_THREAD.load(Ordering::Acquire);
        park.orders[attacker].store(order, Ordering::Release);
        park.queues[attacker].wake_all();
        sched::join(&threads[attacker]);
        let after = read_top(&threads[victim]);
        let what = if order == PREEMPT_IN_GUARD {
            "a preemption"
        } else {
            "a lazy-region fault"
        };
        if after != before {
            let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            // The victim's frames are corrupt: leave it parked (waking it would crash).
            return Err(alloc::format!(
                "{what} with the stack pointer in the guard page wrote {changed} words into \
                 the stack of the slot below (guard hit recorded: {})",
                LAST_GUARD_HIT_THREAD.load(Ordering::Acquire) != guard_hits_before
            ));
        }
        if !threads[attacker].was_killed()
            || LAST_GUARD_HIT_THREAD.load(Ordering::Acquire) != threads[attacker].id()
        {
            failures.push(alloc::format!(
                "{what} with the stack pointer in the guard page did not stop the thread as a \
                 guard hit (stopped: {}, came back: {})",
                threads[attacker].was_killed(),
                park.survived.load(Ordering::Acquire)
            ));
        }
    }
    for (order, queue) in park.orders.iter().zip(&park.queues) {
        order.store(EXIT, Ordering::Release);
        queue.wake_all();
    }
    for thread in &threads {
        sched::join(thread);
    }
    stop_rival.store(1, Ordering::Release);
    sched::join(&rival);
    check!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// A parked thread: waits for its order, carries it out, exits.
fn candidate(park: &Park, index: usize) {
    park.parked.fetch_add(1, Ordering::AcqRel);
    park.all_parked.wake_all();
    let mut order = WAIT;
    park.queues[index].wait_until(|| {
        order = park.orders[index].load(Ordering::Acquire);
        order != WAIT
    });
    let me = sched::current().expect("a thread");
    let bottom = stacks::layout().stack_bottom(me.stack.slot()).as_u64();
    let cpu = me.pinned().expect("pinned") as usize;
    drop(me);
    // 16 bytes above the guard page's bottom: the bounce target, 128 bytes lower, is in the
    // top page of the slot below.
    let sp = bottom - PAGE_BYTES + 16;
    match order {
        PREEMPT_IN_GUARD => {
            let preemptions = &PREEMPTIONS[cpu];
            let until = preemptions.load(Ordering::Acquire) + 2;
            probes::spin_in_guard(bottom, sp, preemptions, until);
            park.survived.fetch_add(1, Ordering::AcqRel);
        }
        BOUNCE_IN_GUARD => {
            let address = lazy::BOUNCED.start + 11 * PAGE_BYTES + 8;
            let _ = probes::lazy_read_in_guard(bottom, sp, address);
            lazy::reset(
                lazy::BOUNCED.start + 11 * PAGE_BYTES..lazy::BOUNCED.start + 12 * PAGE_BYTES,
            );
            park.survived.fetch_add(1, Ordering::AcqRel);
        }
        _ => {}
    }
}

/// The top [`WATCHED_BYTES`] of a (parked) thread's stack, read word by word.
fn read_top(thread: &Thread) -> Vec<u64> {
    let top = thread.stack.top();
    let irq = IrqGuard::new();
    (top - WATCHED_BYTES..top)
        .step_by(8)
        .map(|address| catch::probe_read(&irq, address).unwrap_or(u64::MAX))
        .collect()
}

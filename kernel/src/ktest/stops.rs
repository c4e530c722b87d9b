//! Tests of stopping threads (a fatal stack fault or guard hit stops only the thread): in the
//! window of a wait, holding a wake-up, and that what stopped threads owned comes back.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::sched::spawn;
use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::layout::PAGE_BYTES;
use crate::sched::wait::{HookTarget, WaitPoint, WaitQueue};
use crate::sched::{self, SpawnOptions, Thread};
use crate::stacks::Policy;
use crate::{stacks, work};

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "stop_after_wake_in_wait_window",
        run: stop_after_wake_in_wait_window,
    },
    KernelTest {
        name: "stop_while_registered_in_wait_window",
        run: stop_while_registered_in_wait_window,
    },
    KernelTest {
        name: "stop_holding_a_wake_up",
        run: stop_holding_a_wake_up,
    },
    KernelTest {
        name: "stopped_threads_return_the_heap",
        run: stopped_threads_return_the_heap,
    },
    KernelTest {
        name: "workload_with_stops_returns_the_heap",
        run: workload_with_stops_returns_the_heap,
    },
];

/// Writes into the calling thread's guard page: the fault path stops the thread exactly as it
/// stops any guard hit. (From a shallow stack: a recursion down to the guard page would let
/// timer interrupts land on a nearly full stack, which is another matter.)
fn hit_guard() {
    let bottom = {
        let me = sched::current().expect("a thread");
        me.stack.bottom()
    };
    crate::hw::probes::touch_guard(bottom);
}

/// Waits for `victim`, which arranged to be stopped in its wait window, waking `queue` now
/// and then: a timer interrupt may preempt it in the window before its hook ran, and a
/// thread preempted there is asleep (it is registered) until a wake-up.
fn join_waking(victim: &Thread, queue: &WaitQueue) {
    while !victim.has_exited() {
        queue.wake_one();
        sched::sleep_ms(1);
    }
    sched::join(victim);
}

/// Gives every CPU's scheduler time to pick whatever its run queue holds.
fn let_schedulers_run() {
    for _ in 0..50 {
        sched::yield_now();
    }
    sched::sleep_ms(30);
}

/// A thread registered as a waiter (`wait_until`'s window: interrupts on, not yet switched
/// away) is woken there, as a waker on another CPU may do, and then stopped by a guard hit:
/// nothing may run it again.
fn stop_after_wake_in_wait_window() -> TestResult {
    let stale_before = sched::STALE_ENTRIES.load(Ordering::Relaxed);
    let queue = Arc::new(WaitQueue::new());
    let victim = {
        let queue = queue.clone();
        spawn("window-victim", move || {
            let id = sched::current().expect("a thread").id();
            let waker = queue.clone();
            sched::wait::arm_wait_hook(
                HookTarget::Thread(id),
                WaitPoint::Registered,
                1,
                Arc::new(move || {
                    // A waker on another CPU may do this while the thread is still here.
                    waker.wake_one();
                    hit_guard();
                }),
            );
            queue.wait_until(|| false);
        })?
    };
    join_waking(&victim, &queue);
    // It has exited: from now on nothing may switch to it.
    let switches = victim.switches();
    let_schedulers_run();
    check!(victim.was_killed(), "the victim was not stopped");
    check_eq!(victim.state(), sched::State::Exited);
    check_eq!(
        victim.switches(),
        switches,
        "times the victim was switched in, after it exited and now"
    );
    check!(
        !sched::queued_anywhere(&victim),
        "a run queue still holds the stopped thread"
    );
    check_eq!(
        sched::STALE_ENTRIES.load(Ordering::Relaxed),
        stale_before,
        "stale run-queue entries met by the schedulers"
    );
    check!(
        queue.is_empty(),
        "the wait queue still holds the stopped thread"
    );
    Ok(())
}

/// A thread stopped while registered (not woken) must not take the wake-up of a live waiter
/// registered after it.
fn stop_while_registered_in_wait_window() -> TestResult {
    let queue = Arc::new(WaitQueue::new());
    let go = Arc::new(AtomicBool::new(false));
    let victim = {
        let queue = queue.clone();
        spawn("window-victim", move || {
            let me = sched::current().expect("a thread").id();
            sched::wait::arm_wait_hook(
                HookTarget::Thread(me),
                WaitPoint::Registered,
                1,
                Arc::new(hit_guard),
            );
            queue.wait_until(|| false);
        })?
    };
    join_waking(&victim, &queue);
    let woken = Arc::new(AtomicBool::new(false));
    let waiting = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (queue, go, woken, waiting) =
            (queue.clone(), go.clone(), woken.clone(), waiting.clone());
        spawn("live-waiter", move || {
            waiting.store(true, Ordering::Release);
            queue.wait_until(|| go.load(Ordering::Acquire));
            woken.store(true, Ordering::Release);
        })?
    };
    // Let the live waiter register behind the stopped one.
    while !waiting.load(Ordering::Acquire) {
        sched::yield_now();
    }
    sched::sleep_ms(10);
    go.store(true, Ordering::Release);
    queue.wake_one();
    for _ in 0..20 {
        if woken.load(Ordering::Acquire) {
            break;
        }
        sched::sleep_ms(5);
    }
    let delivered = woken.load(Ordering::Acquire);
    queue.wake_all();
    sched::join(&waiter);
    check!(victim.was_killed(), "the victim was not stopped");
    check!(
        delivered,
        "the one wake-up did not reach the live waiter (a stopped waiter took it)"
    );
    check!(queue.is_empty(), "the wait queue still holds a thread");
    Ok(())
}

/// A thread woken from its wait (it holds the wake-up for a token it has not yet checked
/// for) and stopped before it checks must pass the wake-up on to the next waiter, which the
/// token is then for.
fn stop_holding_a_wake_up() -> TestResult {
    let queue = Arc::new(WaitQueue::new());
    let tokens = Arc::new(AtomicUsize::new(0));
    let take = |tokens: &AtomicUsize| {
        tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1))
            .is_ok()
    };
    let victim = {
        let (queue, tokens) = (queue.clone(), tokens.clone());
        spawn("woken-victim", move || {
            let me = sched::current().expect("a thread").id();
            sched::wait::arm_wait_hook(
                HookTarget::Thread(me),
                WaitPoint::Woken,
                1,
                Arc::new(hit_guard),
            );
            queue.wait_until(|| take(&tokens));
        })?
    };
    while queue.is_empty() {
        sched::yield_now();
    }
    let woken = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (queue, tokens, woken) = (queue.clone(), tokens.clone(), woken.clone());
        spawn("live-waiter", move || {
            queue.wait_until(|| take(&tokens));
            woken.store(true, Ordering::Release);
        })?
    };
    while queue.len() < 2 {
        sched::yield_now();
    }
    // One token, one wake-up: it goes to the first waiter, the victim, which is stopped
    // before it can look for the token.
    tokens.fetch_add(1, Ordering::AcqRel);
    queue.wake_one();
    sched::join(&victim);
    for _ in 0..20 {
        if woken.load(Ordering::Acquire) {
            break;
        }
        sched::sleep_ms(5);
    }
    let delivered = woken.load(Ordering::Acquire);
    if !delivered {
        tokens.fetch_add(1, Ordering::AcqRel);
        queue.wake_all();
    }
    sched::join(&waiter);
    check!(victim.was_killed(), "the victim was not stopped");
    check!(
        delivered,
        "the wake-up the stopped thread had received was lost: the token's waiter still sleeps"
    );
    Ok(())
}

/// Counts its drops.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Threads whose captures own heap memory are stopped by guard hits, under every policy: the
/// captures are dropped (each once), and the heap in use returns to its baseline.
fn stopped_threads_return_the_heap() -> TestResult {
    const PER_WAVE: usize = 100;
    const PAYLOAD_BYTES: usize = 1024;
    let policies = stacks::IMPLEMENTED;
    let wave = |n: usize| -> Result<(usize, Vec<Arc<Thread>>), alloc::string::String> {
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for i in 0..n {
            let counter = DropCounter(dropped.clone());
            let payload = alloc::vec![i as u8; PAYLOAD_BYTES];
            let options = SpawnOptions {
                policy: policies[i % policies.len()],
                ..SpawnOptions::default()
            };
            let thread = sched::spawn("stopped", options, move || {
                core::hint::black_box((&counter, &payload));
                hit_guard();
            })
            .map_err(|e| alloc::format!("spawn: {e:?}"))?;
            threads.push(thread);
        }
        for thread in &threads {
            sched::join(thread);
        }
        work::drain();
        Ok((dropped.load(Ordering::Acquire), threads))
    };
    // A first wave sizes the scheduler's and the reaper's queues.
    let (_, warm_up) = wave(PER_WAVE)?;
    drop(warm_up);
    stacks::drain_caches();
    let heap_before = crate::hw::heap::usage().0;
    let mut stopped = 0;
    let mut dropped = 0;
    for _ in 0..3 {
        let (drops, threads) = wave(PER_WAVE)?;
        dropped += drops;
        stopped += threads.iter().filter(|t| t.was_killed()).count();
    }
    stacks::drain_caches();
    let heap_after = crate::hw::heap::usage().0;
    check_eq!(stopped, 3 * PER_WAVE, "threads stopped by their guard hit");
    check_eq!(dropped, 3 * PER_WAVE, "captures dropped");
    // Each stopped thread used to leave its captures (here more than 1 KiB) behind.
    let growth = heap_after.saturating_sub(heap_before);
    check!(
        growth < 8 * 1024,
        "the heap grew by {growth} bytes over {} stopped threads",
        3 * PER_WAVE
    );
    Ok(())
}

/// A workload whose threads block at the bottom of their paths, waiting for a peer; the
/// first waits of most of them are hooked to hit the guard page (from wherever their stack
/// pointer is, so that no interrupt meets a nearly full stack): they are stopped in the
/// middle of the workload's code. The heap in use after the run is back where it was.
fn workload_with_stops_returns_the_heap() -> TestResult {
    use dks_protocol::scenario::{
        Bucket, GroupPlan, Histogram, Lifetime, PLAN_VERSION, Plan, Wake,
    };
    const GROUP: &str = "stopped-waiters";
    const THREADS: u32 = 60;
    const STOPS: u32 = 40;
    let fixed = |bytes: u32| Histogram {
        buckets: alloc::vec![
            Bucket {
                up_to_bytes: bytes - 1,
                weight: 0,
            },
            Bucket {
                up_to_bytes: bytes,
                weight: 1,
            },
        ],
    };
    let plan = Plan {
        version: PLAN_VERSION,
        name: "stops".into(),
        seed: 3,
        duration_ms: 200,
        sample_ms: 50,
        max_stack_bytes: u32::from(stacks::layout().stack_pages()) * PAGE_BYTES as u32,
        groups: alloc::vec![GroupPlan {
            name: GROUP.into(),
            policy: Policy::Static,
            threads: THREADS,
            lifetime: Lifetime::Short,
            calls: 2,
            respawn: false,
            depth: fixed(3000),
            sleep_depth: fixed(700),
            block_percent: 100,
            sleep_ms: 2,
            wake: Wake::Peer,
            irqoff_percent: 0,
        }],
    };
    let killed = || stacks::policy_totals(Policy::Static).threads_stopped;
    let run_stopping = |plan: dks_protocol::scenario::Plan| -> Result<u32, alloc::string::String> {
        sched::wait::arm_wait_hook(
            HookTarget::Named(GROUP),
            WaitPoint::Registered,
            STOPS,
            Arc::new(hit_guard),
        );
        crate::workload::run(plan);
        let unused = sched::wait::disarm_wait_hook();
        work::drain();
        stacks::drain_caches();
        Ok(STOPS - unused)
    };
    // A first run sizes the queues and lists the workload leaves behind by design.
    run_stopping(plan.clone())?;
    let heap_before = crate::hw::heap::usage().0;
    let killed_before = killed();
    let hooked = run_stopping(plan)?;
    let heap_after = crate::hw::heap::usage().0;
    let stopped = killed() - killed_before;
    check_eq!(hooked, STOPS, "waits that ran the stopping hook");
    check_eq!(stopped, u64::from(STOPS), "workload threads stopped");
    let growth = heap_after.saturating_sub(heap_before);
    check!(
        growth < 16 * 1024,
        "the heap grew by {growth} bytes over a run that stopped {stopped} threads"
    );
    Ok(())
}

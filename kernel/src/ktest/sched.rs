//! Tests of threads, scheduling, wait queues, SMP and TLB shootdown (stopping threads: `stops`).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dks_core::Counter;

use super::{KernelTest, TestResult, check, check_eq};
use crate::hw::catch;
use crate::hw::cpu_ops::IrqGuard;
use crate::hw::layout::{LAZY_REGION_BASE, PAGE_BYTES};
use crate::hw::paging;
use crate::hw::sync::IrqMutex;
use crate::mm::frames::{self, Urgency};
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions, Thread};
use crate::{stacks, tlb, work};

/// The tests of this module.
pub const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "workload_sleep_lands_at_drawn_depth",
        run: workload_sleep_lands_at_drawn_depth,
    },
    KernelTest {
        name: "threads_complete",
        run: threads_complete,
    },
    KernelTest {
        name: "preemption",
        run: preemption,
    },
    KernelTest {
        name: "sleep_order",
        run: sleep_order,
    },
    KernelTest {
        name: "wait_queue_fifo",
        run: wait_queue_fifo,
    },
    KernelTest {
        name: "producer_consumer",
        run: producer_consumer,
    },
    KernelTest {
        name: "migration",
        run: migration,
    },
    KernelTest {
        name: "fpu_preempted",
        run: fpu_preempted,
    },
    KernelTest {
        name: "shootdown",
        run: shootdown,
    },
    KernelTest {
        name: "thread_waves",
        run: thread_waves,
    },
    KernelTest {
        name: "current_names_the_caller",
        run: current_names_the_caller,
    },
    KernelTest {
        name: "soak_small",
        run: soak_small,
    },
    KernelTest {
        name: "idle_cpus_are_not_waited_for",
        run: idle_cpus_are_not_waited_for,
    },
];

/// The soak of `bench=soak:N` (see `ktest::soak`) with 20,000 lifetimes.
fn soak_small() -> TestResult {
    super::soak::run(20_000)
}

pub(super) fn spawn(
    name: &str,
    body: impl Fn() + Send + Sync + 'static,
) -> Result<Arc<Thread>, alloc::string::String> {
    sched::spawn(name, SpawnOptions::default(), body)
        .map_err(|e| alloc::format!("spawn {name}: {e:?}"))
}

fn spawn_on(
    name: &str,
    cpu: u32,
    body: impl Fn() + Send + Sync + 'static,
) -> Result<Arc<Thread>, alloc::string::String> {
    let options = SpawnOptions {
        pinned: Some(cpu),
        ..SpawnOptions::default()
    };
    sched::spawn(name, options, body).map_err(|e| alloc::format!("spawn {name}: {e:?}"))
}

fn threads_complete() -> TestResult {
    const THREADS: u64 = 64;
    let results: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let mut threads = Vec::new();
    for k in 0..THREADS {
        let results = results.clone();
        threads.push(spawn("sum", move || {
            let mut sum = 0u64;
            for i in 0..=(1000 + k) {
                sum = sum.wrapping_add(i * (k + 1));
                if i % 100 == 0 {
                    sched::yield_now();
                }
            }
            results[k as usize].store(sum, Ordering::Release);
        })?);
    }
    for thread in &threads {
        sched::join(thread);
        check!(
            thread.has_exited(),
            "join returned before {} exited",
            thread.name()
        );
    }
    for k in 0..THREADS {
        let n = 1000 + k;
        check_eq!(
            results[k as usize].load(Ordering::Acquire),
            n * (n + 1) / 2 * (k + 1),
            "thread {}",
            k
        );
    }
    Ok(())
}

fn preemption() -> TestResult {
    // Both threads on one CPU: the setter only runs if the spinner, which never yields, is
    // preempted.
    let cpu = crate::hw::cpu_ops::id_hint();
    let flag = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let spinner = {
        let (flag, spins) = (flag.clone(), spins.clone());
        spawn_on("spinner", cpu, move || {
            while !flag.load(Ordering::Acquire) {
                spins.fetch_add(1, Ordering::Relaxed);
            }
        })?
    };
    let setter = {
        let (flag, spins) = (flag.clone(), spins.clone());
        spawn_on("setter", cpu, move || {
            while spins.load(Ordering::Relaxed) == 0 {
                sched::yield_now();
            }
            flag.store(true, Ordering::Release);
        })?
    };
    sched::join(&setter);
    sched::join(&spinner);
    check!(spins.load(Ordering::Relaxed) > 0, "the spinner never ran");
    check!(
        spinner.switches() >= 2,
        "the spinner was switched in only {} times",
        spinner.switches()
    );
    Ok(())
}

fn sleep_order() -> TestResult {
    let order = Arc::new(IrqMutex::new(Vec::new()));
    let start = sched::uptime_ms();
    let mut threads = Vec::new();
    // All on one CPU, so that they run in the order they are woken (on several CPUs that
    // order would also depend on how fast each vCPU answers its IPI).
    let cpu = crate::hw::cpu_ops::id_hint();
    // Three ticks apart (at the default 100 Hz), so that the tolerance below cannot hide a
    // swap of two neighbours.
    for ms in [150u64, 30, 120, 60, 90] {
        let order = order.clone();
        threads.push(spawn_on("sleeper", cpu, move || {
            let before = sched::uptime_ms();
            sched::sleep_ms(ms);
            let slept = sched::uptime_ms() - before;
            order.lock().push((ms, before, slept));
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    let order = order.lock().clone();
    // They are woken in the order of their deadlines: start + ms, give or take the tick in
    // which each computed its deadline (on a loaded host the sleepers may start apart).
    let tick_ms = sched::uptime_resolution_ms();
    for pair in order.windows(2) {
        let ((ms_a, before_a, _), (ms_b, before_b, _)) = (pair[0], pair[1]);
        check!(
            before_a + ms_a <= before_b + ms_b + tick_ms,
            "woken out of deadline order (asked, started, slept): {order:?}"
        );
    }
    for &(ms, _, slept) in &order {
        check!(slept >= ms, "asked to sleep {ms} ms, slept {slept} ms");
    }
    check!(
        sched::uptime_ms() - start >= 150,
        "the test took less than the longest sleep"
    );
    Ok(())
}

fn wait_queue_fifo() -> TestResult {
    let queue = Arc::new(WaitQueue::new());
    let go = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(IrqMutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..4usize {
        let (queue, go, arrived, order) =
            (queue.clone(), go.clone(), arrived.clone(), order.clone());
        threads.push(spawn("waiter", move || {
            // Arrive in order i = 0, 1, 2, 3.
            while arrived.load(Ordering::Acquire) != i {
                sched::yield_now();
            }
            queue.wait_until(|| {
                if go.load(Ordering::Acquire) > i {
                    return true;
                }
                if arrived.load(Ordering::Acquire) == i {
                    arrived.store(i + 1, Ordering::Release);
                }
                false
            });
            order.lock().push(i);
        })?);
    }
    while arrived.load(Ordering::Acquire) < 4 {
        sched::yield_now();
    }
    // Everybody may go; wake them one at a time, each time waiting until the woken one has
    // recorded itself: FIFO means they record 0, 1, 2, 3.
    go.store(4, Ordering::Release);
    for woken in 1..=4 {
        check!(queue.wake_one(), "wake {woken} found the queue empty");
        while order.lock().len() < woken {
            sched::yield_now();
        }
    }
    for thread in &threads {
        sched::join(thread);
    }
    check_eq!(*order.lock(), alloc::vec![0usize, 1, 2, 3]);
    check!(!queue.wake_one(), "the queue is empty");
    check_eq!(queue.wake_all(), 0);
    Ok(())
}

struct Channel {
    items: IrqMutex<alloc::collections::VecDeque<u64>>,
    not_empty: WaitQueue,
    not_full: WaitQueue,
}

fn producer_consumer() -> TestResult {
    const PRODUCERS: u64 = 4;
    const CONSUMERS: u64 = 3;
    const ITEMS: u64 = 2000;
    const CAPACITY: usize = 8;
    let channel = Arc::new(Channel {
        items: IrqMutex::new(alloc::collections::VecDeque::new()),
        not_empty: WaitQueue::new(),
        not_full: WaitQueue::new(),
    });
    let seen: Arc<Vec<AtomicU64>> =
        Arc::new((0..PRODUCERS * ITEMS).map(|_| AtomicU64::new(0)).collect());
    let consumed = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for p in 0..PRODUCERS {
        let channel = channel.clone();
        threads.push(spawn("producer", move || {
            for i in 0..ITEMS {
                let item = p * ITEMS + i;
                channel.not_full.wait_until(|| {
                    let mut items = channel.items.lock();
                    if items.len() < CAPACITY {
                        items.push_back(item);
                        true
                    } else {
                        false
                    }
                });
                channel.not_empty.wake_one();
            }
        })?);
    }
    for _ in 0..CONSUMERS {
        let (channel, seen, consumed) = (channel.clone(), seen.clone(), consumed.clone());
        threads.push(spawn("consumer", move || {
            loop {
                let mut item = None;
                channel.not_empty.wait_until(|| {
                    if consumed.load(Ordering::Acquire) >= PRODUCERS * ITEMS {
                        return true;
                    }
                    item = channel.items.lock().pop_front();
                    item.is_some()
                });
                let Some(item) = item else {
                    channel.not_empty.wake_all();
                    return;
                };
                seen[item as usize].fetch_add(1, Ordering::AcqRel);
                consumed.fetch_add(1, Ordering::AcqRel);
                channel.not_full.wake_one();
                if consumed.load(Ordering::Acquire) >= PRODUCERS * ITEMS {
                    channel.not_empty.wake_all();
                }
            }
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    check_eq!(consumed.load(Ordering::Acquire), PRODUCERS * ITEMS);
    let wrong: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].load(Ordering::Acquire) != 1)
        .collect();
    check!(
        wrong.is_empty(),
        "{} items not seen exactly once, first {:?}",
        wrong.len(),
        wrong.first()
    );
    Ok(())
}

fn migration() -> TestResult {
    let cpus = sched::online_cpus();
    let mut threads = Vec::new();
    for _ in 0..(4 * cpus) {
        threads.push(spawn("wanderer", move || {
            for round in 0..40 {
                if round % 4 == 0 {
                    sched::sleep_ms(1);
                } else {
                    sched::yield_now();
                }
            }
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    let all_cpus = (1u32 << cpus) - 1;
    let mut union = 0;
    let mut migrated = 0;
    for thread in &threads {
        let ran = thread.cpus_ran_on();
        check!(
            ran != 0 && ran & !all_cpus == 0,
            "{} ran on CPUs {ran:#b} of {cpus}",
            thread.name()
        );
        union |= ran;
        if ran.count_ones() > 1 {
            migrated += 1;
        }
    }
    check_eq!(union, all_cpus, "every CPU ran some thread");
    if cpus > 1 {
        check!(migrated > 0, "no thread ran on more than one CPU");
    }
    Ok(())
}

/// A float computation whose every step depends on the last, so corrupted state shows.
fn series(seed: u64, terms: u64) -> f64 {
    let mut x = seed as f64 * 0.001 + 0.5;
    let mut sum = 0.0f64;
    for k in 1..=terms {
        x = x * 3.7 * (1.0 - x);
        let kf = k as f64;
        sum += x / (kf * kf) + kf * 1e-9;
    }
    sum
}

fn fpu_preempted() -> TestResult {
    const THREADS: u64 = 6;
    const TERMS: u64 = 400_000;
    let expected: Vec<u64> = (0..THREADS).map(|s| series(s, TERMS).to_bits()).collect();
    let results: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let cpu = crate::hw::cpu_ops::id_hint();
    let mut threads = Vec::new();
    for s in 0..THREADS {
        let results = results.clone();
        // All on one CPU, so they preempt each other mid-computation.
        threads.push(spawn_on("float", cpu, move || {
            results[s as usize].store(series(s, TERMS).to_bits(), Ordering::Release);
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    let preempted = threads.iter().filter(|t| t.switches() > 1).count();
    check!(
        preempted > 0,
        "no float thread was preempted: the test proves nothing"
    );
    for s in 0..THREADS {
        check_eq!(
            f64::from_bits(results[s as usize].load(Ordering::Acquire)),
            f64::from_bits(expected[s as usize]),
            "series {}",
            s
        );
    }
    Ok(())
}

fn shootdown() -> TestResult {
    let cpus = sched::online_cpus();
    let virt = LAZY_REGION_BASE + 64 * PAGE_BYTES;
    let frame = frames::alloc_zeroed(Urgency::Normal).ok_or("no frame")?;
    paging::map_lazy_page(virt, frame)
        .map_err(|(f, e)| {
            frames::free(f);
            alloc::format!("map: {e:?}")
        })?
        .flush();
    {
        let irq = IrqGuard::new();
        catch::probe_write(&irq, virt, 0x5eed).map_err(|f| alloc::format!("write: {f:?}"))?;
    }
    // Every CPU reads the page, so every TLB caches the translation; then waits.
    let phase = Arc::new(AtomicUsize::new(0));
    let faulted = Arc::new(AtomicUsize::new(0));
    let read_ok = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for cpu in 0..cpus {
        let (phase, faulted, read_ok) = (phase.clone(), faulted.clone(), read_ok.clone());
        readers.push(spawn_on("reader", cpu, move || {
            let first = {
                let irq = IrqGuard::new();
                catch::probe_read(&irq, virt)
            };
            if first == Ok(0x5eed) {
                read_ok.fetch_add(1, Ordering::AcqRel);
            }
            while phase.load(Ordering::Acquire) == 0 {
                sched::yield_now();
            }
            let second = {
                let irq = IrqGuard::new();
                catch::probe_read(&irq, virt)
            };
            if matches!(second, Err(f) if f.vector == 14 && f.address == virt) {
                faulted.fetch_add(1, Ordering::AcqRel);
            }
        })?);
    }
    while read_ok.load(Ordering::Acquire) < cpus as usize {
        sched::yield_now();
    }
    let before = tlb::SHOOTDOWNS.load(Ordering::Relaxed);
    let (frame, flush) = paging::unmap_lazy_page(virt).ok_or("nothing mapped")?;
    flush.ignore(); // the shootdown below covers this CPU too
    tlb::shootdown(virt, virt + PAGE_BYTES);
    phase.store(1, Ordering::Release);
    for reader in &readers {
        sched::join(reader);
    }
    frames::free(frame);
    check!(
        tlb::SHOOTDOWNS.load(Ordering::Relaxed) > before,
        "no shootdown was counted"
    );
    check_eq!(
        faulted.load(Ordering::Acquire),
        cpus as usize,
        "CPUs that faulted after the shootdown"
    );
    Ok(())
}

fn thread_waves() -> TestResult {
    const WAVES: u64 = 20;
    const PER_WAVE: u64 = 500;
    let ran = Arc::new(AtomicU64::new(0));
    // A first wave sizes the scheduler's queues; the baseline is taken after it.
    let mut baseline = None;
    for wave_number in 0..=WAVES {
        if wave_number == 1 {
            work::drain();
            stacks::drain_caches();
            baseline = Some((
                frames::stats().free,
                stacks::stats(),
                crate::hw::heap::usage().0,
            ));
        }
        let mut wave = Vec::new();
        for _ in 0..PER_WAVE {
            let ran = ran.clone();
            wave.push(spawn("wave", move || {
                ran.fetch_add(1, Ordering::Relaxed);
            })?);
        }
        for thread in &wave {
            sched::join(thread);
        }
        drop(wave);
        work::drain();
    }
    stacks::drain_caches();
    let (frames_before, stacks_before, heap_before) = baseline.ok_or("no baseline")?;
    check_eq!(ran.load(Ordering::Relaxed), (WAVES + 1) * PER_WAVE);
    let stacks_after = stacks::stats();
    check_eq!(
        stacks_after.slots_in_use,
        stacks_before.slots_in_use,
        "stack slots in use"
    );
    check_eq!(stacks_after.cached_stacks, 0);
    check_eq!(stacks_after.quarantined, (0, 0));
    // The counters (vmstat's figures) are back where they were; the ledger's lifetime totals
    // (threads created, their peaks) moved on, as they should.
    let vmstat = |stats: &stacks::StackStats| Counter::ALL.map(|c| stats.counters.get(c));
    check_eq!(
        vmstat(&stacks_after),
        vmstat(&stacks_before),
        "stack counters"
    );
    check_eq!(frames::stats().free, frames_before, "free frames");
    // Queues keep the capacity their longest backlog needed, so the heap may have grown a
    // little; a leak of even 4 bytes per thread would exceed this.
    let heap_growth = crate::hw::heap::usage().0.saturating_sub(heap_before);
    check!(
        heap_growth < 32 * 1024,
        "heap grew by {heap_growth} bytes over {} threads",
        WAVES * PER_WAVE
    );
    Ok(())
}

/// A flush request does not wait for CPUs halted with no thread (under `-icount` a woken vCPU
/// may not run at all while another keeps busy), and an idle CPU flushes before it runs
/// anything once it wakes.
fn idle_cpus_are_not_waited_for() -> TestResult {
    let me = crate::hw::cpu_ops::id_hint() as usize;
    let others: Vec<usize> = (0..crate::hw::cpu_ops::MAX_CPUS)
        .filter(|&c| c != me && sched::is_online(c as u32))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    // Wait for a moment where every other CPU is halted (nothing else runs in the tests).
    let mut attempts = 0;
    let generation = loop {
        attempts += 1;
        check!(
            attempts <= 200,
            "the other CPUs were never all idle at once"
        );
        let irq = IrqGuard::new();
        if others.iter().all(|&c| tlb::is_idle(c)) {
            // Interrupts stay off: this CPU serves nothing while it checks.
            let generation = tlb::request_flush_all();
            let done = tlb::flushed_everywhere(generation);
            drop(irq);
            check!(
                done,
                "a flush request waited for CPUs that were halted with no thread"
            );
            break generation;
        }
        drop(irq);
        sched::sleep_ms(1);
    };
    // Every CPU wakes at its next timer tick at the latest and flushes (its IPI, or the
    // catch-up when it leaves idleness).
    sched::sleep_ms(50);
    for &cpu in &others {
        check!(
            tlb::flushed_by(cpu) >= generation,
            "cpu{cpu} has not flushed for generation {generation} ({})",
            tlb::flushed_by(cpu)
        );
    }
    Ok(())
}

/// Every thread asks `sched::current()` over and over while the timer preempts it; the answer
/// must always be the asking thread. Each asker keeps itself pinned to the next CPU, so that
/// every preemption moves it there: a preemption between reading the CPU number and reading
/// that CPU's record would make it read the record of a CPU it no longer runs on.
fn current_names_the_caller() -> TestResult {
    const BURST: u64 = 4096;
    let cpus = sched::online_cpus();
    // On one CPU nothing can move: a short run only checks the plain answer.
    let duration_ms: u64 = if cpus == 1 { 200 } else { 4_000 };
    let wrong = Arc::new(AtomicU64::new(0));
    let none = Arc::new(AtomicU64::new(0));
    let asked = Arc::new(AtomicU64::new(0));
    let first_wrong_ms = Arc::new(AtomicU64::new(0));
    let preempted = || {
        crate::trap_handlers::PREEMPTIONS
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let preempted_before = preempted();
    let start = sched::uptime_ms();
    let deadline = start + duration_ms;
    let mut threads = Vec::new();
    for _ in 0..(3 * cpus) {
        let (wrong, none, asked, first) = (
            wrong.clone(),
            none.clone(),
            asked.clone(),
            first_wrong_ms.clone(),
        );
        threads.push(spawn("asker", move || {
            while sched::uptime_ms() < deadline {
                let here = crate::hw::cpu_ops::id_hint();
                sched::pin_me(Some((here + 1) % cpus));
                for _ in 0..BURST {
                    match sched::current() {
                        Some(me) if me.stack.contains(crate::hw::probes::stack_pointer()) => {}
                        Some(_) => {
                            if wrong.fetch_add(1, Ordering::Relaxed) == 0 {
                                first.store(sched::uptime_ms() - start, Ordering::Relaxed);
                            }
                        }
                        None => {
                            none.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                asked.fetch_add(BURST, Ordering::Relaxed);
            }
        })?);
    }
    for thread in &threads {
        sched::join(thread);
    }
    let preemptions = preempted() - preempted_before;
    crate::report::log(format_args!(
        "current_names_the_caller: {} asked in {} ms, {preemptions} preemptions, {} wrong \
         (first at {} ms), {} none",
        asked.load(Ordering::Relaxed),
        sched::uptime_ms() - start,
        wrong.load(Ordering::Relaxed),
        first_wrong_ms.load(Ordering::Relaxed),
        none.load(Ordering::Relaxed)
    ));
    check_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "answers naming another thread"
    );
    check_eq!(none.load(Ordering::Relaxed), 0, "answers naming no thread");
    // Without preemptions the test asked nothing that could go wrong (each one migrates).
    check!(
        cpus == 1 || preemptions >= 100,
        "only {preemptions} preemptions in {duration_ms} ms"
    );
    Ok(())
}

/// A workload sleep between rounds drawn at depth `D` (the census's sleeping depth, a saved
/// stack pointer's) sleeps with the saved stack pointer at `D` or less than
/// `PAD_BYTES_AT_MOST` deeper when `D` is above this kernel's floor, and exactly at the floor
/// otherwise; the path's frames are intact after each sleep. On two CPUs at once, depths from
/// below the floor to 9 KiB (small frames only, and levels of the recursion then small frames).
fn workload_sleep_lands_at_drawn_depth() -> TestResult {
    use crate::workload::{PAD_BYTES_AT_MOST, sleep_at_depth, sleep_path_bytes};
    let cost = sleep_path_bytes();
    check!(cost > 64 && cost < 4096, "sleep path {cost} bytes");
    let failures: Arc<IrqMutex<Vec<alloc::string::String>>> = Arc::new(IrqMutex::new(Vec::new()));
    let threads: Vec<Arc<Thread>> = (0..2u32)
        .map(|cpu| {
            let failures = failures.clone();
            sched::spawn(
                "sleep-depth",
                SpawnOptions {
                    pinned: Some(cpu % sched::online_cpus()),
                    ..SpawnOptions::default()
                },
                move || {
                    // The floor from here: a depth of 1 byte sleeps at it.
                    let floor = sleep_at_depth(1, 2);
                    let report = |why: alloc::string::String| failures.lock().push(why);
                    if floor.floor == 0 || floor.saved != floor.floor {
                        report(alloc::format!("depth 1: {floor:?}, expected at the floor"));
                        return;
                    }
                    let f = floor.floor;
                    for depth in [
                        f - 8,
                        f,
                        f + 1,
                        f + 100,
                        f + 600,
                        f + 1100,
                        2816,
                        4096,
                        6000,
                        9000,
                    ] {
                        let landing = sleep_at_depth(depth, 2);
                        let above = depth > f;
                        let ok = if above {
                            landing.floor == 0
                                && landing.saved >= depth
                                && landing.saved < depth + PAD_BYTES_AT_MOST
                        } else {
                            landing.floor == f && landing.saved == f
                        };
                        if !ok || landing.corrupted != 0 {
                            report(alloc::format!(
                                "depth {depth} (floor {f}, sleep path {cost}): {landing:?}"
                            ));
                        }
                        if depth >= f + 1100 && landing.frames == 0 {
                            report(alloc::format!("depth {depth}: no frame checked"));
                        }
                    }
                },
            )
            .map_err(|e| alloc::format!("spawn: {e:?}"))
        })
        .collect::<Result<_, _>>()?;
    for thread in &threads {
        while !thread.has_exited() {
            sched::sleep_ms(1);
        }
    }
    let failures = failures.lock().clone();
    check!(failures.is_empty(), "{failures:?}");
    Ok(())
}

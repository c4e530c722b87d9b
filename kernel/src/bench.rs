//! Cost measurements (`bench=costs`): what the mechanism costs, per operation.
//!
//! Run under `-icount shift=0` (DESIGN §9) the TSC advances with executed guest instructions,
//! so every figure is a deterministic instruction count; the host says so with
//! `tsc=instructions`, and the records carry it. Each figure is the difference between the
//! operation and the same operation without the part being measured:
//!
//! - `stack_fault`: a store to an unpopulated page of the thread's own stack (entry on the #PF
//!   IST stack, magazine, map, return) minus the same store once the page is there;
//! - `bounce_fault` / `direct_fault`: a load from an unmapped lazy-region page served on the
//!   interrupted stack after a bounce, or directly on the IST stack (both allocate a zeroed
//!   frame and map it), minus the same load once mapped; the first page of each half is
//!   faulted in before measuring, so that no measured fault creates page tables;
//! - `switch`: a yield between two threads of the policy on one CPU (thread to scheduler loop
//!   to thread, admission included), half of a round trip;
//! - `create`: `sched::spawn` of a thread of the policy, stack creation included (caches
//!   drained first, so stacks are fresh; interrupts off, so no preemption is counted);
//! - `trim` (policies that give pages back while asleep): `stacks::trim::trim_one` of a
//!   sleeping thread whose whole stack is populated and whose saved stack pointer lies in its
//!   top page: every page but the top one unmapped, counted and queued for the quarantine,
//!   and the flush of every TLB requested (on the cost boot's one CPU, its own flush).
//! - `switch_in` / `switch_out`: the stack policy's own part of a switch, the two calls the
//!   scheduler loop makes for a thread (`stacks::admit` before switching to it,
//!   `stacks::switched_out` after it left), on a thread asleep 1 KiB deep, back to back as
//!   the scheduler would make them: under `switch` the switch-in maps every page the stack
//!   does not hold from the magazine and the switch-out reads the Accessed bits of the dead
//!   pages and unmaps the clear ones back into it (Hansen's costs); under `fault` the
//!   switch-in is the RFC's refill check. Both are also inside `switch` above.
//! - `pack` / `restore` (policy `pack`): `stacks::pack::pack_one` of a sleeping thread that
//!   keeps 160 bytes of locals live (960 live bytes with its wait's frames, near the Linux
//!   census's average sleeper): its live bytes checksummed and copied into a buffer, every
//!   page unmapped, the flush of every TLB requested; then `stacks::pack::restore_on_wake` of
//!   it, as the wake path does: a page from the magazine mapped, the bytes copied back and
//!   checked against the checksum, the buffer freed.

use alloc::borrow::Cow;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use dks_protocol::record::{Cost, Record};

use crate::hw::cpu_ops::{self, IrqGuard};
use crate::hw::layout::PAGE_BYTES;
use crate::hw::probes;
use crate::hw::sync::IrqMutex;
use crate::sched::wait::WaitQueue;
use crate::sched::{self, SpawnOptions};
use crate::stacks::{self, DYNAMIC, IMPLEMENTED, Policy};
use crate::{lazy, report, work};

/// The samples of one cost, summarized when emitted (count, total, minimum, median, maximum and
/// a log2 histogram): the spread says whether a mean stands for every operation.
#[derive(Debug)]
struct Summary {
    values: Vec<u64>,
}

impl Summary {
    fn new() -> Self {
        Summary { values: Vec::new() }
    }

    fn add(&mut self, value: u64) {
        self.values.push(value);
    }

    fn emit(&mut self, what: &str, policy: Option<Policy>, instructions: bool) {
        self.values.sort_unstable();
        let mut histogram = [0u64; 24];
        for &value in &self.values {
            let bucket = (63 - value.max(1).leading_zeros()) as usize;
            histogram[bucket.min(23)] += 1;
        }
        let values = &self.values;
        // The lower middle one of an even count: a value that was measured.
        let median = values.get(values.len().saturating_sub(1) / 2);
        report::emit(&Record::Cost(Cost {
            what: Cow::Borrowed(what),
            policy,
            samples: values.len() as u64,
            total: values.iter().sum(),
            min: values.first().copied().unwrap_or(0),
            median: median.copied().unwrap_or(0),
            max: values.last().copied().unwrap_or(0),
            instructions,
            log2_histogram: histogram,
        }));
    }
}

fn fresh_stacks() {
    work::drain();
    stacks::drain_caches();
}

/// Runs every measurement and prints a `cost` record for each.
pub fn run(instructions: bool) {
    for policy in DYNAMIC {
        stack_faults(policy).emit("stack_fault", Some(policy), instructions);
    }
    lazy_faults(lazy::BOUNCED.start).emit("bounce_fault", None, instructions);
    lazy_faults(lazy::DIRECT.start).emit("direct_fault", None, instructions);
    for policy in IMPLEMENTED {
        switches(policy).emit("switch", Some(policy), instructions);
    }
    for policy in IMPLEMENTED {
        creations(policy).emit("create", Some(policy), instructions);
    }
    for policy in IMPLEMENTED {
        let (mut switch_in, mut switch_out) = switch_halves(policy);
        switch_in.emit("switch_in", Some(policy), instructions);
        switch_out.emit("switch_out", Some(policy), instructions);
    }
    for policy in IMPLEMENTED.into_iter().filter(|&p| p == Policy::Reclaim) {
        trims(policy).emit("trim", Some(policy), instructions);
    }
    for policy in IMPLEMENTED.into_iter().filter(|&p| p == Policy::Pack) {
        let (mut pack, mut restore) = packs_and_restores(policy);
        pack.emit("pack", Some(policy), instructions);
        restore.emit("restore", Some(policy), instructions);
    }
}

/// Bytes of locals the measured sleeper keeps live across its sleep: with the frames of its
/// wait and switch, near the 802 live bytes of an average sleeping thread of the Linux census
/// (960 with the red zone; its wait and switch frames alone are 800 bytes since the sleep
/// path's frames shrank, 928 before, when these locals were 32 bytes).
const PACK_SLEEPER_LOCALS: usize = 160;

/// A `pack` sleeper's pack and its wake-path restore (see the module docs), one of each per
/// round. The sleeper keeps [`PACK_SLEEPER_LOCALS`] bytes of locals live across its sleep.
fn packs_and_restores(policy: Policy) -> (Summary, Summary) {
    const ROUNDS: usize = 48;
    // Only the packs and trims measured here.
    let pressure = stacks::trim::set_pressure_trims(false);
    let age = stacks::trim::set_long_sleep_ms(u64::MAX);
    let after = stacks::pack::set_after_ms(u64::MAX);
    let (mut packs, mut restores) = (Summary::new(), Summary::new());
    let mut live_bytes = 0;
    for _ in 0..ROUNDS {
        fresh_stacks();
        let asleep = Arc::new(WaitQueue::new());
        let open = Arc::new(AtomicBool::new(false));
        let options = SpawnOptions {
            policy,
            pinned: Some(0),
            ..SpawnOptions::default()
        };
        let sleeper = {
            let (asleep, open) = (asleep.clone(), open.clone());
            sched::spawn("cost-pack", options, move || {
                let locals = core::hint::black_box([0x5a_u8; PACK_SLEEPER_LOCALS]);
                asleep.wait_until(|| open.load(Ordering::Acquire));
                assert!(
                    core::hint::black_box(&locals).iter().all(|&b| b == 0x5a),
                    "the sleeper's locals changed across its pack and restore"
                );
            })
            .expect("memory for a measuring thread")
        };
        while sleeper.state() != sched::State::Blocked {
            sched::yield_now();
        }
        let slot = sleeper.stack.slot();
        let start = cpu_ops::rdtsc();
        let packed = stacks::pack::pack_one(slot);
        let cost = cpu_ops::rdtsc() - start;
        let done = packed.unwrap_or_else(|e| panic!("the pack measured failed: {e:?}"));
        live_bytes = done.live_bytes;
        packs.add(cost);
        let start = cpu_ops::rdtsc();
        let restored = stacks::pack::restore_on_wake(slot);
        let cost = cpu_ops::rdtsc() - start;
        assert_eq!(
            restored,
            stacks::pack::WakeRestore::Restored,
            "the restore measured"
        );
        restores.add(cost);
        open.store(true, Ordering::Release);
        asleep.wake_all();
        sched::join(&sleeper);
        assert!(!sleeper.was_killed(), "the measured sleeper was stopped");
    }
    report::log(format_args!(
        "pack costs: {live_bytes} live bytes packed and restored per round"
    ));
    stacks::trim::set_pressure_trims(pressure);
    stacks::trim::set_long_sleep_ms(age);
    stacks::pack::set_after_ms(after);
    (packs, restores)
}

fn trims(policy: Policy) -> Summary {
    const ROUNDS: usize = 48;
    // Only the trims measured here.
    let pressure = stacks::trim::set_pressure_trims(false);
    let age = stacks::trim::set_long_sleep_ms(u64::MAX);
    let mut summary = Summary::new();
    for _ in 0..ROUNDS {
        fresh_stacks();
        let asleep = Arc::new(crate::sched::wait::WaitQueue::new());
        let open = Arc::new(AtomicBool::new(false));
        let options = SpawnOptions {
            policy,
            pinned: Some(0),
            ..SpawnOptions::default()
        };
        let sleeper = {
            let (asleep, open) = (asleep.clone(), open.clone());
            sched::spawn("cost-trim", options, move || {
                let me = sched::current().expect("a thread");
                let (layout, slot) = (stacks::layout(), me.stack.slot());
                let bottom = layout.stack_bottom(slot).as_u64();
                for page in layout.all_pages().iter().skip(1) {
                    probes::touch_stack(bottom, layout.page_addr(slot, page).as_u64() + 64);
                }
                asleep.wait_until(|| open.load(Ordering::Acquire));
            })
            .expect("memory for a measuring thread")
        };
        while sleeper.state() != sched::State::Blocked {
            sched::yield_now();
        }
        let start = cpu_ops::rdtsc();
        let trimmed = stacks::trim::trim_one(sleeper.stack.slot());
        let cost = cpu_ops::rdtsc() - start;
        assert!(trimmed > 0, "the trim measured took nothing");
        summary.add(cost);
        open.store(true, Ordering::Release);
        asleep.wake_all();
        sched::join(&sleeper);
    }
    stacks::trim::set_pressure_trims(pressure);
    stacks::trim::set_long_sleep_ms(age);
    summary
}

fn stack_faults(policy: Policy) -> Summary {
    const THREADS: usize = 48;
    fresh_stacks();
    let summary = Arc::new(IrqMutex::new(Summary::new()));
    let mut threads = Vec::new();
    for _ in 0..THREADS {
        let summary = summary.clone();
        let options = SpawnOptions {
            policy,
            pinned: Some(0),
            ..SpawnOptions::default()
        };
        let thread = sched::spawn("cost-fault", options, move || {
            let me = sched::current().expect("a thread");
            let (layout, slot) = (stacks::layout(), me.stack.slot());
            let bottom = layout.stack_bottom(slot).as_u64();
            let irq = IrqGuard::new();
            let mut costs = Vec::new();
            for page in layout.all_pages().iter().skip(1) {
                // 64 bytes below the page's top.
                let address = layout.page_addr(slot, page).as_u64() + PAGE_BYTES - 64;
                let with_fault = probes::timed_stack_touch(&irq, bottom, address);
                let without = probes::timed_stack_touch(&irq, bottom, address);
                costs.push(with_fault.saturating_sub(without));
            }
            drop(irq);
            let mut summary = summary.lock();
            for cost in costs {
                summary.add(cost);
            }
        });
        threads.push(thread.expect("memory for a measuring thread"));
    }
    for thread in &threads {
        sched::join(thread);
    }
    core::mem::replace(&mut *summary.lock(), Summary::new())
}

fn lazy_faults(base: u64) -> Summary {
    const PAGES: u64 = 256;
    let mut summary = Summary::new();
    let irq = IrqGuard::new();
    // Page 0 unmeasured: its fault also creates the page tables of the measured pages (about
    // 4,200 instructions per table zeroed), a cost of the region's first touch, not of either
    // way of handling a fault.
    probes::timed_lazy_read(base + 8);
    for page in 1..=PAGES {
        let address = base + page * PAGE_BYTES + 8;
        let with_fault = probes::timed_lazy_read(address);
        let without = probes::timed_lazy_read(address);
        summary.add(with_fault.saturating_sub(without));
    }
    drop(irq);
    lazy::reset(base..base + (PAGES + 1) * PAGE_BYTES);
    summary
}

fn switches(policy: Policy) -> Summary {
    const ROUNDS: usize = 2000;
    let stop = Arc::new(AtomicBool::new(false));
    let partner = {
        let stop = stop.clone();
        let options = SpawnOptions {
            policy,
            pinned: Some(0),
            ..SpawnOptions::default()
        };
        sched::spawn("cost-partner", options, move || {
            while !stop.load(Ordering::Acquire) {
                sched::yield_now();
            }
        })
        .expect("memory for a measuring thread")
    };
    let summary = Arc::new(IrqMutex::new(Summary::new()));
    let measurer = {
        let (stop, summary) = (stop.clone(), summary.clone());
        let options = SpawnOptions {
            policy,
            pinned: Some(0),
            ..SpawnOptions::default()
        };
        sched::spawn("cost-switch", options, move || {
            let mut costs = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS + 100 {
                let start = cpu_ops::rdtsc();
                sched::yield_now();
                let round_trip = cpu_ops::rdtsc() - start;
                // The first rounds warm up (the partner's first switch-in, caches).
                if round >= 100 {
                    costs.push(round_trip / 2);
                }
            }
            stop.store(true, Ordering::Release);
            let mut summary = summary.lock();
            for cost in costs {
                summary.add(cost);
            }
        })
        .expect("memory for a measuring thread")
    };
    sched::join(&measurer);
    sched::join(&partner);
    core::mem::replace(&mut *summary.lock(), Summary::new())
}

fn switch_halves(policy: Policy) -> (Summary, Summary) {
    const ROUNDS: usize = 1000;
    fresh_stacks();
    let asleep = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(WaitQueue::new());
    let options = SpawnOptions {
        policy,
        pinned: Some(0),
        ..SpawnOptions::default()
    };
    let sleeper = {
        let (asleep, release, gate) = (asleep.clone(), release.clone(), gate.clone());
        sched::spawn("cost-halves", options, move || {
            // Sleep 1 KiB deep: the top page is live, the three below are dead.
            let mut frame = [0u8; 1024];
            core::hint::black_box(&mut frame);
            asleep.store(true, Ordering::Release);
            gate.wait_until(|| release.load(Ordering::Acquire));
            core::hint::black_box(&mut frame);
        })
        .expect("memory for a measuring thread")
    };
    while !(asleep.load(Ordering::Acquire) && sleeper.state() == sched::State::Blocked) {
        sched::sleep_ms(1);
    }
    let (mut switch_in, mut switch_out) = (Summary::new(), Summary::new());
    let slot = sleeper.stack.slot();
    let saved_sp = sleeper.saved_stack_pointer();
    {
        // This CPU's scheduler cannot run meanwhile, nor can the sleeper: its state stays
        // Blocked until the gate opens, so its stack is ours to switch in and out.
        let irq = IrqGuard::new();
        for round in 0..ROUNDS + 10 {
            let start = cpu_ops::rdtsc();
            let admitted = stacks::admit(&irq, slot);
            let middle = cpu_ops::rdtsc();
            stacks::switched_out(&irq, slot, saved_sp, true);
            let end = cpu_ops::rdtsc();
            assert_eq!(
                admitted,
                stacks::Admit::Admitted,
                "{policy} switch-in refused"
            );
            // The first rounds warm up (the first refill allocates).
            if round >= 10 {
                switch_in.add(middle - start);
                switch_out.add(end - middle);
            }
        }
    }
    release.store(true, Ordering::Release);
    gate.wake_all();
    sched::join(&sleeper);
    (switch_in, switch_out)
}

fn creations(policy: Policy) -> Summary {
    const THREADS: usize = 200;
    fresh_stacks();
    let mut summary = Summary::new();
    let mut threads = Vec::with_capacity(THREADS);
    for _ in 0..THREADS {
        let options = SpawnOptions {
            policy,
            pinned: Some(0),
            ..SpawnOptions::default()
        };
        // Interrupts off: no preemption inside the measured creation (it never sleeps).
        let irq = IrqGuard::new();
        let start = cpu_ops::rdtsc();
        let thread = sched::spawn("cost-create", options, || {});
        summary.add(cpu_ops::rdtsc() - start);
        drop(irq);
        threads.push(thread.expect("memory for a measured thread"));
    }
    for thread in &threads {
        sched::join(thread);
    }
    summary
}

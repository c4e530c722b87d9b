//! Time and sleeping threads.
//!
//! The boot CPU's timer interrupt advances `JIFFIES`; sleeping threads wait in one list
//! ordered by wake-up tick and are woken by the tick that reaches their deadline. A sleeper
//! stopped before it switched away (see the `sched` module docs) takes its own entry out;
//! the tick drops any entry whose thread refuses the wake-up.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use dks_sched::Event;

use super::thread::Thread;
use crate::hw::stop::{self, Completion};
use crate::hw::sync::IrqMutex;

static JIFFIES: AtomicU64 = AtomicU64::new(0);
static HZ: AtomicU32 = AtomicU32::new(100);
/// Sleepers keyed by (deadline tick, thread id).
static SLEEPERS: IrqMutex<BTreeMap<(u64, u64), Arc<Thread>>> = IrqMutex::new(BTreeMap::new());

/// Sets the tick rate.
pub fn init(hz: u32) {
    HZ.store(hz, Ordering::Relaxed);
}

/// Milliseconds since boot, at tick resolution.
pub fn uptime_ms() -> u64 {
    JIFFIES.load(Ordering::Relaxed) * 1000 / u64::from(HZ.load(Ordering::Relaxed))
}

/// One tick in milliseconds (rounded up).
pub fn tick_ms() -> u64 {
    1000u64.div_ceil(u64::from(HZ.load(Ordering::Relaxed)))
}

/// Advances time by one tick and wakes the sleepers whose deadline passed.
pub fn tick() {
    let now = JIFFIES.fetch_add(1, Ordering::Relaxed) + 1;
    let due: Vec<Arc<Thread>> = {
        let mut sleepers = SLEEPERS.lock();
        let later = sleepers.split_off(&(now + 1, 0));
        core::mem::replace(&mut *sleepers, later)
            .into_values()
            .collect()
    };
    for thread in due {
        let _ = super::deliver_wake(thread);
    }
}

/// Ends the sleep of every sleeper for which `which` is true now, as if its deadline had
/// passed (one pass over the sleepers; for a workload that stops threads asleep for long);
/// returns how many accepted the wake-up.
pub fn wake_sleepers(which: impl Fn(&Thread) -> bool) -> usize {
    let chosen: Vec<Arc<Thread>> = {
        let mut sleepers = SLEEPERS.lock();
        let mut chosen = Vec::new();
        sleepers.retain(|_, thread| {
            if which(thread) {
                chosen.push(thread.clone());
                false
            } else {
                true
            }
        });
        chosen
    };
    chosen
        .into_iter()
        .filter(|thread| super::deliver_wake(thread.clone()))
        .count()
}

/// Parks `me` and puts it among the sleepers, to wake `ticks` from now; returns its key.
/// Never inlined: the map's insertion needs a large frame, which would otherwise stay on the
/// sleeping thread's stack for the whole sleep (docs/compare.md, the sleep path).
#[inline(never)]
fn enqueue(me: &Arc<Thread>, ticks: u64) -> (u64, u64) {
    let mut sleepers = SLEEPERS.lock();
    let key = (JIFFIES.load(Ordering::Relaxed) + ticks, me.id());
    if let Err(refused) = me.state.apply(Event::Park) {
        panic!("{} cannot sleep: {refused}", me.name());
    }
    sleepers.insert(key, me.clone());
    key
}

/// Sleeps for at least `ms` milliseconds (rounded up to whole ticks).
pub fn sleep_ms(ms: u64) {
    let hz = u64::from(HZ.load(Ordering::Relaxed));
    // One extra tick: the current tick is already partly over.
    let ticks = (ms * hz).div_ceil(1000) + 1;
    let me = super::current().expect("sleep outside a thread");
    let key = enqueue(&me, ticks);
    if stop::call(&me.stop_point, &mut super::block) == Completion::Stopped {
        SLEEPERS.lock().remove(&key);
        drop(me);
        super::continue_stop();
    }
}

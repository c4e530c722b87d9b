//! Time and sleeping threads.
//!
//! The boot CPU's timer interrupt advances `JIFFIES`; sleeping threads wait in one list
//! ordered by wake-up tick and are made ready by the tick that reaches their deadline.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::thread::{State, Thread};
use crate::sync::IrqMutex;

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
        super::wake(thread);
    }
}

/// Sleeps for at least `ms` milliseconds (rounded up to whole ticks).
pub fn sleep_ms(ms: u64) {
    let hz = u64::from(HZ.load(Ordering::Relaxed));
    // One extra tick: the current tick is already partly over.
    let ticks = (ms * hz).div_ceil(1000) + 1;
    let me = super::current().expect("sleep outside a thread");
    {
        let mut sleepers = SLEEPERS.lock();
        let deadline = JIFFIES.load(Ordering::Relaxed) + ticks;
        me.set_state(State::Blocked);
        sleepers.insert((deadline, me.id()), me);
    }
    super::block();
}

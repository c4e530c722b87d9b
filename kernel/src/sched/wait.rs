//! Wait queues: sleep until a condition holds, wake one or all.
//!
//! A waiter checks its condition and registers under the queue's lock (parking itself:
//! `Parking`), and a waker changes the condition before it takes the same lock to wake: so a
//! wake-up between the check and the sleep cannot be lost.
//!
//! Between registering and taking the lock again to re-check, the waiter runs with interrupts
//! on and may be stopped (see the `sched` module docs). That window runs under a stop point:
//! a stopped waiter's cleanup takes its own entry out of the queue, or, if a waker already
//! took it, passes the wake-up on to the next waiter, so a stop never swallows a wake-up meant
//! for a live thread. A waker that meets a stale entry anyway (a stopped thread before its
//! cleanup) finds the wake-up refused and goes on to the next waiter.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dks_sched::{Event, queue};

use super::thread::Thread;
use crate::hw::stop::{self, Completion};
use crate::hw::sync::{IrqMutex, IrqMutexGuard};

/// Entries of stopped threads that wakers found and dropped (the wake-up went on to the next
/// waiter).
pub static STALE_WAITERS: AtomicU64 = AtomicU64::new(0);

/// Threads waiting for something.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiters: IrqMutex<VecDeque<Arc<Thread>>>,
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> WaitQueue {
        WaitQueue {
            waiters: IrqMutex::new(VecDeque::new()),
        }
    }

    /// Blocks the calling thread until `condition()` holds (it is checked under the queue's
    /// lock, before every sleep).
    ///
    /// # Panics
    /// If the caller is not a thread, or is a stopped one (which cannot sleep).
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        let me = super::current().expect("wait_until called outside a thread");
        let mut waiters = self.waiters.lock();
        loop {
            if condition() {
                return;
            }
            if let Err(refused) = me.state.apply(Event::Park) {
                panic!("{} cannot wait: {refused}", me.name());
            }
            waiters.push_back(me.clone());
            drop(waiters);
            let mut relocked: Option<IrqMutexGuard<'_, VecDeque<Arc<Thread>>>> = None;
            let window = stop::call(&me.stop_point, &mut || {
                wait_hook(&me, WaitPoint::Registered);
                super::block();
                wait_hook(&me, WaitPoint::Woken);
                relocked = Some(self.waiters.lock());
            });
            waiters = match (window, relocked) {
                (Completion::Returned, Some(waiters)) => waiters,
                (Completion::Returned, None) => unreachable!("the window relocks the queue"),
                (Completion::Stopped, _) => {
                    self.leave(&me);
                    drop(me);
                    super::continue_stop()
                }
            };
        }
    }

    /// The cleanup of a waiter stopped in its window: takes its entry out, or passes on the
    /// wake-up a waker gave it (only wakers take entries out).
    fn leave(&self, me: &Arc<Thread>) {
        let mut waiters = self.waiters.lock();
        if let Some(at) = waiters.iter().position(|t| Arc::ptr_eq(t, me)) {
            waiters.remove(at);
            return;
        }
        drop(waiters);
        self.wake_one();
    }

    /// How many threads are registered.
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    /// Whether no thread is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes the longest waiter that accepts the wake-up (entries of stopped threads are
    /// dropped on the way); returns whether there was one.
    pub fn wake_one(&self) -> bool {
        let result = queue::wake_first(
            || self.waiters.lock().pop_front(),
            |thread, event| thread.state.apply(event),
        );
        if result.dropped > 0 {
            STALE_WAITERS.fetch_add(result.dropped as u64, Ordering::Relaxed);
        }
        match result.woken {
            Some((thread, transition)) => {
                super::after_wake(thread, transition);
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter; returns how many accepted the wake-up.
    pub fn wake_all(&self) -> usize {
        let waiters = core::mem::take(&mut *self.waiters.lock());
        let mut woken = 0;
        for thread in waiters {
            if super::deliver_wake(thread) {
                woken += 1;
            } else {
                STALE_WAITERS.fetch_add(1, Ordering::Relaxed);
            }
        }
        woken
    }
}

/// Where in `wait_until` a test hook runs (interrupts on at both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitPoint {
    /// Registered as a waiter, before switching away.
    Registered,
    /// Back from the switch (woken), before taking the lock to check again.
    Woken,
}

/// Which threads a test hook is armed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookTarget {
    /// The thread with this id.
    Thread(u64),
    /// Every thread with this name.
    Named(&'static str),
}

/// A test hook armed at one point of `wait_until`, for a number of runs.
struct WaitHook {
    target: HookTarget,
    point: WaitPoint,
    runs_left: u32,
    hook: Arc<dyn Fn() + Send + Sync>,
}

static HOOK_ARMED: AtomicBool = AtomicBool::new(false);
static HOOK: IrqMutex<Option<WaitHook>> = IrqMutex::new(None);

/// Arms `hook` to run at `point` of `wait_until`, in the window, for the next `runs` waits of
/// the threads `target` names (tests that must reach that window deterministically, as a
/// waker on another CPU or a fault would).
pub fn arm_wait_hook(
    target: HookTarget,
    point: WaitPoint,
    runs: u32,
    hook: Arc<dyn Fn() + Send + Sync>,
) {
    *HOOK.lock() = Some(WaitHook {
        target,
        point,
        runs_left: runs,
        hook,
    });
    HOOK_ARMED.store(runs > 0, Ordering::Release);
}

/// Disarms the hook; returns how many runs it had left.
pub fn disarm_wait_hook() -> u32 {
    HOOK_ARMED.store(false, Ordering::Release);
    HOOK.lock().take().map_or(0, |armed| armed.runs_left)
}

fn wait_hook(me: &Thread, here: WaitPoint) {
    if !HOOK_ARMED.load(Ordering::Acquire) {
        return;
    }
    let hook = {
        let mut armed = HOOK.lock();
        let Some(hook) = armed.as_mut() else {
            return;
        };
        let mine = match hook.target {
            HookTarget::Thread(id) => id == me.id(),
            HookTarget::Named(name) => name == me.name(),
        };
        if !mine || hook.point != here || hook.runs_left == 0 {
            return;
        }
        hook.runs_left -= 1;
        if hook.runs_left == 0 {
            HOOK_ARMED.store(false, Ordering::Release);
        }
        hook.hook.clone()
    };
    hook();
}

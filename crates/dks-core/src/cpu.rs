//! What each CPU owns: its magazine and its stack cache.
//!
//! [`PerCpu`] is the state only its own CPU touches, with interrupts off
//! (the kernel keeps it behind a per-CPU guard; the fault handler, running on
//! the #PF IST stack, borrows its magazine). Its counters are kept apart, in
//! [`CpuCounters`](crate::CpuCounters), because other CPUs read them.

use crate::cache::StackCache;
use crate::layout::StackLayout;
use crate::magazine::Magazine;

/// The number of a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(u32);

impl CpuId {
    /// Returns CPU number `index`.
    #[must_use]
    pub const fn new(index: u32) -> Self {
        Self(index)
    }

    /// Returns the CPU number.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// Returns the CPU number as an index into a per-CPU table.
    #[must_use]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// The stack state one CPU owns: touched only by that CPU, interrupts off.
#[derive(Debug)]
pub struct PerCpu {
    /// Pre-allocated, zeroed frames for stack faults on this CPU.
    pub magazine: Magazine,
    /// Stacks freed on this CPU, kept for reuse.
    pub cache: StackCache,
}

impl PerCpu {
    /// Returns the empty state of CPU `cpu` for stacks of `layout`.
    #[must_use]
    pub fn new(cpu: CpuId, layout: &StackLayout) -> Self {
        Self {
            magazine: Magazine::new(cpu, layout),
            cache: StackCache::new(),
        }
    }

    /// Returns the CPU this state belongs to.
    #[must_use]
    pub const fn cpu(&self) -> CpuId {
        self.magazine.cpu()
    }
}

//! Stack tables and counters for tests and benchmarks that hold their stacks themselves.

use crate::account::{Account, Ledger};
use crate::counters::{self, CpuCounters, Tally, Totals};
use crate::fault::{Busy, StackTable};
use crate::group::GroupCharge;
use crate::layout::SlotIndex;
use crate::magazine::Magazine;
use crate::stack::Stack;

/// A [`StackTable`] of one CPU's magazine and at most one live stack, never busy.
#[derive(Debug)]
pub struct OneStack<'a> {
    /// The magazine of the CPU that faults.
    pub magazine: &'a mut Magazine,
    /// The one live stack, with its group's charge.
    pub stack: Option<(&'a mut Stack, &'a GroupCharge)>,
}

impl<'a> OneStack<'a> {
    /// Returns the table of `magazine` and the live `stack` of `group`.
    pub fn new(magazine: &'a mut Magazine, stack: &'a mut Stack, group: &'a GroupCharge) -> Self {
        Self {
            magazine,
            stack: Some((stack, group)),
        }
    }
}

impl StackTable for OneStack<'_> {
    fn account(&self, slot: SlotIndex) -> Account {
        match &self.stack {
            Some((stack, _)) if stack.slot() == slot => stack.account(),
            _ => Account::System,
        }
    }

    fn with_stack<R>(
        &mut self,
        owner: SlotIndex,
        serve: impl FnOnce(&mut Magazine, Option<(&mut Stack, &GroupCharge)>) -> R,
    ) -> Result<R, Busy> {
        let live = match &mut self.stack {
            Some((stack, group)) if stack.slot() == owner => Some((&mut **stack, &**group)),
            _ => None,
        };
        Ok(serve(self.magazine, live))
    }
}

/// The counters of one CPU and a ledger: what a test that runs on one CPU counts into.
#[derive(Debug, Default)]
pub struct OneCpuCounters {
    /// The CPU's events.
    pub cpu: CpuCounters,
    /// The accounts' levels and thread lives.
    pub ledger: Ledger,
}

impl OneCpuCounters {
    /// Returns counters that are all zero.
    pub const fn new() -> Self {
        Self {
            cpu: CpuCounters::new(),
            ledger: Ledger::new(),
        }
    }

    /// Returns where the mechanism counts.
    pub const fn tally(&self) -> Tally<'_> {
        Tally::new(&self.cpu, &self.ledger)
    }

    /// Returns everything counted so far.
    pub fn totals(&self) -> Totals {
        counters::sum([&self.cpu], &self.ledger)
    }
}

//! A small machine for the unit tests: one CPU, one group, an emulated
//! platform.

use crate::account::Account;
use crate::addr::VirtAddr;
use crate::counters::Counter;
use crate::cpu::{CpuId, PerCpu};
use crate::emulated::{EmulatedConfig, EmulatedPlatform, OneCpuCounters, OneStack};
use crate::fault::{self, FaultOutcome};
use crate::group::{GroupCharge, GroupId};
use crate::layout::{SlotIndex, StackLayout, StackPage};
use crate::policy::Policy;
use crate::stack::{self, Stack, StackSource, StackSpec};

pub(crate) struct Fixture {
    pub platform: EmulatedPlatform,
    pub layout: StackLayout,
    pub cpu: PerCpu,
    pub counters: OneCpuCounters,
    pub group: GroupCharge,
}

impl Fixture {
    /// 16 KiB stacks, 8 slots, 64 frames.
    pub fn new() -> Self {
        Self::with(0x4000, 64)
    }

    pub fn with(max_stack_bytes: u64, frames: u32) -> Self {
        let layout = StackLayout::try_with_default_base(max_stack_bytes, 8).unwrap();
        Self {
            platform: EmulatedPlatform::new(EmulatedConfig {
                cpus: 2,
                frames,
                ..EmulatedConfig::default()
            }),
            cpu: PerCpu::new(CpuId::new(0), &layout),
            layout,
            counters: OneCpuCounters::new(),
            group: GroupCharge::new(None),
        }
    }

    pub fn spec(policy: Policy) -> StackSpec {
        StackSpec::new(policy, GroupId::new(0))
    }

    /// The value of `counter` over every account.
    pub fn count(&self, counter: Counter) -> i64 {
        self.counters.totals().get(counter)
    }

    /// The value of `counter` for the account of `policy`.
    pub fn count_of(&self, policy: Policy, counter: Counter) -> i64 {
        self.counters
            .totals()
            .account(Account::Policy(policy))
            .get(counter)
    }

    /// Creates a stack in a fresh `slot`.
    pub fn create(&mut self, policy: Policy, slot: u32) -> Stack {
        let created = stack::create(
            &mut self.platform,
            &self.layout,
            self.counters.tally(),
            &self.group,
            Self::spec(policy),
            StackSource::Fresh(SlotIndex::new(slot)),
        )
        .unwrap();
        created.stack
    }

    pub fn page_addr(&self, stack: &Stack, page: u8) -> VirtAddr {
        self.layout.page_addr(stack.slot(), StackPage::new(page))
    }

    /// The stack pointer `depth` bytes below the top of `stack`.
    pub fn sp(&self, stack: &Stack, depth: u64) -> VirtAddr {
        VirtAddr::new(self.layout.stack_top(stack.slot()).as_u64() - depth)
    }

    /// The table of this CPU's magazine and `stack` as the only live stack.
    pub fn table<'a>(
        magazine: &'a mut crate::magazine::Magazine,
        stack: &'a mut Stack,
        group: &'a GroupCharge,
    ) -> OneStack<'a> {
        OneStack::new(magazine, stack, group)
    }

    /// Takes a fault at `addr`, with `stack` as the only live stack.
    pub fn fault(&mut self, stack: &mut Stack, addr: VirtAddr) -> FaultOutcome {
        let mut table = OneStack::new(&mut self.cpu.magazine, stack, &self.group);
        fault::handle(
            &mut self.platform,
            &self.layout,
            self.counters.tally(),
            &mut table,
            addr,
        )
    }

    /// Touches every page of `stack` down to `depth` bytes, serving faults;
    /// panics on anything but a served fault.
    pub fn touch_to_depth(&mut self, stack: &mut Stack, depth: u64) {
        for page in self.layout.pages_to_depth(depth).iter() {
            let addr = self.page_addr(stack, page.index());
            if let Err(fault) = self.platform.touch(addr) {
                let outcome = self.fault(stack, fault.addr);
                assert!(
                    matches!(outcome, FaultOutcome::Served { .. }),
                    "{outcome:?}"
                );
                self.platform.touch(addr).unwrap();
            }
        }
    }

    pub fn refill(&mut self) {
        let refill = self
            .cpu
            .magazine
            .refill(&mut self.platform, crate::frame::Urgency::Atomic);
        assert!(refill.is_complete());
    }
}

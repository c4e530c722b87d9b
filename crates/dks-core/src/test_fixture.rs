//! A small machine for the unit tests: one CPU, one group, an emulated
//! platform.

use crate::addr::VirtAddr;
use crate::counters::CpuCounters;
use crate::cpu::{CpuId, PerCpu};
use crate::emulated::{EmulatedConfig, EmulatedPlatform};
use crate::fault::{self, FaultOutcome};
use crate::group::{GroupCharge, GroupId};
use crate::layout::{SlotIndex, StackLayout, StackPage};
use crate::policy::Policy;
use crate::stack::{self, Stack, StackSource, StackSpec};

pub(crate) struct Fixture {
    pub platform: EmulatedPlatform,
    pub layout: StackLayout,
    pub cpu: PerCpu,
    pub counters: CpuCounters,
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
            counters: CpuCounters::new(),
            group: GroupCharge::new(None),
        }
    }

    pub fn spec(policy: Policy) -> StackSpec {
        StackSpec {
            policy,
            group: GroupId::new(0),
        }
    }

    /// Creates a stack in a fresh `slot`.
    pub fn create(&mut self, policy: Policy, slot: u32) -> Stack {
        let created = stack::create(
            &mut self.platform,
            &self.layout,
            &self.counters,
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

    /// Takes a fault at `addr`, with `stack` as the only live stack.
    pub fn fault(&mut self, stack: &mut Stack, addr: VirtAddr) -> FaultOutcome {
        let group = &self.group;
        fault::handle(
            &mut self.platform,
            &self.layout,
            &mut self.cpu.magazine,
            &self.counters,
            addr,
            |owner| (owner == stack.slot()).then_some((stack, group)),
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

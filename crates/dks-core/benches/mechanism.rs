//! The cost of dks-core's own work on the hot paths: the stack-fault
//! decision and the context-switch work of each policy.
//!
//! The platform here is a flat array page table with no TLB model, so the
//! numbers are dks-core's bookkeeping plus a trivial page-table write; the
//! kernel's real cost (the IST detour, `invlpg`, IPIs) is measured in the
//! guest. Run with `cargo bench -p dks-core`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dks_core::emulated::{OneCpuCounters, OneStack};
use dks_core::switch::{self, SwitchOut, SwitchOutReason};
use dks_core::{
    AbsentPte, CpuId, FaultOutcome, FlushBatch, FlushNeed, Frame, GroupCharge, GroupId, PerCpu,
    Platform, Policy, SlotIndex, Stack, StackLayout, StackPage, StackSource, StackSpec, Urgency,
    VirtAddr, fault, pte, stack,
};

/// A flat page table over the stack region and a stack of free frames.
struct FlatPlatform {
    base: u64,
    entries: Vec<u64>,
    free: Vec<u64>,
}

impl FlatPlatform {
    fn new(layout: &StackLayout) -> Self {
        let pages = u64::from(layout.slot_count()) * layout.slot_size_in_pages();
        Self {
            base: layout.base().as_u64(),
            entries: vec![0; pages as usize],
            free: (1..=64).map(|n| n * 4096).collect(),
        }
    }

    fn index(&self, addr: VirtAddr) -> usize {
        ((addr.as_u64() - self.base) / 4096) as usize
    }
}

impl Platform for FlatPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId::new(0)
    }

    fn alloc_frame(&mut self, _urgency: Urgency) -> Option<Frame> {
        self.free.pop().map(Frame::from_phys_addr)
    }

    fn free_frame(&mut self, frame: Frame) {
        self.free.push(frame.phys_addr());
    }

    fn map_stack_page(&mut self, addr: VirtAddr, frame: Frame) -> dks_core::Flush {
        let index = self.index(addr);
        self.entries[index] = frame.phys_addr() | pte::bits::PRESENT | pte::bits::WRITABLE;
        dks_core::Flush::new(addr, FlushNeed::NotCached)
    }

    fn unmap_stack_page(&mut self, addr: VirtAddr, leave: AbsentPte) -> (Frame, dks_core::Flush) {
        let index = self.index(addr);
        let entry = std::mem::replace(&mut self.entries[index], leave.raw());
        let need = if entry & pte::bits::ACCESSED != 0 {
            FlushNeed::Shootdown
        } else {
            FlushNeed::NotCached
        };
        let frame = Frame::from_phys_addr(entry & pte::bits::ADDRESS_MASK);
        (frame, dks_core::Flush::new(addr, need))
    }

    fn write_absent(&mut self, addr: VirtAddr, entry: AbsentPte) {
        let index = self.index(addr);
        self.entries[index] = entry.raw();
    }

    fn read_entry(&self, addr: VirtAddr) -> u64 {
        self.entries[self.index(addr.page_base())]
    }

    fn flush(&mut self, batch: FlushBatch) {
        let _ = black_box(batch);
    }
}

/// One CPU with a full magazine and one fresh stack of `policy`.
struct Machine {
    platform: FlatPlatform,
    layout: StackLayout,
    cpu: PerCpu,
    counters: OneCpuCounters,
    group: GroupCharge,
    stack: Stack,
}

impl Machine {
    fn new(policy: Policy) -> Self {
        let layout = StackLayout::try_with_default_base(0x4000, 8).unwrap();
        let mut platform = FlatPlatform::new(&layout);
        let counters = OneCpuCounters::new();
        let group = GroupCharge::new(None);
        let mut cpu = PerCpu::new(CpuId::new(0), &layout);
        let _ = cpu.magazine.refill(&mut platform, Urgency::Atomic);
        let created = stack::create(
            &mut platform,
            &layout,
            counters.tally(),
            &group,
            StackSpec::new(policy, GroupId::new(0)),
            StackSource::Fresh(SlotIndex::new(5)),
        )
        .unwrap();
        Self {
            platform,
            layout,
            cpu,
            counters,
            group,
            stack: created.stack,
        }
    }

    fn sp(&self, depth: u64) -> VirtAddr {
        VirtAddr::new(self.layout.stack_top(self.stack.slot()).as_u64() - depth)
    }
}

fn fault_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("fault");
    group.bench_function("served", |b| {
        b.iter_batched_ref(
            || Machine::new(Policy::Guaranteed),
            |m| {
                let addr = m.layout.page_addr(m.stack.slot(), StackPage::new(1));
                let Machine {
                    platform,
                    layout,
                    cpu,
                    counters,
                    group,
                    stack,
                } = m;
                let outcome = fault::handle(
                    platform,
                    layout,
                    counters.tally(),
                    &mut OneStack::new(&mut cpu.magazine, stack, group),
                    black_box(addr),
                );
                assert!(matches!(outcome, FaultOutcome::Served { .. }));
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("not_a_stack_page", |b| {
        let mut m = Machine::new(Policy::Guaranteed);
        b.iter(|| {
            let mut nobody = OneStack {
                magazine: &mut m.cpu.magazine,
                stack: None,
            };
            let outcome = fault::handle(
                &mut m.platform,
                &m.layout,
                m.counters.tally(),
                &mut nobody,
                black_box(VirtAddr::new(0x1000)),
            );
            black_box(outcome)
        });
    });
    group.finish();
}

fn switch_work(c: &mut Criterion) {
    let mut group = c.benchmark_group("switch");
    for policy in Policy::ALL {
        group.bench_function(policy.name(), |b| {
            b.iter_batched_ref(
                || Machine::new(policy),
                |m| {
                    let admission = switch::prepare(
                        &mut m.platform,
                        &m.layout,
                        &mut m.cpu.magazine,
                        m.counters.tally(),
                        &m.group,
                        &mut m.stack,
                    );
                    assert_eq!(black_box(admission), switch::Admission::Admitted);
                    let refill = switch::finish(
                        &mut m.platform,
                        &mut m.cpu.magazine,
                        m.counters.tally(),
                        &mut m.stack,
                    );
                    black_box(refill);
                    let saved_sp = m.sp(256);
                    let given_back = switch::switch_out(
                        &mut m.platform,
                        &m.layout,
                        &mut m.cpu.magazine,
                        m.counters.tally(),
                        &m.group,
                        &mut m.stack,
                        SwitchOut {
                            saved_sp,
                            reason: SwitchOutReason::Preempted,
                        },
                    );
                    black_box(given_back)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, fault_decision, switch_work);
criterion_main!(benches);

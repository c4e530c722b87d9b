//! What the kernel does with each trap, in safe code. The entry path (`hw::trap_entry`) calls
//! [`on_ist`] on the vector's IST stack, [`on_interrupted_stack`] after a bounce, [`on_nmi`]
//! for an NMI and `mce::on_exception` for a machine check.
//!
//! - Page faults, in this order: a stack fault (a not-yet-populated page of a thread stack) is
//!   served from this CPU's magazine right here; a guard-page hit or a stack fault that
//!   cannot be served stops the thread (or the kernel, when no thread can be blamed safely);
//!   a fault a test expects goes to its catcher; a fault in the lazy region is served on the
//!   interrupted stack (or directly, in its "direct" half); anything else is fatal.
//! - Device interrupts and IPIs are handled on their IST stack, as Linux handles them on its
//!   IRQ stacks, so they do not deepen the interrupted thread's stack; only a timer interrupt
//!   (or reschedule IPI) that preempts the thread moves to the thread's stack, where the entry
//!   switches away. Before any move, every page the moved frame (and, for a preemption, the
//!   switch frame below it) will occupy is populated, so the move itself cannot fault.
//! - NMIs are counted per CPU (and those that interrupted a live IST frame) and return. They
//!   never fault, allocate or take a lock (`docs/traps.md`).
//! - Every other exception is fatal unless a test's catcher expects it: one `Exception`
//!   record, then the boot ends with `ExitCode::Exception`.

use alloc::borrow::Cow;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dks_protocol::exit::ExitCode;
use dks_protocol::record::{Exception, GuardHit, Record, StackFault};

use crate::hw::apic::{self, vector};
use crate::hw::catch;
use crate::hw::cpu_ops::{self, IrqGuard, MAX_CPUS};
use crate::hw::gdt::Ist;
use crate::hw::idt::vectors;
use crate::hw::kstacks;
use crate::hw::trap_entry::{
    self as entry, Disposition, FRAME_BYTES, Nesting, PREEMPT_FRAME_BYTES, TrapFrame, TrapHandlers,
    bounce_target,
};
use crate::stacks::{self, FaultResult};
use crate::{lazy, mce, report, sched, tlb, workload};

/// Set by `crash=nested-page-fault`: the next fault in the lazy region's direct half touches
/// an unmapped address from inside the #PF handler, so that the nested fault is detected.
pub static PROVOKE_NESTED_FAULT: AtomicBool = AtomicBool::new(false);

/// The id of the last thread whose stack overflowed into its guard page (0: none yet).
pub static LAST_GUARD_HIT_THREAD: AtomicU64 = AtomicU64::new(0);

/// The address of the last touch of a packed stack (0: none yet), and the id of the thread
/// that made it (the culprit, which is stopped; the packed stack's owner sleeps on).
pub static LAST_PACKED_TOUCH: AtomicU64 = AtomicU64::new(0);
/// See [`LAST_PACKED_TOUCH`].
pub static LAST_PACKED_TOUCH_THREAD: AtomicU64 = AtomicU64::new(0);

/// Timer interrupts per CPU since boot.
pub static TIMER_TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Preemptions carried out per CPU (the thread moved to the scheduler loop from a trap).
pub static PREEMPTIONS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Per CPU, the stack pointer a timer interrupt last found when the CPU ran no thread (its
/// scheduler loop, idle): which stack each scheduler loop runs on, for a test.
pub static IDLE_STACK_POINTER: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// NMIs handled per CPU.
pub static NMIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// NMIs per CPU that interrupted a live IST frame (a #PF, #MC, interrupt or exception
/// handler).
pub static NMIS_NESTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Test hooks that run inside a handler (set by a test, taken by the handler once).
pub mod hooks {
    use core::sync::atomic::AtomicBool;

    /// The next fault in the lazy region's direct half sends an NMI to its own CPU from inside
    /// the #PF handler and waits for it to be taken there.
    pub static NMI_IN_PAGE_FAULT: AtomicBool = AtomicBool::new(false);
    /// The next NMI raises a (recoverable, staged) machine check from inside the NMI handler,
    /// then sends itself another NMI, which must stay pending until the first one returns.
    pub static MACHINE_CHECK_IN_NMI: AtomicBool = AtomicBool::new(false);
    /// The next whole-frame bounce skips populating its target (`crash=bounce-copy-fault`):
    /// the copy of the live #PF frame faults, which the #PF entry must report.
    pub static SKIP_BOUNCE_POPULATION: AtomicBool = AtomicBool::new(false);
    /// The next poll that finds a corrected error in `mce::TEST_BANK` raises a machine check
    /// on that bank (a recoverable error overwriting it, as the hardware would) between its
    /// first look at the status and its read of the whole bank.
    pub static MACHINE_CHECK_IN_POLL: AtomicBool = AtomicBool::new(false);
    /// The next NMI reads an unmapped page of the lazy region's direct half from inside its
    /// handler (`crash=nmi-page-fault`): a fault that would be served, had it not come from
    /// the NMI handler.
    pub static PAGE_FAULT_IN_NMI: AtomicBool = AtomicBool::new(false);
    /// The next machine check does the same from inside its handler
    /// (`crash=machine-check-page-fault`).
    pub static PAGE_FAULT_IN_MACHINE_CHECK: AtomicBool = AtomicBool::new(false);
}

/// For `crash=nmi-page-fault` and `crash=machine-check-page-fault`: from inside a handler
/// that must never fault, touches a page whose fault the #PF handler would otherwise serve.
pub fn fault_inside_handler() {
    let _ = catch::fault_read(lazy::DIRECT.start + 5 * crate::hw::layout::PAGE_BYTES);
}

const RFLAGS_IF: u64 = 1 << 9;

/// Handles a trap on its IST stack, or says where to move it.
pub fn on_ist(frame: &mut TrapFrame) -> Disposition {
    // Interrupts are off in every trap (interrupt gates); the guard proves it to the per-CPU
    // accessors.
    let irq = IrqGuard::new();
    let vector = frame.vector as u8;
    match vector {
        vectors::PAGE_FAULT => page_fault(frame),
        vector::TIMER => {
            TIMER_TICKS[cpu_ops::current_id(&irq) as usize].fetch_add(1, Ordering::Relaxed);
            apic::eoi();
            mce::poll();
            mce::wake_logger();
            if sched::tick() {
                preempt(&irq, frame)
            } else {
                if sched::try_current().is_none() {
                    IDLE_STACK_POINTER[cpu_ops::current_id(&irq) as usize]
                        .store(frame.rsp, Ordering::Relaxed);
                }
                Disposition::Done
            }
        }
        vector::TLB_SHOOTDOWN => {
            tlb::serve(&irq);
            apic::eoi();
            Disposition::Done
        }
        vector::RESCHEDULE => {
            apic::eoi();
            if sched::reschedule_ipi() {
                preempt(&irq, frame)
            } else {
                Disposition::Done
            }
        }
        vector::SPURIOUS => Disposition::Done,
        v if v >= vectors::FIRST_INTERRUPT => {
            apic::eoi();
            Disposition::Done
        }
        _ => {
            if catch::redirect(frame, 0) {
                Disposition::Done
            } else {
                fatal(frame, 0)
            }
        }
    }
}

/// Handles a trap that was moved to the interrupted stack.
pub fn on_interrupted_stack(frame: &mut TrapFrame) {
    match frame.vector as u8 {
        vectors::PAGE_FAULT => {
            let address = frame.fault_address();
            if !lazy::handle_bounced(frame, address) {
                fatal(frame, address);
            }
        }
        other => unreachable!("vector {other} is never bounced with its full frame"),
    }
}

/// Decides a preemption: populates the part of the thread's stack the entry will use (the
/// light frame and the switch frame, [`PREEMPT_FRAME_BYTES`] below the bounce target), then
/// hands the entry the operands of the switch. Nothing else runs on the thread's stack.
fn preempt(irq: &IrqGuard, frame: &mut TrapFrame) -> Disposition {
    let Some(thread) = sched::try_current() else {
        return Disposition::Done;
    };
    // The save area comes at the first preemption; without room for it, no preemption now.
    let Some(fpu_area) = thread.fpu_area() else {
        return Disposition::Done;
    };
    let target = bounce_target(frame.rsp);
    let lowest = target - PREEMPT_FRAME_BYTES as u64;
    if let Err((address, failure)) = prepare_move(frame, lowest) {
        drop(thread);
        return stack_failure(frame, address, failure);
    }
    let Some((save_at, load_rsp)) = sched::preempt_switch() else {
        return Disposition::Done;
    };
    entry::set_preempt_switch(irq, save_at, load_rsp);
    PREEMPTIONS[cpu_ops::current_id(irq) as usize].fetch_add(1, Ordering::Relaxed);
    Disposition::Preempt(target, fpu_area)
}

/// The kernel's trap handlers, installed in the entry path at boot
/// (`hw::trap_entry::install`): each forwards to the function of this module (or `mce`) that
/// handles it.
#[derive(Debug)]
pub enum KernelTraps {}

impl TrapHandlers for KernelTraps {
    #[inline]
    fn on_ist(frame: &mut TrapFrame) -> Disposition {
        on_ist(frame)
    }

    #[inline]
    fn nested_page_fault(frame: &mut TrapFrame, nesting: Nesting) -> ! {
        nested_page_fault(frame, nesting)
    }

    #[inline]
    fn on_nmi(frame: &mut TrapFrame, interrupted: Option<Ist>) {
        on_nmi(frame, interrupted);
    }

    #[inline]
    fn nested_nmi(frame: &mut TrapFrame) -> ! {
        nested_nmi(frame)
    }

    #[inline]
    fn on_machine_check(frame: &mut TrapFrame) {
        mce::on_exception(frame);
    }

    #[inline]
    fn on_interrupted_stack(frame: &mut TrapFrame) {
        on_interrupted_stack(frame);
    }
}

/// A page fault the #PF entry found nested (see `hw::trap_entry`): the frame of the first fault
/// has been overwritten, or the fault came from the NMI or machine-check handler, which must
/// never fault. Report and stop; there is nothing to return to.
pub fn nested_page_fault(frame: &TrapFrame, nesting: Nesting) -> ! {
    report_exception_forced(frame, cpu_ops::read_cr2());
    report::exit_forced(ExitCode::Exception, nesting.describe())
}

/// Handles an NMI on the NMI stack: counts it (and whether it interrupted a live IST frame)
/// and returns. Touches only this CPU's counters: no lock, no allocation, no fault.
pub fn on_nmi(_frame: &TrapFrame, interrupted: Option<Ist>) {
    let irq = IrqGuard::new();
    let cpu = cpu_ops::current_id(&irq) as usize;
    NMIS[cpu].fetch_add(1, Ordering::Relaxed);
    if interrupted.is_some() {
        NMIS_NESTED[cpu].fetch_add(1, Ordering::Relaxed);
    }
    if hooks::PAGE_FAULT_IN_NMI.load(Ordering::Relaxed)
        && hooks::PAGE_FAULT_IN_NMI.swap(false, Ordering::AcqRel)
    {
        fault_inside_handler();
    }
    if hooks::MACHINE_CHECK_IN_NMI.swap(false, Ordering::AcqRel) {
        mce::raise_staged_recoverable();
        apic::send_nmi_to_self();
    }
}

/// An NMI while this CPU's NMI frame was live: only possible if something executed `iretq`
/// inside the NMI handler. Report and stop.
pub fn nested_nmi(frame: &TrapFrame) -> ! {
    report_exception_forced(frame, 0);
    report::exit_forced(
        ExitCode::Exception,
        "nested NMI: an NMI arrived while the NMI frame was live",
    )
}

/// Moves the trap to the interrupted stack, after populating the part the frame will use.
/// `address` is the faulting address for a page fault (kept for the handler), else 0.
fn bounce(frame: &mut TrapFrame, address: u64) -> Disposition {
    let target = bounce_target(frame.rsp);
    let skip = hooks::SKIP_BOUNCE_POPULATION.load(Ordering::Relaxed)
        && hooks::SKIP_BOUNCE_POPULATION.swap(false, Ordering::AcqRel);
    let populated = if skip {
        Ok(())
    } else {
        prepare_move(frame, target - FRAME_BYTES as u64)
    };
    match populated {
        Ok(()) => {
            frame.set_fault_address(address);
            Disposition::Bounce(target)
        }
        Err((address, failure)) => stack_failure(frame, address, failure),
    }
}

/// Before a move to the interrupted stack: makes every page present from `lowest` (the lowest
/// byte the move writes) up to the page the interrupted stack pointer points into, which
/// includes the red zone and the stack pointer's own page, not only the bytes written. A
/// stack pointer that ran into its guard page (a frame's `sub rsp` for a frame that overflows,
/// before its first store) puts the bounce target below the guard page, in the top page of
/// the stack of the next slot down, which is present while that slot's thread lives: with
/// only the written bytes checked, the move went there (`trap_with_stack_pointer_in_guard`).
/// With the guard page in the span, the move is a guard hit and the thread is stopped.
fn prepare_move(frame: &TrapFrame, lowest: u64) -> Result<(), (u64, FaultResult)> {
    stacks::prepare_bounce(lowest, frame.rsp + 1)
}

fn page_fault(frame: &mut TrapFrame) -> Disposition {
    let cr2 = cpu_ops::read_cr2();
    match stacks::handle_fault(cr2) {
        FaultResult::Served => {
            return Disposition::Done;
        }
        FaultResult::NotStack => {}
        failure => return stack_failure(frame, cr2, failure),
    }
    if let Some(stack) = kstacks::guard_containing(cr2) {
        report::emit(&Record::GuardHit(GuardHit {
            cpu: cpu_ops::id_hint(),
            task: Cow::Borrowed("kernel-stack"),
            address: cr2,
            depth_bytes: stack.top() - cr2,
            rip: frame.rip,
        }));
        if catch::redirect(frame, cr2) {
            return Disposition::Done;
        }
        fatal(frame, cr2)
    }
    if catch::redirect(frame, cr2) {
        return Disposition::Done;
    }
    if lazy::DIRECT.contains(&cr2) && PROVOKE_NESTED_FAULT.swap(false, Ordering::AcqRel) {
        // A fault on the #PF IST stack while this frame is live: must be caught, not lost.
        let _ = catch::fault_read(lazy::BOUNCED.end - 8);
    }
    if lazy::DIRECT.contains(&cr2)
        && hooks::NMI_IN_PAGE_FAULT.load(Ordering::Relaxed)
        && hooks::NMI_IN_PAGE_FAULT.swap(false, Ordering::AcqRel)
    {
        nmi_here_and_wait();
    }
    if lazy::DIRECT.contains(&cr2) && lazy::handle_direct(cr2) {
        return Disposition::Done;
    }
    if lazy::BOUNCED.contains(&cr2) {
        return bounce(frame, cr2);
    }
    fatal(frame, cr2)
}

/// A guard hit or an unservable stack fault at `address`: report it, then stop the thread
/// that owns the stack, on the top of that stack, if it is the thread this CPU runs, it is not
/// one of the kernel's own, and it had interrupts on (so it holds no spin lock); otherwise
/// stop the kernel.
fn stack_failure(frame: &mut TrapFrame, address: u64, failure: FaultResult) -> Disposition {
    let task = sched::try_current();
    let name = task.as_ref().map_or("(no thread)", |t| t.name());
    let slot = match failure {
        FaultResult::Guard { slot, depth } => {
            if let Some(task) = &task {
                LAST_GUARD_HIT_THREAD.store(task.id(), Ordering::Relaxed);
            }
            report::emit(&Record::GuardHit(GuardHit {
                cpu: cpu_ops::id_hint(),
                task: Cow::Borrowed(name),
                address,
                depth_bytes: depth,
                rip: frame.rip,
            }));
            slot
        }
        FaultResult::Fatal {
            slot,
            depth,
            reason,
        } => {
            report::emit(&Record::StackFault(StackFault {
                cpu: cpu_ops::id_hint(),
                task: Cow::Borrowed(name),
                policy: task.as_ref().map(|t| t.stack.policy()),
                address,
                depth_bytes: depth,
                reason: Cow::Borrowed(reason),
            }));
            match (reason, &task) {
                // A touch of another thread's packed stack: the bug is the toucher's, which
                // is stopped; the owner sleeps on, its bytes safe in its buffer.
                (FaultResult::PACKED_STACK, Some(culprit)) if culprit.stack.slot() != slot => {
                    LAST_PACKED_TOUCH_THREAD.store(culprit.id(), Ordering::Relaxed);
                    LAST_PACKED_TOUCH.store(address, Ordering::Release);
                    report::log(format_args!(
                        "pack: {} touched the packed stack of slot {} at {address:#x} (rip \
                         {:#x}): it is stopped",
                        name,
                        slot.as_u32(),
                        frame.rip
                    ));
                    culprit.stack.slot()
                }
                _ => slot,
            }
        }
        FaultResult::Served | FaultResult::NotStack => unreachable!("not a failure"),
    };
    drop(task);
    if catch::redirect(frame, address) {
        return Disposition::Done;
    }
    // The kernel's own threads (the per-CPU workers, stack reclaim, the machine-check logger,
    // `main`) are never stopped: the kernel depends on each of them. A stopped worker would
    // never free the stacks of threads that exit on its CPU, a stopped `main` would never
    // end the boot (it hung until the host's timeout).
    if stacks::is_system(slot) {
        stop_kernel(
            frame,
            address,
            "stack overflow or unservable stack fault in one of the kernel's own threads",
        )
    }
    let interrupts_were_on = frame.rflags & RFLAGS_IF != 0;
    // With interrupts off the thread may hold a spin lock: a real kernel stops here. Only a
    // workload's registered interrupts-off section can be given up (its lock is known); that
    // is counted as the kernel stop it would have been, and the thread is stopped.
    let in_section = !interrupts_were_on && workload::in_irqoff_section(&IrqGuard::new(), slot);
    if let Some((rsp, rip)) = (interrupts_were_on || in_section)
        .then(|| sched::prepare_kill(slot))
        .flatten()
    {
        // An interrupt that gets here (a preemption) was acknowledged before it decided to
        // preempt, so there is no EOI left to send.
        if in_section {
            workload::abandon_irqoff_section(&IrqGuard::new());
            stacks::note_kernel_stop(slot);
        } else {
            stacks::note_killed(slot);
        }
        frame.rsp = rsp;
        frame.rip = rip;
        return Disposition::Done;
    }
    if interrupts_were_on {
        stop_kernel(
            frame,
            address,
            "stack overflow or unservable stack fault outside the thread this CPU runs",
        )
    }
    stop_kernel(
        frame,
        address,
        "stack overflow or unservable stack fault with interrupts off (the thread may hold \
         a spin lock)",
    )
}

/// Reports the trap and ends the boot with `reason`.
fn stop_kernel(frame: &TrapFrame, cr2: u64, reason: &str) -> ! {
    report_exception(frame, cr2);
    report::exit(ExitCode::Exception, reason)
}

fn fatal(frame: &TrapFrame, cr2: u64) -> ! {
    report_exception(frame, cr2);
    report::exit(ExitCode::Exception, "unexpected exception")
}

fn report_exception(frame: &TrapFrame, cr2: u64) {
    report::emit(&exception_record(frame, cr2));
}

/// As [`report_exception`], for NMI and machine-check context (see `report::emit_forced`).
pub fn report_exception_forced(frame: &TrapFrame, cr2: u64) {
    report::emit_forced(&exception_record(frame, cr2));
}

/// Sends an NMI to this CPU and waits (a bounded time) until it was taken. From the #PF
/// handler (interrupts off).
fn nmi_here_and_wait() {
    let irq = IrqGuard::new();
    let counter = &NMIS[cpu_ops::current_id(&irq) as usize];
    let before = counter.load(Ordering::Acquire);
    apic::send_nmi_to_self();
    for _ in 0..10_000_000 {
        if counter.load(Ordering::Acquire) != before {
            return;
        }
        cpu_ops::relax();
    }
}

fn exception_record(frame: &TrapFrame, cr2: u64) -> Record<'static> {
    Record::Exception(Exception {
        cpu: cpu_ops::id_hint(),
        vector: frame.vector as u8,
        error_code: frame.has_error_code().then_some(frame.error_code),
        rip: frame.rip,
        rsp: frame.rsp,
        rflags: frame.rflags,
        cr2,
        registers: frame.registers(),
    })
}

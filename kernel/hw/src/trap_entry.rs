//! The trap entry path (IST flavour; a FRED entry would be a sibling module).
//!
//! Every vector enters on an IST stack (see `gdt::Ist`). Most enter through a 16-byte stub that
//! pushes a zero error code where the CPU pushes none, then the vector number, and jumps to
//! `trap_common`, which saves the general registers and the FPU/SSE state into a [`TrapFrame`]
//! and calls `dispatch`. `dispatch` either handles the trap right there and returns 0, or
//! returns a stack address, the *bounce target*, below which the trap continues on the
//! interrupted stack:
//!
//! - a whole-frame bounce (a page fault that must be able to sleep): a whole frame is made
//!   below the target, interrupts are enabled again if the interrupted code had them on, and
//!   `bounced` runs the handler there; it returns through the same frame. The #PF entry copies
//!   only the registers and the interrupt frame (176 bytes) and the fault address; the
//!   FPU/SSE image is reloaded (`fxrstor64`) and saved again below the target (`fxsave64`):
//!   two instructions instead of 64 more words of `rep movsq`;
//! - a preemption ([`Disposition::Preempt`]): only the registers and the interrupt frame move
//!   (192 bytes), the FPU/SSE image goes to the thread's own save area, and the entry itself
//!   does the first half of `context_switch` (`hw::context`) on the thread's stack: it pushes
//!   the same switch frame (64 bytes) below the moved frame, stores the stack pointer into the
//!   thread's saved-RSP cell and loads the scheduler loop's (both operands left in the per-CPU
//!   block by [`set_preempt_switch`]), then jumps to `context_switch_load`. No Rust code runs
//!   on the thread's stack below the moved frame, so everything a preemption puts there is
//!   exactly [`PREEMPT_FRAME_BYTES`], populated before the move; the move is marked live in
//!   `trap_state` until the CPU has left the thread's stack, so a page fault during it is
//!   reported as nested. When the thread is resumed, the scheduler's switch returns into the
//!   entry, which restores the FPU image and the registers and returns from the interrupt.
//!
//! The bounce target is the interrupted stack pointer minus the 128-byte red zone, rounded
//! down to 16 bytes: the interrupted function's red zone survives. Whoever chooses to bounce
//! must make sure that every page below the target that the frame will occupy is mapped
//! (`stacks::prepare_bounce`), because the copy must not fault.
//!
//! Three vectors have entries of their own, because their IST frame must never be
//! overwritten while it is live and nesting rules apply (`docs/traps.md`):
//!
//! - **#PF** (`trap_pf_entry`): before anything else it checks the per-CPU `trap_state`
//!   (`hw::percpu`). If a #PF, NMI or #MC frame is live on this CPU (or a preemption's frames
//!   are being moved), the fault is *nested*:
//!   its frame has just overwritten the live #PF frame, or it came from a handler that must
//!   never fault (and whose own `iretq` it would disturb). It then goes to
//!   `nested_dispatch`, which reports and stops the kernel. Otherwise the stub marks the #PF
//!   frame live; the mark is cleared only after the last read of the frame: right before
//!   `iretq`, or right after the `fxsave64` that finishes its copy for a bounce. A fault during that
//!   copy (a page of the target that is not mapped) is therefore detected, not looped on.
//! - **NMI** (`trap_nmi_entry`): marks its frame live, calls `nmi_dispatch` (counts, never
//!   faults, allocates or locks), clears the mark and returns. An NMI that finds the mark set
//!   could only come after an `iretq` inside the NMI handler unblocked NMIs; that never happens
//!   (see the #MC entry), and if it did it is reported, not run over.
//! - **#MC** (`trap_mc_entry`): marks its frame live and calls `mc_dispatch`, which reads
//!   and clears the machine-check banks (or stops the kernel on a fatal error). If the #MC
//!   interrupted the NMI handler (the interrupted stack pointer lies on this CPU's NMI stack),
//!   it returns *without* `iretq`, which would unblock NMIs while the NMI handler still uses
//!   its frame: it writes the return address below the interrupted red zone, restores the
//!   flags with `popfq`, the stack pointer with `pop rsp` and returns with `ret 128`.

use alloc::sync::Arc;
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use dks_protocol::record::Registers;

use super::cpu_ops::IrqGuard;
use super::gdt::{self, Ist};
use super::percpu::{self, PREEMPT_LOAD_OFFSET, PREEMPT_SAVE_OFFSET, TRAP_STATE_OFFSET, live};

/// The red zone of the System V ABI: bytes below RSP a leaf function may use.
pub const RED_ZONE_BYTES: u64 = dks_core::layout::RED_ZONE_IN_BYTES;

/// Everything `trap_common` saves, in memory order (lowest address first).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct TrapFrame {
    /// FXSAVE image of the interrupted FPU/SSE state.
    pub fpu: [u8; 512],
    #[allow(missing_docs)] // reason: register names
    pub r15: u64,
    #[allow(missing_docs)]
    pub r14: u64,
    #[allow(missing_docs)]
    pub r13: u64,
    #[allow(missing_docs)]
    pub r12: u64,
    #[allow(missing_docs)]
    pub r11: u64,
    #[allow(missing_docs)]
    pub r10: u64,
    #[allow(missing_docs)]
    pub r9: u64,
    #[allow(missing_docs)]
    pub r8: u64,
    #[allow(missing_docs)]
    pub rbp: u64,
    #[allow(missing_docs)]
    pub rdi: u64,
    #[allow(missing_docs)]
    pub rsi: u64,
    #[allow(missing_docs)]
    pub rdx: u64,
    #[allow(missing_docs)]
    pub rcx: u64,
    #[allow(missing_docs)]
    pub rbx: u64,
    #[allow(missing_docs)]
    pub rax: u64,
    /// The vector number.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    /// Interrupted instruction.
    pub rip: u64,
    /// Interrupted code segment.
    pub cs: u64,
    /// Interrupted flags.
    pub rflags: u64,
    /// Interrupted stack pointer.
    pub rsp: u64,
    /// Interrupted stack segment.
    pub ss: u64,
}

/// The first byte of the FXSAVE image that the processor leaves to software (464..512).
const FXSAVE_SOFTWARE_BYTES: usize = 464;

/// Size of a [`TrapFrame`]; a multiple of 16 so that a bounced frame keeps RSP aligned.
pub const FRAME_BYTES: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_BYTES == 512 + 15 * 8 + 7 * 8);
const _: () = assert!(FRAME_BYTES.is_multiple_of(16));

impl core::fmt::Debug for TrapFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TrapFrame")
            .field("vector", &self.vector)
            .field("error_code", &self.error_code)
            .field("rip", &format_args!("{:#x}", self.rip))
            .field("rsp", &format_args!("{:#x}", self.rsp))
            .finish_non_exhaustive()
    }
}

impl TrapFrame {
    /// The general registers, for a report.
    pub fn registers(&self) -> Registers {
        Registers {
            rax: self.rax,
            rbx: self.rbx,
            rcx: self.rcx,
            rdx: self.rdx,
            rsi: self.rsi,
            rdi: self.rdi,
            rbp: self.rbp,
            r8: self.r8,
            r9: self.r9,
            r10: self.r10,
            r11: self.r11,
            r12: self.r12,
            r13: self.r13,
            r14: self.r14,
            r15: self.r15,
        }
    }

    /// Keeps the faulting address with the frame, for a page fault whose handler runs after a
    /// bounce (CR2 may change in between: the handler itself can take a stack fault). It
    /// lives in bytes 464..472 of the FXSAVE image, which the processor leaves to software.
    #[inline]
    pub fn set_fault_address(&mut self, address: u64) {
        self.fpu[FXSAVE_SOFTWARE_BYTES..FXSAVE_SOFTWARE_BYTES + 8]
            .copy_from_slice(&address.to_le_bytes());
    }

    /// The address kept by [`TrapFrame::set_fault_address`].
    #[inline]
    pub fn fault_address(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.fpu[FXSAVE_SOFTWARE_BYTES..FXSAVE_SOFTWARE_BYTES + 8]);
        u64::from_le_bytes(bytes)
    }

    /// Whether this vector pushes an error code.
    #[inline]
    pub fn has_error_code(&self) -> bool {
        matches!(self.vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
    }
}

/// What the dispatcher decided.
#[derive(Debug)]
pub enum Disposition {
    /// Handled; return from the trap on the IST stack.
    Done,
    /// Move the frame to just below this (16-byte aligned, mapped) address and run the
    /// handler there.
    Bounce(u64),
    /// A preemption the entry carries out itself: it moves the general registers and the
    /// interrupt frame below this address (16-byte aligned; [`PREEMPT_FRAME_BYTES`] below it
    /// mapped), keeps the FPU/SSE image in the thread's own save area, and switches to the
    /// scheduler loop with the operands given to [`set_preempt_switch`] just before. The
    /// thread gives up the CPU without its 512-byte FXSAVE image on its stack (Linux keeps
    /// FPU state out of the stack too); preemptions cannot nest (interrupts stay off until
    /// the thread has switched away and back), so one area per thread suffices.
    Preempt(u64, Arc<FpuArea>),
}

/// Sets the operands of the switch a [`Disposition::Preempt`] makes:
/// `context_switch(save_at, load_rsp)`, where `save_at` is the address of the preempted
/// thread's saved-stack-pointer cell (an `AtomicU64` the scheduler keeps alive while the thread
/// is current) and `load_rsp` the scheduler loop's saved stack pointer (16-byte aligned).
#[inline]
pub fn set_preempt_switch(irq: &IrqGuard, save_at: u64, load_rsp: u64) {
    assert!(
        load_rsp != 0 && load_rsp.is_multiple_of(16) && save_at != 0,
        "preemption switch to {load_rsp:#x}, saving at {save_at:#x}"
    );
    percpu::set_preempt_switch(irq, save_at, load_rsp);
}

/// A thread's FPU/SSE save area for preemptions (see [`Disposition::Preempt`]).
#[repr(C, align(16))]
pub struct FpuArea {
    image: UnsafeCell<[u8; 512]>,
}

// SAFETY: an area belongs to one thread; it is written on the thread's CPU while the thread is
// being preempted (by `dispatch`) and read when the thread returns from that preemption (by the
// trap return path), never by two CPUs at once: the scheduler's `on_cpu` handshake orders the
// write on one CPU before the thread runs on another.
unsafe impl Sync for FpuArea {}

impl FpuArea {
    /// A zeroed area.
    pub fn new() -> FpuArea {
        FpuArea {
            image: UnsafeCell::new([0; 512]),
        }
    }
}

impl Default for FpuArea {
    fn default() -> Self {
        FpuArea::new()
    }
}

impl core::fmt::Debug for FpuArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FpuArea")
    }
}

/// Bytes a light (preemption) bounce copies to the interrupted stack: the save area's
/// address, padding, then the general registers and the interrupt frame.
pub const LIGHT_FRAME_BYTES: usize = 16 + 22 * 8;
const _: () = assert!(LIGHT_FRAME_BYTES.is_multiple_of(16));
const _: () = assert!(FRAME_BYTES == 512 + 22 * 8);

/// Everything a preemption puts on the interrupted stack below the bounce target: the light
/// frame and the switch frame `context_switch` pushes below it. Nothing else runs there.
pub const PREEMPT_FRAME_BYTES: usize = LIGHT_FRAME_BYTES + super::context::SWITCH_FRAME_BYTES;
const _: () = assert!(PREEMPT_FRAME_BYTES.is_multiple_of(16));

/// Returns the bounce target for a trap that interrupted code with stack pointer `rsp`.
#[inline]
pub fn bounce_target(rsp: u64) -> u64 {
    dks_core::layout::frame_below_red_zone(rsp)
}

/// Why a page fault was found nested (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    /// During the copy of a live #PF frame to the interrupted stack (a page of the bounce
    /// target was not mapped).
    BounceCopy,
    /// While the entry moved a preempted thread's frames to its stack (a page of it was not
    /// populated).
    PreemptionMove,
    /// While this CPU's #PF frame was live (inside the #PF handler).
    PageFault,
    /// Inside the NMI handler.
    Nmi,
    /// Inside the machine-check handler.
    MachineCheck,
}

impl Nesting {
    /// Words for a report.
    pub fn describe(self) -> &'static str {
        match self {
            Nesting::BounceCopy => {
                "nested page fault: a #PF during the bounce copy of the #PF frame (a page of \
                 the bounce target was not mapped)"
            }
            Nesting::PreemptionMove => {
                "nested page fault: a #PF while the entry moved a preempted thread's frames to \
                 its stack (a page of the target was not populated)"
            }
            Nesting::PageFault => {
                "nested page fault: a #PF arrived while the #PF IST frame was live"
            }
            Nesting::Nmi => "nested page fault: a #PF inside the NMI handler",
            Nesting::MachineCheck => "nested page fault: a #PF inside the machine-check handler",
        }
    }
}

/// What the kernel does with each trap: the entry calls these, on the stacks named below. The
/// kernel implements this trait once and [`install`]s it at boot, before any IDT is loaded;
/// the entry then reaches its handlers through one indirect call each, with no dispatch of
/// its own in between (the functions are instantiated in the kernel, where they inline).
pub trait TrapHandlers: 'static {
    /// Every trap but a nested #PF, an NMI or a #MC, on its IST stack: handles it there or
    /// says where it continues.
    fn on_ist(frame: &mut TrapFrame) -> Disposition;
    /// A page fault the #PF entry found nested (see the module docs); never returns.
    fn nested_page_fault(frame: &mut TrapFrame, nesting: Nesting) -> !;
    /// An NMI, on the NMI stack; `interrupted` is the IST stack it interrupted, if any. Must
    /// never fault, allocate or lock.
    fn on_nmi(frame: &mut TrapFrame, interrupted: Option<Ist>);
    /// An NMI that found the NMI frame live; never returns.
    fn nested_nmi(frame: &mut TrapFrame) -> !;
    /// A machine check, on the #MC stack.
    fn on_machine_check(frame: &mut TrapFrame);
    /// The handler of a whole-frame bounce, on the interrupted stack.
    fn on_interrupted_stack(frame: &mut TrapFrame);
}

/// The entry's calls into the kernel, in the order of the `HOOK_*` offsets: function
/// addresses the assembly calls through (`call [hooks + offset]`), 0 until [`install`].
#[repr(C)]
struct Hooks([AtomicUsize; 6]);

const HOOK_DISPATCH: usize = 0;
const HOOK_NESTED: usize = 8;
const HOOK_NMI: usize = 16;
const HOOK_NMI_NESTED: usize = 24;
const HOOK_MC: usize = 32;
const HOOK_BOUNCED: usize = 40;

static HOOKS: Hooks = Hooks([const { AtomicUsize::new(0) }; 6]);

/// Makes `H` the kernel's trap handlers. Called once, on the boot CPU, before the first IDT is
/// loaded (`idt::load_on_this_cpu` checks).
///
/// # Panics
/// If handlers are installed already.
pub fn install<H: TrapHandlers>() {
    let entries: [(usize, usize); 6] = [
        (
            HOOK_DISPATCH,
            dispatch::<H> as extern "C" fn(&mut TrapFrame) -> u128 as usize,
        ),
        (
            HOOK_NESTED,
            nested_dispatch::<H> as extern "C" fn(&mut TrapFrame) -> ! as usize,
        ),
        (
            HOOK_NMI,
            nmi_dispatch::<H> as extern "C" fn(&mut TrapFrame) as usize,
        ),
        (
            HOOK_NMI_NESTED,
            nmi_nested_dispatch::<H> as extern "C" fn(&mut TrapFrame) -> ! as usize,
        ),
        (
            HOOK_MC,
            mc_dispatch::<H> as extern "C" fn(&mut TrapFrame) -> u64 as usize,
        ),
        (
            HOOK_BOUNCED,
            bounced::<H> as extern "C" fn(&mut TrapFrame) as usize,
        ),
    ];
    assert!(!installed(), "trap handlers installed twice");
    for (offset, address) in entries {
        HOOKS.0[offset / 8].store(address, Ordering::Release);
    }
}

/// Whether [`install`] has run.
#[inline]
pub fn installed() -> bool {
    HOOKS.0.iter().all(|hook| hook.load(Ordering::Acquire) != 0)
}

/// Called by `trap_common` (and the #PF entry) on the IST stack.
/// Returns the bounce target in the low 64 bits (0: return on the IST stack) and, for a
/// preemption, the FPU save area's address in the high 64 bits.
extern "C" fn dispatch<H: TrapHandlers>(frame: &mut TrapFrame) -> u128 {
    match H::on_ist(frame) {
        Disposition::Done => 0,
        Disposition::Bounce(target) => {
            assert!(
                target.is_multiple_of(16),
                "bounce target {target:#x} not aligned"
            );
            u128::from(target)
        }
        Disposition::Preempt(target, area) => {
            assert!(
                target.is_multiple_of(16),
                "bounce target {target:#x} not aligned"
            );
            // SAFETY: the area is the interrupted thread's; nothing else reads or writes it
            // while that thread is being preempted (see `FpuArea`'s `Sync`).
            unsafe { *area.image.get() = frame.fpu };
            // The thread holds its own reference to the area until it has returned through
            // this path, so the address stays valid after this one is dropped.
            let address = area.image.get() as u64;
            u128::from(target) | (u128::from(address) << 64)
        }
    }
}

/// Called by the #PF entry, on the #PF IST stack from its top, for a nested page fault.
extern "C" fn nested_dispatch<H: TrapHandlers>(frame: &mut TrapFrame) -> ! {
    let state = percpu::trap_state(&IrqGuard::new());
    let nesting = if state & live::NMI != 0 {
        Nesting::Nmi
    } else if state & live::MACHINE_CHECK != 0 {
        Nesting::MachineCheck
    } else if state & live::PREEMPTION_MOVE != 0 {
        Nesting::PreemptionMove
    } else if copy_instructions().contains(&frame.rip) {
        Nesting::BounceCopy
    } else {
        Nesting::PageFault
    };
    H::nested_page_fault(frame, nesting)
}

/// The two instructions that write a live #PF frame below the bounce target: the `rep movsq`
/// of its registers and the `fxsave64` of its FPU/SSE image.
#[inline]
fn copy_instructions() -> [u64; 2] {
    unsafe extern "C" {
        static trap_pf_copy: u8;
        static trap_pf_copy_fpu: u8;
    }
    [
        (&raw const trap_pf_copy) as u64,
        (&raw const trap_pf_copy_fpu) as u64,
    ]
}

/// Called by the NMI entry on the NMI IST stack.
extern "C" fn nmi_dispatch<H: TrapHandlers>(frame: &mut TrapFrame) {
    let interrupted = gdt::ist_containing(frame.rsp);
    H::on_nmi(frame, interrupted);
}

/// Called by the NMI entry for an NMI that found the NMI frame live.
extern "C" fn nmi_nested_dispatch<H: TrapHandlers>(frame: &mut TrapFrame) -> ! {
    H::nested_nmi(frame)
}

/// Called by the #MC entry on the #MC IST stack. Returns 1 to return without `iretq`
/// (the #MC interrupted the NMI handler), else 0.
extern "C" fn mc_dispatch<H: TrapHandlers>(frame: &mut TrapFrame) -> u64 {
    H::on_machine_check(frame);
    u64::from(gdt::ist_containing(frame.rsp) == Some(Ist::Nmi))
}

/// Called on the interrupted stack after a whole-frame bounce.
extern "C" fn bounced<H: TrapHandlers>(frame: &mut TrapFrame) {
    H::on_interrupted_stack(frame);
}

/// The entry point of `vector` for its IDT gate.
#[inline]
pub fn entry_address(vector: u8) -> u64 {
    unsafe extern "C" {
        static trap_stubs: u8;
        static trap_pf_entry: u8;
        static trap_nmi_entry: u8;
        static trap_mc_entry: u8;
    }
    match vector {
        super::idt::vectors::PAGE_FAULT => (&raw const trap_pf_entry) as u64,
        super::idt::vectors::NMI => (&raw const trap_nmi_entry) as u64,
        super::idt::vectors::MACHINE_CHECK => (&raw const trap_mc_entry) as u64,
        // Stub `n` is at `trap_stubs + 16 * n`.
        _ => (&raw const trap_stubs) as u64 + 16 * u64::from(vector),
    }
}

global_asm!(
    r#"
    .pushsection .text.trap, "ax"
    .balign 16
    .globl trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp trap_common
    .set vec, vec + 1
    .endr
    .popsection
"#,
    options(att_syntax)
);

global_asm!(
    r#"
    .pushsection .text.trap, "ax"
    .balign 16
    /* Below the vector and error code: the general registers, then the FXSAVE image. */
    .macro SAVE_FRAME
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    sub rsp, 512
    fxsave64 [rsp]
    cld
    .endm

    .macro POP_REGISTERS
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    .endm

    .macro RESTORE_FRAME
    fxrstor64 [rsp]
    add rsp, 512
    POP_REGISTERS
    .endm

    .balign 16
trap_common:
    SAVE_FRAME
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {dispatch}]
    test rax, rax
    jnz 2f
trap_return:
    RESTORE_FRAME
    add rsp, 16
    iretq
    /* Labels marked "region" delimit parts of the entry for tools that walk its instructions
       (`lab/benches/trap_boundaries.rs`); they change no code. */
    .globl trap_common_moved
trap_common_moved: /* region */
2:
    test rdx, rdx
    jnz 4f
    /* a whole-frame bounce (no vector that enters here bounces its whole frame today) */
    .globl trap_common_frame_copy
trap_common_frame_copy: /* region */
    mov rsi, rsp
    lea rdi, [rax - {frame_bytes}]
    mov rsp, rdi
    mov ecx, {frame_bytes} / 8
    rep movsq
trap_run_bounced:
    /* The handler runs with interrupts on if the interrupted code had them on: a stack
       fault in it then stops the thread, not the kernel. */
    test qword ptr [rsp + {rflags}], 0x200
    jz 3f
    .globl trap_run_bounced_sti
trap_run_bounced_sti: /* region */
    sti
    .globl trap_run_bounced_call
trap_run_bounced_call: /* region */
3:
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {bounced}]
    cli
    jmp trap_return
4:
    /* A preemption: registers and interrupt frame to the thread's stack below the target
       (rax), the FPU image is already in the thread's area (rdx); then the first half of
       `context_switch` (the same switch frame) and a jump to its second half. The move is
       marked live in trap_state byte 3 until the CPU has left the thread's stack: a #PF
       meanwhile (a page that was not populated) is reported as nested. */
    .globl trap_preempt_move
trap_preempt_move: /* region */
    mov byte ptr gs:[{trap_state} + 3], 1
    lea rsi, [rsp + 512]
    mov r8, rdx
    mov ecx, {light_bytes} / 8 - 2
    lea rdi, [rax - {light_bytes} + 16]
    rep movsq
    lea rsp, [rax - {light_bytes}]
    mov [rsp], r8
    lea rax, [rip + 5f]
    push rax
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    sub rsp, 8
    stmxcsr [rsp]
    fnstcw [rsp + 4]
    mov rax, gs:[{preempt_save}]
    mov [rax], rsp
    mov rsp, gs:[{preempt_load}]
    mov byte ptr gs:[{trap_state} + 3], 0
    jmp context_switch_load
    .globl trap_preempt_resume
trap_preempt_resume: /* region */
5:
    /* Resumed by the scheduler (its `ret`), possibly on another CPU. */
    mov rax, [rsp]
    fxrstor64 [rax]
    add rsp, 16
    POP_REGISTERS
    add rsp, 16
    iretq

    /* #PF: the CPU pushed the error code. */
    .balign 16
    .globl trap_pf_entry
trap_pf_entry:
    cmp qword ptr gs:[{trap_state}], 0
    jne 8f
    mov byte ptr gs:[{trap_state}], 1
    push 14
    SAVE_FRAME
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {dispatch}]
    test rax, rax
    jnz 2f
    RESTORE_FRAME
    add rsp, 16
    /* The last read of the frame is the iretq itself. */
    mov byte ptr gs:[{trap_state}], 0
    iretq
    .globl trap_pf_bounce
trap_pf_bounce: /* region */
2:
    /* The frame below the target (rax) is a whole TrapFrame, but only the registers and the
       interrupt frame are copied (176 bytes, as a preemption moves them); the FPU/SSE image
       is loaded back into the registers and saved again there, and the one word of it that
       is software's (the fault address) is carried over. Both writes to the target can
       fault (an unpopulated page): both are the "bounce copy" for nested_dispatch. */
    lea rsi, [rsp + 512]
    lea rdi, [rax - {frame_bytes} + 512]
    mov ecx, ({frame_bytes} - 512) / 8
    .globl trap_pf_copy
trap_pf_copy:
    rep movsq
    fxrstor64 [rsp]
    mov rcx, [rsp + {fault_address}]
    lea rsp, [rax - {frame_bytes}]
    .globl trap_pf_copy_fpu
trap_pf_copy_fpu:
    fxsave64 [rsp]
    mov [rsp + {fault_address}], rcx
    mov byte ptr gs:[{trap_state}], 0
    jmp trap_run_bounced
    .globl trap_pf_nested
trap_pf_nested: /* region */
8:
    push 14
    SAVE_FRAME
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {nested_dispatch}]
    ud2

    /* NMI: NMIs stay blocked by the CPU until the iretq at the end. */
    .balign 16
    .globl trap_nmi_entry
trap_nmi_entry:
    cmp byte ptr gs:[{trap_state} + 1], 0
    jne 8f
    mov byte ptr gs:[{trap_state} + 1], 1
    push 0
    push 2
    SAVE_FRAME
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {nmi_dispatch}]
    RESTORE_FRAME
    add rsp, 16
    mov byte ptr gs:[{trap_state} + 1], 0
    iretq
    .globl trap_nmi_nested
trap_nmi_nested: /* region */
8:
    push 0
    push 2
    SAVE_FRAME
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {nmi_nested_dispatch}]
    ud2

    /* #MC: a second one while MCG_STATUS.MCIP is set shuts the CPU down, so none nests. */
    .balign 16
    .globl trap_mc_entry
trap_mc_entry:
    mov byte ptr gs:[{trap_state} + 2], 1
    push 0
    push 18
    SAVE_FRAME
    mov rdi, rsp
    call qword ptr [rip + {hooks} + {mc_dispatch}]
    test rax, rax
    jnz 2f
    RESTORE_FRAME
    add rsp, 16
    mov byte ptr gs:[{trap_state} + 2], 0
    iretq
    .globl trap_mc_into_nmi
trap_mc_into_nmi: /* region */
2:
    /* Back into the NMI handler without iretq: return address below its red zone. */
    mov rax, [rsp + {rsp_offset}]
    sub rax, {red_zone} + 8
    mov rcx, [rsp + {rip_offset}]
    mov [rax], rcx
    mov [rsp + {rsp_offset}], rax
    RESTORE_FRAME
    add rsp, 32
    mov byte ptr gs:[{trap_state} + 2], 0
    popfq
    pop rsp
    ret {red_zone}

    .popsection
"#,
    dispatch = const HOOK_DISPATCH,
    nested_dispatch = const HOOK_NESTED,
    nmi_dispatch = const HOOK_NMI,
    nmi_nested_dispatch = const HOOK_NMI_NESTED,
    mc_dispatch = const HOOK_MC,
    bounced = const HOOK_BOUNCED,
    hooks = sym HOOKS,
    frame_bytes = const FRAME_BYTES,
    fault_address = const FXSAVE_SOFTWARE_BYTES,
    light_bytes = const LIGHT_FRAME_BYTES,
    rflags = const core::mem::offset_of!(TrapFrame, rflags),
    rip_offset = const core::mem::offset_of!(TrapFrame, rip),
    rsp_offset = const core::mem::offset_of!(TrapFrame, rsp),
    red_zone = const RED_ZONE_BYTES,
    trap_state = const TRAP_STATE_OFFSET,
    preempt_save = const PREEMPT_SAVE_OFFSET,
    preempt_load = const PREEMPT_LOAD_OFFSET,
);

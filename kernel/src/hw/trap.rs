//! The trap entry path (IST flavour; a FRED entry would be a sibling module).
//!
//! Every vector enters through a 16-byte stub that pushes a zero error code where the CPU
//! pushes none, then the vector number, and jumps to `trap_common`. That code runs on the
//! vector's IST stack: it saves the general registers and the FPU/SSE state into a
//! [`TrapFrame`] and calls [`dispatch`]. `dispatch` either handles the trap right there and
//! returns 0, or returns a stack address: the *bounce target*. `trap_common` then copies the
//! whole frame just below that address, switches to it and calls [`bounced`], which runs
//! the handler on the interrupted stack, where it may take locks, block or switch tasks,
//! because the IST stack is free again. A preemption takes a lighter path
//! ([`Disposition::Preempt`]): only the registers and the interrupt frame move, the FPU/SSE
//! image goes to the thread's own save area, and [`bounced_light`] runs the preemption. All
//! paths end by restoring the frame and `iretq`.
//!
//! The bounce target is the interrupted stack pointer minus the 128-byte red zone, rounded
//! down to 16 bytes: the interrupted function's red zone survives. Whoever chooses to bounce
//! must make sure that the memory below the target is mapped (a dynamic stack may need a page
//! first), because the copy itself must not fault.
//!
//! The #PF IST stack is live from entry until `dispatch` returns. A page fault while it is live
//! would overwrite the first frame; [`dispatch`] detects this with a per-CPU flag and stops
//! the kernel with a report instead.

use alloc::sync::Arc;
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use dks_protocol::record::Registers;

use super::cpu::MAX_CPUS;

/// The red zone of the System V ABI: bytes below RSP a leaf function may use.
pub const RED_ZONE_BYTES: u64 = 128;

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
    pub fn set_fault_address(&mut self, address: u64) {
        self.fpu[FXSAVE_SOFTWARE_BYTES..FXSAVE_SOFTWARE_BYTES + 8]
            .copy_from_slice(&address.to_le_bytes());
    }

    /// The address kept by [`TrapFrame::set_fault_address`].
    pub fn fault_address(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.fpu[FXSAVE_SOFTWARE_BYTES..FXSAVE_SOFTWARE_BYTES + 8]);
        u64::from_le_bytes(bytes)
    }

    /// Whether this vector pushes an error code.
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
    /// A preemption: move only the general registers and the interrupt frame below this
    /// (16-byte aligned, mapped) address, keep the FPU/SSE image in the interrupted thread's
    /// own save area, and call [`crate::trap::on_interrupted_stack_light`] there. The thread
    /// gives up the CPU without its 512-byte FXSAVE image on its stack (Linux keeps FPU state
    /// out of the stack too); preemptions cannot nest (interrupts stay off until the thread
    /// has switched away and back), so one area per thread suffices.
    Preempt(u64, Arc<FpuArea>),
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

/// Bytes a light (preemption) bounce puts on the interrupted stack: the save area's address,
/// padding, then the general registers and the interrupt frame.
pub const LIGHT_FRAME_BYTES: usize = 16 + 22 * 8;
const _: () = assert!(LIGHT_FRAME_BYTES.is_multiple_of(16));
const _: () = assert!(FRAME_BYTES == 512 + 22 * 8);

/// Returns the bounce target for a trap that interrupted code with stack pointer `rsp`.
pub fn bounce_target(rsp: u64) -> u64 {
    (rsp - RED_ZONE_BYTES) & !15
}

/// Set while a CPU's #PF IST frame is live.
static PF_IST_LIVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

const PAGE_FAULT: u64 = 14;

/// Called by `trap_common` on the IST stack.
/// Returns the bounce target in the low 64 bits (0: return on the IST stack) and, for a
/// light bounce, the FPU save area's address in the high 64 bits.
extern "C" fn dispatch(frame: &mut TrapFrame) -> u128 {
    let cpu = super::cpu::current_id() as usize;
    if frame.vector == PAGE_FAULT && PF_IST_LIVE[cpu].swap(true, Ordering::AcqRel) {
        crate::trap::nested_page_fault(frame);
    }
    let disposition = crate::trap::on_ist(frame);
    if frame.vector == PAGE_FAULT {
        PF_IST_LIVE[cpu].store(false, Ordering::Release);
    }
    match disposition {
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

/// Called by `trap_common` on the interrupted stack after a light bounce.
extern "C" fn bounced_light(vector: u64) {
    crate::trap::on_interrupted_stack_light(vector as u8);
}

/// Called by `trap_common` on the interrupted stack, after the bounce.
extern "C" fn bounced(frame: &mut TrapFrame) {
    crate::trap::on_interrupted_stack(frame);
}

/// Address of the first stub; stub `n` is at `stubs_start() + 16 * n`.
pub fn stub_address(vector: u8) -> u64 {
    unsafe extern "C" {
        static trap_stubs: u8;
    }
    (&raw const trap_stubs) as u64 + 16 * u64::from(vector)
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
    .globl trap_common
trap_common:
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
    mov rdi, rsp
    call {dispatch}
    test rax, rax
    jz 2f
    test rdx, rdx
    jnz 4f
    jmp 3f
2:
    fxrstor64 [rsp]
    add rsp, 512
5:
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
    add rsp, 16
    iretq
3:
    mov rsi, rsp
    lea rdi, [rax - {frame_bytes}]
    mov rsp, rdi
    mov ecx, {frame_words}
    rep movsq
    mov rdi, rsp
    call {bounced}
    jmp 2b
4:
    /* light bounce: registers and interrupt frame to the thread's stack, FPU image already in
       the thread's area (rdx) */
    lea rsi, [rsp + 512]
    mov r8, rdx
    mov ecx, {light_words} - 2
    lea rdi, [rax - ({light_words} - 2) * 8]
    rep movsq
    lea rsp, [rax - {light_words} * 8]
    mov [rsp], r8
    mov rdi, [rsp + 16 + 15 * 8]
    call {bounced_light}
    mov rax, [rsp]
    fxrstor64 [rax]
    add rsp, 16
    jmp 5b
    .popsection
"#,
    dispatch = sym dispatch,
    bounced = sym bounced,
    bounced_light = sym bounced_light,
    frame_bytes = const FRAME_BYTES,
    frame_words = const FRAME_BYTES / 8,
    light_words = const LIGHT_FRAME_BYTES / 8,
);

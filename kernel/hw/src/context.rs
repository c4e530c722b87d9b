//! Switching between stacks: the heart of the context switch.
//!
//! [`switch`] saves the callee-saved registers, the x87 control word and MXCSR (the parts of
//! the FPU/SSE state the System V ABI asks a callee to preserve) on the current stack, stores
//! the stack pointer, loads another and restores the same from there. Caller-saved registers,
//! including all vector registers, need no saving: a voluntary switch is a function call, and
//! an involuntary one (preemption) happens inside an interrupt handler whose trap frame
//! already holds the interrupted task's complete register and FXSAVE state.
//!
//! A new thread's stack is prepared by [`prepare`] so that the first switch to it "returns"
//! into `thread_trampoline`, which calls the kernel's thread entry.

use core::arch::global_asm;
use core::sync::atomic::AtomicU64;

/// Bytes `context_switch` pushes on the stack it leaves: the return address of its call, six
/// callee-saved registers and the FPU control words. The preemption path of the trap entry
/// (`trap_entry`) pushes the same frame on the thread's stack, below the moved frame, and jumps
/// to `context_switch_load`; keep the two in step.
pub const SWITCH_FRAME_BYTES: usize = 8 + 6 * 8 + 8;
const _: () = assert!(SWITCH_FRAME_BYTES.is_multiple_of(16));

unsafe extern "C" {
    fn context_switch(save_rsp: *mut u64, load_rsp: u64);
    static thread_trampoline: u8;
}

/// Saves the current context, stores its stack pointer in `*save_rsp`, and continues the
/// context saved at `load_rsp`. Returns when someone switches back to the saved context,
/// possibly on another CPU: the guard is taken mutably so that nothing borrowed from it (this
/// CPU's per-CPU state, see `cpu_ops::current_id`) can be used after the switch.
///
/// The caller must keep interrupts off (the context is half-saved in between) and guarantees,
/// by the scheduler's rules, that `load_rsp` is a context saved by `switch` or prepared by
/// [`prepare`] that nobody else will resume.
#[inline]
pub fn switch(_irq: &mut super::cpu_ops::IrqGuard, save_rsp: &AtomicU64, load_rsp: u64) {
    assert!(
        load_rsp != 0 && load_rsp.is_multiple_of(16),
        "bad saved stack pointer {load_rsp:#x}"
    );
    // SAFETY: 1. `save_rsp` points at a live `AtomicU64`; the plain 8-byte store the assembly
    // makes to it is atomic on x86_64. 2. The scheduler guarantees `load_rsp` is a
    // saved or prepared context that only this CPU resumes (the thread's state machine: a
    // thread is picked only from `Ready`, which its previous CPU publishes after the context is
    // saved, and only by the one CPU that took its single run-queue entry), on a stack whose
    // top pages, which hold that context, are mapped. 3. Interrupts are
    // off (the guard), so nothing runs on either stack in between. 4. `context_switch`
    // preserves every callee-saved register and the FPU control state across the call.
    unsafe { context_switch(save_rsp.as_ptr(), load_rsp) }
}

/// Writes the initial switch frame for a new thread at the top of its stack (`top`, 16-byte
/// aligned, with at least one mapped page below it that the caller owns) and returns the
/// stack pointer to pass to [`switch`]. The first switch to it calls `entry()` with
/// interrupts off, on a 16-byte aligned stack; `entry` must never return.
#[inline]
pub fn prepare(top: u64, entry: extern "C" fn() -> !) -> u64 {
    assert!(
        top.is_multiple_of(16),
        "stack top {top:#x} not 16-byte aligned"
    );
    // Layout from the new RSP upwards: fpu control (mxcsr | fcw << 32), r15, r14, r13, r12,
    // rbx, rbp, return address (trampoline), then the entry function for the trampoline.
    let words: [u64; 10] = [
        0x1f80 | (0x037f << 32), // default MXCSR and x87 control word
        0,
        0,
        0,
        entry as usize as u64, // r12: the trampoline calls it
        0,
        0,
        (&raw const thread_trampoline) as u64,
        0, // padding: keeps the trampoline's stack 16-byte aligned
        0,
    ];
    let rsp = top - 8 * words.len() as u64;
    let slot = rsp as *mut [u64; 10];
    // SAFETY: the caller guarantees the page below `top` is mapped and owned by the new
    // thread's stack, which nothing else uses yet; 80 bytes fit in that page.
    unsafe { slot.write(words) };
    // The switch pops 7 words (FPU control, 6 registers) and `ret` pops the trampoline, which
    // then runs with RSP = top - 16; its `call` leaves RSP = top - 24 at `entry`, the
    // alignment a function expects. The switch saves contexts 16-byte aligned, as here.
    rsp
}

global_asm!(
    r#"
    .pushsection .text.context, "ax"
    .globl context_switch
context_switch:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    sub rsp, 8
    stmxcsr [rsp]
    fnstcw [rsp + 4]
    mov [rdi], rsp
    mov rsp, rsi
    /* The preemption path of the trap entry saves like the above and jumps here. */
    .globl context_switch_load
context_switch_load:
    ldmxcsr [rsp]
    fldcw [rsp + 4]
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .globl thread_trampoline
thread_trampoline:
    xor ebp, ebp
    call r12
    ud2
    .popsection
"#
);

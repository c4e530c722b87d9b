//! Stop points: where a thread that is stopped by a fatal fault on its own stack resumes.
//!
//! A thread cannot go on after a guard hit or a stack fault that cannot be served, but it
//! owns things the rest of the kernel must get back: its body's captures, its registration
//! with a wait queue, a wake-up it was given. [`call`] runs a function under a *stop point*:
//! it saves the callee-saved registers and the enclosing stop point on the stack, records
//! its own stack pointer as the innermost stop point (in a cell the caller passes, the
//! thread's), and calls the function. If the function returns, the enclosing stop point
//! becomes the innermost again and `call` returns [`Completion::Returned`]. If the thread is
//! stopped meanwhile, the trap path resumes it at [`landing`] with the stack pointer of the
//! innermost stop point (`sched::prepare_kill`): the frames below are abandoned, the
//! enclosing point is restored the same way, and `call` returns [`Completion::Stopped`] to
//! its caller, which cleans up and continues the stop outwards with [`resume`]. The
//! outermost stop point is the thread's entry, which drops the body and exits.
//!
//! This is a `setjmp`/`longjmp` pair like [`super::catch`], kept per thread (in the cell)
//! rather than per CPU, and nestable. The frame a stop point leaves on the stack, from the
//! recorded stack pointer up: 8 bytes of padding (the call below is 16-byte aligned), the
//! enclosing stop point, the address of the cell, r15, r14, r13, r12, rbx, rbp, the return
//! address into `call`.

use core::arch::global_asm;
use core::sync::atomic::AtomicU64;

/// How a call under a stop point ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a stopped call must be cleaned up after and the stop continued"]
pub enum Completion {
    /// The function returned.
    Returned,
    /// The thread was stopped inside it; its frames are abandoned.
    Stopped,
}

unsafe extern "C" {
    fn stoppable_call(f: extern "C" fn(usize), arg: usize, point: *mut u64) -> u64;
    fn stop_resume(point: u64) -> !;
    static stop_landing: u8;
}

/// Runs `body` under a stop point kept in `point` (the calling thread's cell: 0 when it has
/// none, else its innermost stop point).
#[inline]
pub fn call(point: &AtomicU64, body: &mut dyn FnMut()) -> Completion {
    extern "C" fn trampoline(arg: usize) {
        // SAFETY: `arg` is the address of the `&mut dyn FnMut()` local of `call` below, which
        // lives (and is not otherwise used) until `stoppable_call` returns.
        let body = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
        body();
    }
    let mut body = body;
    // SAFETY: 1. `point` is a live `AtomicU64`; the assembly's plain 8-byte loads and stores
    // to it are atomic on x86_64, and only this thread's CPU writes it while the thread runs.
    // 2. `stoppable_call` preserves the callee-saved registers on both of its exits: on a
    // return from `trampoline`, and at `stop_landing`, where it restores them from the frame
    // it pushed. 3. It calls `trampoline` with the stack 16-byte aligned.
    let stopped = unsafe { stoppable_call(trampoline, &raw mut body as usize, point.as_ptr()) };
    if stopped == 0 {
        Completion::Returned
    } else {
        Completion::Stopped
    }
}

/// The address the trap path resumes a stopped thread at (with its innermost stop point as
/// the stack pointer).
#[inline]
pub fn landing() -> u64 {
    (&raw const stop_landing) as u64
}

/// Continues a stop outwards: resumes the calling thread at its innermost stop point,
/// `target` (read from its cell), abandoning every frame below it. Call it after the cleanup
/// of a stopped [`call`], holding nothing that must be dropped.
///
/// # Panics
/// If `target` is not a stop point above the caller's stack pointer on the same stack.
#[inline]
pub fn resume(target: u64) -> ! {
    let here = super::probes::stack_pointer();
    assert!(
        target > here && target - here < 1 << 20 && target.is_multiple_of(16),
        "no stop point to resume at ({target:#x}, stack pointer {here:#x})"
    );
    // SAFETY: `target` is the innermost stop point of this thread, pushed by a
    // `stoppable_call` that has not returned yet, above the current stack pointer on this
    // stack (checked): the frames between are abandoned, as a stop abandons them, and the
    // landing pad restores the registers that call saved.
    unsafe { stop_resume(target) }
}

global_asm!(
    r#"
    .pushsection .text.stop, "ax"
    .globl stoppable_call
stoppable_call:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdx
    push qword ptr [rdx]
    sub rsp, 8
    mov [rdx], rsp
    mov rax, rdi
    mov rdi, rsi
    call rax
    xor eax, eax
    jmp 2f

    .globl stop_landing
stop_landing:
    cld
    mov eax, 1
2:
    add rsp, 8
    pop rcx
    pop rdx
    mov [rdx], rcx
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .globl stop_resume
stop_resume:
    mov rsp, rdi
    jmp stop_landing
    .popsection
"#
);

//! Measurements that need exact control of the stack, written in assembly.

use core::arch::asm;
use core::sync::atomic::AtomicU64;

/// Fills the 128-byte red zone below the stack pointer with a pattern, waits (interrupts on)
/// until `counter` has advanced by `events`, and returns how many of the 16 words changed.
/// With every interrupt delivered on an IST stack (or moved below the red zone) the answer
/// must be 0.
pub fn red_zone_probe(counter: &AtomicU64, events: u64) -> u64 {
    let clobbered: u64;
    // SAFETY: 1. The block does not set `nostack`, so the compiler keeps nothing of its own
    // below RSP across it: the 128 bytes under RSP are ours to write. 2. It reads `counter`
    // (a live `AtomicU64`, read with plain 8-byte loads, which are atomic on x86_64) and
    // writes nothing else. 3. It enables interrupts and leaves them enabled, which the caller
    // must accept (documented above).
    unsafe {
        asm!(
            "mov r8, [{counter}]",
            "add r8, {events}",
            "mov rax, 0x5a5a5a5a00000000",
            "mov ecx, 16",
            "2:",
            "mov [rsp + rcx * 8 - 136], rax",
            "inc rax",
            "dec ecx",
            "jnz 2b",
            "sti",
            "3:",
            "pause",
            "cmp [{counter}], r8",
            "jb 3b",
            "xor {clobbered}, {clobbered}",
            "mov rax, 0x5a5a5a5a00000000",
            "mov ecx, 16",
            "4:",
            "cmp [rsp + rcx * 8 - 136], rax",
            "je 5f",
            "inc {clobbered}",
            "5:",
            "inc rax",
            "dec ecx",
            "jnz 4b",
            counter = in(reg) counter.as_ptr(),
            events = in(reg) events,
            clobbered = out(reg) clobbered,
            out("rax") _, out("rcx") _, out("r8") _,
        );
    }
    clobbered
}

/// Returns the current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reading RSP has no effect.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

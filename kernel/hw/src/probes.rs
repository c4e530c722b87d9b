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

/// Joins the two halves `rdtsc` leaves in EDX:EAX.
fn tsc(high: u32, low: u32) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a non-zero byte (so a later high-water scan sees it) at `address`, which must lie in the calling thread's own stack more than
/// the red zone below the current stack pointer (free stack space nobody else uses), and
/// returns the TSC ticks the store took, page fault included. Interrupts must be off, so no
/// interrupt can land in that space meanwhile.
pub fn timed_stack_touch(_irq: &super::cpu_ops::IrqGuard, stack_bottom: u64, address: u64) -> u64 {
    let sp = stack_pointer();
    assert!(
        address >= stack_bottom && address + 512 < sp,
        "touch of {address:#x} outside the free part of the stack [{stack_bottom:#x}, {sp:#x})"
    );
    let start_low: u32;
    let start_high: u32;
    let end_low: u32;
    let end_high: u32;
    // SAFETY: 1. `address` is in the caller's own stack, at least 512 bytes below RSP (checked),
    // so it is neither live data nor the red zone, and with interrupts off nothing else writes
    // there. 2. If its page is not populated, the store faults and the stack-fault path
    // populates it (that is what is measured). 3. rdtsc/lfence only read the TSC.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "mov r8d, eax",
            "mov r9d, edx",
            "mov byte ptr [{address}], 0xa5",
            "lfence",
            "rdtsc",
            address = in(reg) address,
            out("r8") start_low, out("r9") start_high, out("eax") end_low, out("edx") end_high,
            options(nostack),
        );
    }
    tsc(end_high, end_low) - tsc(start_high, start_low)
}

/// Reads 8 bytes at `address` in the lazy region and returns the TSC ticks the load took,
/// page fault included.
pub fn timed_lazy_read(address: u64) -> u64 {
    use crate::layout::{LAZY_REGION_BASE, LAZY_REGION_BYTES};
    assert!((LAZY_REGION_BASE..LAZY_REGION_BASE + LAZY_REGION_BYTES - 8).contains(&address));
    let start_low: u32;
    let start_high: u32;
    let end_low: u32;
    let end_high: u32;
    // SAFETY: the lazy region is memory the kernel maps on demand and nothing else uses; the
    // load either reads a mapped page or faults and is served (or reported). rdtsc/lfence
    // only read the TSC.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "mov r8d, eax",
            "mov r9d, edx",
            "mov r10, qword ptr [{address}]",
            "lfence",
            "rdtsc",
            address = in(reg) address,
            out("r8") start_low, out("r9") start_high, out("eax") end_low, out("edx") end_high,
            out("r10") _,
            options(nostack, readonly),
        );
    }
    tsc(end_high, end_low) - tsc(start_high, start_low)
}

/// Writes a non-zero byte at `address`, which must lie in the calling thread's own stack more
/// than 512 bytes below the current stack pointer (free stack space), so that its page is
/// populated and a later high-water scan sees that depth. Interrupts may stay on: an interrupt
/// that uses this space runs between instructions of this thread, never during the store.
pub fn touch_stack(stack_bottom: u64, address: u64) {
    let sp = stack_pointer();
    assert!(
        address >= stack_bottom && address + 512 < sp,
        "touch of {address:#x} outside the free part of the stack [{stack_bottom:#x}, {sp:#x})"
    );
    // SAFETY: `address` is in the caller's own stack, at least 512 bytes below RSP (checked):
    // neither live data nor the red zone. If its page is not populated, the store faults and
    // the stack-fault path populates it (or stops the thread).
    unsafe { asm!("mov byte ptr [{address}], 0xa5", address = in(reg) address, options(nostack)) };
}

/// Checks that `sp` lies in free space of the caller's own stack `[stack_bottom, RSP)`, with
/// room for the stubs below to run there.
fn assert_free_stack(stack_bottom: u64, sp: u64) {
    let current = stack_pointer();
    assert!(
        sp >= stack_bottom + 64 && sp + 64 <= current,
        "stack pointer {sp:#x} outside the free part of the stack [{stack_bottom:#x}, {current:#x})"
    );
}

/// Checks that `sp` lies in the guard page just below the caller's stack (`stack_bottom`),
/// where a stack pointer points in the instant between a function's `sub rsp` and its first
/// store, when that function's frame overflows the stack.
fn assert_in_guard(stack_bottom: u64, sp: u64) {
    let current = stack_pointer();
    let guard = stack_bottom - crate::layout::PAGE_BYTES;
    assert!(
        (guard..stack_bottom).contains(&sp) && current > stack_bottom && current - sp < 1 << 20,
        "stack pointer {sp:#x} outside the guard page below the stack [{stack_bottom:#x}, ..)"
    );
    assert!(
        super::paging::translate(sp).is_none(),
        "the guard page at {guard:#x} is mapped"
    );
}

/// Moves the stack pointer to `sp` (in the caller's own stack, below its current stack
/// pointer: free space), enables interrupts and spins there, without touching the stack,
/// until `counter` reaches `until`; then moves back. Interrupts stay on. For tests that need a
/// thread preempted with its stack pointer at an exact distance from a page boundary. A thread
/// stopped while it spins there never returns (it resumes elsewhere).
pub fn spin_at(stack_bottom: u64, sp: u64, counter: &AtomicU64, until: u64) {
    assert_free_stack(stack_bottom, sp);
    // SAFETY: 1. `sp` lies in free space of this thread's own stack (checked): nothing live is
    // there, and the block writes nothing through it; interrupts that arrive meanwhile are
    // delivered on IST stacks and, if they move to this stack, go below `sp` and its red zone
    // (populating it first). 2. The block does not set `nostack`, so the compiler keeps nothing
    // below RSP across it. 3. It reads `counter` (a live `AtomicU64`; plain 8-byte loads are
    // atomic) and restores RSP from r11, which every trap path preserves.
    unsafe { spin_with_stack_pointer(sp, counter, until) }
}

/// As [`spin_at`], with `sp` in the guard page below the caller's stack (checked): a thread
/// whose stack has overflowed by a frame that has not stored anything yet. Whatever an
/// interrupt would move below `sp` lies in the guard page or below it, in the stack of the
/// next slot down: the trap path must see the overflow and stop the thread (it never
/// returns), not move frames there.
pub fn spin_in_guard(stack_bottom: u64, sp: u64, counter: &AtomicU64, until: u64) {
    assert_in_guard(stack_bottom, sp);
    // SAFETY: 1. `sp` lies in the unmapped guard page below this thread's stack (checked):
    // the block writes nothing through it, so nothing is written there or below unless an
    // interrupt moves a frame there, which is what the caller tests (the trap path must
    // refuse and stop the thread). 2.-3. As in `spin_at`.
    unsafe { spin_with_stack_pointer(sp, counter, until) }
}

/// Sets RSP to `sp`, enables interrupts, spins until `counter` reaches `until`, restores RSP.
///
/// # Safety
/// Nothing live may be at or below `sp` (the block itself writes nothing there); the caller
/// accepts that interrupts are left on and that a trap may resume the thread elsewhere.
unsafe fn spin_with_stack_pointer(sp: u64, counter: &AtomicU64, until: u64) {
    // SAFETY: the caller's contract; the block reads only `counter` (a live `AtomicU64`;
    // plain 8-byte loads are atomic) and restores RSP from r11, which every trap path
    // preserves.
    unsafe {
        asm!(
            "mov r11, rsp",
            "mov rsp, {sp}",
            "sti",
            "2:",
            "pause",
            "cmp [{counter}], {until}",
            "jb 2b",
            "mov rsp, r11",
            sp = in(reg) sp,
            counter = in(reg) counter.as_ptr(),
            until = in(reg) until,
            out("r11") _,
        );
    }
}

/// Moves the stack pointer to `sp` (as in [`spin_at`]), reads 8 bytes at `address` in the lazy
/// region there (a fault on it is handled with the stack pointer at `sp`), and moves back.
/// Interrupts are left as they are.
pub fn lazy_read_at(stack_bottom: u64, sp: u64, address: u64) -> u64 {
    assert_free_stack(stack_bottom, sp);
    // SAFETY: as in `spin_at` for the stack pointer.
    unsafe { lazy_read_with_stack_pointer(sp, address) }
}

/// As [`lazy_read_at`], with `sp` in the guard page below the caller's stack (checked, as in
/// [`spin_in_guard`]): the fault must not be moved there; the thread is stopped.
pub fn lazy_read_in_guard(stack_bottom: u64, sp: u64, address: u64) -> u64 {
    assert_in_guard(stack_bottom, sp);
    // SAFETY: as in `spin_in_guard` for the stack pointer.
    unsafe { lazy_read_with_stack_pointer(sp, address) }
}

/// Sets RSP to `sp`, reads 8 bytes at `address` in the lazy region, restores RSP.
///
/// # Safety
/// As [`spin_with_stack_pointer`].
unsafe fn lazy_read_with_stack_pointer(sp: u64, address: u64) -> u64 {
    use crate::layout::{LAZY_REGION_BASE, LAZY_REGION_BYTES};
    assert!((LAZY_REGION_BASE..LAZY_REGION_BASE + LAZY_REGION_BYTES - 8).contains(&address));
    let value: u64;
    // SAFETY: the caller's contract for the stack pointer; the lazy region is memory the
    // kernel maps on demand and nothing else uses: the load reads a mapped page or faults and
    // is served (or reported).
    unsafe {
        asm!(
            "mov r11, rsp",
            "mov rsp, {sp}",
            "mov {value}, qword ptr [{address}]",
            "mov rsp, r11",
            sp = in(reg) sp,
            address = in(reg) address,
            value = out(reg) value,
            out("r11") _,
        );
    }
    value
}

/// Writes into the guard page just below the calling thread's stack (`stack_bottom`), as an
/// overflow would, but from wherever the stack pointer is: the fault path then stops the
/// thread (tests that need a guard hit without a deep stack, so that no interrupt lands on a
/// nearly full stack). Returns only if the write did not fault.
///
/// # Panics
/// If the write did not fault: the guard page is mapped.
pub fn touch_guard(stack_bottom: u64) {
    let sp = stack_pointer();
    assert!(
        stack_bottom < sp && sp - stack_bottom <= 1 << 20,
        "{stack_bottom:#x} is not the bottom of the stack in use ({sp:#x})"
    );
    let address = stack_bottom - 64;
    assert!(
        super::paging::translate(address).is_none(),
        "the guard page below {stack_bottom:#x} is mapped"
    );
    // SAFETY: `address` is in the unmapped guard page below the caller's own stack (checked
    // just above; guard pages are never mapped): the store faults before it writes anything,
    // and the guard-hit path stops the thread.
    unsafe { asm!("mov byte ptr [{address}], 0xa5", address = in(reg) address, options(nostack)) };
    panic!("a store into the guard page at {address:#x} did not fault");
}

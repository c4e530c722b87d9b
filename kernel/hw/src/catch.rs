//! Catching an expected fault, for tests: a `setjmp`/`longjmp` through the trap path.
//!
//! [`catch_fault`] saves the callee-saved registers and the stack pointer, optionally switches
//! to another stack, and calls a function. If that function faults while the catcher is armed,
//! the trap dispatcher calls [`redirect`], which rewrites the trap frame so that `iretq` resumes
//! at the catcher's landing pad with the saved registers and stack: `catch_fault` then returns
//! the fault instead of the kernel stopping. Interrupts must stay off in between (the catcher
//! is per CPU), which the `&IrqGuard` argument proves.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use super::cpu_ops::{self, IrqGuard, MAX_CPUS};
use super::paging;
use super::trap_entry::TrapFrame;
use crate::layout;

/// A fault that a catcher intercepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaughtFault {
    /// The vector.
    pub vector: u8,
    /// The error code (0 for vectors without one).
    pub error_code: u64,
    /// CR2 for a page fault, 0 otherwise.
    pub address: u64,
    /// The faulting instruction.
    pub rip: u64,
    /// The stack pointer at the fault.
    pub rsp: u64,
}

/// Saved by `catch_call`: rbx, rbp, r12, r13, r14, r15, rsp.
#[repr(C)]
struct JumpBuffer([u64; 7]);

struct Catcher {
    armed: AtomicBool,
    buffer: UnsafeCell<JumpBuffer>,
    caught: UnsafeCell<Option<CaughtFault>>,
}

// SAFETY: each CPU only touches its own catcher (indexed by `current_id`), with interrupts
// off, so there is never concurrent access to a catcher's cells.
unsafe impl Sync for Catcher {}

static CATCHERS: [Catcher; MAX_CPUS] = [const {
    Catcher {
        armed: AtomicBool::new(false),
        buffer: UnsafeCell::new(JumpBuffer([0; 7])),
        caught: UnsafeCell::new(None),
    }
}; MAX_CPUS];

unsafe extern "C" {
    fn catch_call(
        f: extern "C" fn(usize),
        arg: usize,
        stack_top: u64,
        buffer: *mut JumpBuffer,
    ) -> u64;
    static catch_landing: u8;
}

/// Runs `f(arg)` (on the stack ending at `stack_top` if given) and returns the first fault it
/// takes, or `Ok` if it returned normally.
///
/// # Panics
/// If a catcher is already armed on this CPU.
pub fn catch_fault(
    irq: &IrqGuard,
    stack_top: Option<u64>,
    f: extern "C" fn(usize),
    arg: usize,
) -> Result<(), CaughtFault> {
    let catcher = &CATCHERS[cpu_ops::current_id(irq) as usize];
    assert!(
        !catcher.armed.swap(true, Ordering::AcqRel),
        "nested catch_fault"
    );
    if let Some(top) = stack_top {
        assert!(top % 16 == 0, "stack top {top:#x} not 16-byte aligned");
    }
    // SAFETY: 1. `buffer` is this CPU's and nothing else uses it while armed (interrupts are
    // off). 2. `catch_call` preserves the System V callee-saved registers on both of its
    // exits: on a normal return it restores them from the buffer, on a fault `redirect`
    // puts the buffer's values into the trap frame. 3. A given stack top is the top of
    // mapped memory the caller owns (or of a stack whose guard page is the point of the test).
    let faulted = unsafe { catch_call(f, arg, stack_top.unwrap_or(0), catcher.buffer.get()) };
    catcher.armed.store(false, Ordering::Release);
    if faulted == 0 {
        return Ok(());
    }
    // SAFETY: `redirect` wrote `caught` before resuming us on this CPU; we are its only user.
    let caught = unsafe { (*catcher.caught.get()).take() };
    Err(caught.expect("a redirected fault records itself"))
}

/// Runs `f(arg)` on the stack ending at `stack_top` without a catcher: a fault there is
/// handled (or fatal) as anywhere else.
pub fn run_on_stack(stack_top: u64, f: extern "C" fn(usize), arg: usize) {
    assert!(
        stack_top.is_multiple_of(16),
        "stack top {stack_top:#x} not 16-byte aligned"
    );
    let mut buffer = JumpBuffer([0; 7]);
    // SAFETY: `catch_call` preserves the callee-saved registers on its normal return; `buffer`
    // is a local it may write; the catcher is not armed, so no fault resumes through it.
    unsafe { catch_call(f, arg, stack_top, &mut buffer) };
}

fn assert_probe_target(address: u64) {
    let lazy = layout::LAZY_REGION_BASE..layout::LAZY_REGION_BASE + layout::LAZY_REGION_BYTES;
    let image = layout::KERNEL_IMAGE_BASE..paging::image_range().end();
    assert!(
        lazy.contains(&address) || image.contains(&address) || layout::is_stack_address(address),
        "probe of {address:#x} outside the lazy region, the kernel image and the stack regions"
    );
}

/// Reads 8 bytes at `address` with a catcher armed. `address` must lie in the lazy region,
/// the kernel image or a stack region (checked), where a read has no side effects.
pub fn probe_read(irq: &IrqGuard, address: u64) -> Result<u64, CaughtFault> {
    assert_probe_target(address);
    let mut cell = (address, 0u64);
    extern "C" fn read(cell: usize) {
        let cell = cell as *mut (u64, u64);
        // SAFETY: `cell` points at the caller's local tuple; the read of `cell.0` is the probe
        // itself: a fault is caught, and a mapped address in the allowed regions is plain RAM.
        unsafe { (*cell).1 = core::ptr::read_volatile((*cell).0 as *const u64) };
    }
    catch_fault(irq, None, read, &raw mut cell as usize)?;
    Ok(cell.1)
}

/// Writes 8 bytes at `address` with a catcher armed. Same rule for `address` as
/// [`probe_read`]; the caller must own the memory if the write succeeds.
pub fn probe_write(irq: &IrqGuard, address: u64, value: u64) -> Result<(), CaughtFault> {
    assert_probe_target(address);
    let cell = (address, value);
    extern "C" fn write(cell: usize) {
        let cell = cell as *const (u64, u64);
        // SAFETY: as in `probe_read`; the caller owns the target or expects the write to fault
        // (read-only kernel text).
        unsafe { core::ptr::write_volatile((*cell).0 as *mut u64, (*cell).1) };
    }
    catch_fault(irq, None, write, &raw const cell as usize)
}

/// A `ret` instruction stored in writable, non-executable data.
#[unsafe(no_mangle)]
static mut DATA_RET_INSTRUCTION: [u8; 16] = [0xc3; 16];

/// Calls into the kernel's data section with a catcher armed: with NX working this faults;
/// if it did not, the `ret` stored there returns normally and this reports `Ok`.
pub fn probe_execute_data(irq: &IrqGuard) -> Result<(), CaughtFault> {
    extern "C" fn call(target: usize) {
        // SAFETY: the target is 16 bytes of `ret` instructions: executed, it returns at once;
        // with NX it faults and the catcher takes over.
        let f: extern "C" fn() = unsafe { core::mem::transmute(target) };
        f();
    }
    catch_fault(irq, None, call, (&raw const DATA_RET_INSTRUCTION) as usize)
}

/// Reads `address` in the lazy region with no catcher: a fault there is served like any
/// other lazy-region fault (or, inside the #PF handler, is the nested fault it provokes).
pub fn fault_read(address: u64) -> u64 {
    assert!(
        (layout::LAZY_REGION_BASE..layout::LAZY_REGION_BASE + layout::LAZY_REGION_BYTES)
            .contains(&address)
    );
    // SAFETY: the lazy region holds no mappings unless a test made them; the read either
    // faults (what the caller wants) or reads plain memory.
    unsafe { core::ptr::read_volatile(address as *const u64) }
}

/// Writes `value` at `address` in the lazy region, without a catcher: the fault that maps the
/// page is served like any other.
pub fn lazy_write(address: u64, value: u64) {
    assert!(
        (layout::LAZY_REGION_BASE..layout::LAZY_REGION_BASE + layout::LAZY_REGION_BYTES)
            .contains(&address)
    );
    // SAFETY: the lazy region is memory the kernel maps on demand and nothing else uses; a
    // fault there maps a zeroed page (or is fatal and reported).
    unsafe { core::ptr::write_volatile(address as *mut u64, value) }
}

/// Reads `address` in the lazy region, without a catcher (see [`lazy_write`]).
pub fn lazy_read(address: u64) -> u64 {
    fault_read(address)
}

/// Reads `layout::NEVER_MAPPED`, which nothing maps, with no catcher: the fault is fatal.
pub fn read_never_mapped() -> u64 {
    assert!(
        paging::translate(layout::NEVER_MAPPED).is_none(),
        "NEVER_MAPPED is mapped"
    );
    // SAFETY: the address is not mapped (checked): the read faults and the kernel stops.
    unsafe { core::ptr::read_volatile(layout::NEVER_MAPPED as *const u64) }
}

/// Executes `ud2`.
pub fn invalid_opcode() -> ! {
    // SAFETY: `ud2` raises #UD and touches nothing.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// If a catcher is armed on this CPU, rewrites `frame` to resume at its landing pad and returns
/// true. Called by the trap dispatcher on the IST stack, on every page fault that is not a
/// stack fault: the test of the catcher is inlined there, the rest is out of line.
#[inline]
pub fn redirect(frame: &mut TrapFrame, cr2: u64) -> bool {
    // Trap context: interrupts are off already; the guard only proves it.
    let irq = IrqGuard::new();
    let catcher = &CATCHERS[cpu_ops::current_id(&irq) as usize];
    catcher.armed.swap(false, Ordering::AcqRel) && land(catcher, frame, cr2)
}

/// Rewrites `frame` to resume at the landing pad of `catcher`, which was armed (and has just
/// been disarmed) on this CPU.
#[cold]
#[inline(never)]
fn land(catcher: &Catcher, frame: &mut TrapFrame, cr2: u64) -> bool {
    // SAFETY: the catcher was armed by `catch_fault` on this CPU, which is suspended in the
    // faulting code; nothing else touches its cells.
    let (buffer, caught) = unsafe { (&*catcher.buffer.get(), &mut *catcher.caught.get()) };
    *caught = Some(CaughtFault {
        vector: frame.vector as u8,
        error_code: frame.error_code,
        address: cr2,
        rip: frame.rip,
        rsp: frame.rsp,
    });
    let [rbx, rbp, r12, r13, r14, r15, rsp] = buffer.0;
    frame.rbx = rbx;
    frame.rbp = rbp;
    frame.r12 = r12;
    frame.r13 = r13;
    frame.r14 = r14;
    frame.r15 = r15;
    frame.rsp = rsp;
    frame.rip = (&raw const catch_landing) as u64;
    true
}

global_asm!(
    r#"
    .pushsection .text.catch, "ax"
    .globl catch_call
catch_call:
    mov [rcx + 0], rbx
    mov [rcx + 8], rbp
    mov [rcx + 16], r12
    mov [rcx + 24], r13
    mov [rcx + 32], r14
    mov [rcx + 40], r15
    mov [rcx + 48], rsp
    mov rbx, rcx
    test rdx, rdx
    jz 2f
    mov rsp, rdx
2:
    and rsp, -16
    mov rax, rdi
    mov rdi, rsi
    call rax
    mov rsp, [rbx + 48]
    mov rbp, [rbx + 8]
    mov r12, [rbx + 16]
    mov r13, [rbx + 24]
    mov r14, [rbx + 32]
    mov r15, [rbx + 40]
    mov rbx, [rbx + 0]
    xor eax, eax
    ret
    .globl catch_landing
catch_landing:
    mov eax, 1
    ret
    .popsection
"#
);

//! Starting the application processors: INIT-SIPI-SIPI with a real-mode trampoline.
//!
//! The trampoline (below) is copied to physical `TRAMPOLINE_PHYS`, which the frame allocator
//! never hands out (everything below 1 MiB is reserved). It switches the AP from real mode to
//! protected mode to long mode with the kernel's own PML4, enables SSE, loads the stack the
//! boot CPU prepared and calls `ap_entry(cpu_index)`. The trampoline page is identity-mapped
//! (writable and executable) only while APs start, and unmapped afterwards.
//!
//! One AP starts at a time: the boot CPU fills the trampoline's parameter block, sends the
//! IPIs and waits until that AP reports that it runs (the caller's `started` check) before it
//! touches the block again.

use core::arch::global_asm;

use super::{apic, paging};

/// Where the trampoline runs (a page below 1 MiB; the SIPI vector is its page number).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_params: u8;
}

/// Offsets in the parameter block.
const PARAM_CR3: u64 = 0;
const PARAM_STACK: u64 = 8;
const PARAM_ENTRY: u64 = 16;
const PARAM_CPU: u64 = 24;

fn trampoline_bytes() -> (u64, u64, u64) {
    let start = (&raw const ap_trampoline_start) as u64;
    let end = (&raw const ap_trampoline_end) as u64;
    let params = (&raw const ap_params) as u64;
    (start, end, params - start)
}

/// Copies the trampoline to low memory and maps it; called once before the first AP starts.
pub fn install_trampoline() {
    let (start, end, _) = trampoline_bytes();
    assert!(end - start <= 4096, "trampoline larger than a page");
    assert!(
        paging::pml4_phys() < (1 << 32),
        "the PML4 must be below 4 GiB for the trampoline"
    );
    let dst = paging::phys_to_virt(TRAMPOLINE_PHYS);
    // SAFETY: the page at TRAMPOLINE_PHYS is reserved for the trampoline (never given to the
    // frame allocator) and the direct map covers it; the source is the kernel's own bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, dst as *mut u8, (end - start) as usize)
    };
    paging::map_identity_executable(TRAMPOLINE_PHYS);
}

/// Removes the trampoline's identity mapping once every AP runs.
pub fn remove_trampoline() {
    paging::unmap_identity(TRAMPOLINE_PHYS);
}

/// Starts the AP `apic_id` with the given stack and index; it calls `entry(cpu_index)`.
/// `started` is polled to learn that the AP runs; returns whether it did within the timeout.
pub fn start_ap(
    apic_id: u32,
    cpu_index: u64,
    stack_top: u64,
    entry: extern "C" fn(u64) -> !,
    started: impl Fn() -> bool,
) -> bool {
    let (_, _, params_offset) = trampoline_bytes();
    let params = paging::phys_to_virt(TRAMPOLINE_PHYS + params_offset);
    let values = [
        (PARAM_CR3, paging::pml4_phys()),
        (PARAM_STACK, stack_top),
        (PARAM_ENTRY, entry as usize as u64),
        (PARAM_CPU, cpu_index),
    ];
    for (offset, value) in values {
        // SAFETY: the parameter block lies in the trampoline page (reserved, direct-mapped);
        // no AP reads it now (the previous one reported `started` before we got here).
        unsafe { core::ptr::write_volatile((params + offset) as *mut u64, value) };
    }
    apic::send_init(apic_id);
    apic::delay_us(10_000);
    for _ in 0..2 {
        apic::send_startup(apic_id, (TRAMPOLINE_PHYS / 4096) as u8);
        for _ in 0..1000 {
            if started() {
                return true;
            }
            apic::delay_us(200);
        }
    }
    started()
}

global_asm!(
    r#"
    .pushsection .text.ap_trampoline, "ax"
    .balign 16
    .globl ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    lgdtl ({base} + ap_gdt_pointer - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    .byte 0x66, 0xea
    .long {base} + ap_protected - ap_trampoline_start
    .word 0x08

    .code32
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7)), %eax
    movl %eax, %cr4
    movl ({base} + ap_params - ap_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16)), %eax
    movl %eax, %cr0
    .byte 0xea
    .long {base} + ap_long - ap_trampoline_start
    .word 0x18

    .code64
ap_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq %cr0, %rax
    andq $~((1 << 2) | (1 << 3)), %rax
    orq $(1 << 1), %rax
    movq %rax, %cr0
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax
    movq %rax, %cr4
    fninit
    movq ({base} + ap_params - ap_trampoline_start + 8), %rsp
    movq ({base} + ap_params - ap_trampoline_start + 24), %rdi
    movq ({base} + ap_params - ap_trampoline_start + 16), %rax
    xorl %ebp, %ebp
    callq *%rax
    ud2

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff           /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff           /* 0x10: data */
    .quad 0x00af9a000000ffff           /* 0x18: 64-bit code */
ap_gdt_pointer:
    .word ap_gdt_pointer - ap_gdt - 1
    .long {base} + ap_gdt - ap_trampoline_start
    .balign 8
    .globl ap_params
ap_params:
    .quad 0                            /* cr3 */
    .quad 0                            /* stack top */
    .quad 0                            /* entry */
    .quad 0                            /* cpu index */
    .globl ap_trampoline_end
ap_trampoline_end:
    .popsection
"#,
    base = const TRAMPOLINE_PHYS,
    options(att_syntax)
);

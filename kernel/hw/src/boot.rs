//! The first instructions: from QEMU's PVH entry (32-bit protected mode, paging off) to Rust.
//!
//! QEMU finds `pvh_start32` through the Xen ELF note below and enters it with EBX holding the
//! physical address of `hvm_start_info`. The trampoline
//! 1. zeroes `.bss` (the loader leaves it to us; the boot stack and boot page tables live there),
//! 2. builds boot page tables that map the first 1 GiB with 2 MiB pages twice: identity, and at
//!    the direct map (`layout::DIRECT_MAP_BASE`), so that physical memory is reached the same
//!    way before and after the kernel installs its own tables (`hw::paging`),
//! 3. enables PAE, long mode with NX, paging and write protection, loads a minimal 64-bit GDT
//!    and far-jumps to 64-bit code,
//! 4. enables SSE (the host target's code uses it), sets up the boot stack and calls
//!    [`crate::start::boot_cpu_entry`] with the start-info address zero-extended.
//!
//! Nothing here touches memory outside the image and the start info.

use core::arch::global_asm;

/// Size of the boot CPU's first stack. It later serves as the boot CPU's idle stack.
pub const BOOT_STACK_BYTES: usize = 64 * 1024;

global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* descriptor size: a 32-bit entry address */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4
    .popsection

    .pushsection .boot32, "ax"
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                       /* keep the start-info address */

    /* 1. zero .bss */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb

    /* 2. boot page tables: PML4[0] -> PDPT, PDPT[0] -> PD, PD = 512 x 2 MiB identity */
    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [boot_pml4], eax
    mov [boot_pml4 + 273 * 8], eax     /* the direct map starts as the same 1 GiB */
    mov eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt], eax
    mov edi, offset boot_pd
    mov eax, 0x83                      /* present, writable, 2 MiB */
    mov ecx, 512
2:
    mov [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    loop 2b

    /* 3. PAE, long mode + NX, paging + write protection */
    mov eax, cr4
    or eax, (1 << 5)                   /* PAE */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080                /* EFER */
    rdmsr
    or eax, (1 << 8) | (1 << 11)       /* LME, NXE */
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1  /* PG, WP, PE */
    mov cr0, eax
    lgdt [boot_gdt_pointer]
    /* jmp far 0x08:boot_long_mode, spelled out: the assembler's 32-bit far-jump syntax varies */
    .byte 0xea
    .long boot_long_mode
    .word 0x08

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax

    /* 4. SSE: CR0.EM=0, CR0.TS=0, CR0.MP=1; CR4.OSFXSR, CR4.OSXMMEXCPT */
    mov rax, cr0
    and rax, ~((1 << 2) | (1 << 3))
    or rax, (1 << 1)
    mov cr0, rax
    mov rax, cr4
    or rax, (1 << 9) | (1 << 10)
    mov cr4, rax
    fninit

    lea rsp, [rip + boot_stack_top]
    xor ebp, ebp
    mov edi, esi                       /* zero-extends the start-info address */
    call {entry}
4:
    hlt
    jmp 4b

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff           /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff           /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .popsection

    .pushsection .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
    .globl boot_stack_bottom
boot_stack_bottom:
    .skip {stack_bytes}
    .globl boot_stack_top
boot_stack_top:
    .popsection
"#,
    entry = sym crate::start::boot_cpu_entry,
    stack_bytes = const BOOT_STACK_BYTES,
);

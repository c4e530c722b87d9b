//! The handful of C-runtime symbols that `core`, `alloc` and compiled Rust code call.
//!
//! `memcpy` and friends are written with string instructions in inline assembly, so the compiler
//! cannot recognise them as copy loops and turn them back into calls to themselves. The
//! unwinding symbols exist only because the precompiled `alloc` references them; with
//! `panic = "abort"` neither is ever reached.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst`; the ranges must not overlap.
///
/// # Safety
/// `dst` and `src` must be valid for `n` bytes and not overlap (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes; `rep movsb` copies
    // forwards (DF is clear by the ABI) and touches exactly those bytes.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// Copies `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
/// `dst` and `src` must be valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: copying forwards is correct when `dst` is below `src` or the ranges are
        // disjoint; validity is the caller's guarantee.
        unsafe { memcpy(dst, src, n) }
    } else {
        // SAFETY: `dst` overlaps `src` from above, so copy backwards: point at the last byte of
        // each range, set DF for the copy and clear it again, as the ABI requires.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _,
                 inout("rdi") dst.add(n - 1) => _,
                 inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
        dst
    }
}

/// Fills `n` bytes at `dst` with the byte `c`.
///
/// # Safety
/// `dst` must be valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dst` is valid for `n` bytes; `rep stosb` writes exactly
    // those bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// Compares `n` bytes; returns the difference of the first unequal pair, or 0.
///
/// # Safety
/// `a` and `b` must be valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // Volatile reads keep the compiler from recognising this loop as `memcmp` itself.
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n` and both ranges are valid for `n` bytes.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Compares `n` bytes for equality only (0 when equal).
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// Returns the length of a NUL-terminated string.
///
/// # Safety
/// `s` must point to a NUL-terminated string (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let end: *const u8;
    // SAFETY: the string is NUL-terminated, so `repne scasb` stops at the terminator having
    // read only bytes of the string; RDI then points one past the terminator.
    unsafe {
        asm!("repne scasb",
             inout("rcx") usize::MAX => _, inout("rdi") s => end, in("al") 0u8,
             options(nostack, readonly));
    }
    end as usize - s as usize - 1
}

/// Referenced by the precompiled `alloc`; unwinding never happens with `panic = "abort"`.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by the precompiled `alloc`; never reached with `panic = "abort"`.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    panic!("_Unwind_Resume reached with panic=abort");
}

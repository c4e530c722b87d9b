//! Reads through the boot identity map, which covers the first 1 GiB of physical memory until
//! the kernel switches to its own page tables (and, for the direct map, forever after through
//! `paging::phys_to_virt`).

use super::paging;

/// The physical bytes the boot page tables map (identity, 2 MiB pages).
const BOOT_IDENTITY_BYTES: u64 = 1 << 30;

/// Reads `N` bytes at physical address `address`, or `None` if any of them lies outside the
/// mapped range.
pub fn read<const N: usize>(address: u64) -> Option<[u8; N]> {
    let end = address.checked_add(N as u64)?;
    if address == 0 {
        return None;
    }
    let virt = if paging::kernel_tables_active() {
        if !paging::direct_map_covers(address, N as u64) {
            return None;
        }
        paging::phys_to_virt(address)
    } else {
        if end > BOOT_IDENTITY_BYTES {
            return None;
        }
        address
    };
    let mut out = [0u8; N];
    // SAFETY: `virt..virt+N` is mapped (checked above against the identity map or the direct
    // map) and is plain RAM written by the loader; a byte copy has no alignment needs.
    unsafe { core::ptr::copy_nonoverlapping(virt as *const u8, out.as_mut_ptr(), N) };
    Some(out)
}

/// Copies `len` bytes of physical memory at `address` (a boot module) into a new vector, or
/// `None` if any of them lies outside the mapped range.
pub fn copy(address: u64, len: usize) -> Option<alloc::vec::Vec<u8>> {
    let end = address.checked_add(len as u64)?;
    if address == 0
        || !paging::kernel_tables_active()
        || !paging::direct_map_covers(address, len as u64)
    {
        return None;
    }
    let _ = end;
    let mut out = alloc::vec![0u8; len];
    // SAFETY: the whole range lies in the direct map (checked) and is RAM the loader filled
    // (a module), reserved from the frame allocator, so nothing writes it meanwhile.
    unsafe {
        core::ptr::copy_nonoverlapping(
            paging::phys_to_virt(address) as *const u8,
            out.as_mut_ptr(),
            len,
        )
    };
    Some(out)
}

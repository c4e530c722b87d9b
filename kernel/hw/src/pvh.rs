//! Reading the PVH `hvm_start_info` that QEMU hands over, with every pointer bounds-checked.
//!
//! The start info, the memory map, the command line and the module list are read once, through
//! the boot identity map, and copied into a [`BootInfo`] of fixed-size arrays. Nothing later
//! touches the raw structures. An address outside the boot identity map, a wrong magic, an
//! oversized table or a command line without a terminator is an error, never a wild read.

use super::boot_map;

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Memory-map entries kept; more are an error.
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Command-line bytes kept; a longer line is an error. Larger than the longest line the kernel
/// accepts ([`dks_protocol::cmdline::MAX_CMDLINE_BYTES`]), so a line just beyond that limit
/// still reaches the command-line parser, which refuses it with a `ConfigError` record.
pub const MAX_CMDLINE_BYTES: usize = 4096;
const _: () = assert!(MAX_CMDLINE_BYTES > dks_protocol::cmdline::MAX_CMDLINE_BYTES + 1);
/// Boot modules kept (`-initrd`); more are an error.
pub const MAX_MODULES: usize = 4;
/// The memory-map type of usable RAM.
const MEMMAP_TYPE_RAM: u32 = 1;

/// A physical memory range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub bytes: u64,
}

impl PhysRange {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes)
    }
}

/// What the boot loader told us, copied into kernel memory.
#[derive(Debug)]
pub struct BootInfo {
    ram: [PhysRange; MAX_MEMORY_REGIONS],
    ram_count: usize,
    cmdline: [u8; MAX_CMDLINE_BYTES],
    cmdline_len: usize,
    modules: [PhysRange; MAX_MODULES],
    module_count: usize,
    /// Physical address of the ACPI RSDP if the loader gave one (0 otherwise).
    pub rsdp: u64,
    /// Physical range of the start info itself (reserved from the frame allocator).
    pub start_info: PhysRange,
}

/// Why the start info could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The start-info pointer or one of its tables lies outside the boot identity map.
    OutOfBounds(&'static str),
    /// The magic number is wrong: this was not a PVH boot.
    BadMagic(u32),
    /// The start info is older than version 1 (no memory map).
    OldVersion(u32),
    /// A table has more entries than the kernel keeps.
    TooMany(&'static str),
    /// The command line has no terminator within the limit, or is not UTF-8.
    BadCmdline,
}

impl BootInfo {
    /// Usable RAM ranges, as the loader reported them.
    pub fn ram(&self) -> &[PhysRange] {
        &self.ram[..self.ram_count]
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> &str {
        // `read` checked the bytes are UTF-8.
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Boot modules (`-initrd` files), whose memory must not be handed out.
    pub fn modules(&self) -> &[PhysRange] {
        &self.modules[..self.module_count]
    }
}

fn read_u32(address: u64, what: &'static str) -> Result<u32, BootInfoError> {
    let bytes = boot_map::read::<4>(address).ok_or(BootInfoError::OutOfBounds(what))?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(address: u64, what: &'static str) -> Result<u64, BootInfoError> {
    let bytes = boot_map::read::<8>(address).ok_or(BootInfoError::OutOfBounds(what))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Reads the start info at physical address `start_info`.
pub fn read(start_info: u64) -> Result<BootInfo, BootInfoError> {
    let magic = read_u32(start_info, "start info")?;
    if magic != START_INFO_MAGIC {
        return Err(BootInfoError::BadMagic(magic));
    }
    let version = read_u32(start_info + 4, "start info")?;
    if version < 1 {
        return Err(BootInfoError::OldVersion(version));
    }
    let nr_modules = read_u32(start_info + 12, "start info")? as usize;
    let modlist = read_u64(start_info + 16, "start info")?;
    let cmdline_address = read_u64(start_info + 24, "start info")?;
    let rsdp = read_u64(start_info + 32, "start info")?;
    let memmap = read_u64(start_info + 40, "start info")?;
    let memmap_entries = read_u32(start_info + 48, "start info")? as usize;

    let mut info = BootInfo {
        ram: [PhysRange::default(); MAX_MEMORY_REGIONS],
        ram_count: 0,
        cmdline: [0; MAX_CMDLINE_BYTES],
        cmdline_len: 0,
        modules: [PhysRange::default(); MAX_MODULES],
        module_count: 0,
        rsdp,
        start_info: PhysRange {
            start: start_info,
            bytes: 56,
        },
    };

    if memmap_entries > MAX_MEMORY_REGIONS {
        return Err(BootInfoError::TooMany("memory map entries"));
    }
    for i in 0..memmap_entries {
        let entry = memmap + (i as u64) * 24;
        let start = read_u64(entry, "memory map")?;
        let bytes = read_u64(entry + 8, "memory map")?;
        let kind = read_u32(entry + 16, "memory map")?;
        if kind == MEMMAP_TYPE_RAM && bytes > 0 {
            info.ram[info.ram_count] = PhysRange { start, bytes };
            info.ram_count += 1;
        }
    }

    if nr_modules > MAX_MODULES {
        return Err(BootInfoError::TooMany("boot modules"));
    }
    for i in 0..nr_modules {
        let entry = modlist + (i as u64) * 32;
        let start = read_u64(entry, "module list")?;
        let bytes = read_u64(entry + 8, "module list")?;
        info.modules[i] = PhysRange { start, bytes };
        info.module_count += 1;
    }

    if cmdline_address != 0 {
        let mut len = 0;
        loop {
            if len == MAX_CMDLINE_BYTES {
                return Err(BootInfoError::BadCmdline);
            }
            let [byte] = boot_map::read::<1>(cmdline_address + len as u64)
                .ok_or(BootInfoError::OutOfBounds("command line"))?;
            if byte == 0 {
                break;
            }
            info.cmdline[len] = byte;
            len += 1;
        }
        if core::str::from_utf8(&info.cmdline[..len]).is_err() {
            return Err(BootInfoError::BadCmdline);
        }
        info.cmdline_len = len;
    }
    Ok(info)
}

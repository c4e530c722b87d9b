//! Finding the CPUs: the ACPI MADT, read with the `acpi` crate through the direct map.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use super::cpu_ops::MAX_CPUS;
use super::paging;

/// Maps ACPI tables through the direct map (nothing to map or unmap).
#[derive(Clone, Copy, Debug)]
struct DirectMap;

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let phys = physical_address as u64;
        assert!(
            paging::direct_map_covers(phys, size as u64),
            "ACPI table at {phys:#x} outside RAM"
        );
        let virt = NonNull::new(paging::phys_to_virt(phys) as *mut T)
            .expect("direct-map addresses are not null");
        // SAFETY: the region lies in the direct map (checked) and stays mapped forever; the
        // caller (the `acpi` crate) guarantees a `T` lives there.
        unsafe { PhysicalMapping::new(physical_address, virt, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The CPUs the firmware describes: APIC ids of the enabled processors, boot CPU first.
#[derive(Clone, Copy, Debug)]
pub struct CpuList {
    /// APIC ids; `apic_ids[0]` is the boot CPU.
    pub apic_ids: [u32; MAX_CPUS],
    /// How many entries of `apic_ids` are valid.
    pub count: usize,
    /// Processors beyond `MAX_CPUS` that were left out.
    pub ignored: usize,
}

/// Reads the MADT. `rsdp` is the loader's RSDP address (0 if it gave none: then the BIOS
/// area is searched).
pub fn cpus(rsdp: u64, boot_apic_id: u32) -> Result<CpuList, acpi::AcpiError> {
    let tables = if rsdp != 0 {
        // SAFETY: the loader gave this address as the RSDP; the crate validates its checksum
        // and signature before trusting it, and every table is read through the direct map.
        unsafe { AcpiTables::from_rsdp(DirectMap, rsdp as usize)? }
    } else {
        // SAFETY: the BIOS areas searched are RAM below 1 MiB, covered by the direct map.
        unsafe { AcpiTables::search_for_rsdp_bios(DirectMap)? }
    };
    let madt = tables.find_table::<Madt>()?;
    let mut list = CpuList {
        apic_ids: [0; MAX_CPUS],
        count: 1,
        ignored: 0,
    };
    list.apic_ids[0] = boot_apic_id;
    for entry in madt.get().entries() {
        let (apic_id, flags) = match entry {
            MadtEntry::LocalApic(e) => (u32::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
            _ => continue,
        };
        // Bit 0: enabled; bit 1: online capable.
        if flags & 0b11 == 0 || apic_id == boot_apic_id {
            continue;
        }
        if list.count == MAX_CPUS {
            list.ignored += 1;
            continue;
        }
        list.apic_ids[list.count] = apic_id;
        list.count += 1;
    }
    Ok(list)
}

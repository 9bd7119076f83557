//! DWARF, read lazily: at discovery only to find the sizes of functions
//! whose symbol has none (and only when there are such functions), and at
//! report time for `file:line` (see `source.rs`).

use gimli::{EndianSlice, Reader, RunTimeEndian, SectionId};
use object::{Object, ObjectSection};
use std::borrow::Cow;
use std::collections::HashMap;

/// Whether the object carries DWARF debugging information.
pub(crate) fn has_debug_info<'d>(file: &impl Object<'d>) -> bool {
    file.section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0)
}

pub(crate) fn endian<'d>(file: &impl Object<'d>) -> RunTimeEndian {
    if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    }
}

/// The (decompressed) data of one DWARF section, empty when absent or broken.
pub(crate) fn section_data<'d>(file: &impl Object<'d>, id: SectionId) -> Cow<'d, [u8]> {
    file.section_by_name(id.name())
        .and_then(|s| s.uncompressed_data().ok())
        .unwrap_or(Cow::Borrowed(&[]))
}

/// Sizes, by start address, of the `DW_TAG_subprogram`s (or their ranges)
/// that start at one of `wanted`. Broken DWARF gives a partial answer.
pub(crate) fn function_sizes<'d>(file: &impl Object<'d>, wanted: &[u64]) -> HashMap<u64, u64> {
    if wanted.is_empty() || !has_debug_info(file) {
        return HashMap::new();
    }
    // What units and DIE ranges need (a unit reads its name, directory and
    // line-program header): no location lists, no type units.
    let needed = |id: SectionId| {
        !matches!(
            id,
            SectionId::DebugLoc
                | SectionId::DebugLocLists
                | SectionId::DebugTypes
                | SectionId::DebugAranges
        )
    };
    let load = |id| {
        Ok::<_, gimli::Error>(if needed(id) {
            section_data(file, id)
        } else {
            Cow::Borrowed(&[][..])
        })
    };
    let sections = match gimli::DwarfSections::load(load) {
        Ok(s) => s,
        Err(_) => return HashMap::new(),
    };
    let endian = endian(file);
    let dwarf = sections.borrow(|data| EndianSlice::new(data, endian));
    let mut wanted: Vec<u64> = wanted.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut found = HashMap::new();
    let _ = walk(&dwarf, &wanted, &mut found);
    found
}

fn walk<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    wanted: &[u64],
    found: &mut HashMap<u64, u64>,
) -> gimli::Result<()> {
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        if found.len() == wanted.len() {
            break;
        }
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        // Skip compilation units that cover none of the wanted addresses.
        if let Ok(mut ranges) = dwarf.unit_ranges(&unit) {
            let mut covers = false;
            let mut any = false;
            while let Ok(Some(r)) = ranges.next() {
                any = true;
                let i = wanted.partition_point(|&a| a < r.begin);
                if wanted.get(i).is_some_and(|&a| a < r.end) {
                    covers = true;
                    break;
                }
            }
            if any && !covers {
                continue;
            }
        }
        let mut entries = unit.entries();
        while let Ok(Some((_, entry))) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let Ok(mut ranges) = dwarf.die_ranges(&unit, entry) else {
                continue;
            };
            while let Ok(Some(r)) = ranges.next() {
                if r.end > r.begin && wanted.binary_search(&r.begin).is_ok() {
                    found.entry(r.begin).or_insert(r.end - r.begin);
                }
            }
        }
    }
    Ok(())
}

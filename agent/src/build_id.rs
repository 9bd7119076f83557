//! The main executable's GNU build ID (`process.build_id` in snapshots),
//! read from its `PT_NOTE` segments in memory: the loader has mapped them
//! already, so this costs a few hundred bytes of reading and no file I/O.

/// `NT_GNU_BUILD_ID`, in a note named "GNU".
const NT_GNU_BUILD_ID: u32 = 3;

/// The build ID of the main executable as lowercase hex, or `None` when it
/// was linked without one (`-Wl,--build-id=none`).
pub fn main_executable() -> Option<String> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> i32 {
        // SAFETY: the loader passes a valid info; data is our Option.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Option<Vec<u8>>)) };
        // SAFETY: dlpi_phdr holds dlpi_phnum headers, and the objects the
        // loader reports stay mapped while it holds its lock for this call.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        *out = build_id_in(info.dlpi_addr as usize, headers);
        1 // the main program comes first: stop there
    }
    let mut id: Option<Vec<u8>> = None;
    // SAFETY: the callback matches dl_iterate_phdr's contract; data outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut id as *mut Option<Vec<u8>>).cast()) };
    id.map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The build ID among the notes of an object loaded at `bias`.
fn build_id_in(bias: usize, headers: &[libc::Elf64_Phdr]) -> Option<Vec<u8>> {
    // A note segment is only read where a PT_LOAD maps it: a linker script
    // may leave notes out of memory, and then there is nothing to read.
    let mapped = |lo: u64, len: u64| {
        headers.iter().any(|h| {
            h.p_type == libc::PT_LOAD
                && lo >= h.p_vaddr
                && lo.saturating_add(len) <= h.p_vaddr.saturating_add(h.p_filesz)
        })
    };
    for h in headers {
        if h.p_type != libc::PT_NOTE || h.p_filesz == 0 || !mapped(h.p_vaddr, h.p_filesz) {
            continue;
        }
        let start = bias.checked_add(h.p_vaddr as usize)?;
        // SAFETY: the segment lies inside a loaded PT_LOAD's file-backed
        // part (checked above), which is mapped readable for as long as the
        // object is loaded, and the main program is never unloaded.
        let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, h.p_filesz as usize) };
        let align = if h.p_align == 8 { 8 } else { 4 };
        if let Some(id) = find_note(bytes, align, b"GNU\0", NT_GNU_BUILD_ID) {
            return Some(id.to_vec()).filter(|id| !id.is_empty());
        }
    }
    None
}

/// The descriptor of the first note with this name and type in a note
/// segment (`Elf64_Nhdr` records, name and descriptor padded to `align`).
fn find_note<'a>(mut bytes: &'a [u8], align: usize, name: &[u8], kind: u32) -> Option<&'a [u8]> {
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let pad = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    while bytes.len() >= 12 {
        let namesz = word(bytes, 0)? as usize;
        let descsz = word(bytes, 4)? as usize;
        let n_type = word(bytes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_at = pad(name_end)?;
        let desc_end = desc_at.checked_add(descsz)?;
        let note_name = bytes.get(12..name_end)?;
        let desc = bytes.get(desc_at..desc_end)?;
        if n_type == kind && note_name == name {
            return Some(desc);
        }
        bytes = bytes.get(pad(desc_end)?.min(bytes.len())..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn finds_the_build_id_after_other_notes() {
        let mut seg = note(b"GNU\0", 1, &[0, 0, 0, 0, 3, 2, 0, 0]); // ABI tag
        seg.extend(note(b"Xen\0", 3, &[9, 9]));
        seg.extend(note(b"GNU\0", 3, &[0xde, 0xad, 0xbe, 0xef, 0x01]));
        assert_eq!(
            find_note(&seg, 4, b"GNU\0", 3),
            Some(&[0xde, 0xad, 0xbe, 0xef, 0x01][..])
        );
        assert_eq!(find_note(&seg, 4, b"GNU\0", 5), None);
        // A truncated record is not read past its end.
        assert_eq!(find_note(&seg[..seg.len() - 4], 4, b"GNU\0", 3), None);
    }

    #[test]
    fn this_test_binary_has_the_id_readelf_shows() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let Ok(out) = std::process::Command::new("readelf")
            .arg("-n")
            .arg(&exe)
            .output()
        else {
            return; // no binutils here: the end-to-end test covers it
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let want = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .map(str::to_string);
        assert_eq!(main_executable(), want);
    }
}

//! Reading an ELF object's functions: symbols, segments, PLT entries, and
//! the fallbacks to the debug file and DWARF (see the crate docs).

use crate::debuglink::{self, DebugFile, DebugLinks};
use crate::error::{DiscoverError, DiscoverErrorKind};
use crate::exclude::{classify_name, module_exclusion, ExcludeReason};
use crate::{
    demangle, dwarf, DiscoverOptions, Excluded, Function, ObjectFunctions, SizeSource, SymbolSource,
};
use memmap2::Mmap;
use object::elf;
use object::read::elf::{
    ElfFile, FileHeader, ProgramHeader, Rela, SectionHeader, Sym, SymbolTable,
};
use object::{Endianness, FileKind, SymbolIndex};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

/// A file mapped read-only (an empty file maps to no bytes).
pub(crate) struct FileMap {
    map: Option<Mmap>,
}

impl FileMap {
    pub fn open(path: &Path) -> Result<FileMap, DiscoverErrorKind> {
        let file = File::open(path).map_err(DiscoverErrorKind::Io)?;
        let meta = file.metadata().map_err(DiscoverErrorKind::Io)?;
        if !meta.is_file() {
            return Err(DiscoverErrorKind::NotAFile);
        }
        if meta.len() == 0 {
            return Ok(FileMap { map: None });
        }
        // SAFETY: the map is read-only and private to this process. Like
        // every ELF reader that maps files, this relies on the file not being
        // truncated or rewritten in place while mapped (installers replace
        // binaries by rename, which keeps the mapped inode intact).
        let map = unsafe { Mmap::map(&file) }.map_err(DiscoverErrorKind::Io)?;
        Ok(FileMap { map: Some(map) })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// An FxHash-style hasher for symbol-name maps: SipHash would cost more
/// than the rest of the pass. Symbol names come from the program being
/// profiled; a file crafted for collisions only slows its own listing.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn discover(
    path: &Path,
    options: &DiscoverOptions,
) -> Result<ObjectFunctions, DiscoverError> {
    let fail = |kind| DiscoverError::new(path, kind);
    if path.as_os_str().is_empty() {
        return Err(fail(DiscoverErrorKind::EmptyPath));
    }
    let real = std::fs::canonicalize(path).map_err(|e| fail(DiscoverErrorKind::Io(e)))?;
    let map = FileMap::open(&real).map_err(fail)?;
    let data = map.bytes();
    if data.is_empty() {
        return Err(fail(DiscoverErrorKind::Empty));
    }
    let result = match FileKind::parse(data) {
        Ok(FileKind::Elf64) => discover_elf::<elf::FileHeader64<Endianness>>(&real, path, data, options),
        Ok(FileKind::Elf32) => discover_elf::<elf::FileHeader32<Endianness>>(&real, path, data, options),
        Ok(other) => Err(DiscoverErrorKind::NotElf(format!("a {other:?} object; hotprobe reads ELF (Linux) objects"))),
        Err(_) if data.starts_with(b"!<arch>\n") || data.starts_with(b"!<thin>\n") => Err(DiscoverErrorKind::NotElf(
            "a static library archive (.a); list the program or shared library it is linked into".into(),
        )),
        Err(_) if data.starts_with(b"\x7fELF") => Err(DiscoverErrorKind::Malformed("truncated ELF header".into())),
        Err(_) => Err(DiscoverErrorKind::NotElf(describe(data).into())),
    };
    result.map_err(fail)
}

fn describe(data: &[u8]) -> &'static str {
    let head = &data[..data.len().min(512)];
    // A multi-byte character cut at the end of the sample is still text.
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    if head.starts_with(b"#!") {
        "a script"
    } else if text.is_some_and(|t| t.chars().all(|c| !c.is_control() || c.is_whitespace())) {
        "a text file"
    } else {
        "unknown format"
    }
}

/// A `PT_LOAD` segment: where link-time addresses are in the file.
#[derive(Debug, Clone, Copy)]
struct LoadSegment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

fn load_segments<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
) -> Vec<LoadSegment> {
    let endian = file.endian();
    file.elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| LoadSegment {
            vaddr: ph.p_vaddr(endian).into(),
            offset: ph.p_offset(endian).into(),
            filesz: ph.p_filesz(endian).into(),
        })
        .collect()
}

/// The file-backed segment containing `address`.
fn segment_of(segments: &[LoadSegment], address: u64) -> Option<&LoadSegment> {
    segments
        .iter()
        .find(|s| address >= s.vaddr && address - s.vaddr < s.filesz)
}

/// File offset of `address` in its segment (None past the end of u64).
fn offset_in(s: &LoadSegment, address: u64) -> Option<u64> {
    (address - s.vaddr).checked_add(s.offset)
}

/// Where a symbol's section is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Exec,
    Plt,
    Other,
}

fn is_plt_section(name: &[u8]) -> bool {
    matches!(
        name,
        b".plt" | b".plt.sec" | b".plt.got" | b".plt.bnd" | b".iplt"
    )
}

/// A function symbol as read from a symbol table.
#[derive(Debug)]
struct RawFunc {
    name: String,
    value: u64,
    size: u64,
    bind: u8,
    ifunc: bool,
    place: Place,
}

impl RawFunc {
    /// Which of several symbols at one address names the function: global
    /// before weak before local, unversioned, fewest leading underscores,
    /// shortest, then alphabetical (deterministic).
    fn rank(&self) -> (u8, bool, usize, usize, &str) {
        let bind = match self.bind {
            elf::STB_GLOBAL | elf::STB_GNU_UNIQUE => 0,
            elf::STB_WEAK => 1,
            _ => 2,
        };
        let underscores = self.name.bytes().take_while(|&b| b == b'_').count();
        (
            bind,
            self.name.contains('@'),
            underscores,
            self.name.len(),
            &self.name,
        )
    }
}

/// Every defined `STT_FUNC` / `STT_GNU_IFUNC` symbol of `table`; sections
/// are judged by `file`'s section table (the table's own file).
fn read_functions<'d, Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'d, Elf>,
    table: &SymbolTable<'d, Elf>,
) -> Vec<RawFunc> {
    let endian = file.endian();
    let sections = file.elf_section_table();
    let places: Vec<Place> = sections
        .iter()
        .map(|sh| {
            let flags: u64 = sh.sh_flags(endian).into();
            if flags & u64::from(elf::SHF_EXECINSTR) == 0 {
                Place::Other
            } else if sections.section_name(endian, sh).is_ok_and(is_plt_section) {
                Place::Plt
            } else {
                Place::Exec
            }
        })
        .collect();
    let mut out = Vec::with_capacity(table.len() / 2);
    for (index, sym) in table.enumerate() {
        let st_type = sym.st_type();
        if st_type != elf::STT_FUNC && st_type != elf::STT_GNU_IFUNC {
            continue;
        }
        if sym.st_shndx(endian) == elf::SHN_UNDEF {
            continue;
        }
        let Ok(name) = table.symbol_name(endian, sym) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let place = match table.symbol_section(endian, sym, index) {
            Ok(Some(section)) => places.get(section.0).copied().unwrap_or(Place::Other),
            _ => Place::Other,
        };
        out.push(RawFunc {
            name: String::from_utf8_lossy(name).into_owned(),
            value: sym.st_value(endian).into(),
            size: sym.st_size(endian).into(),
            bind: sym.st_bind(),
            ifunc: st_type == elf::STT_GNU_IFUNC,
            place,
        });
    }
    out
}

/// The separate debug file, looked for at most once and only when needed.
struct LazyDebug<'a> {
    object: &'a Path,
    links: &'a DebugLinks,
    options: &'a DiscoverOptions,
    found: Option<Option<DebugFile>>,
}

impl LazyDebug<'_> {
    fn get(&mut self) -> Option<&DebugFile> {
        if self.found.is_none() {
            self.found = Some(debuglink::find(self.object, self.links, self.options));
        }
        self.found.as_ref().and_then(Option::as_ref)
    }

    fn into_path(self) -> Option<std::path::PathBuf> {
        self.found.flatten().map(|d| d.path)
    }
}

/// One function being built, with the reason it is refused, if any.
struct Entry {
    f: Function,
    reason: Option<ExcludeReason>,
}

fn discover_elf<Elf: FileHeader<Endian = Endianness>>(
    real: &Path,
    opened: &Path,
    data: &[u8],
    options: &DiscoverOptions,
) -> Result<ObjectFunctions, DiscoverErrorKind> {
    let file =
        ElfFile::<Elf>::parse(data).map_err(|e| DiscoverErrorKind::Malformed(e.to_string()))?;
    let endian = file.endian();
    let header = file.elf_header();
    match header.e_type(endian) {
        elf::ET_EXEC | elf::ET_DYN => {}
        elf::ET_REL => {
            return Err(DiscoverErrorKind::Unsupported(
                "a relocatable object (.o); hotprobe reads linked programs and shared libraries"
                    .into(),
            ))
        }
        elf::ET_CORE => {
            return Err(DiscoverErrorKind::Unsupported(
                "a core dump, not a program or library".into(),
            ))
        }
        other => {
            return Err(DiscoverErrorKind::Unsupported(format!(
                "an ELF file of unknown type {other}"
            )))
        }
    }
    let machine = header.e_machine(endian);
    let segments = load_segments(&file);
    let links = DebugLinks::read(&file);
    let mut debug = LazyDebug {
        object: real,
        links: &links,
        options,
        found: None,
    };

    // Symbols: .symtab, else the debug file's .symtab, else .dynsym.
    let mut raw = read_functions(&file, file.elf_symbol_table());
    let mut source = SymbolSource::Symtab;
    if raw.is_empty() {
        if let Some(d) = debug.get() {
            if let Ok(dfile) = ElfFile::<Elf>::parse(d.map.bytes()) {
                raw = read_functions(&dfile, dfile.elf_symbol_table());
                source = SymbolSource::DebugFile(d.path.clone());
            }
        }
    }
    if raw.is_empty() {
        raw = read_functions(&file, file.elf_dynamic_symbol_table());
        source = if raw.is_empty() {
            SymbolSource::NoSymbols
        } else {
            SymbolSource::Dynsym
        };
    }

    let mut entries = group_aliases(raw);

    // Sizes the symbols lack: DWARF of the object, else of its debug file.
    let wanted: Vec<u64> = entries
        .iter()
        .filter(|e| e.reason.is_none() && e.f.size == 0)
        .map(|e| e.f.address)
        .collect();
    if !wanted.is_empty() {
        let sizes = if dwarf::has_debug_info(&file) {
            dwarf::function_sizes(&file, &wanted)
        } else {
            match debug
                .get()
                .and_then(|d| ElfFile::<Elf>::parse(d.map.bytes()).ok())
            {
                Some(dfile) => dwarf::function_sizes(&dfile, &wanted),
                None => HashMap::new(),
            }
        };
        for e in entries
            .iter_mut()
            .filter(|e| e.reason.is_none() && e.f.size == 0)
        {
            if let Some(&size) = sizes.get(&e.f.address) {
                e.f.size = size;
                e.f.size_from = SizeSource::Dwarf;
            }
        }
    }

    // File offsets, and what can still go wrong per function.
    let module_reason = module_exclusion(real);
    for e in &mut entries {
        let segment =
            segment_of(&segments, e.f.address).filter(|s| offset_in(s, e.f.address).is_some());
        if let Some(s) = segment {
            e.f.offset = offset_in(s, e.f.address).unwrap_or(0);
        }
        if e.reason.is_some() {
            continue;
        }
        // `segment_of` guarantees address - vaddr < filesz.
        let fits = segment.is_some_and(|s| s.filesz - (e.f.address - s.vaddr) >= e.f.size);
        e.reason = if e.f.size == 0 {
            Some(ExcludeReason::UnknownSize)
        } else if fits {
            module_reason
        } else {
            Some(ExcludeReason::OutsideSegments)
        };
    }

    // Identity: demangled names, ordinals among same-symbol functions.
    for e in &mut entries {
        e.f.name = if options.demangle {
            demangle::display_name(&e.f.symbol)
        } else {
            e.f.symbol.clone()
        };
    }
    assign_ordinals(&mut entries);

    // PLT entries have no symbols; name them like objdump (`puts@plt`).
    let mut stubs = Vec::new();
    if machine == elf::EM_X86_64 && options.plt_stubs {
        for (symbol, address, size) in plt_stubs(&file, data) {
            if entries
                .binary_search_by_key(&address, |e| e.f.address)
                .is_ok()
            {
                continue;
            }
            let offset = segment_of(&segments, address)
                .and_then(|s| offset_in(s, address))
                .unwrap_or(0);
            let name = match symbol
                .strip_suffix("@plt")
                .filter(|_| options.demangle)
                .and_then(demangle::demangle)
            {
                Some(d) => format!("{d}@plt"),
                None => symbol.clone(),
            };
            let f = Function {
                name,
                symbol,
                aliases: Vec::new(),
                address,
                offset,
                size,
                size_from: SizeSource::Plt,
                ordinal: 1,
                global: false,
                weak: false,
            };
            stubs.push(Entry {
                f,
                reason: Some(ExcludeReason::PltStub),
            });
        }
    }
    entries.append(&mut stubs);

    let excluded_count = entries.iter().filter(|e| e.reason.is_some()).count();
    let mut candidates = Vec::with_capacity(entries.len() - excluded_count);
    let mut excluded = Vec::with_capacity(excluded_count);
    for e in entries {
        match e.reason {
            None => candidates.push(e.f),
            Some(reason) => excluded.push(Excluded {
                function: e.f,
                reason,
            }),
        }
    }
    candidates.sort_by_key(|f| f.address);
    excluded.sort_by_key(|x| x.function.address);

    Ok(ObjectFunctions {
        path: real.to_path_buf(),
        opened_as: opened.to_path_buf(),
        build_id: links.build_id.as_deref().map(hex),
        is_pie_or_dso: header.e_type(endian) == elf::ET_DYN,
        machine,
        symbol_source: source,
        debug_file: debug.into_path(),
        candidates,
        excluded,
    })
}

/// One entry per address: the best-ranked symbol names it, the others are
/// aliases. Entries come out sorted by address.
fn group_aliases(mut raw: Vec<RawFunc>) -> Vec<Entry> {
    raw.sort_unstable_by_key(|r| r.value);
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let mut j = i + 1;
        while j < raw.len() && raw[j].value == raw[i].value {
            j += 1;
        }
        let group = &mut raw[i..j];
        if group.len() > 1 {
            group.sort_by(|a, b| a.rank().cmp(&b.rank()));
        }
        let size = if group[0].size > 0 {
            group[0].size
        } else {
            group.iter().map(|r| r.size).max().unwrap_or(0)
        };
        let reason = if group.iter().any(|r| r.place == Place::Plt) {
            Some(ExcludeReason::PltStub)
        } else if group.iter().any(|r| r.ifunc) {
            Some(ExcludeReason::Ifunc)
        } else if group[0].place == Place::Other {
            Some(ExcludeReason::NotExecutable)
        } else {
            group.iter().find_map(|r| classify_name(&r.name))
        };
        let bind = group[0].bind;
        let symbol = std::mem::take(&mut group[0].name);
        let mut aliases: Vec<String> = Vec::new();
        for r in &mut group[1..] {
            if r.name != symbol && !aliases.contains(&r.name) {
                aliases.push(std::mem::take(&mut r.name));
            }
        }
        entries.push(Entry {
            f: Function {
                name: String::new(),
                symbol,
                aliases,
                address: group[0].value,
                offset: 0,
                size,
                size_from: if size > 0 {
                    SizeSource::Symbol
                } else {
                    SizeSource::Unknown
                },
                ordinal: 1,
                global: bind != elf::STB_LOCAL,
                weak: bind == elf::STB_WEAK,
            },
            reason,
        });
        i = j;
    }
    entries
}

/// Ordinal = rank by offset among the entries with the same symbol
/// (excluded ones included, so a function's identity does not depend on
/// whether its namesakes can be probed). Entries are sorted by address,
/// which orders offsets the same way within a segment.
fn assign_ordinals(entries: &mut [Entry]) {
    let mut seen: FastMap<&str, u32> = FastMap::default();
    seen.reserve(entries.len());
    let mut repeated = false;
    for e in entries.iter() {
        let n = seen.entry(e.f.symbol.as_str()).or_insert(0);
        *n += 1;
        repeated |= *n > 1;
    }
    if !repeated {
        return;
    }
    let mut dups: FastMap<String, Vec<usize>> = FastMap::default();
    for (i, e) in entries.iter().enumerate() {
        if seen.get(e.f.symbol.as_str()).is_some_and(|&n| n > 1) {
            dups.entry(e.f.symbol.clone()).or_default().push(i);
        }
    }
    for mut list in dups.into_values() {
        list.sort_by_key(|&i| (entries[i].f.offset, entries[i].f.address));
        for (rank, i) in list.into_iter().enumerate() {
            entries[i].f.ordinal = u32::try_from(rank + 1).unwrap_or(u32::MAX);
        }
    }
}

/// x86-64 PLT entries (`.plt`, `.plt.sec`, `.plt.got`): `(sym@plt, address,
/// entry size)` for each entry whose `jmp *slot(%rip)` reads a GOT slot
/// that a `JUMP_SLOT` or `GLOB_DAT` relocation names.
fn plt_stubs<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
    data: &[u8],
) -> Vec<(String, u64, u64)> {
    let endian = file.endian();
    let sections = file.elf_section_table();
    // First the entries and the GOT slot each jumps through ...
    let mut entries: Vec<(u64, u64, u64)> = Vec::new(); // (address, size, slot)
    for sh in sections.iter() {
        let Ok(name) = sections.section_name(endian, sh) else {
            continue;
        };
        if !matches!(name, b".plt" | b".plt.sec" | b".plt.got" | b".plt.bnd")
            || sh.sh_type(endian) != elf::SHT_PROGBITS
        {
            continue;
        }
        let Ok(bytes) = sh.data(endian, data) else {
            continue;
        };
        let base: u64 = sh.sh_addr(endian).into();
        let entsize: u64 = sh.sh_entsize(endian).into();
        let entsize = if (8..=64).contains(&entsize) {
            entsize
        } else {
            16
        };
        for (i, entry) in bytes.chunks(entsize as usize).enumerate() {
            let address = base.wrapping_add(i as u64 * entsize);
            // `jmp *disp32(%rip)`, after an optional endbr64 and/or bnd prefix.
            let Some(at) = [0usize, 1, 4, 5]
                .into_iter()
                .find(|&p| entry.get(p..p + 2) == Some(&[0xff, 0x25][..]))
            else {
                continue;
            };
            let Some(disp) = entry.get(at + 2..at + 6) else {
                continue;
            };
            let disp = i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]);
            let slot = address
                .wrapping_add(at as u64 + 6)
                .wrapping_add(disp as i64 as u64);
            entries.push((address, entsize, slot));
        }
    }
    if entries.is_empty() {
        return Vec::new();
    }
    // ... then the symbols of the relocations that fill those slots.
    let mut wanted: FastMap<u64, ()> = FastMap::default();
    wanted.extend(entries.iter().map(|e| (e.2, ())));
    let mut slots: FastMap<u64, String> = FastMap::default();
    for sh in sections.iter() {
        let Ok(Some((relas, link))) = sh.rela(endian, data) else {
            continue;
        };
        let Ok(symtab) = sections.symbol_table_by_index(endian, data, link) else {
            continue;
        };
        for r in relas {
            let kind = r.r_type(endian, false);
            if kind != elf::R_X86_64_JUMP_SLOT && kind != elf::R_X86_64_GLOB_DAT {
                continue;
            }
            let slot: u64 = r.r_offset(endian).into();
            if !wanted.contains_key(&slot) {
                continue;
            }
            let Ok(sym) = symtab.symbol(SymbolIndex(r.r_sym(endian, false) as usize)) else {
                continue;
            };
            let Ok(name) = symtab.symbol_name(endian, sym) else {
                continue;
            };
            if !name.is_empty() {
                slots.insert(slot, String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    entries
        .into_iter()
        .filter_map(|(address, size, slot)| {
            slots
                .get(&slot)
                .map(|sym| (format!("{sym}@plt"), address, size))
        })
        .collect()
}

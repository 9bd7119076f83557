//! Function discovery and selection, shared by the agent (over the objects
//! loaded in a process) and the CLI (`hotprobe list FILE`).
//!
//! # Discovery
//!
//! [`discover`] maps one ELF object (an executable or a shared library) and
//! returns its functions as an [`ObjectFunctions`]:
//!
//! * symbols come from `.symtab`; when the object has none, from the
//!   `.symtab` of its separate debug file (static functions of a stripped
//!   binary), else from `.dynsym` (stripped `-rdynamic` programs and every
//!   shared library);
//! * sizes come from the symbols; where a symbol's size is 0, from DWARF
//!   (`DW_TAG_subprogram` ranges), read lazily from the object or from its
//!   debug file, only for those functions;
//! * separate debug files are found the way GDB finds them (see
//!   [`DiscoverOptions`]): `ROOT/.build-id/xx/rest.debug`, then the
//!   `.gnu_debuglink` name (CRC checked) in the object's directory, its
//!   `.debug/` subdirectory and `ROOT/<directory>`; they are only looked for
//!   when needed (no `.symtab`, or missing sizes without DWARF);
//! * C++ and Rust names are demangled ([`demangle::demangle`]): C++ with
//!   parameter types and without return types, Rust without the hash;
//! * symbols at one address (aliases) become one [`Function`]: the global,
//!   non-weak, shortest name wins, the others are kept in `aliases`;
//! * every function gets its identity per the contract: `module` (the real
//!   path), raw `symbol`, demangled `name`, file `offset`, and an `ordinal`
//!   among same-symbol functions of the object (`name#2`).
//!
//! Functions the agent must never probe are returned in
//! [`ObjectFunctions::excluded`], each with an [`ExcludeReason`]; whole
//! modules are refused by [`module_exclusion`]. No line table is read at
//! discovery: `file:line` comes later from a [`SourceResolver`].
//!
//! # Selection
//!
//! A [`Selector`] is built once from the settings (and the probe set, when
//! one is configured) and then asked, per loaded object,
//! [`Selector::wants_module`] (before discovery, to skip the work) and
//! [`Selector::select`]. After every module was offered,
//! [`Selector::unmatched_probe_set_entries`] gives the probe-set entries
//! that selected nothing, for one summary warning.
//!
//! ```no_run
//! use hotprobe_discover::{discover, Selector};
//! # fn demo(settings: &hotprobe_config::Settings) -> Result<(), Box<dyn std::error::Error>> {
//! let selector = Selector::new(settings, None)?;
//! let path = std::path::Path::new("/usr/bin/redis-server");
//! if selector.wants_module(path, true) {
//!     let object = discover(path)?;
//!     for f in selector.select(&object, true) {
//!         // runtime address = load bias + f.address; uprobe offset = f.offset
//!         println!("{} at {:#x}", f.display_name(), f.offset);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # In the agent
//!
//! For each object `dl_iterate_phdr` reports (the main program's path is
//! resolved by the agent, e.g. from `/proc/self/exe`):
//!
//! 1. `selector.wants_module(path, is_main)`: skip everything else early;
//! 2. `discover_with(path, &DiscoverOptions::lean())`: no names demangled
//!    up front (the selector still matches demangled names; call
//!    [`Function::demangled`] or [`ObjectFunctions::demangle_names`] at
//!    snapshot time) and no PLT stubs in `excluded`;
//! 3. `selector.select(&obj, is_main)`; probe at load bias + `address`
//!    (the kernel backend wants `module` + `offset`);
//! 4. after the last module: [`Selector::probe_set_misses`] for one
//!    summary warning;
//! 5. at snapshot time, a [`SourceResolver`] per module for `source`.
//!
//! `excluded` holds every function that is never probed with its reason
//! (with the default options also every PLT stub, `puts@plt`): what the
//! snapshot reports as `rejected` is the agent's choice.
//!
//! # Listing
//!
//! [`listing::list`] is what `hotprobe list` prints, as a table or JSON.
//!
//! # Cost
//!
//! Measured by `cargo bench -p hotprobe-discover --bench discover`: a
//! 5,000-function C program takes about 3 ms (discover + select), pyenv's
//! `libpython3.11.so` (5,345 functions) about 5 ms, `libstdc++.so.6` about
//! 30–45 ms with its C++ names demangled (3–5 µs a symbol) and 2.5 ms lean.
//!
//! # Never panics
//!
//! Every input (truncated, corrupt, non-ELF, missing files) gives a
//! [`DiscoverError`] that names the file, or a partial result (a broken
//! debug file or DWARF section is ignored).

mod debuglink;
pub mod demangle;
mod dwarf;
mod elf;
mod error;
mod exclude;
pub mod listing;
mod select;
mod source;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

pub use error::{DiscoverError, DiscoverErrorKind};
pub use exclude::{module_exclusion, ExcludeReason, ModuleKind};
pub use select::{MissReason, ProbeSetMiss, Selector};
pub use source::{SourceLocation, SourceResolver};

/// Where the function symbols of an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SymbolSource {
    /// The object's own `.symtab` (all functions, static ones included).
    Symtab,
    /// The object's `.dynsym` only (exported functions; static ones missing).
    Dynsym,
    /// The `.symtab` of a separate debug file.
    DebugFile(PathBuf),
    /// No function symbols anywhere.
    NoSymbols,
}

impl SymbolSource {
    /// Short stable form: `symtab`, `dynsym`, `debug-file`, `none`.
    pub fn code(&self) -> &'static str {
        match self {
            SymbolSource::Symtab => "symtab",
            SymbolSource::Dynsym => "dynsym",
            SymbolSource::DebugFile(_) => "debug-file",
            SymbolSource::NoSymbols => "none",
        }
    }
}

impl fmt::Display for SymbolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymbolSource::Symtab => write!(f, ".symtab"),
            SymbolSource::Dynsym => write!(f, ".dynsym (stripped: exported functions only)"),
            SymbolSource::DebugFile(p) => write!(f, ".symtab of debug file {}", p.display()),
            SymbolSource::NoSymbols => write!(f, "no function symbols"),
        }
    }
}

/// Where a function's size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeSource {
    /// `st_size` of the symbol (or of an alias at the same address).
    Symbol,
    /// The `DW_TAG_subprogram` covering the address.
    Dwarf,
    /// A synthesized PLT entry: the entry size of its section.
    Plt,
    /// Not found (size is 0).
    Unknown,
}

impl SizeSource {
    pub fn code(self) -> &'static str {
        match self {
            SizeSource::Symbol => "symbol",
            SizeSource::Dwarf => "dwarf",
            SizeSource::Plt => "plt",
            SizeSource::Unknown => "unknown",
        }
    }
}

/// One function of an object, with its identity per the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Demangled name (C++ with parameter types, Rust without the hash);
    /// the raw symbol when it is not mangled.
    pub name: String,
    /// The raw symbol.
    pub symbol: String,
    /// Other raw symbols at the same address.
    pub aliases: Vec<String>,
    /// Link-time virtual address; at runtime: load bias + `address`.
    pub address: u64,
    /// File offset of the first byte (what a uprobe needs; stable under ASLR).
    pub offset: u64,
    /// Size in bytes (0 only when `size_from` is `Unknown`).
    pub size: u64,
    pub size_from: SizeSource,
    /// 1-based rank by offset among the object's functions with this symbol.
    pub ordinal: u32,
    /// Visible outside its compilation unit (global, weak or unique binding).
    pub global: bool,
    /// Weak binding.
    pub weak: bool,
}

impl Function {
    /// `name`, or `name#N` for the N-th (N ≥ 2) same-symbol function.
    pub fn display_name(&self) -> Cow<'_, str> {
        if self.ordinal >= 2 {
            Cow::Owned(format!("{}#{}", self.name, self.ordinal))
        } else {
            Cow::Borrowed(&self.name)
        }
    }

    /// The demangled name, also for objects discovered with
    /// `DiscoverOptions::demangle` off (then it is computed here).
    pub fn demangled(&self) -> Cow<'_, str> {
        if self.name != self.symbol {
            return Cow::Borrowed(&self.name);
        }
        match demangle::demangle(&self.symbol) {
            Some(d) => Cow::Owned(d),
            None => Cow::Borrowed(&self.name),
        }
    }

    /// One past the last byte's link-time address.
    pub fn end_address(&self) -> u64 {
        self.address.saturating_add(self.size)
    }
}

/// A function that will not be probed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub function: Function,
    pub reason: ExcludeReason,
}

/// The functions of one object.
#[derive(Debug, Clone)]
pub struct ObjectFunctions {
    /// The real path (symlinks resolved): the contract's `module`.
    pub path: PathBuf,
    /// The path as it was given to [`discover`] (may be a symlink); module
    /// globs are matched against both.
    pub opened_as: PathBuf,
    /// GNU build ID, lowercase hex.
    pub build_id: Option<String>,
    /// `ET_DYN` (a PIE executable or a shared library): runtime addresses
    /// are load bias + address. `ET_EXEC`: the bias is 0.
    pub is_pie_or_dso: bool,
    /// `e_machine` of the object (62 = x86-64).
    pub machine: u16,
    pub symbol_source: SymbolSource,
    /// The separate debug file used, if one was needed and found.
    pub debug_file: Option<PathBuf>,
    /// The functions that may be probed, by address.
    pub candidates: Vec<Function>,
    /// The functions that will not be probed, by address.
    pub excluded: Vec<Excluded>,
}

impl ObjectFunctions {
    /// File name of the real path (how modules are matched across runs).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Fills in demangled names (for objects discovered with
    /// `DiscoverOptions::demangle` off; a no-op otherwise).
    pub fn demangle_names(&mut self) {
        let all = self
            .candidates
            .iter_mut()
            .chain(self.excluded.iter_mut().map(|x| &mut x.function));
        for f in all {
            if f.name == f.symbol {
                if let Some(d) = demangle::demangle(&f.symbol) {
                    f.name = d;
                }
            }
        }
    }

    /// The candidate starting at this link-time address.
    pub fn candidate_at(&self, address: u64) -> Option<&Function> {
        self.candidates
            .binary_search_by_key(&address, |f| f.address)
            .ok()
            .map(|i| &self.candidates[i])
    }

    /// The candidate containing this link-time address.
    pub fn candidate_containing(&self, address: u64) -> Option<&Function> {
        let i = self.candidates.partition_point(|f| f.address <= address);
        let f = self.candidates.get(i.checked_sub(1)?)?;
        (address < f.end_address()).then_some(f)
    }
}

/// Where separate debug files are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Global debug directories, as GDB's `debug-file-directory`
    /// (default: `/usr/lib/debug`). For each ROOT: `ROOT/.build-id/xx/rest.debug`
    /// and `ROOT/<object's directory>/<debuglink name>`.
    pub debug_roots: Vec<PathBuf>,
    /// Look for separate debug files at all.
    pub use_debug_files: bool,
    /// Demangle names at discovery (default). Off, `Function::name` is the
    /// raw symbol until [`ObjectFunctions::demangle_names`] or
    /// [`Function::demangled`]: C++ demangling costs 3–5 µs a symbol, which
    /// a run with a probe set only needs for the few functions it probes.
    /// [`Selector`] matches demangled names either way.
    pub demangle: bool,
    /// Name the PLT entries (`puts@plt`) and report them as excluded
    /// (default). They are never candidates; the agent can skip them (it
    /// saves reading the relocation tables).
    pub plt_stubs: bool,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            debug_roots: vec![PathBuf::from("/usr/lib/debug")],
            use_debug_files: true,
            demangle: true,
            plt_stubs: true,
        }
    }
}

impl DiscoverOptions {
    /// What the agent needs at start: no names demangled up front, no PLT
    /// entries; debug files searched in the default roots.
    pub fn lean() -> DiscoverOptions {
        DiscoverOptions {
            demangle: false,
            plt_stubs: false,
            ..DiscoverOptions::default()
        }
    }
}

/// Finds the functions of the ELF object at `path` (see the crate docs),
/// with the default debug-file search.
pub fn discover(path: &Path) -> Result<ObjectFunctions, DiscoverError> {
    discover_with(path, &DiscoverOptions::default())
}

/// [`discover`] with explicit debug-file search options.
pub fn discover_with(
    path: &Path,
    options: &DiscoverOptions,
) -> Result<ObjectFunctions, DiscoverError> {
    elf::discover(path, options)
}

/// The bytes of a function in its object file (`offset .. offset + size`),
/// or `None` when they are not all in the file.
pub fn function_code<'a>(object_file_bytes: &'a [u8], f: &Function) -> Option<&'a [u8]> {
    let start = usize::try_from(f.offset).ok()?;
    let end = start.checked_add(usize::try_from(f.size).ok()?)?;
    object_file_bytes.get(start..end)
}

/// An object file mapped read-only, to read functions' code.
pub struct MappedObject {
    path: PathBuf,
    map: elf::FileMap,
}

impl MappedObject {
    pub fn open(path: &Path) -> Result<MappedObject, DiscoverError> {
        let map = elf::FileMap::open(path).map_err(|kind| DiscoverError::new(path, kind))?;
        Ok(MappedObject {
            path: path.to_path_buf(),
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The function's code, see [`function_code`].
    pub fn code(&self, f: &Function) -> Option<&[u8]> {
        function_code(self.bytes(), f)
    }
}

//! `file:line` of functions, resolved lazily at snapshot/report time (never
//! at discovery): the DWARF line tables of the object, or of its separate
//! debug file, through `addr2line`. Nothing is read until the first
//! [`SourceResolver::locate`]; an object without line information costs one
//! look at its section headers and the debug-file search.

use crate::debuglink::{self, DebugLinks};
use crate::dwarf;
use crate::elf::FileMap;
use crate::{DiscoverOptions, ObjectFunctions};
use gimli::{EndianArcSlice, RunTimeEndian, SectionId};
use object::{Object, ObjectSection};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Reader = EndianArcSlice<RunTimeEndian>;

/// A source position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The file as the line table names it (usually an absolute path).
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl SourceLocation {
    /// `file.c:12`: the file name without its directories, and the line.
    pub fn short(&self) -> String {
        let name = Path::new(&self.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.file.clone());
        match self.line {
            Some(line) => format!("{name}:{line}"),
            None => name,
        }
    }
}

enum State {
    Unloaded,
    Ready(Box<addr2line::Context<Reader>>),
    Unavailable,
}

/// Resolves link-time addresses of one object to source positions.
pub struct SourceResolver {
    object: PathBuf,
    debug_file: Option<PathBuf>,
    options: DiscoverOptions,
    state: State,
}

impl SourceResolver {
    /// For a discovered object (reuses the debug file discovery found).
    pub fn new(obj: &ObjectFunctions) -> SourceResolver {
        Self::with_options(obj, &DiscoverOptions::default())
    }

    pub fn with_options(obj: &ObjectFunctions, options: &DiscoverOptions) -> SourceResolver {
        SourceResolver {
            object: obj.path.clone(),
            debug_file: obj.debug_file.clone(),
            options: options.clone(),
            state: State::Unloaded,
        }
    }

    /// For an object file by path.
    pub fn for_path(path: &Path, options: &DiscoverOptions) -> SourceResolver {
        SourceResolver {
            object: path.to_path_buf(),
            debug_file: None,
            options: options.clone(),
            state: State::Unloaded,
        }
    }

    /// Whether line information was found (loads it on first call).
    pub fn is_available(&mut self) -> bool {
        self.context().is_some()
    }

    /// `file.c:12` for a link-time address (`Function::address`).
    pub fn locate(&mut self, address: u64) -> Option<String> {
        self.location(address).map(|l| l.short())
    }

    /// The full source position of a link-time address.
    pub fn location(&mut self, address: u64) -> Option<SourceLocation> {
        let context = self.context()?;
        let loc = context.find_location(address).ok()??;
        Some(SourceLocation {
            file: loc.file?.to_string(),
            line: loc.line,
            column: loc.column,
        })
    }

    fn context(&mut self) -> Option<&addr2line::Context<Reader>> {
        if matches!(self.state, State::Unloaded) {
            self.state = match self.load() {
                Some(c) => State::Ready(Box::new(c)),
                None => State::Unavailable,
            };
        }
        match &self.state {
            State::Ready(c) => Some(c),
            _ => None,
        }
    }

    fn load(&self) -> Option<addr2line::Context<Reader>> {
        let map = FileMap::open(&self.object).ok()?;
        let file = object::File::parse(map.bytes()).ok()?;
        if has_line_info(&file) {
            return context(&file);
        }
        let debug_map = match &self.debug_file {
            Some(path) => FileMap::open(path).ok()?,
            None => debuglink::find(&self.object, &DebugLinks::read(&file), &self.options)?.map,
        };
        let debug = object::File::parse(debug_map.bytes()).ok()?;
        if has_line_info(&debug) {
            context(&debug)
        } else {
            None
        }
    }
}

fn has_line_info<'d>(file: &impl Object<'d>) -> bool {
    file.section_by_name(".debug_line")
        .is_some_and(|s| s.size() > 0)
}

fn context<'d>(file: &impl Object<'d>) -> Option<addr2line::Context<Reader>> {
    let endian = dwarf::endian(file);
    let wanted = |id: SectionId| {
        !matches!(
            id,
            SectionId::DebugLoc | SectionId::DebugLocLists | SectionId::DebugTypes
        )
    };
    let load = |id: SectionId| -> Result<Reader, gimli::Error> {
        let data: Arc<[u8]> = if wanted(id) {
            Arc::from(&*dwarf::section_data(file, id))
        } else {
            Arc::from(&[][..])
        };
        Ok(EndianArcSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

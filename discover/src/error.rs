//! Discovery errors: each names the file and says what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why an object could not be read.
#[derive(Debug)]
pub enum DiscoverErrorKind {
    /// The path is empty (the agent resolves the main program itself).
    EmptyPath,
    /// The file could not be opened, read or mapped.
    Io(std::io::Error),
    /// The file is not a regular file.
    NotAFile,
    /// The file is empty.
    Empty,
    /// The file is not an ELF object; the text says what it looks like.
    NotElf(String),
    /// An ELF object of a kind hotprobe does not read (relocatable, core).
    Unsupported(String),
    /// The ELF structure is broken (truncated, offsets out of the file).
    Malformed(String),
}

/// A file that could not be read as an ELF object, and why.
#[derive(Debug)]
pub struct DiscoverError {
    pub path: PathBuf,
    pub kind: DiscoverErrorKind,
}

impl DiscoverError {
    pub fn new(path: &Path, kind: DiscoverErrorKind) -> DiscoverError {
        DiscoverError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

impl fmt::Display for DiscoverErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoverErrorKind::EmptyPath => write!(f, "empty path"),
            DiscoverErrorKind::Io(e) => write!(f, "{e}"),
            DiscoverErrorKind::NotAFile => write!(f, "not a regular file"),
            DiscoverErrorKind::Empty => write!(f, "empty file, not an ELF object"),
            DiscoverErrorKind::NotElf(what) => write!(f, "not an ELF object ({what})"),
            DiscoverErrorKind::Unsupported(what) => write!(f, "{what}"),
            DiscoverErrorKind::Malformed(what) => write!(f, "malformed ELF object: {what}"),
        }
    }
}

impl fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.path.as_os_str().is_empty() {
            "<empty path>".into()
        } else {
            self.path.display().to_string()
        };
        write!(f, "{shown}: {}", self.kind)
    }
}

impl std::error::Error for DiscoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            DiscoverErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

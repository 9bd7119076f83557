//! Finding an object's separate debug file, the way GDB does:
//!
//! 1. by build ID: `ROOT/.build-id/xx/rest.debug` for each debug root, where
//!    `xx` is the first byte of the ID in hex and `rest` the others; the
//!    file's own build ID must match;
//! 2. by `.gnu_debuglink` name, in order `DIR/NAME`, `DIR/.debug/NAME` and
//!    `ROOT/DIR/NAME` for each debug root, where `DIR` is the directory of
//!    the object's real path; the file's CRC-32 must equal the link's.
//!
//! A candidate that is the object itself is skipped.

use crate::elf::FileMap;
use crate::DiscoverOptions;
use object::Object;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the object says about its debug file.
#[derive(Debug, Clone, Default)]
pub(crate) struct DebugLinks {
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: file name and CRC-32.
    pub debuglink: Option<(Vec<u8>, u32)>,
}

impl DebugLinks {
    pub fn read<'d>(file: &impl Object<'d>) -> DebugLinks {
        DebugLinks {
            build_id: file
                .build_id()
                .ok()
                .flatten()
                .filter(|id| !id.is_empty())
                .map(<[u8]>::to_vec),
            debuglink: file
                .gnu_debuglink()
                .ok()
                .flatten()
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, crc)| (name.to_vec(), crc)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.build_id.is_none() && self.debuglink.is_none()
    }
}

/// A separate debug file that was found and checked, mapped.
pub(crate) struct DebugFile {
    pub path: PathBuf,
    pub map: FileMap,
}

/// Every place the debug file of `object` (a real path) may be, in search
/// order, with what it must match.
fn candidates(
    object: &Path,
    links: &DebugLinks,
    options: &DiscoverOptions,
) -> Vec<(PathBuf, Check)> {
    let mut out = Vec::new();
    if let Some(id) = links.build_id.as_deref().filter(|id| id.len() >= 2) {
        let hex = crate::elf::hex(id);
        for root in &options.debug_roots {
            let path = root
                .join(".build-id")
                .join(&hex[..2])
                .join(format!("{}.debug", &hex[2..]));
            out.push((path, Check::BuildId(id.to_vec())));
        }
    }
    if let Some((name, crc)) = &links.debuglink {
        let name = Path::new(OsStr::from_bytes(name));
        // A debuglink is a bare file name; refuse anything that could climb out.
        if name.components().count() == 1 && name.file_name().is_some() {
            let dir = object.parent().unwrap_or(Path::new("/"));
            out.push((dir.join(name), Check::Crc(*crc)));
            out.push((dir.join(".debug").join(name), Check::Crc(*crc)));
            let relative = dir.strip_prefix("/").unwrap_or(dir);
            for root in &options.debug_roots {
                out.push((root.join(relative).join(name), Check::Crc(*crc)));
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Check {
    BuildId(Vec<u8>),
    Crc(u32),
}

/// The first candidate that exists and checks out.
pub(crate) fn find(
    object: &Path,
    links: &DebugLinks,
    options: &DiscoverOptions,
) -> Option<DebugFile> {
    if !options.use_debug_files || links.is_empty() {
        return None;
    }
    let own = std::fs::canonicalize(object).unwrap_or_else(|_| object.to_path_buf());
    for (path, check) in candidates(&own, links, options) {
        if !path.is_file() {
            continue;
        }
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if real == own {
            continue;
        }
        let Ok(map) = FileMap::open(&real) else {
            continue;
        };
        let ok = match &check {
            Check::BuildId(id) => object::File::parse(map.bytes())
                .ok()
                .and_then(|f| f.build_id().ok().flatten().map(|b| b == id.as_slice()))
                .unwrap_or(false),
            Check::Crc(crc) => crc32fast::hash(map.bytes()) == *crc,
        };
        if ok {
            return Some(DebugFile { path: real, map });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order() {
        let links = DebugLinks {
            build_id: Some(vec![0xab, 0xcd, 0xef]),
            debuglink: Some((b"prog.debug".to_vec(), 7)),
        };
        let options = DiscoverOptions {
            debug_roots: vec!["/r1".into(), "/r2".into()],
            ..DiscoverOptions::default()
        };
        let paths: Vec<_> = candidates(Path::new("/opt/app/bin/prog"), &links, &options)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let want: Vec<PathBuf> = [
            "/r1/.build-id/ab/cdef.debug",
            "/r2/.build-id/ab/cdef.debug",
            "/opt/app/bin/prog.debug",
            "/opt/app/bin/.debug/prog.debug",
            "/r1/opt/app/bin/prog.debug",
            "/r2/opt/app/bin/prog.debug",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(paths, want);
    }

    #[test]
    fn hostile_debuglink_names_are_ignored() {
        for name in [&b"../../etc/passwd"[..], b"/etc/passwd", b"a/b"] {
            let links = DebugLinks {
                build_id: None,
                debuglink: Some((name.to_vec(), 0)),
            };
            assert!(
                candidates(Path::new("/x/prog"), &links, &DiscoverOptions::default()).is_empty()
            );
        }
    }
}

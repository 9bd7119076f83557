//! Atomic snapshot files: a temp file opened with O_EXCL|O_NOFOLLOW and mode
//! 0600 in the target directory, then moved into place. An image's first
//! snapshot claims its name with link(2), which never replaces a file, so
//! another image's snapshot is never overwritten: the name gets `.1`, `.2`…
//! Later snapshots of the same image replace its own file with rename(2).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn temp_path(target: &Path) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(
        ".{name}.{}.{}.tmp",
        crate::sys::getpid(),
        crate::sys::monotonic_ns()
    ))
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

fn write_temp(target: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = temp_path(target);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT|O_EXCL
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|_| file.sync_data());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Writes `bytes` as this image's snapshot. `claimed` is the file this image
/// already owns (None before its first snapshot). Returns the path written.
pub fn write_snapshot(
    wanted: &Path,
    claimed: Option<&Path>,
    bytes: &[u8],
) -> std::io::Result<PathBuf> {
    let tmp = write_temp(claimed.unwrap_or(wanted), bytes)?;
    let result = match claimed {
        Some(own) => std::fs::rename(&tmp, own).map(|_| own.to_path_buf()),
        None => claim(&tmp, wanted),
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Links `tmp` to the first free name among `wanted`, `wanted.1`, `wanted.2`…
fn claim(tmp: &Path, wanted: &Path) -> std::io::Result<PathBuf> {
    let from = cstr(tmp)?;
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            wanted.to_path_buf()
        } else {
            super::path::numbered(wanted, n)
        };
        let to = cstr(&candidate)?;
        // SAFETY: both are valid NUL-terminated paths.
        if unsafe { libc::link(from.as_ptr(), to.as_ptr()) } == 0 {
            return Ok(candidate);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "10,000 snapshots with this name already exist",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_write_never_replaces_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = dir.path().join("s.json");
        std::fs::write(&wanted, "other image").unwrap();
        let first = write_snapshot(&wanted, None, b"one").unwrap();
        assert_eq!(first, dir.path().join("s.1.json"));
        assert_eq!(std::fs::read_to_string(&wanted).unwrap(), "other image");
        let again = write_snapshot(&wanted, Some(&first), b"two").unwrap();
        assert_eq!(again, first);
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "two");
        let mode = std::fs::metadata(&first).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let err = write_snapshot(Path::new("/proc/hotprobe-no/s.json"), None, b"x");
        assert!(err.is_err());
    }
}

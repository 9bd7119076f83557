//! Helpers: compile real programs into a temp dir, and read them back with
//! binutils (independently of the crate under test).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a tool runs; tests that need a missing one are skipped loudly.
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[macro_export]
macro_rules! require {
    ($($tool:expr),+) => {
        $(
            if !$crate::common::have($tool) {
                eprintln!("SKIPPED: `{}` is not installed", $tool);
                return;
            }
        )+
    };
}

pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `source` to `dir/file` and compiles it with `compiler` into `dir/out`.
pub fn compile(
    dir: &Path,
    compiler: &str,
    files: &[(&str, &str)],
    out: &str,
    flags: &[&str],
) -> PathBuf {
    let mut cmd = Command::new(compiler);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        cmd.arg(&path);
    }
    let target = dir.join(out);
    cmd.args(flags).arg("-o").arg(&target);
    run(&mut cmd);
    target
}

/// A function symbol as `nm -S` prints it.
#[derive(Debug, Clone)]
pub struct NmSym {
    pub name: String,
    pub address: u64,
    pub size: Option<u64>,
    /// nm's type letter (T, t, W, w, i).
    #[allow(dead_code)]
    pub kind: char,
}

/// `nm -S --defined-only` (or `-D` for the dynamic table): text symbols only.
pub fn nm(path: &Path, dynamic: bool) -> Vec<NmSym> {
    let mut cmd = Command::new("nm");
    cmd.args(["-S", "--defined-only"]);
    if dynamic {
        cmd.arg("-D");
    }
    cmd.arg(path);
    let text = output(&mut cmd);
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (address, size, kind, name) = match parts.as_slice() {
            [a, s, k, n] => (a, Some(s), k, n),
            [a, k, n] => (a, None, k, n),
            _ => continue,
        };
        let kind = kind.chars().next().unwrap();
        if !matches!(kind, 'T' | 't' | 'W' | 'w' | 'i') {
            continue;
        }
        out.push(NmSym {
            name: name.to_string(),
            address: u64::from_str_radix(address, 16).unwrap(),
            size: size.map(|s| u64::from_str_radix(s, 16).unwrap()),
            kind,
        });
    }
    out
}

/// `PT_LOAD` segments from `readelf -lW`: (offset, vaddr, filesz).
pub fn load_segments(path: &Path) -> Vec<(u64, u64, u64)> {
    let text = output(Command::new("readelf").arg("-lW").arg(path));
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    text.lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (hex(p[1]), hex(p[2]), hex(p[4]))
        })
        .collect()
}

/// File offset of a link-time address, by the readelf segments.
pub fn file_offset(segments: &[(u64, u64, u64)], address: u64) -> u64 {
    let (off, vaddr, _) = segments
        .iter()
        .find(|(_, v, sz)| address >= *v && address < v + sz)
        .expect("address in a segment");
    address - vaddr + off
}

/// 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> u32 {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in source"))
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hotprobe-discover-")
        .tempdir()
        .unwrap()
}

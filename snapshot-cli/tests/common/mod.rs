//! Shared helpers of the integration tests: fixture snapshots in a temp
//! directory and the `hotprobe` binary.

#![allow(dead_code)]

use hotprobe_cli::fixture;
use hotprobe_config::Snapshot;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn hotprobe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hotprobe"));
    c.env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("HOTPROBE_CONFIG");
    c
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    run_in(args, None)
}

pub fn run_in(args: &[&str], dir: Option<&Path>) -> Run {
    let mut c = hotprobe();
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run hotprobe");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn write(dir: &Path, name: &str, s: &Snapshot) -> PathBuf {
    fixture::write(dir, name, s)
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// RFC 4180 rows (quoted fields with commas and doubled quotes).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

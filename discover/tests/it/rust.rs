use crate::common::*;
use crate::require;
use hotprobe_discover::discover;
use std::process::Command;

const SRC: &str = r#"
#[inline(never)]
fn compute(x: u64) -> u64 { x.wrapping_mul(31).rotate_left(7) }

mod inner {
    #[inline(never)]
    pub fn helper(v: &[u64]) -> u64 { v.iter().copied().map(super::compute).sum() }
}

struct Point { x: u64 }
impl Point {
    #[inline(never)]
    fn norm(&self) -> u64 { compute(self.x) }
}

fn main() {
    let n = std::env::args().count() as u64;
    let p = Point { x: n };
    println!("{} {}", inner::helper(&[n, 2, 3]), p.norm());
}
"#;

fn check(mangling: Option<&str>) {
    let dir = tempdir();
    let src = dir.path().join("rprog.rs");
    std::fs::write(&src, SRC).unwrap();
    let out = dir.path().join("rprog");
    let mut cmd = Command::new("rustc");
    cmd.arg("--edition=2021")
        .arg("-Copt-level=1")
        .arg(&src)
        .arg("-o")
        .arg(&out);
    if let Some(m) = mangling {
        cmd.arg(format!("-Csymbol-mangling-version={m}"));
    }
    let result = cmd.output().unwrap();
    if !result.status.success() {
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(mangling.is_some(), "rustc failed: {err}");
        eprintln!(
            "SKIPPED: rustc refuses -Csymbol-mangling-version={}: {err}",
            mangling.unwrap_or("")
        );
        return;
    }
    let obj = discover(&out).unwrap();
    let names: Vec<&str> = obj.candidates.iter().map(|f| f.name.as_str()).collect();
    // v0 shows inherent methods as `<rprog::Point>::norm`.
    let norm = if mangling == Some("v0") {
        "<rprog::Point>::norm"
    } else {
        "rprog::Point::norm"
    };
    for want in [
        "rprog::compute",
        "rprog::inner::helper",
        norm,
        "rprog::main",
    ] {
        let f = obj
            .candidates
            .iter()
            .find(|f| f.name == want)
            .unwrap_or_else(|| panic!("{want} missing ({mangling:?}): {names:?}"));
        match mangling {
            Some("v0") => assert!(f.symbol.starts_with("_R"), "{}", f.symbol),
            _ => assert!(
                f.symbol.starts_with("_ZN") && f.symbol.contains("17h"),
                "{}",
                f.symbol
            ),
        }
    }
    for f in &obj.candidates {
        let hashy = f
            .name
            .rsplit("::")
            .next()
            .is_some_and(|last| last.len() == 17 && last.starts_with('h'));
        assert!(!hashy, "hash left in {}", f.name);
    }
}

#[test]
fn rust_legacy_names_without_hash() {
    require!("rustc");
    check(None);
}

#[test]
fn rust_v0_names_without_hash() {
    require!("rustc");
    check(Some("v0"));
}

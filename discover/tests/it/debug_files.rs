use crate::common::*;
use crate::require;
use hotprobe_discover::{discover_with, DiscoverOptions, SourceResolver, SymbolSource};
use std::path::{Path, PathBuf};
use std::process::Command;

const SRC: &str = r#"#include <stdio.h>
__attribute__((noinline)) static int helper(int x) { return x * 3 + 1; }
__attribute__((noinline)) static int twice(int x) { return helper(x) * 2; }
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", twice(argc));
    return 0;
}
"#;

/// `prog` (stripped, optionally with a debuglink) and `prog.debug`, plus
/// the unstripped original for comparison.
fn split(dir: &Path, debuglink: bool) -> (PathBuf, PathBuf, PathBuf) {
    let original = compile(dir, "gcc", &[("prog.c", SRC)], "original", &["-O1", "-g"]);
    let prog = dir.join("prog");
    std::fs::copy(&original, &prog).unwrap();
    let debug = dir.join("prog.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&prog)
        .arg(&debug));
    run(Command::new("strip")
        .args(["--strip-debug", "--strip-unneeded"])
        .arg(&prog));
    if debuglink {
        run(Command::new("objcopy")
            .arg(format!("--add-gnu-debuglink={}", debug.display()))
            .arg(&prog));
    }
    let sections = output(Command::new("readelf").arg("-SW").arg(&prog));
    assert!(
        !sections.contains(".symtab"),
        "strip left a .symtab:\n{sections}"
    );
    (original, prog, debug)
}

fn options(root: &Path) -> DiscoverOptions {
    DiscoverOptions {
        debug_roots: vec![root.to_path_buf()],
        ..DiscoverOptions::default()
    }
}

fn assert_statics_back(prog: &Path, original: &Path, opts: &DiscoverOptions, debug: &Path) {
    let obj = discover_with(prog, opts).unwrap();
    let debug = std::fs::canonicalize(debug).unwrap();
    assert_eq!(obj.symbol_source, SymbolSource::DebugFile(debug.clone()));
    assert_eq!(obj.debug_file.as_deref(), Some(debug.as_path()));
    let full = discover_with(original, opts).unwrap();
    for name in ["helper", "twice", "main"] {
        let a = obj
            .candidates
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let b = full.candidates.iter().find(|f| f.name == name).unwrap();
        assert_eq!(
            (a.address, a.offset, a.size, a.global),
            (b.address, b.offset, b.size, b.global),
            "{name}"
        );
    }
    // file:line through the debug file, lazily.
    let main = obj.candidates.iter().find(|f| f.name == "main").unwrap();
    let mut resolver = SourceResolver::with_options(&obj, opts);
    assert_eq!(
        resolver.locate(main.address),
        Some(format!("prog.c:{}", line_of(SRC, "int main(")))
    );
    let helper = obj.candidates.iter().find(|f| f.name == "helper").unwrap();
    let loc = resolver.location(helper.address).unwrap();
    assert!(loc.file.ends_with("prog.c"), "{loc:?}");
    assert_eq!(loc.line, Some(line_of(SRC, "static int helper(")));
}

#[test]
fn debuglink_next_to_the_object() {
    require!("gcc", "objcopy", "strip", "readelf");
    let dir = tempdir();
    let (original, prog, debug) = split(dir.path(), true);
    assert_statics_back(
        &prog,
        &original,
        &options(&dir.path().join("empty-root")),
        &debug,
    );
}

#[test]
fn debuglink_in_dot_debug_and_under_a_root() {
    require!("gcc", "objcopy", "strip", "readelf");
    let dir = tempdir();
    let (original, prog, debug) = split(dir.path(), true);
    let root = dir.path().join("root");
    // DIR/.debug/NAME
    std::fs::create_dir(dir.path().join(".debug")).unwrap();
    let moved = dir.path().join(".debug/prog.debug");
    std::fs::rename(&debug, &moved).unwrap();
    assert_statics_back(&prog, &original, &options(&root), &moved);
    // ROOT/DIR/NAME
    let real_dir = std::fs::canonicalize(dir.path()).unwrap();
    let under_root = root
        .join(real_dir.strip_prefix("/").unwrap())
        .join("prog.debug");
    std::fs::create_dir_all(under_root.parent().unwrap()).unwrap();
    std::fs::rename(&moved, &under_root).unwrap();
    assert_statics_back(&prog, &original, &options(&root), &under_root);
}

#[test]
fn debuglink_with_wrong_crc_is_refused() {
    require!("gcc", "objcopy", "strip", "readelf");
    let dir = tempdir();
    let (_, prog, debug) = split(dir.path(), true);
    let mut bytes = std::fs::read(&debug).unwrap();
    bytes.push(0);
    std::fs::write(&debug, bytes).unwrap();
    let obj = discover_with(&prog, &options(&dir.path().join("root"))).unwrap();
    assert!(
        !matches!(obj.symbol_source, SymbolSource::DebugFile(_)),
        "{:?}",
        obj.symbol_source
    );
    assert!(obj.debug_file.is_none());
    assert!(!obj.candidates.iter().any(|f| f.name == "helper"));
}

#[test]
fn build_id_layout_under_a_root() {
    require!("gcc", "objcopy", "strip", "readelf");
    let dir = tempdir();
    let (original, prog, debug) = split(dir.path(), false);
    let notes = output(Command::new("readelf").arg("-n").arg(&prog));
    let Some(id) = notes
        .lines()
        .find(|l| l.contains("Build ID:"))
        .map(|l| l.split_whitespace().last().unwrap().to_string())
    else {
        eprintln!("SKIPPED: this gcc does not write build IDs");
        return;
    };
    let root = dir.path().join("root");
    let path = root
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::rename(&debug, &path).unwrap();
    assert_statics_back(&prog, &original, &options(&root), &path);

    // Turned off, nothing is looked for.
    let off = DiscoverOptions {
        use_debug_files: false,
        ..options(&root)
    };
    let obj = discover_with(&prog, &off).unwrap();
    assert!(obj.debug_file.is_none());

    // A file at the build-id path whose build ID differs is refused.
    let other = compile(
        dir.path(),
        "gcc",
        &[("other.c", "int main(void) { return 3; }\n")],
        "other",
        &["-g"],
    );
    std::fs::copy(&other, &path).unwrap();
    let obj = discover_with(&prog, &options(&root)).unwrap();
    assert!(obj.debug_file.is_none(), "{:?}", obj.debug_file);
}

#[test]
fn source_lines_from_the_object_itself() {
    require!("gcc");
    let dir = tempdir();
    let prog = compile(
        dir.path(),
        "gcc",
        &[("prog.c", SRC)],
        "prog",
        &["-O1", "-g"],
    );
    let obj = discover_with(&prog, &options(&dir.path().join("root"))).unwrap();
    let mut resolver = SourceResolver::new(&obj);
    for (name, needle) in [("main", "int main("), ("twice", "static int twice(")] {
        let f = obj.candidates.iter().find(|f| f.name == name).unwrap();
        assert_eq!(
            resolver.locate(f.address),
            Some(format!("prog.c:{}", line_of(SRC, needle)))
        );
    }
    // Without DWARF anywhere: None, no error.
    let bare = compile(dir.path(), "gcc", &[("prog.c", SRC)], "bare", &["-O1"]);
    let obj = discover_with(&bare, &options(&dir.path().join("root"))).unwrap();
    let mut resolver = SourceResolver::new(&obj);
    assert!(!resolver.is_available());
    assert_eq!(resolver.locate(obj.candidates[0].address), None);
}

#[test]
fn compressed_and_dwarf4_debug_info() {
    require!("gcc");
    let dir = tempdir();
    for (name, flags) in [
        ("gz", &["-O1", "-g", "-gz"][..]),
        ("dwarf4", &["-O1", "-gdwarf-4"][..]),
    ] {
        let src = dir.path().join("prog.c");
        std::fs::write(&src, SRC).unwrap();
        let out = dir.path().join(name);
        let built = Command::new("gcc")
            .args(flags)
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        if !built.status.success() {
            eprintln!("SKIPPED {name}: {}", String::from_utf8_lossy(&built.stderr));
            continue;
        }
        let obj = discover_with(&out, &options(&dir.path().join("root"))).unwrap();
        let main = obj.candidates.iter().find(|f| f.name == "main").unwrap();
        let mut resolver = SourceResolver::new(&obj);
        assert_eq!(
            resolver.locate(main.address),
            Some(format!("prog.c:{}", line_of(SRC, "int main("))),
            "{name}"
        );
    }
}

use crate::common::*;
use crate::require;
use hotprobe_config::{ProbeSet, ProbeSetEntry, Settings};
use hotprobe_discover::{discover, ExcludeReason, MissReason, ObjectFunctions, Selector};
use std::path::Path;

const A: &str = "__attribute__((noinline)) static int helper(int x) { return x + 1; }\n__attribute__((noinline)) int in_a(int x) { return helper(x); }\n";
const B: &str = "__attribute__((noinline)) static int helper(int x) { return x * 2 + 5; }\n__attribute__((noinline)) int in_b(int x) { return helper(x); }\n";
const M: &str = "int in_a(int); int in_b(int); int foo_a(int);\nint main(int c, char **v) { (void)v; return in_a(c) + in_b(c) + foo_a(c); }\n";
const LIB: &str = "__attribute__((noinline)) int foo_a(int x) { return x + 40; }\n__attribute__((noinline)) int foo_b(int x) { return x - 2; }\n";

struct Built {
    _dir: tempfile::TempDir,
    prog: ObjectFunctions,
    lib: ObjectFunctions,
}

/// `prog` linked against `libfoo.so.1` (a symlink to `libfoo.so.1.0`).
fn build() -> Built {
    let dir = tempdir();
    let d = dir.path();
    compile(
        d,
        "gcc",
        &[("foo.c", LIB)],
        "libfoo.so.1.0",
        &["-O1", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1"],
    );
    std::os::unix::fs::symlink("libfoo.so.1.0", d.join("libfoo.so.1")).unwrap();
    std::os::unix::fs::symlink("libfoo.so.1", d.join("libfoo.so")).unwrap();
    let prog_path = compile(
        d,
        "gcc",
        &[("a.c", A), ("b.c", B), ("m.c", M)],
        "prog",
        &["-O1", "-L", d.to_str().unwrap(), "-lfoo"],
    );
    let prog = discover(&prog_path).unwrap();
    let lib = discover(&d.join("libfoo.so.1")).unwrap();
    Built {
        _dir: dir,
        prog,
        lib,
    }
}

fn settings(modules: &[&str], include: &[&str], exclude: &[&str]) -> Settings {
    let mut s = Settings::default();
    s.target.modules = modules.iter().map(|x| x.to_string()).collect();
    s.target.include = include.iter().map(|x| x.to_string()).collect();
    s.target.exclude = exclude.iter().map(|x| x.to_string()).collect();
    s
}

fn names(v: Vec<&hotprobe_discover::Function>) -> Vec<String> {
    let mut out: Vec<String> = v
        .into_iter()
        .map(|f| f.display_name().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn modules_include_exclude() {
    require!("gcc");
    let b = build();
    assert_eq!(
        b.lib.path.file_name().unwrap(),
        "libfoo.so.1.0",
        "real path"
    );
    assert_eq!(b.lib.opened_as.file_name().unwrap(), "libfoo.so.1");

    // Default settings: only the executable.
    let sel = Selector::new(&Settings::default(), None).unwrap();
    assert!(sel.wants_module(&b.prog.path, true));
    assert!(!sel.wants_module(&b.lib.opened_as, false));
    assert!(sel.select(&b.lib, false).is_empty());
    assert_eq!(
        names(sel.select(&b.prog, true)),
        ["helper", "helper#2", "in_a", "in_b", "main"]
    );
    assert!(
        sel.select(&b.prog, false).is_empty(),
        "`main` means the executable, not any object"
    );

    // Globs over the file name (as loaded or real) and over the path.
    for pattern in ["libfoo.so.1", "libfoo.so.1.0", "libfoo*", "*/libfoo.so.1*"] {
        let sel = Selector::new(&settings(&[pattern], &["*"], &[]), None).unwrap();
        assert!(sel.wants_module(&b.lib.opened_as, false), "{pattern}");
        assert_eq!(
            names(sel.select(&b.lib, false)),
            ["foo_a", "foo_b"],
            "{pattern}"
        );
        assert!(!sel.wants_module(&b.prog.path, true), "{pattern}");
    }
    let sel = Selector::new(&settings(&["/nowhere/*"], &["*"], &[]), None).unwrap();
    assert!(!sel.wants_module(&b.lib.opened_as, false));

    // include / exclude
    let sel = Selector::new(
        &settings(&["main", "libfoo*"], &["in_*", "foo_?"], &["*_b"]),
        None,
    )
    .unwrap();
    assert_eq!(names(sel.select(&b.prog, true)), ["in_a"]);
    assert_eq!(names(sel.select(&b.lib, false)), ["foo_a"]);
    let sel = Selector::new(&settings(&["main"], &["*"], &["helper", "main"]), None).unwrap();
    assert_eq!(names(sel.select(&b.prog, true)), ["in_a", "in_b"]);
    assert!(Selector::new(&settings(&["main"], &["[bad"], &[]), None).is_err());
}

#[test]
fn probe_sets() {
    require!("gcc");
    let b = build();
    let mut helpers: Vec<_> = b
        .prog
        .candidates
        .iter()
        .filter(|f| f.symbol == "helper")
        .collect();
    helpers.sort_by_key(|f| f.ordinal);
    let second = helpers[1].offset;
    let text = format!(
        r#"schema = "hotprobe.probeset/1"
source = "test"

[[probe]]
module = "prog"
symbol = "helper"
name = "helper#2"
offset = {second}

[[probe]]
module = "libfoo.so.1"
symbol = "foo_b"

[[probe]]
module = "prog"
symbol = "nosuch"

[[probe]]
module = "libgone.so"
symbol = "x"

[[probe]]
module = "prog"
symbol = "_start"

[[probe]]
module = "*/pro?"
symbol = "in_a"

[[probe]]
module = "main"
symbol = "main"

[[probe]]
module = "prog"
symbol = "in_b"

[[probe]]
module = "prog"
symbol = "renamed_symbol"
name = "in_a"
"#
    );
    let set = ProbeSet::parse(&text, Path::new("probes.toml")).unwrap();
    // `modules` is not consulted with a probe set; exclude still narrows.
    let sel = Selector::new(
        &settings(&["nothing-matches"], &["*"], &["in_b"]),
        Some(&set),
    )
    .unwrap();
    assert!(sel.wants_module(&b.prog.path, true));
    assert!(sel.wants_module(&b.lib.opened_as, false));
    assert!(!sel.wants_module(Path::new("/usr/lib/libother.so"), false));

    let picked = sel.select(&b.prog, true);
    assert_eq!(names(picked.clone()), ["helper#2", "in_a", "main"]);
    assert_eq!(
        picked.iter().find(|f| f.symbol == "helper").unwrap().offset,
        second
    );
    assert_eq!(names(sel.select(&b.lib, false)), ["foo_b"]);

    let misses = sel.probe_set_misses();
    let by_symbol = |s: &str| {
        misses
            .iter()
            .find(|m| m.entry.symbol == s)
            .map(|m| m.reason.clone())
    };
    assert!(matches!(
        by_symbol("nosuch"),
        Some(MissReason::NotFound { .. })
    ));
    assert_eq!(by_symbol("x"), Some(MissReason::ModuleNotSeen));
    assert!(matches!(
        by_symbol("_start"),
        Some(MissReason::NotProbeable {
            reason: ExcludeReason::ToolchainGlue,
            ..
        })
    ));
    assert_eq!(
        by_symbol("in_b"),
        None,
        "narrowed by exclude on purpose: not a miss"
    );
    assert_eq!(by_symbol("renamed_symbol"), None, "matched by name");
    assert_eq!(misses.len(), 3, "{misses:?}");
    let unmatched = sel.unmatched_probe_set_entries();
    assert_eq!(unmatched.len(), 3);
    for m in &misses {
        assert!(!m.reason.to_string().is_empty());
    }
}

#[test]
fn probe_set_offsets_and_ordinals_tell_duplicates_apart() {
    require!("gcc");
    let b = build();
    let mut helpers: Vec<_> = b
        .prog
        .candidates
        .iter()
        .filter(|f| f.symbol == "helper")
        .collect();
    helpers.sort_by_key(|f| f.ordinal);
    let entry = |name: &str, offset: Option<u64>| ProbeSetEntry {
        module: "prog".into(),
        symbol: "helper".into(),
        name: name.into(),
        offset,
    };
    let pick = |e: ProbeSetEntry| {
        let set = ProbeSet::new("t", vec![e]);
        let sel = Selector::new(&Settings::default(), Some(&set)).unwrap();
        sel.select(&b.prog, true)
            .into_iter()
            .map(|f| f.offset)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pick(entry("helper", Some(helpers[0].offset))),
        [helpers[0].offset]
    );
    assert_eq!(
        pick(entry("helper", Some(helpers[1].offset))),
        [helpers[1].offset]
    );
    // A rebuilt binary: the offset is stale, the ordinal in the name decides.
    assert_eq!(pick(entry("helper#2", Some(1))), [helpers[1].offset]);
    // Nothing to tell them apart: both.
    let mut both = pick(entry("helper", None));
    both.sort();
    let mut want = vec![helpers[0].offset, helpers[1].offset];
    want.sort();
    assert_eq!(both, want);
}

#[test]
fn probe_set_entries_in_refused_modules_say_why() {
    let set = ProbeSet::new(
        "t",
        vec![ProbeSetEntry {
            module: "libc.so.6".into(),
            symbol: "malloc".into(),
            name: String::new(),
            offset: None,
        }],
    );
    let sel = Selector::new(&Settings::default(), Some(&set)).unwrap();
    assert!(!sel.wants_module(Path::new("/lib/x86_64-linux-gnu/libc.so.6"), false));
    let misses = sel.probe_set_misses();
    assert_eq!(misses.len(), 1);
    assert!(
        matches!(
            misses[0].reason,
            MissReason::NotProbeable {
                reason: ExcludeReason::Module(_),
                ..
            }
        ),
        "{misses:?}"
    );
    assert!(
        misses[0].reason.to_string().contains("C library"),
        "{}",
        misses[0].reason
    );
}

#[test]
fn shareable_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Selector>();
    send_sync::<ObjectFunctions>();
    send::<hotprobe_discover::SourceResolver>();
}

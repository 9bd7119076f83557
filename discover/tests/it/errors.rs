use crate::common::*;
use crate::require;
use hotprobe_discover::{discover, DiscoverErrorKind};
use std::path::Path;

#[test]
fn missing_empty_text_and_directories() {
    let dir = tempdir();
    let d = dir.path();
    let err = discover(&d.join("nope")).unwrap_err();
    assert!(matches!(err.kind, DiscoverErrorKind::Io(_)));
    assert!(err.to_string().contains("nope"), "{err}");

    std::fs::write(d.join("empty"), b"").unwrap();
    let err = discover(&d.join("empty")).unwrap_err();
    assert!(matches!(err.kind, DiscoverErrorKind::Empty), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");

    std::fs::write(d.join("script"), b"#!/bin/sh\necho hi\n").unwrap();
    let err = discover(&d.join("script")).unwrap_err();
    assert!(
        err.to_string().contains("script") && err.to_string().contains("not an ELF"),
        "{err}"
    );

    std::fs::write(d.join("notes.txt"), b"hello world\n").unwrap();
    let err = discover(&d.join("notes.txt")).unwrap_err();
    assert!(err.to_string().contains("text file"), "{err}");

    std::fs::write(d.join("lib.a"), b"!<arch>\nfoo.o/ ...").unwrap();
    let err = discover(&d.join("lib.a")).unwrap_err();
    assert!(err.to_string().contains("archive"), "{err}");

    let err = discover(d).unwrap_err();
    assert!(matches!(err.kind, DiscoverErrorKind::NotAFile), "{err}");

    let err = discover(Path::new("")).unwrap_err();
    assert!(matches!(err.kind, DiscoverErrorKind::EmptyPath), "{err}");
    assert!(err.to_string().contains("empty path"));

    std::fs::write(d.join("elfhead"), b"\x7fELF\x02").unwrap();
    let err = discover(&d.join("elfhead")).unwrap_err();
    assert!(matches!(err.kind, DiscoverErrorKind::Malformed(_)), "{err}");
}

#[test]
fn relocatable_objects_are_refused() {
    require!("gcc");
    let dir = tempdir();
    std::fs::write(dir.path().join("x.c"), "int f(int x) { return x; }\n").unwrap();
    let obj = dir.path().join("x.o");
    run(std::process::Command::new("gcc")
        .arg("-c")
        .arg(dir.path().join("x.c"))
        .arg("-o")
        .arg(&obj));
    let err = discover(&obj).unwrap_err();
    assert!(matches!(err.kind, DiscoverErrorKind::Unsupported(_)));
    assert!(
        err.to_string().contains("x.o") && err.to_string().contains("relocatable"),
        "{err}"
    );
}

/// Truncations and byte flips of a real program: an error or a result,
/// never a panic.
#[test]
fn truncated_and_corrupt_elf_never_panics() {
    require!("gcc");
    let dir = tempdir();
    let prog = compile(
        dir.path(),
        "gcc",
        &[("p.c", crate::c_program::PROG)],
        "prog",
        &["-O1", "-g", "-rdynamic"],
    );
    let bytes = std::fs::read(&prog).unwrap();
    let path = dir.path().join("bad");
    let mut truncated_errors = 0;
    let cuts: Vec<usize> = [1, 4, 16, 52, 63, 64, 65, 100, 200, 500, 1000, 4096, 8192]
        .into_iter()
        .chain((1..16).map(|i| bytes.len() * i / 16))
        .chain([bytes.len() - 1])
        .filter(|&n| n < bytes.len())
        .collect();
    for n in cuts {
        std::fs::write(&path, &bytes[..n]).unwrap();
        match discover(&path) {
            Err(e) => {
                truncated_errors += 1;
                assert!(e.to_string().contains("bad"), "{e}");
            }
            Ok(obj) => {
                for f in &obj.candidates {
                    let _ = hotprobe_discover::function_code(&bytes[..n], f);
                }
            }
        }
        let _ =
            hotprobe_discover::listing::list(&path, &[], &[]).map(|l| (l.to_table(), l.to_json()));
    }
    assert!(truncated_errors > 5, "a truncated ELF gives errors");

    // Deterministic byte flips (xorshift), in the headers and everywhere.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let mut copy = bytes.clone();
        let flips = 1 + (next() % 8) as usize;
        for _ in 0..flips {
            let limit = if round % 2 == 0 {
                4096.min(copy.len())
            } else {
                copy.len()
            };
            let at = (next() as usize) % limit;
            copy[at] = next() as u8;
        }
        std::fs::write(&path, &copy).unwrap();
        if let Ok(obj) = discover(&path) {
            let mut r = hotprobe_discover::SourceResolver::new(&obj);
            for f in obj.candidates.iter().take(3) {
                let _ = r.locate(f.address);
            }
        }
    }
}

/// The long version, run on demand:
/// `HOTPROBE_FUZZ_ROUNDS=20000 cargo test -p hotprobe-discover --test it fuzz_long -- --ignored`
/// Corrupts a C program with DWARF, a C++ program and a stripped program's
/// separate debug file (read for symbols, sizes and lines).
#[test]
#[ignore]
fn fuzz_long() {
    require!("gcc", "g++", "objcopy", "strip");
    let rounds: usize = std::env::var("HOTPROBE_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempdir();
    let d = dir.path();
    let c = compile(
        d,
        "gcc",
        &[("p.c", crate::c_program::PROG)],
        "c",
        &["-O1", "-g"],
    );
    let cpp = compile(d, "g++", &[("p.cpp", "#include <string>\nstd::string f(int x) { return std::to_string(x); }\nint main(int c, char**) { return (int)f(c).size(); }\n")], "cpp", &["-O1", "-g"]);
    let stripped = d.join("stripped");
    std::fs::copy(&c, &stripped).unwrap();
    run(std::process::Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&stripped)
        .arg(d.join("stripped.debug")));
    run(std::process::Command::new("strip")
        .args(["--strip-debug", "--strip-unneeded"])
        .arg(&stripped));
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // (file to corrupt, file to discover)
    let debug_copy = d.join("x.debug");
    let targets = [
        (c.clone(), d.join("x")),
        (cpp.clone(), d.join("x")),
        (d.join("stripped.debug"), debug_copy.clone()),
    ];
    for round in 0..rounds {
        let (source, victim) = &targets[round % targets.len()];
        let mut bytes = std::fs::read(source).unwrap();
        for _ in 0..1 + (next() % 16) {
            let limit = match next() % 3 {
                0 => 256.min(bytes.len()),
                1 => 8192.min(bytes.len()),
                _ => bytes.len(),
            };
            let at = (next() as usize) % limit;
            bytes[at] = next() as u8;
        }
        if next() % 8 == 0 {
            let cut = (next() as usize) % bytes.len();
            bytes.truncate(cut);
        }
        std::fs::write(victim, &bytes).unwrap();
        let path = if *victim == debug_copy {
            // The stripped program finds the corrupt file through a debuglink-free build-id root.
            let root = d.join("root");
            let _ = std::fs::remove_dir_all(&root);
            let notes = crate::common::output(
                std::process::Command::new("readelf")
                    .arg("-n")
                    .arg(&stripped),
            );
            if let Some(id) = notes
                .lines()
                .find(|l| l.contains("Build ID:"))
                .and_then(|l| l.split_whitespace().last())
            {
                let p = root
                    .join(".build-id")
                    .join(&id[..2])
                    .join(format!("{}.debug", &id[2..]));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::copy(victim, &p).unwrap();
            }
            let opts = hotprobe_discover::DiscoverOptions {
                debug_roots: vec![root],
                ..Default::default()
            };
            if let Ok(obj) = hotprobe_discover::discover_with(&stripped, &opts) {
                let mut r = hotprobe_discover::SourceResolver::with_options(&obj, &opts);
                for f in obj.candidates.iter().take(4) {
                    let _ = r.locate(f.address);
                }
            }
            continue;
        } else {
            victim.clone()
        };
        if let Ok(obj) = discover(&path) {
            let mut r = hotprobe_discover::SourceResolver::new(&obj);
            for f in obj.candidates.iter().take(4) {
                let _ = r.locate(f.address);
            }
            let _ = hotprobe_discover::listing::from_object(&obj, &[], &[], None)
                .map(|l| (l.to_table(), l.to_json()));
        }
    }
}

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

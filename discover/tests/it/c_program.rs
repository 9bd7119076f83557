use crate::common::*;
use crate::require;
use hotprobe_discover::{
    discover, function_code, ExcludeReason, Function, MappedObject, SizeSource, SymbolSource,
};
use object::{Object, ObjectSection};
use std::process::Command;

pub const PROG: &str = r#"#include <stdio.h>
__attribute__((noinline)) static int helper(int x) { return x * 3 + 1; }
__attribute__((noinline)) int work(int x) { return helper(x) + 2; }
__attribute__((noinline)) static int other_static(int x) { return x ^ 0x55; }
extern int asmfunc(void);
__asm__(".text\n.globl asmfunc\n.type asmfunc, @function\nasmfunc:\n mov $1, %eax\n ret\n");
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", work(argc) + other_static(argc) + asmfunc());
    return 0;
}
"#;

fn find<'a>(fs: &'a [Function], name: &str) -> &'a Function {
    fs.iter().find(|f| f.name == name).unwrap_or_else(|| {
        panic!(
            "{name} not among {:?}",
            fs.iter().map(|f| &f.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn functions_sizes_offsets_and_exclusions() {
    require!("gcc", "nm", "readelf");
    let dir = tempdir();
    let prog = compile(
        dir.path(),
        "gcc",
        &[("prog.c", PROG)],
        "prog",
        &["-O1", "-g"],
    );
    let obj = discover(&prog).unwrap();
    assert_eq!(obj.symbol_source, SymbolSource::Symtab);
    assert_eq!(obj.path, std::fs::canonicalize(&prog).unwrap());
    assert!(
        obj.debug_file.is_none(),
        "no debug file is looked for when nothing is missing"
    );
    let elf_type = output(Command::new("readelf").arg("-hW").arg(&prog));
    assert_eq!(obj.is_pie_or_dso, elf_type.contains("DYN"), "{elf_type}");
    let notes = output(Command::new("readelf").arg("-n").arg(&prog));
    if let Some(line) = notes.lines().find(|l| l.contains("Build ID:")) {
        assert_eq!(
            obj.build_id.as_deref(),
            Some(line.split_whitespace().last().unwrap())
        );
    }

    // Every function with a size agrees with nm and readelf.
    let segments = load_segments(&prog);
    let syms = nm(&prog, false);
    for want in ["main", "work", "helper", "other_static"] {
        let f = find(&obj.candidates, want);
        let s = syms.iter().find(|s| s.name == want).unwrap();
        assert_eq!(f.address, s.address, "{want}");
        assert_eq!(Some(f.size), s.size, "{want}");
        assert_eq!(f.size_from, SizeSource::Symbol);
        assert_eq!(f.offset, file_offset(&segments, s.address), "{want}");
        assert_eq!(f.symbol, want);
        assert_eq!(f.ordinal, 1);
    }
    assert!(
        !find(&obj.candidates, "helper").global,
        "static functions are local"
    );
    assert!(find(&obj.candidates, "work").global);
    // Nothing is a candidate that nm does not know at that address.
    for f in &obj.candidates {
        assert!(
            syms.iter()
                .any(|s| s.address == f.address
                    && (s.name == f.symbol || f.aliases.contains(&s.name))),
            "{f:?}"
        );
    }

    // Exclusions, with reasons.
    let reason = |name: &str| {
        obj.excluded
            .iter()
            .find(|x| x.function.name == name)
            .map(|x| x.reason)
    };
    for glue in [
        "_start",
        "frame_dummy",
        "_init",
        "_fini",
        "deregister_tm_clones",
        "register_tm_clones",
        "__do_global_dtors_aux",
    ] {
        assert_eq!(reason(glue), Some(ExcludeReason::ToolchainGlue), "{glue}");
    }
    assert_eq!(
        reason("asmfunc"),
        Some(ExcludeReason::UnknownSize),
        "no .size and no DWARF subprogram"
    );
    let plt: Vec<_> = obj
        .excluded
        .iter()
        .filter(|x| x.reason == ExcludeReason::PltStub)
        .map(|x| x.function.name.as_str())
        .collect();
    assert!(
        plt.iter().any(|n| *n == "printf@plt" || *n == "puts@plt"),
        "{plt:?}"
    );
    for x in &obj.excluded {
        assert!(!x.reason.to_string().is_empty());
        assert!(
            !obj.candidates
                .iter()
                .any(|f| f.address == x.function.address),
            "{x:?} is also a candidate"
        );
    }

    // The bytes at the file offset are the function's code (cross-checked
    // through the section table instead of the segments).
    let bytes = std::fs::read(&prog).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let main = find(&obj.candidates, "main");
    let via_section =
        &text.data().unwrap()[(main.address - text.address()) as usize..][..main.size as usize];
    assert_eq!(function_code(&bytes, main), Some(via_section));
    let mapped = MappedObject::open(&prog).unwrap();
    assert_eq!(mapped.code(main), Some(via_section));
    let last = main.clone();
    assert_eq!(
        function_code(&bytes[..10], &last),
        None,
        "out of the file is None, not a panic"
    );

    // Lookups by address.
    assert_eq!(
        obj.candidate_at(main.address).map(|f| f.name.as_str()),
        Some("main")
    );
    assert_eq!(
        obj.candidate_containing(main.address + main.size - 1)
            .map(|f| f.name.as_str()),
        Some("main")
    );
}

#[test]
fn zero_size_symbol_gets_its_size_from_dwarf() {
    require!("gcc", "nm");
    let dir = tempdir();
    let prog = compile(
        dir.path(),
        "gcc",
        &[("prog.c", PROG)],
        "prog",
        &["-O1", "-g"],
    );
    let before = discover(&prog).unwrap();
    let work = find(&before.candidates, "work").clone();

    // Zero the st_size of `work` in .symtab.
    let mut bytes = std::fs::read(&prog).unwrap();
    let patch_at = {
        use object::read::elf::{ElfFile64, SectionHeader, Sym};
        let elf = ElfFile64::<object::Endianness>::parse(&*bytes).unwrap();
        let endian = elf.endian();
        let table = elf.elf_symbol_table();
        let (index, _) = table
            .enumerate()
            .find(|(_, s)| table.symbol_name(endian, s).unwrap() == b"work")
            .unwrap();
        let symtab = elf.elf_section_table().section(table.section()).unwrap();
        let entry = symtab.sh_offset(endian) as usize + index.0 * 24;
        assert_eq!(
            elf.elf_symbol_table()
                .symbol(index)
                .unwrap()
                .st_size(endian),
            work.size
        );
        entry + 16
    };
    bytes[patch_at..patch_at + 8].fill(0);
    let patched = dir.path().join("patched");
    std::fs::write(&patched, &bytes).unwrap();
    let sizes = nm(&patched, false);
    assert_eq!(
        sizes.iter().find(|s| s.name == "work").unwrap().size,
        None,
        "nm sees no size"
    );

    let after = discover(&patched).unwrap();
    let f = find(&after.candidates, "work");
    assert_eq!(f.size, work.size);
    assert_eq!(f.size_from, SizeSource::Dwarf);

    // Without -g the same patch leaves the size unknown: excluded, with the reason.
    let nodebug = compile(dir.path(), "gcc", &[("prog.c", PROG)], "nodebug", &["-O1"]);
    let mut bytes = std::fs::read(&nodebug).unwrap();
    let (sh_offset, index) = {
        use object::read::elf::{ElfFile64, SectionHeader};
        let elf = ElfFile64::<object::Endianness>::parse(&*bytes).unwrap();
        let endian = elf.endian();
        let table = elf.elf_symbol_table();
        let (index, _) = table
            .enumerate()
            .find(|(_, s)| table.symbol_name(endian, s).unwrap() == b"work")
            .unwrap();
        (
            elf.elf_section_table()
                .section(table.section())
                .unwrap()
                .sh_offset(endian) as usize,
            index.0,
        )
    };
    bytes[sh_offset + index * 24 + 16..][..8].fill(0);
    let patched = dir.path().join("patched-nodebug");
    std::fs::write(&patched, &bytes).unwrap();
    let obj = discover(&patched).unwrap();
    let x = obj
        .excluded
        .iter()
        .find(|x| x.function.name == "work")
        .expect("work is excluded");
    assert_eq!(x.reason, ExcludeReason::UnknownSize);
    assert!(x.reason.to_string().contains("size unknown"));
}

#[test]
fn stripped_rdynamic_binary_uses_dynsym() {
    require!("gcc", "strip", "nm");
    let dir = tempdir();
    let full = compile(
        dir.path(),
        "gcc",
        &[("prog.c", PROG)],
        "full",
        &["-O1", "-rdynamic"],
    );
    let stripped = dir.path().join("stripped");
    std::fs::copy(&full, &stripped).unwrap();
    run(Command::new("strip").arg("--strip-all").arg(&stripped));
    assert!(nm(&stripped, true).iter().any(|s| s.name == "work"));

    let before = discover(&full).unwrap();
    let options = hotprobe_discover::DiscoverOptions {
        debug_roots: vec![dir.path().join("no-debug-root")],
        ..Default::default()
    };
    let obj = hotprobe_discover::discover_with(&stripped, &options).unwrap();
    assert_eq!(obj.symbol_source, SymbolSource::Dynsym);
    for global in ["main", "work"] {
        let (a, b) = (
            find(&obj.candidates, global),
            find(&before.candidates, global),
        );
        assert_eq!(
            (a.offset, a.size, a.address),
            (b.offset, b.size, b.address),
            "{global}"
        );
    }
    for missing in ["helper", "other_static"] {
        assert!(
            !obj.candidates.iter().any(|f| f.name == missing),
            "static {missing} cannot be in .dynsym"
        );
    }
}

#[test]
fn aliases_become_one_candidate() {
    require!("gcc");
    let src = r#"
__attribute__((noinline)) static int internal_impl(int x) { return x * 7; }
int api(int x) __attribute__((alias("internal_impl")));
int api_weak(int x) __attribute__((weak, alias("internal_impl")));
int main(int argc, char **argv) { (void)argv; return api(argc) + api_weak(argc); }
"#;
    let dir = tempdir();
    let prog = compile(dir.path(), "gcc", &[("a.c", src)], "prog", &["-O1"]);
    let obj = discover(&prog).unwrap();
    let at: Vec<_> = obj
        .candidates
        .iter()
        .filter(|f| f.name == "api" || f.aliases.iter().any(|a| a == "api"))
        .collect();
    assert_eq!(at.len(), 1, "{:?}", obj.candidates);
    let f = at[0];
    assert_eq!(f.name, "api", "the global, non-weak name wins");
    assert!(f.global && !f.weak);
    let mut aliases = f.aliases.clone();
    aliases.sort();
    assert_eq!(aliases, ["api_weak", "internal_impl"]);
    assert!(!obj
        .candidates
        .iter()
        .any(|g| g.name == "api_weak" || g.name == "internal_impl"));
    assert!(!obj.excluded.iter().any(|x| x.function.address == f.address));
}

#[test]
fn ifunc_symbols_and_their_resolvers_are_excluded() {
    require!("gcc");
    let src = r#"
static int impl_a(int x) { return x + 1; }
static void *resolve_pick(void) { return (void *)impl_a; }
int pick(int x) __attribute__((ifunc("resolve_pick")));
int main(int argc, char **argv) { (void)argv; return pick(argc); }
"#;
    let dir = tempdir();
    let prog = compile(dir.path(), "gcc", &[("a.c", src)], "prog", &["-O0"]);
    let obj = discover(&prog).unwrap();
    let x = obj
        .excluded
        .iter()
        .find(|x| x.function.name == "pick" || x.function.aliases.iter().any(|a| a == "pick"))
        .expect("pick is excluded");
    assert_eq!(x.reason, ExcludeReason::Ifunc);
    assert!(!obj
        .candidates
        .iter()
        .any(|f| f.name == "resolve_pick" || f.name == "pick"));
    assert!(obj.candidates.iter().any(|f| f.name == "impl_a"));
}

#[test]
fn same_symbol_functions_get_ordinals_by_offset() {
    require!("gcc");
    let a = "__attribute__((noinline)) static int helper(int x) { return x + 1; }\nint in_a(int x) { return helper(x); }\n";
    let b = "__attribute__((noinline)) static int helper(int x) { return x * 2 + 5; }\nint in_b(int x) { return helper(x); }\n";
    let m = "int in_a(int); int in_b(int);\nint main(int c, char **v) { (void)v; return in_a(c) + in_b(c); }\n";
    let dir = tempdir();
    let prog = compile(
        dir.path(),
        "gcc",
        &[("a.c", a), ("b.c", b), ("m.c", m)],
        "prog",
        &["-O1"],
    );
    let obj = discover(&prog).unwrap();
    let mut helpers: Vec<_> = obj
        .candidates
        .iter()
        .filter(|f| f.symbol == "helper")
        .collect();
    helpers.sort_by_key(|f| f.offset);
    assert_eq!(helpers.len(), 2);
    assert_eq!((helpers[0].ordinal, helpers[1].ordinal), (1, 2));
    assert_eq!(helpers[0].display_name(), "helper");
    assert_eq!(helpers[1].display_name(), "helper#2");
}

#[test]
fn whole_modules_are_refused() {
    let libc = std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    if !libc.exists() {
        eprintln!("SKIPPED: no {}", libc.display());
        return;
    }
    let obj = discover(libc).unwrap();
    assert!(obj.candidates.is_empty());
    assert!(obj
        .excluded
        .iter()
        .any(|x| matches!(x.reason, ExcludeReason::Module(_))));
    assert!(hotprobe_discover::module_exclusion(&obj.path).is_some());
}

#[test]
fn static_non_pie_program() {
    require!("gcc", "readelf");
    let dir = tempdir();
    let src = dir.path().join("prog.c");
    std::fs::write(&src, PROG).unwrap();
    let prog = dir.path().join("prog");
    let built = Command::new("gcc")
        .args(["-O1", "-static", "-no-pie"])
        .arg(&src)
        .arg("-o")
        .arg(&prog)
        .output()
        .unwrap();
    if !built.status.success() {
        eprintln!(
            "SKIPPED: no static libc ({})",
            String::from_utf8_lossy(&built.stderr)
        );
        return;
    }
    let obj = discover(&prog).unwrap();
    assert!(!obj.is_pie_or_dso, "ET_EXEC");
    let segments = load_segments(&prog);
    let main = find(&obj.candidates, "main");
    assert_eq!(main.offset, file_offset(&segments, main.address));
    assert!(
        main.address > 0x400000 - 1,
        "linked at a fixed address: {:#x}",
        main.address
    );
    let reason = |name: &str| {
        obj.excluded
            .iter()
            .find(|x| x.function.name == name || x.function.aliases.iter().any(|a| a == name))
            .map(|x| x.reason)
    };
    assert_eq!(reason("_start"), Some(ExcludeReason::ToolchainGlue));
    // glibc's string functions are ifuncs in a static program too.
    assert!(
        obj.excluded
            .iter()
            .any(|x| x.reason == ExcludeReason::Ifunc),
        "no ifunc found"
    );
    for f in &obj.candidates {
        assert!(f.size > 0 && f.offset > 0, "{f:?}");
    }
}

#[test]
fn ibt_plt_sec_entries_and_functions_outside_code() {
    require!("gcc", "readelf");
    let src = r#"#include <stdio.h>
__asm__(".section .rodata\n.globl not_code\n.type not_code, @function\nnot_code:\n .byte 0xc3\n.size not_code, 1\n.text\n");
int main(int argc, char **argv) { (void)argv; printf("%d\n", argc); return 0; }
"#;
    let dir = tempdir();
    let prog = dir.path().join("prog");
    std::fs::write(dir.path().join("p.c"), src).unwrap();
    let built = Command::new("gcc")
        .args(["-O1", "-fcf-protection", "-Wl,-z,ibtplt"])
        .arg(dir.path().join("p.c"))
        .arg("-o")
        .arg(&prog)
        .output()
        .unwrap();
    if !built.status.success() {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&built.stderr));
        return;
    }
    let obj = discover(&prog).unwrap();
    let reason = |name: &str| {
        obj.excluded
            .iter()
            .find(|x| x.function.name == name)
            .map(|x| x.reason)
    };
    assert_eq!(reason("not_code"), Some(ExcludeReason::NotExecutable));
    let sections = output(Command::new("readelf").arg("-SW").arg(&prog));
    if sections.contains(".plt.sec") {
        let printf = obj
            .excluded
            .iter()
            .find(|x| x.function.name == "printf@plt")
            .expect("printf@plt named");
        assert_eq!(printf.reason, ExcludeReason::PltStub);
        let line = sections.lines().find(|l| l.contains(".plt.sec")).unwrap();
        let addr = u64::from_str_radix(
            line.split(']')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .nth(2)
                .unwrap(),
            16,
        )
        .unwrap();
        assert_eq!(
            printf.function.address, addr,
            "the .plt.sec entry, not the lazy .plt one"
        );
    }
}

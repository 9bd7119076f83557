//! Real compiler output: small C and assembly files compiled with gcc at test time
//! (-O0/-O2, with and without -fcf-protection, PIE and non-PIE executables and
//! relocatable objects), read back with `object`.

mod common;

use common::{func, functions, gcc, Func};
use hotprobe_x86::*;

const C_SOURCE: &str = r#"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int counter;
static int scounter;

__attribute__((noinline)) int ok_add(int a, int b) { return a + b + 1; }
__attribute__((noinline)) int tiny(void) { return 0; }
__attribute__((noinline)) int ok_loop(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += i * i;
    return s;
}
__attribute__((noinline)) int ok_switch(int x) {
    switch (x) {
    case 0: return 3; case 1: return 7; case 2: return 11; case 3: return 19;
    case 4: return 23; case 5: return 29; case 6: return 31; default: return -1;
    }
}
__attribute__((noinline)) long ok_recursive(long n) { return n <= 1 ? 1 : n * ok_recursive(n - 1); }
__attribute__((noinline)) int ok_global(void) { return counter + scounter++; }
__attribute__((noinline)) int ok_tail(int x) { return ok_add(x, 1); }
__attribute__((noinline)) int ok_varargs(int n, ...) {
    va_list ap; va_start(ap, n);
    int s = 0;
    for (int i = 0; i < n; i++) s += va_arg(ap, int);
    va_end(ap);
    return s;
}
__attribute__((noinline)) int ok_string(const char *s) {
    char buf[64];
    snprintf(buf, sizeof buf, "<%s>", s);
    return (int)strlen(buf);
}
__attribute__((noinline)) double ok_float(double x, double y) { return x * y + 1.5; }

int main(int argc, char **argv) {
    (void)argv;
    int r = ok_add(argc, 2) + tiny() + ok_loop(argc) + ok_switch(argc) + (int)ok_recursive(argc)
          + ok_global() + ok_tail(argc) + ok_varargs(2, 3, 4) + ok_string("x") + (int)ok_float(1, 2);
    extern int bad_loop(int), bad_ref(void), bad_int3(void), exits4(int, long), tail_only(int, int);
    if (argc > 100) r += bad_loop(1) + bad_ref() + bad_int3() + exits4(0, 0) + tail_only(1, 2);
    return r == 12345;
}
"#;

/// Hand-written functions with exactly known bytes (no endbr64, whatever the flags).
const ASM_SOURCE: &str = r#"
    .intel_syntax noprefix
    .text

    .globl bad_loop
    .type bad_loop, @function
bad_loop:                   # the loop jumps back to byte 2
    xor eax, eax
1:  add eax, 1
    cmp eax, edi
    jl 1b
    ret
    .size bad_loop, .-bad_loop

    .globl bad_ref
    .type bad_ref, @function
bad_ref:                    # takes the address of byte 1 (a computed-goto label)
    push rbp
1:  mov rbp, rsp
    lea rax, [rip + 1b]
    pop rbp
    ret
    .size bad_ref, .-bad_ref

    .globl bad_int3
    .type bad_int3, @function
bad_int3:                   # a breakpoint already sits at the entry
    int3
    push rbp
    mov rbp, rsp
    pop rbp
    ret
    .size bad_int3, .-bad_int3

    .globl exits4
    .type exits4, @function
exits4:                     # two rets, one tail jump, one indirect jump
    test edi, edi
    je 2f
    cmp edi, 1
    je 3f
    cmp edi, 2
    je 4f
    mov eax, 5
    ret
2:  xor eax, eax
    ret
3:  jmp ok_add
4:  jmp rsi
    .size exits4, .-exits4

    .globl tail_only
    .type tail_only, @function
tail_only:                  # a whole function that only tail-jumps (jmp rel32)
    .byte 0xe9
    .long ok_add - . - 4
    .size tail_only, .-tail_only
    .section .note.GNU-stack,"",@progbits
"#;

struct Variant {
    name: &'static str,
    args: Vec<&'static str>,
    cf: bool,
    opt: bool,
}

fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for (opt, o) in [(false, "-O0"), (true, "-O2")] {
        for (cf, c) in [
            (true, "-fcf-protection=full"),
            (false, "-fcf-protection=none"),
        ] {
            for (pie, p) in [(true, "pie"), (false, "nopie")] {
                let mut args = vec![o, c, "-fno-stack-protector"];
                if pie {
                    args.extend(["-fPIE", "-pie"]);
                } else {
                    args.extend(["-fno-pie", "-no-pie"]);
                }
                let name = Box::leak(format!("{o}{c}-{p}").into_boxed_str());
                v.push(Variant {
                    name,
                    args,
                    cf,
                    opt,
                });
            }
        }
    }
    v
}

fn build(
    dir: &tempfile::TempDir,
    variant: &Variant,
    extra: &[&str],
    out: &str,
) -> Option<Vec<Func>> {
    let mut args = variant.args.clone();
    args.extend_from_slice(extra);
    let path = gcc(
        dir.path(),
        &[("funcs.c", C_SOURCE), ("hand.s", ASM_SOURCE)],
        &args,
        out,
    )?;
    Some(functions(&path))
}

const OK: &[&str] = &[
    "ok_add",
    "ok_loop",
    "ok_switch",
    "ok_recursive",
    "ok_global",
    "ok_tail",
    "ok_varargs",
    "ok_string",
    "ok_float",
    "main",
];

#[test]
fn executables_ordinary_functions_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for variant in variants() {
        let Some(funcs) = build(&dir, &variant, &[], &format!("exe{}", variant.name)) else {
            return;
        };
        for name in OK {
            let f = func(&funcs, name);
            let info = analyze_entry(&f.bytes, f.address)
                .unwrap_or_else(|e| panic!("{}: {name} rejected: {e}", variant.name));
            assert_eq!(
                info.starts_with_endbr64, variant.cf,
                "{}: {name}",
                variant.name
            );
            if variant.cf {
                assert!(info.stolen_len >= 5 && info.stolen_instructions >= 2);
            }
            let dest = f.address + 0x10_0000;
            let out = relocate_prologue(&f.bytes, f.address, dest)
                .unwrap_or_else(|e| panic!("{}: {name} not relocated: {e}", variant.name));
            assert!(out.len() <= MAX_RELOCATED_LEN);
            let sites = exit_sites(&f.bytes, f.address)
                .unwrap_or_else(|e| panic!("{}: {name} exits: {e}", variant.name));
            assert!(!sites.is_empty(), "{}: {name} has no exit", variant.name);
        }

        // `tiny` is `xor eax,eax; ret` at -O2 without endbr64.
        let tiny = func(&funcs, "tiny");
        let r = analyze_entry(&tiny.bytes, tiny.address);
        if variant.opt && !variant.cf {
            assert_eq!(r, Err(Rejection::TooSmall { size: 3 }), "{}", variant.name);
        } else {
            assert!(r.is_ok(), "{}: tiny {r:?}", variant.name);
        }
    }
}

#[test]
fn executables_handwritten_rejections_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    for variant in variants() {
        let Some(funcs) = build(&dir, &variant, &[], &format!("exe{}", variant.name)) else {
            return;
        };
        let f = func(&funcs, "bad_loop");
        let r = analyze_entry(&f.bytes, f.address).unwrap_err();
        assert_eq!(r, Rejection::BranchIntoPatch { from: 7, to: 2 });
        assert_eq!(
            r.to_string(),
            "branch at +0x7 into the patched bytes (+0x2)"
        );

        let f = func(&funcs, "bad_ref");
        let r = analyze_entry(&f.bytes, f.address).unwrap_err();
        assert_eq!(r, Rejection::ReferenceIntoPatch { from: 4, to: 1 });

        let f = func(&funcs, "bad_int3");
        let r = analyze_entry(&f.bytes, f.address).unwrap_err();
        assert!(matches!(r, Rejection::Unrelocatable { at: 0, .. }), "{r}");

        let ok_add = func(&funcs, "ok_add").address;
        let f = func(&funcs, "exits4");
        let sites = exit_sites(&f.bytes, f.address).unwrap();
        let kinds: Vec<ExitKind> = sites.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ExitKind::Ret,
                ExitKind::Ret,
                ExitKind::TailJump { target: ok_add },
                ExitKind::IndirectJump
            ]
        );
        for s in &sites {
            assert!(s.offset + s.len as u64 <= f.bytes.len() as u64);
        }

        let f = func(&funcs, "tail_only");
        let info = analyze_entry(&f.bytes, f.address).unwrap();
        assert_eq!((info.stolen_len, info.stolen_instructions), (5, 1));
        assert_eq!(
            exit_sites(&f.bytes, f.address).unwrap(),
            vec![ExitSite {
                offset: 0,
                len: 5,
                kind: ExitKind::TailJump { target: ok_add }
            }]
        );
    }
}

#[test]
fn executables_tail_calls_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    for variant in variants() {
        let Some(funcs) = build(&dir, &variant, &[], &format!("exe{}", variant.name)) else {
            return;
        };
        let ok_add = func(&funcs, "ok_add").address;
        let f = func(&funcs, "ok_tail");
        let sites = exit_sites(&f.bytes, f.address).unwrap();
        let rets = sites.iter().filter(|s| s.kind == ExitKind::Ret).count();
        let tails: Vec<_> = sites
            .iter()
            .filter(|s| matches!(s.kind, ExitKind::TailJump { .. }))
            .collect();
        if variant.opt {
            // -O2: `mov esi, 1; jmp ok_add`
            assert_eq!(rets, 0, "{}", variant.name);
            assert_eq!(tails.len(), 1, "{}", variant.name);
            assert_eq!(tails[0].kind, ExitKind::TailJump { target: ok_add });
        } else {
            // -O0: a call and one epilogue
            assert_eq!((rets, tails.len()), (1, 0), "{}", variant.name);
        }
        // -O0 functions have exactly one `ret` (a single epilogue).
        if !variant.opt {
            for name in ["ok_add", "ok_loop", "ok_recursive", "ok_global"] {
                let f = func(&funcs, name);
                let sites = exit_sites(&f.bytes, f.address).unwrap();
                assert_eq!(sites.len(), 1, "{}: {name}: {sites:?}", variant.name);
                assert_eq!(sites[0].kind, ExitKind::Ret);
                assert_eq!(sites[0].offset as usize, f.bytes.len() - 1, "the last byte");
            }
            // A switch: its jump table's indirect jmp, and the single epilogue.
            let f = func(&funcs, "ok_switch");
            let sites = exit_sites(&f.bytes, f.address).unwrap();
            let kinds: Vec<ExitKind> = sites.iter().map(|s| s.kind).collect();
            assert_eq!(
                kinds,
                vec![ExitKind::IndirectJump, ExitKind::Ret],
                "{}",
                variant.name
            );
        }
    }
}

#[test]
fn every_function_of_real_executables_is_handled() {
    // Including the C runtime's own functions: nothing panics, reasons are readable,
    // and most functions are patchable.
    let dir = tempfile::tempdir().unwrap();
    for variant in variants() {
        let Some(funcs) = build(&dir, &variant, &[], &format!("exe{}", variant.name)) else {
            return;
        };
        let mut accepted = 0;
        for f in &funcs {
            match analyze_entry(&f.bytes, f.address) {
                Ok(_) => {
                    accepted += 1;
                    relocate_prologue(&f.bytes, f.address, f.address.wrapping_sub(0x1000))
                        .unwrap_or_else(|e| panic!("{}: {}: {e}", variant.name, f.name));
                }
                Err(e) => {
                    // Only the hand-written bad functions and functions smaller
                    // than the patch are refused.
                    assert!(
                        f.name.starts_with("bad_") || matches!(e, Rejection::TooSmall { .. }),
                        "{}: {}: {e}",
                        variant.name,
                        f.name
                    );
                }
            }
            let _ = exit_sites(&f.bytes, f.address);
        }
        assert!(accepted >= 12, "{}: only {accepted} accepted", variant.name);
    }
}

#[test]
fn relocatable_objects() {
    // Unrelocated code (calls to other sections have a zero displacement) is
    // analysed like linked code: the entries of ordinary functions are accepted and
    // the hand-written rejections are found.
    let dir = tempfile::tempdir().unwrap();
    for variant in variants().into_iter().filter(|v| v.name.ends_with("nopie")) {
        let mut args = variant.args.clone();
        args.push("-c");
        let Some(c_obj) = gcc(dir.path(), &[("funcs.c", C_SOURCE)], &args, "funcs.o") else {
            return;
        };
        let Some(s_obj) = gcc(dir.path(), &[("hand.s", ASM_SOURCE)], &args, "hand.o") else {
            return;
        };
        let funcs = functions(&c_obj);
        for name in OK {
            let f = func(&funcs, name);
            let info = analyze_entry(&f.bytes, f.address)
                .unwrap_or_else(|e| panic!("{}: {name}: {e}", variant.name));
            assert_eq!(info.starts_with_endbr64, variant.cf);
        }
        let funcs = functions(&s_obj);
        let f = func(&funcs, "bad_loop");
        assert_eq!(
            analyze_entry(&f.bytes, f.address),
            Err(Rejection::BranchIntoPatch { from: 7, to: 2 })
        );
    }
}

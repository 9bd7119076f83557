//! Executes relocated prologues. A C + assembly shared library is compiled at test
//! time, loaded with `dlopen`, and each of its functions is called twice: directly,
//! and through its relocated prologue placed in an RWX page within reach of the
//! library (which then jumps back into the library's original code, exactly what
//! a trampoline does). Both calls must give the same result.

mod common;

use std::ffi::CString;

use common::{functions, gcc, Func};
use hotprobe_x86::*;

const C_LIB: &str = r#"
#include <stdio.h>
#include <string.h>

static long counter_ = 7;

long t_sum(long a, long b) {
    long s = 0;
    for (long i = 0; i < (a & 63); i++) s += i ^ b;
    return s;
}
long t_global(long a, long b) { return counter_ * a + b; }
long t_rec(long a, long b) { return a <= 0 ? b : t_rec(a - 1, b + a); }
long t_switch(long a, long b) {
    switch (a & 7) {
    case 0: return b; case 1: return b * 2; case 2: return b - 3; case 3: return b ^ 5;
    case 4: return b + 11; case 5: return -b; case 6: return b * b; default: return 42;
    }
}
long t_callptr(long a, long b) {
    long (*volatile fp)(long, long) = t_global;
    return fp(a, b) + 1;
}
long t_div(long a, long b) { return b ? a / b : 0; }
long t_string(long a, long b) {
    char buf[64];
    snprintf(buf, sizeof buf, "%ld-%ld", a, b);
    return (long)strlen(buf) * 1000 + buf[0];
}
long t_float(long a, long b) {
    double x = (double)a / (double)(b | 1);
    return (long)(x * 1000.0);
}
long t_small(long a, long b) { return a - b; }
"#;

/// Functions whose stolen bytes hold exactly the hard cases.
const ASM_LIB: &str = r#"
    .intel_syntax noprefix
    .text

    .globl h_ret_addr
    .type h_ret_addr, @function
h_ret_addr:                 # returns its own return address
.Lret_addr:
    mov rax, [rsp]
    ret
    .size h_ret_addr, .-h_ret_addr

    .globl h_rip
    .type h_rip, @function
h_rip:                      # RIP-relative load in the stolen bytes: 1000 + a
    mov rax, [rip + .Lvalue]
    add rax, rdi
    ret
    .size h_rip, .-h_rip

    .globl h_endbr_rip
    .type h_endbr_rip, @function
h_endbr_rip:                # endbr64 + RIP-relative load: 1000 - a
    endbr64
    mov rax, [rip + .Lvalue]
    sub rax, rdi
    ret
    .size h_endbr_rip, .-h_endbr_rip

    .globl h_jcc
    .type h_jcc, @function
h_jcc:                      # jcc rel8 in the stolen bytes: a ? 3a : b
    test rdi, rdi
    je 1f
    lea rax, [rdi + rdi*2]
    ret
1:  mov rax, rsi
    ret
    .size h_jcc, .-h_jcc

    .globl h_call
    .type h_call, @function
h_call:                     # call in the stolen bytes: (h_call + 5) + 1
    call .Lret_addr
    add rax, 1
    ret
    .size h_call, .-h_call

    .globl h_endbr_call
    .type h_endbr_call, @function
h_endbr_call:               # endbr64; call: (h + 9) + a
    endbr64
    call .Lret_addr
    add rax, rdi
    ret
    .size h_endbr_call, .-h_endbr_call

    .globl h_call_reg
    .type h_call_reg, @function
h_call_reg:                 # call through a register (b): b(...) + 2
    push rbx
    push r12
    call rsi
    pop r12
    pop rbx
    add rax, 2
    ret
    .size h_call_reg, .-h_call_reg

    .globl h_call_rsp
    .type h_call_rsp, @function
h_call_rsp:                 # call [rsp+8] (= b) after two pushes
    push rsi
    push rsi
    call qword ptr [rsp + 8]
    add rsp, 16
    ret
    .size h_call_rsp, .-h_call_rsp

    .globl h_lea_self
    .type h_lea_self, @function
h_lea_self:                 # its own (original) address
.Lself:
    lea rax, [rip + .Lself]
    ret
    .size h_lea_self, .-h_lea_self

    .globl h_jrcxz
    .type h_jrcxz, @function
h_jrcxz:                    # a ? b : 77
    mov rcx, rdi
    jrcxz 1f
    mov rax, rsi
    ret
1:  mov rax, 77
    ret
    .size h_jrcxz, .-h_jrcxz

    .globl h_tail
    .type h_tail, @function
h_tail:                     # jmp rel32 only: 3a + b
    .byte 0xe9
    .long .Lhelper - . - 4
    .size h_tail, .-h_tail

    .globl h_jmp_short
    .type h_jmp_short, @function
h_jmp_short:                # endbr64; jmp short over a hole: a + b
    endbr64
    jmp 1f
    ud2
1:  lea rax, [rdi + rsi]
    ret
    .size h_jmp_short, .-h_jmp_short

    .globl h_flags
    .type h_flags, @function
h_flags:                    # flags and registers survive the relocated call
    cmp rdi, rsi            # sets flags, then a call in the stolen bytes
    call .Lkeep_flags
    setl al
    movzx eax, al
    ret
    .size h_flags, .-h_flags

.Lkeep_flags:
    ret

    .globl h_snap_jcc
    .type h_snap_jcc, @function
h_snap_jcc:                 # cmp; jne rel8 in the stolen bytes, then a snapshot
    cmp rdi, rsi
    jne 1f
    nop
1:  jmp .Lsnap
    .size h_snap_jcc, .-h_snap_jcc

    .globl h_snap_call
    .type h_snap_call, @function
h_snap_call:                # endbr64; call the snapshot
    endbr64
    call .Lsnap
    ret
    .size h_snap_call, .-h_snap_call

    .globl h_snap_push
    .type h_snap_push, @function
h_snap_push:                # endbr64; push rbp; mov rbp, rsp; then the snapshot
    endbr64
    push rbp
    mov rbp, rsp
    call .Lsnap
    pop rbp
    ret
    .size h_snap_push, .-h_snap_push

.Lsnap:                     # every register and the flags into .Lbuf
    mov [rip + .Lbuf + 0], rax
    mov [rip + .Lbuf + 8], rcx
    mov [rip + .Lbuf + 16], rdx
    mov [rip + .Lbuf + 24], rsi
    mov [rip + .Lbuf + 32], rdi
    mov [rip + .Lbuf + 40], r8
    mov [rip + .Lbuf + 48], r9
    mov [rip + .Lbuf + 56], r10
    mov [rip + .Lbuf + 64], r11
    mov [rip + .Lbuf + 72], r12
    mov [rip + .Lbuf + 80], r13
    mov [rip + .Lbuf + 88], r14
    mov [rip + .Lbuf + 96], r15
    mov [rip + .Lbuf + 104], rbx
    mov [rip + .Lbuf + 112], rbp
    pushfq
    pop qword ptr [rip + .Lbuf + 120]
    ret

.Lhelper:
    lea rax, [rdi + rdi*2]
    add rax, rsi
    ret

    .data
    .p2align 3
.Lvalue:
    .quad 1000
    .globl h_snap_buf
h_snap_buf:
.Lbuf:
    .zero 128
    .section .note.GNU-stack,"",@progbits
"#;

type Fn2 = extern "C" fn(i64, i64) -> i64;

/// An RWX region within reach of `near`, never unmapped (trampolines are never
/// freed, as in the agent).
struct Pages {
    base: u64,
    len: usize,
    used: usize,
}

impl Pages {
    fn near(near: u64) -> Pages {
        let len = 1 << 16;
        for k in 1..4096u64 {
            for hint in [near.wrapping_sub(k << 24), near.wrapping_add(k << 24)] {
                let hint = hint & !0xffff;
                // SAFETY: a fresh anonymous mapping at a hinted address; with
                // MAP_FIXED_NOREPLACE the kernel never replaces an existing mapping.
                let p = unsafe {
                    libc::mmap(
                        hint as *mut libc::c_void,
                        len,
                        libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    let base = p as u64;
                    if in_reach(near, base) && in_reach(near, base + len as u64) {
                        return Pages { base, len, used: 0 };
                    }
                    // SAFETY: unmapping the mapping just created, which nothing uses.
                    unsafe { libc::munmap(p, len) };
                }
            }
        }
        panic!("no RWX page within reach of {near:#x}");
    }

    /// Copies `code` in and returns its address.
    fn place(&mut self, code: &[u8]) -> u64 {
        let at = self.base + self.used as u64;
        assert!(self.used + code.len() <= self.len);
        // SAFETY: [at, at+len) lies inside our own RWX mapping, which no one else
        // reads or executes while we write it.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), at as *mut u8, code.len()) };
        self.used += code.len().next_multiple_of(64);
        at
    }

    /// The next free address (where `place` will put the next piece).
    fn next(&self) -> u64 {
        self.base + self.used as u64
    }
}

struct Lib {
    handle: *mut libc::c_void,
    funcs: Vec<Func>,
    /// runtime address = link-time address + bias
    bias: u64,
}

impl Lib {
    fn load(path: &std::path::Path) -> Lib {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: loading a library we just built; its constructors are gcc's.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen {}", path.display());
        let funcs = functions(path);
        let mut lib = Lib {
            handle,
            funcs,
            bias: 0,
        };
        let probe = lib
            .funcs
            .iter()
            .find(|f| f.name == "h_rip")
            .unwrap()
            .clone();
        lib.bias = lib.sym("h_rip").wrapping_sub(probe.address);
        lib
    }

    fn sym(&self, name: &str) -> u64 {
        let c = CString::new(name).unwrap();
        // SAFETY: dlsym on a live handle with a NUL-terminated name.
        let p = unsafe { libc::dlsym(self.handle, c.as_ptr()) };
        assert!(!p.is_null(), "dlsym {name}");
        p as u64
    }

    /// The function's bytes as mapped in memory, and its runtime address.
    fn code(&self, name: &str) -> (u64, Vec<u8>) {
        let f = self.funcs.iter().find(|f| f.name == name).unwrap();
        let addr = self.sym(name);
        assert_eq!(addr, f.address.wrapping_add(self.bias));
        // SAFETY: the function's bytes lie in the library's mapped, readable text.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, f.bytes.len()) };
        assert_eq!(bytes, &f.bytes[..]);
        (addr, bytes.to_vec())
    }
}

fn as_fn(addr: u64) -> Fn2 {
    // SAFETY: `addr` is a function of the test library, or relocated prologue code
    // that behaves like it, following the C calling convention with this signature.
    unsafe { std::mem::transmute::<usize, Fn2>(addr as usize) }
}

/// Relocates `name` into `pages` and returns (original, relocated) entry points.
fn relocated(lib: &Lib, pages: &mut Pages, name: &str) -> Result<(u64, u64), Rejection> {
    let (addr, bytes) = lib.code(name);
    let dest = pages.next();
    let out = relocate_prologue(&bytes, addr, dest)?;
    let placed = pages.place(&out);
    assert_eq!(placed, dest);
    Ok((addr, dest))
}

fn build_lib(dir: &std::path::Path, flags: &[&str], out: &str) -> Option<Lib> {
    let mut args = vec!["-shared", "-fPIC", "-fno-stack-protector"];
    args.extend_from_slice(flags);
    let path = gcc(dir, &[("lib.c", C_LIB), ("hand.s", ASM_LIB)], &args, out)?;
    Some(Lib::load(&path))
}

#[test]
fn handwritten_hard_cases_execute_through_the_relocated_prologue() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_lib(dir.path(), &["-O2"], "libhand.so") else {
        return;
    };
    let mut pages = Pages::near(lib.sym("h_rip"));
    let ret_addr = lib.sym("h_ret_addr") as i64;

    let mut check = |name: &str, args: &[(i64, i64)], expect: &dyn Fn(u64, i64, i64) -> i64| {
        let (orig, tramp) = relocated(&lib, &mut pages, name)
            .unwrap_or_else(|e| panic!("{name} not relocated: {e}"));
        for &(a, b) in args {
            let want = expect(orig, a, b);
            assert_eq!(as_fn(orig)(a, b), want, "{name}({a}, {b}) direct");
            assert_eq!(as_fn(tramp)(a, b), want, "{name}({a}, {b}) relocated");
        }
    };

    check("h_rip", &[(0, 0), (5, 0)], &|_, a, _| 1000 + a);
    check("h_endbr_rip", &[(1, 0), (7, 0)], &|_, a, _| 1000 - a);
    check("h_jcc", &[(0, 9), (5, 9)], &|_, a, b| {
        if a != 0 {
            3 * a
        } else {
            b
        }
    });
    // The callee returns straight into the original body, after the call.
    check("h_call", &[(0, 0)], &|orig, _, _| orig as i64 + 5 + 1);
    check("h_endbr_call", &[(3, 0)], &|orig, a, _| orig as i64 + 9 + a);
    check("h_call_reg", &[(0, ret_addr)], &|orig, _, _| {
        orig as i64 + 5 + 2
    });
    check("h_call_rsp", &[(0, ret_addr)], &|orig, _, _| {
        orig as i64 + 6
    });
    check("h_lea_self", &[(0, 0)], &|orig, _, _| orig as i64);
    check("h_jrcxz", &[(0, 5), (3, 5)], &|_, a, b| {
        if a != 0 {
            b
        } else {
            77
        }
    });
    check("h_tail", &[(4, 1)], &|_, a, b| 3 * a + b);
    check("h_jmp_short", &[(4, 1)], &|_, a, b| a + b);
    check("h_flags", &[(1, 2), (2, 1), (3, 3)], &|_, a, b| {
        (a < b) as i64
    });
}

#[test]
fn compiled_functions_execute_through_the_relocated_prologue() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "t_sum",
        "t_global",
        "t_rec",
        "t_switch",
        "t_callptr",
        "t_div",
        "t_string",
        "t_float",
        "t_small",
    ];
    let args = [(0i64, 0i64), (1, 2), (5, -3), (17, 4), (63, 1000), (-8, 3)];
    for (i, flags) in [
        &["-O0", "-fcf-protection=full"][..],
        &["-O0", "-fcf-protection=none"],
        &["-O2", "-fcf-protection=full"],
        &["-O2", "-fcf-protection=none"],
        &["-O1", "-fcf-protection=full", "-fno-omit-frame-pointer"],
    ]
    .iter()
    .enumerate()
    {
        let Some(lib) = build_lib(dir.path(), flags, &format!("libc{i}.so")) else {
            return;
        };
        let mut pages = Pages::near(lib.sym("t_sum"));
        let mut ran = 0;
        for name in names {
            let (orig, tramp) = match relocated(&lib, &mut pages, name) {
                Ok(p) => p,
                Err(Rejection::TooSmall { .. }) => continue,
                Err(e) => panic!("{flags:?}: {name}: {e}"),
            };
            for (a, b) in args {
                assert_eq!(
                    as_fn(tramp)(a, b),
                    as_fn(orig)(a, b),
                    "{flags:?}: {name}({a}, {b})"
                );
            }
            ran += 1;
        }
        assert!(ran >= names.len() - 1, "{flags:?}: only {ran} ran");
    }
}

/// Calls `f` with every argument and scratch register (r11 included) set to a
/// known pattern and the flags set by a `cmp`; returns what the snapshot saw.
fn snapshot(f: u64, buf: u64) -> [u64; 16] {
    // SAFETY: `f` is one of the h_snap_* functions (or its relocated prologue): it
    // follows the C calling convention, clobbers only caller-saved registers (the
    // inputs below are declared clobbered) and writes only its own buffer.
    unsafe {
        std::arch::asm!(
            "cmp r8, r9",
            "call {f}",
            f = in(reg) f,
            inout("rax") 0x0a0a_0a0a_0a0a_0a0au64 => _,
            inout("rcx") 0x0c0c_0c0c_0c0c_0c0cu64 => _,
            inout("rdx") 0x0d0d_0d0d_0d0d_0d0du64 => _,
            inout("rsi") 0x5151_5151_5151_5151u64 => _,
            inout("rdi") 0xd1d1_d1d1_d1d1_d1d1u64 => _,
            inout("r8") 0x0808_0808_0808_0808u64 => _,
            inout("r9") 0x0909_0909_0909_0909u64 => _,
            inout("r10") 0x1010_1010_1010_1010u64 => _,
            inout("r11") 0x1111_1111_1111_1111u64 => _,
            clobber_abi("C"),
        );
        std::ptr::read_volatile(buf as *const [u64; 16])
    }
}

#[test]
fn registers_and_flags_are_preserved() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_lib(dir.path(), &["-O2"], "libregs.so") else {
        return;
    };
    let mut pages = Pages::near(lib.sym("h_snap_buf"));
    let buf = lib.sym("h_snap_buf");
    for name in ["h_snap_jcc", "h_snap_call", "h_snap_push"] {
        let (orig, tramp) = relocated(&lib, &mut pages, name).unwrap();
        let direct = snapshot(orig, buf);
        let through = snapshot(tramp, buf);
        // rax, rcx, rdx, rsi, rdi, r8-r11 as set by the caller; the callee-saved
        // ones hold whatever the test function had there (and rbp, in h_snap_push,
        // the stack pointer), which may differ between the two calls.
        assert_eq!(direct[..9], through[..9], "{name}: registers");
        assert_eq!(direct[15], through[15], "{name}: flags");
        assert_eq!(direct[8], 0x1111_1111_1111_1111, "{name}: r11 as set");
    }
}

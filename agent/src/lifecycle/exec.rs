//! `execve` and friends replace the image, and atexit never runs: write the
//! snapshot first (reason `exec`). If the exec fails the image goes on and
//! its final snapshot replaces this one.
//!
//! `vfork`: the child shares our memory and our TLS until it execs or
//! exits. The wrapper marks the thread before the system call, so nothing
//! is metered in the child, and clears the mark in the parent afterwards;
//! it never returns into the parent's frame from the child (the child runs
//! on the parent's stack), so it is written the way libc writes vfork: the
//! return address is popped before the system call and pushed back after.

use crate::arch::x86_64::stubs::in_vfork_child;
use hotprobe_config::snapshot::Reason;
use libc::{c_char, c_int};

fn before_exec() {
    crate::guard::fail_open("exec snapshot", (), || {
        if !crate::state::is_active() || in_vfork_child() {
            return;
        }
        if let Err(e) = crate::export::snapshot::write_final(Reason::Exec, None) {
            crate::error!("{e}");
        }
    })
}

/// The exec failed and the image goes on.
fn after_failed_exec() {
    if crate::state::is_active() && !in_vfork_child() {
        crate::export::snapshot::reopen();
    }
}

crate::real!(EXECVE, "execve");
crate::real!(EXECV, "execv");
crate::real!(EXECVP, "execvp");
crate::real!(EXECVPE, "execvpe");
crate::real!(FEXECVE, "fexecve");
crate::real!(EXECVEAT, "execveat");

type Argv = *const *const c_char;

#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    before_exec();
    // SAFETY: the real libc function with the same signature.
    let real: extern "C" fn(*const c_char, Argv, Argv) -> c_int =
        unsafe { core::mem::transmute(EXECVE.get()) };
    let rc = real(path, argv, envp);
    after_failed_exec();
    rc
}

#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    before_exec();
    // SAFETY: as above.
    let real: extern "C" fn(*const c_char, Argv) -> c_int =
        unsafe { core::mem::transmute(EXECV.get()) };
    let rc = real(path, argv);
    after_failed_exec();
    rc
}

#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    before_exec();
    // SAFETY: as above.
    let real: extern "C" fn(*const c_char, Argv) -> c_int =
        unsafe { core::mem::transmute(EXECVP.get()) };
    let rc = real(file, argv);
    after_failed_exec();
    rc
}

#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    before_exec();
    // SAFETY: as above.
    let real: extern "C" fn(*const c_char, Argv, Argv) -> c_int =
        unsafe { core::mem::transmute(EXECVPE.get()) };
    let rc = real(file, argv, envp);
    after_failed_exec();
    rc
}

#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    before_exec();
    // SAFETY: as above.
    let real: extern "C" fn(c_int, Argv, Argv) -> c_int =
        unsafe { core::mem::transmute(FEXECVE.get()) };
    let rc = real(fd, argv, envp);
    after_failed_exec();
    rc
}

#[no_mangle]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: Argv,
    envp: Argv,
    flags: c_int,
) -> c_int {
    before_exec();
    // SAFETY: as above.
    let real: extern "C" fn(c_int, *const c_char, Argv, Argv, c_int) -> c_int =
        unsafe { core::mem::transmute(EXECVEAT.get()) };
    let rc = real(dirfd, path, argv, envp, flags);
    after_failed_exec();
    rc
}

const LIST_EXECL: u32 = 0;
const LIST_EXECLP: u32 = 1;
const LIST_EXECLE: u32 = 2;

/// The `execl*` functions are C-variadic; their naked entries below save
/// the register arguments and pass them here with the stack arguments.
unsafe extern "C" fn exec_list(
    path: *const c_char,
    regs: *const *const c_char,
    stack: *const *const c_char,
    kind: u32,
) -> c_int {
    const MAX: usize = 4096;
    let mut argv = [core::ptr::null::<c_char>(); MAX + 1];
    let arg = |i: usize| -> *const c_char {
        // SAFETY: the first five variadic arguments are in `regs`, the rest on the caller's stack.
        unsafe {
            if i < 5 {
                *regs.add(i)
            } else {
                *stack.add(i - 5)
            }
        }
    };
    let mut n = 0;
    while n < MAX {
        let a = arg(n);
        argv[n] = a;
        if a.is_null() {
            break;
        }
        n += 1;
    }
    if n == MAX {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = libc::E2BIG };
        return -1;
    }
    // SAFETY: argv is NULL-terminated; the functions are our interposers above.
    unsafe {
        match kind {
            LIST_EXECLP => execvp(path, argv.as_ptr()),
            LIST_EXECLE => execve(path, argv.as_ptr(), arg(n + 1) as Argv),
            _ => {
                extern "C" {
                    static environ: Argv;
                }
                execve(path, argv.as_ptr(), environ)
            }
        }
    }
}

macro_rules! list_exec {
    ($name:ident, $kind:expr) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name() -> c_int {
            core::arch::naked_asm!(
                "push rbp",
                "mov rbp, rsp",
                "sub rsp, 48",
                "mov [rsp], rsi",
                "mov [rsp + 8], rdx",
                "mov [rsp + 16], rcx",
                "mov [rsp + 24], r8",
                "mov [rsp + 32], r9",
                "mov rsi, rsp",
                "lea rdx, [rbp + 16]",
                "mov ecx, {kind}",
                "call {list}",
                "leave",
                "ret",
                kind = const $kind,
                list = sym exec_list,
            )
        }
    };
}

list_exec!(execl, LIST_EXECL);
list_exec!(execlp, LIST_EXECLP);
list_exec!(execle, LIST_EXECLE);

extern "C" fn set_errno(e: c_int) {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = e };
}

#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn vfork() -> libc::pid_t {
    core::arch::naked_asm!(
        "mov rax, qword ptr [rip + hotprobe_tls_vfork@GOTTPOFF]",
        "mov qword ptr fs:[rax], 1",
        "pop rdi",
        "mov eax, 58", // SYS_vfork
        "syscall",
        "push rdi",
        "test rax, rax",
        "jz 2f",
        "mov rdi, qword ptr [rip + hotprobe_tls_vfork@GOTTPOFF]",
        "mov qword ptr fs:[rdi], 0",
        "cmp rax, -4095",
        "jae 3f",
        "2:",
        "ret",
        "3:",
        "neg eax",
        "mov edi, eax",
        "sub rsp, 8",
        "call {set_errno}",
        "add rsp, 8",
        "mov rax, -1",
        "ret",
        set_errno = sym set_errno,
    )
}

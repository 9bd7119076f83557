//! The entry and exit stubs every probe goes through, and the agent's
//! thread-local words, in assembly.
//!
//! The thread-local words use the initial-exec TLS model (`@GOTTPOFF`):
//! reading one is two instructions and never calls `__tls_get_addr`, which
//! is what a preloaded library's Rust `thread_local!` would do.
//!
//! Each stub first calls a fast path that uses no vector register (see
//! engine::fast); only when that declines does it save xmm0–15 and run the
//! full path.
//!
//! Entry: a probe's trampoline pushes the probe's address and jumps to the
//! entry stub. A disabled probe (or a vfork child) goes straight on to the
//! relocated prologue. Otherwise the stub saves every register a call may
//! change — all nine scratch registers and xmm0–15, not only the argument
//! registers: with `-fipa-ra` GCC lets a caller keep values in registers
//! its callee is known not to touch — aligns the stack, and calls
//! `hotprobe_enter(probe, slot, thread)`, where `slot` is the address of the
//! return address. That returns where the call continues (the relocated
//! prologue); it may have replaced `*slot` with the exit stub.
//!
//! Exit: the function's `ret` lands in the exit stub with the stack pointer
//! one word above the slot. The stub saves the same registers (the x87
//! stack is never touched by the agent), calls `hotprobe_exit(slot, thread,
//! now)` — `now` the fast path's timestamp — for the real return address, writes it back into the slot and jumps
//! there with the stack pointer as the caller expects.
//!
//! Both stubs leave with `jmp [rsp - 8]`: the target sits in the red zone,
//! which the kernel never overwrites when it delivers a signal.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .tbss,"awT",@nobits
    .p2align 3
    .globl hotprobe_tls_thread
    .hidden hotprobe_tls_thread
hotprobe_tls_thread:
    .zero 8
    .globl hotprobe_tls_vfork
    .hidden hotprobe_tls_vfork
hotprobe_tls_vfork:
    .zero 8

    /* Every register a call may change, saved around our Rust code: the
       nine scratch GPRs always, xmm0-15 only around the full paths. */
    .macro HP_SAVE_GPRS
    mov [rsp + 0], rax
    mov [rsp + 8], rcx
    mov [rsp + 16], rdx
    mov [rsp + 24], rsi
    mov [rsp + 32], rdi
    mov [rsp + 40], r8
    mov [rsp + 48], r9
    mov [rsp + 56], r10
    mov [rsp + 64], r11
    .endm
    .macro HP_RESTORE_GPRS
    mov rax, [rsp + 0]
    mov rcx, [rsp + 8]
    mov rdx, [rsp + 16]
    mov rsi, [rsp + 24]
    mov rdi, [rsp + 32]
    mov r8, [rsp + 40]
    mov r9, [rsp + 48]
    mov r10, [rsp + 56]
    mov r11, [rsp + 64]
    .endm
    .macro HP_SAVE_XMM
    movaps [rsp + 0], xmm0
    movaps [rsp + 16], xmm1
    movaps [rsp + 32], xmm2
    movaps [rsp + 48], xmm3
    movaps [rsp + 64], xmm4
    movaps [rsp + 80], xmm5
    movaps [rsp + 96], xmm6
    movaps [rsp + 112], xmm7
    movaps [rsp + 128], xmm8
    movaps [rsp + 144], xmm9
    movaps [rsp + 160], xmm10
    movaps [rsp + 176], xmm11
    movaps [rsp + 192], xmm12
    movaps [rsp + 208], xmm13
    movaps [rsp + 224], xmm14
    movaps [rsp + 240], xmm15
    .endm
    .macro HP_RESTORE_XMM
    movaps xmm0, [rsp + 0]
    movaps xmm1, [rsp + 16]
    movaps xmm2, [rsp + 32]
    movaps xmm3, [rsp + 48]
    movaps xmm4, [rsp + 64]
    movaps xmm5, [rsp + 80]
    movaps xmm6, [rsp + 96]
    movaps xmm7, [rsp + 112]
    movaps xmm8, [rsp + 128]
    movaps xmm9, [rsp + 144]
    movaps xmm10, [rsp + 160]
    movaps xmm11, [rsp + 176]
    movaps xmm12, [rsp + 192]
    movaps xmm13, [rsp + 208]
    movaps xmm14, [rsp + 224]
    movaps xmm15, [rsp + 240]
    .endm

    .text
    .p2align 4
    .globl hotprobe_entry_stub
    .hidden hotprobe_entry_stub
    .type hotprobe_entry_stub,@function
hotprobe_entry_stub:
    /* [rsp] = probe (pushed by the trampoline), [rsp + 8] = return address. */
    push rax
    mov rax, [rsp + 8]
    cmp dword ptr [rax + {bypass}], 0
    jne 2f
    mov rax, qword ptr [rip + hotprobe_tls_vfork@GOTTPOFF]
    cmp qword ptr fs:[rax], 0
    jne 2f
    pop rax
    push rbp
    mov rbp, rsp
    and rsp, -16
    sub rsp, 80
    HP_SAVE_GPRS
    mov rdi, [rbp + 8]
    lea rsi, [rbp + 16]
    mov rdx, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rdx, qword ptr fs:[rdx]
    call {enter_fast}
    test rax, rax
    jnz 3f
    /* The full path may use vector registers: save them all. */
    sub rsp, 256
    HP_SAVE_XMM
    mov rdi, [rbp + 8]
    lea rsi, [rbp + 16]
    mov rdx, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rdx, qword ptr fs:[rdx]
    call {enter}
    HP_RESTORE_XMM
    add rsp, 256
3:
    mov [rbp + 8], rax
    HP_RESTORE_GPRS
    mov rsp, rbp
    pop rbp
    /* [rsp] = where the call continues; it stays readable in the red zone. */
    lea rsp, [rsp + 8]
    jmp qword ptr [rsp - 8]
2:
    /* Not metered (disabled, or in a vfork child): straight to the body. */
    mov rax, [rsp + 8]
    mov rax, [rax + {resume}]
    mov [rsp + 8], rax
    pop rax
    lea rsp, [rsp + 8]
    jmp qword ptr [rsp - 8]
    .size hotprobe_entry_stub, .-hotprobe_entry_stub

    /* One byte before the exit stub, so that an unwinder looking up
       (return address - 1) lands inside a known symbol. */
    .p2align 4
    nop
    .globl hotprobe_exit_stub
    .hidden hotprobe_exit_stub
    .type hotprobe_exit_stub,@function
hotprobe_exit_stub:
    sub rsp, 8
    push rbp
    mov rbp, rsp
    and rsp, -16
    sub rsp, 80
    HP_SAVE_GPRS
    lea rdi, [rbp + 8]
    mov rsi, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rsi, qword ptr fs:[rsi]
    call {exit_fast}
    test rax, rax
    jnz 3f
    /* rdx = the fast path's timestamp: the third argument of the full path
       (rdx itself is restored from the save area below). */
    sub rsp, 256
    HP_SAVE_XMM
    lea rdi, [rbp + 8]
    mov rsi, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rsi, qword ptr fs:[rsi]
    call {exit}
    HP_RESTORE_XMM
    add rsp, 256
3:
    mov [rbp + 8], rax
    HP_RESTORE_GPRS
    mov rsp, rbp
    pop rbp
    lea rsp, [rsp + 8]
    /* The real return address is now in the slot just below the stack
       pointer, inside the red zone, which signal delivery never touches. An
       indirect jump is predicted where a `ret` would miss: the return stack
       buffer is one entry off after the hijacked return. */
    jmp qword ptr [rsp - 8]
    .size hotprobe_exit_stub, .-hotprobe_exit_stub

    .p2align 4
    .globl hotprobe_tls_thread_get
    .hidden hotprobe_tls_thread_get
hotprobe_tls_thread_get:
    mov rax, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rax, qword ptr fs:[rax]
    ret

    .globl hotprobe_tls_thread_set
    .hidden hotprobe_tls_thread_set
hotprobe_tls_thread_set:
    mov rax, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov qword ptr fs:[rax], rdi
    ret

    .globl hotprobe_tls_vfork_get
    .hidden hotprobe_tls_vfork_get
hotprobe_tls_vfork_get:
    mov rax, qword ptr [rip + hotprobe_tls_vfork@GOTTPOFF]
    mov rax, qword ptr fs:[rax]
    ret
"#,
    enter = sym crate::engine::enter_exit::hotprobe_enter,
    exit = sym crate::engine::enter_exit::hotprobe_exit,
    enter_fast = sym crate::engine::fast::hotprobe_enter_fast,
    exit_fast = sym crate::engine::fast::hotprobe_exit_fast,
    bypass = const crate::engine::probe::BYPASS_OFFSET,
    resume = const crate::engine::probe::RESUME_OFFSET,
);

#[allow(improper_ctypes)] // only pointers cross; the assembly never looks inside
extern "C" {
    fn hotprobe_entry_stub();
    fn hotprobe_exit_stub();
    fn hotprobe_tls_thread_get() -> *mut crate::engine::thread::ThreadState;
    fn hotprobe_tls_thread_set(thread: *mut crate::engine::thread::ThreadState);
    fn hotprobe_tls_vfork_get() -> usize;
}

pub fn entry_stub_address() -> usize {
    hotprobe_entry_stub as *const () as usize
}

pub fn exit_stub_address() -> usize {
    hotprobe_exit_stub as *const () as usize
}

/// This thread's state pointer (null before its first probed call).
pub fn current_thread() -> *mut crate::engine::thread::ThreadState {
    // SAFETY: reads this thread's TLS word; no arguments, no side effects.
    unsafe { hotprobe_tls_thread_get() }
}

pub fn set_current_thread(thread: *mut crate::engine::thread::ThreadState) {
    // SAFETY: writes this thread's TLS word.
    unsafe { hotprobe_tls_thread_set(thread) }
}

/// Whether this thread is the child of a `vfork` that has not exec'd yet.
pub fn in_vfork_child() -> bool {
    // SAFETY: reads this thread's TLS word.
    unsafe { hotprobe_tls_vfork_get() != 0 }
}

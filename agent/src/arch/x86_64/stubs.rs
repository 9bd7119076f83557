//! The entry and exit stubs every probe goes through, and the agent's
//! thread-local words, in assembly.
//!
//! The thread-local words use the initial-exec TLS model (`@GOTTPOFF`):
//! reading one is two instructions and never calls `__tls_get_addr`, which
//! is what a preloaded library's Rust `thread_local!` would do.
//!
//! Entry: a probe's trampoline does `mov r11, <probe>; jmp [entry stub]`.
//! The stub saves every argument register (rdi rsi rdx rcx r8 r9, rax for
//! varargs, r10 static chain, xmm0–7), aligns the stack, and calls
//! `hotprobe_enter(probe, slot, thread)` where `slot` is the address of the
//! return address. That returns the address to continue at (the probe's
//! relocated prologue); it may have replaced `*slot` with the exit stub.
//!
//! Exit: the function's `ret` lands in the exit stub with the stack pointer
//! one word above the slot. The stub saves rax, rdx, xmm0, xmm1 (return
//! values; the x87 stack is never touched by the agent), calls
//! `hotprobe_exit(slot, thread)` for the real return address, writes it back
//! into the slot and jumps there with the stack pointer as the caller expects.

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

    .text
    .p2align 4
    .globl hotprobe_entry_stub
    .hidden hotprobe_entry_stub
    .type hotprobe_entry_stub,@function
hotprobe_entry_stub:
    push rbp
    mov rbp, rsp
    and rsp, -16
    sub rsp, 192
    mov [rsp + 0], rdi
    mov [rsp + 8], rsi
    mov [rsp + 16], rdx
    mov [rsp + 24], rcx
    mov [rsp + 32], r8
    mov [rsp + 40], r9
    mov [rsp + 48], rax
    mov [rsp + 56], r10
    movaps [rsp + 64], xmm0
    movaps [rsp + 80], xmm1
    movaps [rsp + 96], xmm2
    movaps [rsp + 112], xmm3
    movaps [rsp + 128], xmm4
    movaps [rsp + 144], xmm5
    movaps [rsp + 160], xmm6
    movaps [rsp + 176], xmm7
    mov rdi, r11
    lea rsi, [rbp + 8]
    mov rdx, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rdx, qword ptr fs:[rdx]
    call {enter}
    mov r11, rax
    movaps xmm7, [rsp + 176]
    movaps xmm6, [rsp + 160]
    movaps xmm5, [rsp + 144]
    movaps xmm4, [rsp + 128]
    movaps xmm3, [rsp + 112]
    movaps xmm2, [rsp + 96]
    movaps xmm1, [rsp + 80]
    movaps xmm0, [rsp + 64]
    mov r10, [rsp + 56]
    mov rax, [rsp + 48]
    mov r9, [rsp + 40]
    mov r8, [rsp + 32]
    mov rcx, [rsp + 24]
    mov rdx, [rsp + 16]
    mov rsi, [rsp + 8]
    mov rdi, [rsp + 0]
    mov rsp, rbp
    pop rbp
    jmp r11
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
    sub rsp, 48
    mov [rsp + 0], rax
    mov [rsp + 8], rdx
    movaps [rsp + 16], xmm0
    movaps [rsp + 32], xmm1
    lea rdi, [rbp + 8]
    mov rsi, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rsi, qword ptr fs:[rsi]
    call {exit}
    mov [rbp + 8], rax
    movaps xmm1, [rsp + 32]
    movaps xmm0, [rsp + 16]
    mov rdx, [rsp + 8]
    mov rax, [rsp + 0]
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

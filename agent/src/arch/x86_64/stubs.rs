//! The entry and exit stubs every probe goes through, and the agent's
//! thread-local words, in assembly.
//!
//! The thread-local words use the initial-exec TLS model (`@GOTTPOFF`):
//! reading one is two instructions and never calls `__tls_get_addr`, which
//! is what a preloaded library's Rust `thread_local!` would do.
//!
//! Each stub runs the steady state in its own assembly, saving only the
//! scratch registers: a committed caller frame (or none), this thread's
//! hint naming the call's context node, the statistics block's histogram
//! window holding the call. On exit it also scores the call and marks the
//! caller's frame PROVISIONAL when the probe is still being judged; an
//! outermost call of an unsettled probe whose own frame is PROVISIONAL
//! (while the probe's `held` is under HELD_CAP) goes to the full path,
//! which leaves it unscored (score_card::held). Anything else is declined
//! *before anything changes*; the entry then tries its Rust second tier (engine::fast, no
//! vector register either), and only after that, like the exit, saves
//! xmm0–15 and runs the full path in engine::enter_exit. The assembly
//! keeps the same protocol as the Rust paths (the pending bit of the
//! shadow stack's `top`, one-instruction counter updates), so signal
//! handlers may interrupt it anywhere. Offsets come from `layout`.
//!
//! Entry: a probe's trampoline pushes the probe's address and *calls* the
//! entry stub (see trampoline.rs). A disabled probe (or a vfork child) goes
//! straight on to the relocated prologue. Otherwise the stub preserves
//! every register a call may change — all nine scratch registers (and
//! xmm0–15 around the full path), not only the argument registers: with
//! `-fipa-ra` GCC lets a caller keep values in registers its callee is
//! known not to touch. The start timestamp is read first, so its latency
//! overlaps the bookkeeping (the calibration counts that as part of the
//! probe's cost inside the window). A hooked call's frame keeps the
//! trampoline's landing as its `hook`; the stub returns into the
//! trampoline, whose dispatch calls the body, so the slot then holds the
//! landing. Every branch that depends on the probe is thus made from the
//! probe's own code and predicted: one shared indirect branch choosing
//! among probes cost ~20 ns a call when 16 probed functions were called in
//! random order (`bench/multi_call.c`, BENCHMARKS.md).
//!
//! Exit: the function's `ret` lands in its trampoline, which jumps to the
//! exit stub with the stack pointer one word above the slot. The stub reads
//! the clock, saves the same registers (the x87 stack is never touched by
//! the agent), meters the call, writes the real return address back into
//! the slot (after popping the frame) and returns through it. The full
//! path, `hotprobe_exit(slot, thread, now)`, gets the stub's timestamp, so
//! a call lands in the same histogram bucket either way.
//!
//! A call that is not hooked returns into the dispatch too, with the probe
//! word zeroed: the dispatch then goes straight to the relocated prologue
//! with the slot untouched.

use super::layout as L;
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
    /* The current state's `shadow`, kept equal to it by set_shadow. */
    .globl hotprobe_tls_shadow
    .hidden hotprobe_tls_shadow
hotprobe_tls_shadow:
    .zero 8

    /* The scratch registers besides rax (saved first, on its own), in the
       order the steady-state paths' stack offsets assume. */
    .macro HP_PUSH_SCRATCH
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    .endm
    .macro HP_POP_SCRATCH
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    .endm
    /* The vector registers, saved around the full paths. */
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
    /* The entry stub's slower paths. */
    .p2align 4
    .type hotprobe_entry_slow,@function
hotprobe_entry_slow:
24:
    /* No TSC: the same, with no start time (the Rust paths read the clock). */
    push 0
5:
    /* Declined before changing anything: the Rust paths take the call,
       with the registers still saved by the steady state's pushes:
       [rbp + 8] = the start time, [rbp + 16] = r11 ... [rbp + 80] = rax,
       [rbp + 88] = the trampoline's dispatch, [rbp + 96] = probe,
       [rbp + 104] = the slot. */
    push rbp
    mov rbp, rsp
    and rsp, -16
    mov rdi, [rbp + 96]
    lea rsi, [rbp + 104]
    mov rdx, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rdx, qword ptr fs:[rdx]
    mov rcx, [rbp + 8]
    mov r8, [rbp + 88]
    add r8, {landing_from_dispatch}
    call {enter_fast}
    test rax, rax
    jnz 3f
    /* The full path may use vector registers: save them all. */
    sub rsp, 256
    HP_SAVE_XMM
    mov rdi, [rbp + 96]
    lea rsi, [rbp + 104]
    mov rdx, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rdx, qword ptr fs:[rdx]
    mov rcx, [rbp + 88]
    add rcx, {landing_from_dispatch}
    call {enter}
    HP_RESTORE_XMM
3:
    /* rax = 1: hooked, the trampoline's dispatch calls the body; else the
       call goes on unhooked: the probe word becomes 0, which sends the
       dispatch the plain way. */
    cmp rax, 1
    je 26f
    mov qword ptr [rbp + 96], 0
26:
    mov rsp, rbp
    pop rbp
    lea rsp, [rsp + 8]
    HP_POP_SCRATCH
    pop rax
    ret
25:
    /* Not metered (disabled, or in a vfork child): the dispatch's plain
       way. [rsp] = rax, [rsp + 16] = the probe word. */
    mov qword ptr [rsp + 16], 0
    pop rax
    ret
    .size hotprobe_entry_slow, .-hotprobe_entry_slow

    .p2align 4
    .globl hotprobe_entry_stub
    .hidden hotprobe_entry_stub
    .type hotprobe_entry_stub,@function
hotprobe_entry_stub:
    /* Called by a probe's trampoline: [rsp] = the trampoline's dispatch,
       [rsp + 8] = probe, [rsp + 16] = the return-address slot. */
    push rax
    mov rax, [rsp + 16]
    cmp dword ptr [rax + {bypass}], 0
    jne 25b
    mov rax, qword ptr [rip + hotprobe_tls_vfork@GOTTPOFF]
    cmp qword ptr fs:[rax], 0
    jne 25b

    /* The steady state, in assembly: a committed caller frame (or none),
       and this thread's hint naming the call's context node. */
    HP_PUSH_SCRATCH
    cmp byte ptr [rip + {use_tsc}], 0
    je 24b
    rdtsc
    shl rdx, 32
    or rax, rdx
    push rax
    /* [rsp] = the call's start, [rsp + 72] = rax, [rsp + 80] = dispatch,
       [rsp + 88] = probe, [rsp + 96] = the slot. */
    mov rsi, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rsi, qword ptr fs:[rsi]
    cmp rsi, {ended}
    jbe 5b
    cmp byte ptr [rsi + {t_count_only}], 0
    jne 5b
    mov r11, qword ptr [rip + hotprobe_tls_shadow@GOTTPOFF]
    mov r11, qword ptr fs:[r11]
    mov rcx, [r11 + {sh_top}]
    test cl, 1
    jnz 5b
    cmp rcx, {top_limit}
    jae 5b
    /* rdx = the new frame: frames + depth * 96 = frames + top * 48. */
    lea rdx, [rcx + rcx * 2]
    shl rdx, 4
    add rdx, [r11 + {sh_frames}]
    mov eax, {root}
    test rcx, rcx
    jz 6f
    /* A caller frame at or below this slot may be dead: the Rust paths
       decide. One at this very slot still holding its hook is the caller
       of a tail call. */
    lea r8, [rsp + 96]
    mov r9, [rdx - {frame_size} + {f_slot}]
    cmp r9, r8
    jb 5b
    jne 7f
    mov r9, [rdx - {frame_size} + {f_hook}]
    cmp [r8], r9
    jne 5b
7:
    mov eax, dword ptr [rdx - {frame_size} + {f_ctx}]
6:
    /* eax = the parent context; r9 = the hinted node, checked by its key. */
    mov rdi, [rsp + 88]
    mov r10d, dword ptr [rdi + {p_id}]
    imul r8d, eax, {hint_mul}
    xor r8d, r10d
    and r8d, {hint_mask}
    mov r9, qword ptr [rsi + r8 * 8 + {t_hints}]
    test r9, r9
    jz 5b
    shl r10, 32
    or rax, r10
    cmp [r9 + {n_key}], rax
    jne 5b
    mov r8d, dword ptr [r9 + {n_index}]
    mov r10, [r9 + {n_stats}]
    /* Committed. The frame stays pending until its start is written. */
    lea rax, [rcx + 3]
    mov [r11 + {sh_top}], rax
    lea rax, [rsp + 96]
    mov rsi, [rax]
    mov [rdx + {f_slot}], rax
    mov [rdx + {f_ret}], rsi
    mov [rdx + {f_probe}], rdi
    mov [rdx + {f_stats}], r10
    mov [rdx + {f_node}], r9
    mov qword ptr [rdx + {f_child_ticks}], 0
    mov [rdx + {f_prev_top}], rcx
    mov qword ptr [rdx + {f_desc}], 0
    /* ctx and child_calls = 0 in one store (r8 is zero-extended). */
    mov qword ptr [rdx + {f_ctx}], r8
    mov dword ptr [rdx + {f_flags}], {hooked}
    add qword ptr [r10 + {s_count}], 1
    add dword ptr [r10 + {s_active}], 1
    add qword ptr [r9 + {n_count}], 1
    /* The hook: the trampoline's landing, which its dispatch is about to
       write into the slot as the body's return address (written here too,
       so a hooked frame's slot always holds its hook). */
    mov rsi, [rsp + 80]
    add rsi, {landing_from_dispatch}
    mov [rdx + {f_hook}], rsi
    mov [rax], rsi
    pop rax
    mov [rdx + {f_start}], rax
    add rcx, 2
    mov [r11 + {sh_top}], rcx
    HP_POP_SCRATCH
    pop rax
    /* Back into the trampoline, predicted (it called us): its dispatch
       calls the body, whose return lands in the trampoline and goes on to
       the exit stub, so both returns are predicted as well. */
    ret
    .size hotprobe_entry_stub, .-hotprobe_entry_stub

    .p2align 4
    .globl hotprobe_exit_stub
    .hidden hotprobe_exit_stub
    .type hotprobe_exit_stub,@function
hotprobe_exit_stub:
    sub rsp, 8
    push rax
    HP_PUSH_SCRATCH
    cmp byte ptr [rip + {use_tsc}], 0
    je 8f
    rdtsc
    shl rdx, 32
    or rax, rdx
    push rax
    /* [rsp] = now, [rsp + 8] = r11 ... [rsp + 72] = rax, [rsp + 80] = the slot. */
    mov rsi, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rsi, qword ptr fs:[rsi]
    cmp rsi, {ended}
    jbe 5f
    mov r11, qword ptr [rip + hotprobe_tls_shadow@GOTTPOFF]
    mov r11, qword ptr fs:[r11]
    mov rcx, [r11 + {sh_top}]
    test cl, 1
    jnz 5f
    test rcx, rcx
    jz 5f
    /* rdx = the top frame; it must be this call's and not folded. */
    lea rdx, [rcx + rcx * 2]
    shl rdx, 4
    add rdx, [r11 + {sh_frames}]
    sub rdx, {frame_size}
    lea rdi, [rsp + 80]
    cmp [rdx + {f_slot}], rdi
    jne 5f
    test dword ptr [rdx + {f_flags}], {folded}
    jnz 5f
    mov rdi, [rdx + {f_stats}]
    /* r8 = window = now - start (saturating). */
    mov r8, rax
    sub r8, [rdx + {f_start}]
    mov ecx, 0
    cmovb r8, rcx
    mov rsi, [rdx + {f_node}]
    /* Overhead compensation (compensate::adjust), saturating at zero:
       r10 = inclusive = window - (inner + desc * total),
       r9 = inherent = window - (inner + child_ticks + child_calls * (total - inner)). */
    mov r9, [rdx + {f_desc}]
    imul r9, qword ptr [rip + {total}]
    add r9, qword ptr [rip + {inner}]
    mov r10, r8
    sub r10, r9
    mov ecx, 0
    cmovb r10, rcx
    mov r9, qword ptr [rip + {total}]
    sub r9, qword ptr [rip + {inner}]
    mov eax, dword ptr [rdx + {f_child_calls}]
    imul r9, rax
    add r9, [rdx + {f_child_ticks}]
    add r9, qword ptr [rip + {inner}]
    mov rax, r8
    sub rax, r9
    cmovb rax, rcx
    mov r9, rax
    /* rax = histogram::bucket(inclusive) - hist_base (wrapping). */
    mov rax, r10
    cmp r10, {sub}
    jb 7f
    bsr rcx, r10
    sub ecx, {sub_bits}
    shr rax, cl
    and eax, {sub} - 1
    shl ecx, {sub_bits}
    lea eax, [rax + rcx + {sub}]
7:
    movzx ecx, word ptr [rdi + {s_hist_base}]
    sub rax, rcx
    /* rcx = 0: nested; 1: outermost; 2: outermost and scored; plus 4
       while the score card is still judging this probe (score under
       `lower`): the caller's frame is then marked PROVISIONAL and its
       call held (score_card::held). An outermost call outside the window,
       on a full byte or closing a score batch, and a held call, is left
       to the full path. */
    mov rcx, [rdx + {f_probe}]
    cmp byte ptr [rcx + {p_settled}], 0
    jne 21f
    cmp dword ptr [rdi + {s_active}], 1
    jne 20f
    test dword ptr [rdx + {f_flags}], {provisional}
    jz 20f
    cmp dword ptr [rcx + {p_held}], {held_cap}
    jb 5f
20:
    mov rcx, [rcx + {p_score}]
    cmp rcx, qword ptr [rip + {lower}]
    mov ecx, 4
    jl 22f
    xor ecx, ecx
22:
    cmp dword ptr [rdi + {s_active}], 1
    jne 6f
    cmp rax, {local_buckets}
    jae 5f
    cmp byte ptr [rdi + rax + {s_hist}], 255
    je 5f
    cmp byte ptr [rdi + {s_score_calls}], {batch} - 1
    jae 5f
    or ecx, 2
    jmp 6f
21:
    xor ecx, ecx
    cmp dword ptr [rdi + {s_active}], 1
    jne 6f
    cmp rax, {local_buckets}
    jae 5f
    cmp byte ptr [rdi + rax + {s_hist}], 255
    je 5f
    mov ecx, 1
6:
    /* [rsp] = the mode in the low bits, this frame's probe above them
       (probes are 8-aligned). */
    or rcx, [rdx + {f_probe}]
    /* Committed: what the frame still holds is read before it is popped
       (a signal handler may reuse it at once), and the real return address
       goes into the slot only after: a handler's unwinder must never find
       a hooked frame whose slot has lost the exit stub. */
    mov [rsp], rcx
    add [rsi + {n_inclusive}], r10
    add [rsi + {n_inherent}], r9
    mov rsi, [rdx + {f_ret}]
    mov rcx, [rdx + {f_desc}]
    mov rdx, [rdx + {f_prev_top}]
    mov [r11 + {sh_top}], rdx
    mov [rsp + 80], rsi
    add [rdi + {s_inherent}], r9
    /* The caller's frame, if committed, gains a direct callee. */
    test dl, 1
    jnz 4f
    test rdx, rdx
    jz 4f
    lea rsi, [rdx + rdx * 2]
    shl rsi, 4
    add rsi, [r11 + {sh_frames}]
    add [rsi - {frame_size} + {f_child_ticks}], r8
    add dword ptr [rsi - {frame_size} + {f_child_calls}], 1
    add rcx, 1
    add [rsi - {frame_size} + {f_desc}], rcx
    /* A callee still under judgement holds its caller's score, unless the
       caller is the same probe (recursion). */
    mov rdx, [rsp]
    test edx, 4
    jz 4f
    and rdx, -8
    cmp rdx, [rsi - {frame_size} + {f_probe}]
    je 4f
    or dword ptr [rsi - {frame_size} + {f_flags}], {provisional}
4:
    mov rdx, [rsp]
    test edx, 3
    jz 23f
    add [rdi + {s_inclusive}], r10
    add byte ptr [rdi + rax + {s_hist}], 1
    cmp r10, [rdi + {s_max}]
    jbe 9f
    mov [rdi + {s_max}], r10
9:
    test edx, 2
    jz 23f
    /* score_card::delta */
    mov rdx, qword ptr [rip + {credit}]
    mov rcx, qword ptr [rip + {debit}]
    neg rcx
    mov rax, rcx
    cmp r10, qword ptr [rip + {inclusive_ticks}]
    cmovae rax, rdx
    cmp r9, qword ptr [rip + {inherent_ticks}]
    cmovae rcx, rdx
    add rax, rcx
    add [rdi + {s_score_pending}], rax
    add byte ptr [rdi + {s_score_calls}], 1
23:
    /* Only now does the activation end: until here a handler's call of
       this probe is nested and leaves the histogram byte checked above
       alone (it cannot wrap it). */
    sub dword ptr [rdi + {s_active}], 1
3:
    add rsp, 8
    HP_POP_SCRATCH
    pop rax
    /* [rsp] = the slot, now holding the real return address. */
    ret
8:
    /* No TSC: the full path reads the clock itself (now = 0). */
    push 0
5:
    /* The full path, with the fast path's timestamp (rdx, the third
       argument) so the call lands in the same bucket either way. It may use
       vector registers: save them all. */
    mov rdx, [rsp]
    push rbp
    mov rbp, rsp
    and rsp, -16
    sub rsp, 256
    HP_SAVE_XMM
    lea rdi, [rbp + 88]
    mov rsi, qword ptr [rip + hotprobe_tls_thread@GOTTPOFF]
    mov rsi, qword ptr fs:[rsi]
    call {exit}
    HP_RESTORE_XMM
    mov rsp, rbp
    pop rbp
    mov [rsp + 80], rax
    jmp 3b
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

    .globl hotprobe_tls_shadow_set
    .hidden hotprobe_tls_shadow_set
hotprobe_tls_shadow_set:
    mov rax, qword ptr [rip + hotprobe_tls_shadow@GOTTPOFF]
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
    use_tsc = sym crate::meter::clock::USE_TSC,
    inner = sym crate::meter::compensate::INNER,
    total = sym crate::meter::compensate::TOTAL,
    bypass = const crate::engine::probe::BYPASS_OFFSET,
    ended = const crate::engine::thread::ENDED,
    root = const crate::meter::contexts::ROOT,
    hooked = const crate::engine::shadow::HOOKED,
    folded = const crate::engine::shadow::FOLDED,
    provisional = const crate::engine::shadow::PROVISIONAL,
    held_cap = const crate::adaptive::score_card::HELD_CAP,
    batch = const crate::adaptive::score_card::BATCH,
    credit = sym crate::adaptive::score_card::CREDIT,
    debit = sym crate::adaptive::score_card::DEBIT,
    lower = sym crate::adaptive::score_card::LOWER,
    inclusive_ticks = sym crate::adaptive::score_card::INCLUSIVE_TICKS,
    inherent_ticks = sym crate::adaptive::score_card::INHERENT_TICKS,
    s_score_calls = const L::S_SCORE_CALLS,
    s_score_pending = const L::S_SCORE_PENDING,
    p_score = const L::P_SCORE,
    p_held = const L::P_HELD,
    sub = const crate::meter::histogram::SUB,
    sub_bits = const crate::meter::histogram::SUB_BITS,
    local_buckets = const crate::meter::histogram::LOCAL_BUCKETS,
    t_count_only = const L::T_COUNT_ONLY,
    t_hints = const L::T_HINTS,
    hint_mask = const L::HINT_MASK,
    hint_mul = const L::HINT_MUL_I32,
    sh_top = const L::SH_TOP,
    sh_frames = const L::SH_FRAMES,
    top_limit = const L::TOP_LIMIT,
    frame_size = const L::FRAME_SIZE,
    f_slot = const L::F_SLOT,
    f_ret = const L::F_RET,
    f_probe = const L::F_PROBE,
    f_stats = const L::F_STATS,
    f_node = const L::F_NODE,
    f_hook = const L::F_HOOK,
    landing_from_dispatch = const crate::arch::x86_64::trampoline::LANDING_FROM_DISPATCH,
    f_start = const L::F_START,
    f_child_ticks = const L::F_CHILD_TICKS,
    f_prev_top = const L::F_PREV_TOP,
    f_desc = const L::F_DESC,
    f_ctx = const L::F_CTX,
    f_child_calls = const L::F_CHILD_CALLS,
    f_flags = const L::F_FLAGS,
    n_key = const L::N_KEY,
    n_count = const L::N_COUNT,
    n_inclusive = const L::N_INCLUSIVE,
    n_inherent = const L::N_INHERENT,
    n_stats = const L::N_STATS,
    n_index = const L::N_INDEX,
    s_active = const L::S_ACTIVE,
    s_hist_base = const L::S_HIST_BASE,
    s_count = const L::S_COUNT,
    s_inclusive = const L::S_INCLUSIVE,
    s_inherent = const L::S_INHERENT,
    s_max = const L::S_MAX,
    s_hist = const L::S_HIST,
    p_id = const L::P_ID,
    p_settled = const L::P_SETTLED,
);

#[allow(improper_ctypes)] // only pointers cross; the assembly never looks inside
extern "C" {
    fn hotprobe_entry_stub();
    fn hotprobe_exit_stub();
    fn hotprobe_tls_thread_get() -> *mut crate::engine::thread::ThreadState;
    fn hotprobe_tls_thread_set(thread: *mut crate::engine::thread::ThreadState);
    fn hotprobe_tls_vfork_get() -> usize;
    fn hotprobe_tls_shadow_set(shadow: *mut crate::engine::shadow::Shadow);
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

/// Makes `thread` (a state, or one of the markers up to ENDED) this
/// thread's; a state's current shadow becomes the stubs' too.
pub fn set_current_thread(thread: *mut crate::engine::thread::ThreadState) {
    if thread as usize > crate::engine::thread::ENDED {
        // SAFETY: a live state; its shadow pointer is always valid.
        set_current_shadow(unsafe { (*thread).shadow });
    }
    // SAFETY: writes this thread's TLS word.
    unsafe { hotprobe_tls_thread_set(thread) }
}

/// The shadow stack the stubs use on this thread: always the current
/// state's `shadow` (the stubs read it from TLS to save a dependent load).
pub fn set_current_shadow(shadow: *mut crate::engine::shadow::Shadow) {
    // SAFETY: writes this thread's TLS word.
    unsafe { hotprobe_tls_shadow_set(shadow) }
}

/// Whether this thread is the child of a `vfork` that has not exec'd yet.
pub fn in_vfork_child() -> bool {
    // SAFETY: reads this thread's TLS word.
    unsafe { hotprobe_tls_vfork_get() != 0 }
}

//! Measures what a probed call costs, at start, on functions of the agent's
//! own (so the program's code is not involved): a 4-instruction leaf probed
//! with the real trampoline and stubs, and an identical unprobed twin,
//! called in a loop through the same indirect call. The difference per call
//! is the probe's total cost; the leaf's measured window minus its body is
//! the part inside the window. Minimums over several rounds resist noise.

use crate::engine::probe::{Meta, Probe};
use crate::meter::{clock, compensate};
use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .p2align 4
    .globl hotprobe_calibration_leaf
    .hidden hotprobe_calibration_leaf
hotprobe_calibration_leaf:
    push rbp
    mov rbp, rsp
    pop rbp
    ret
    .p2align 4, 0x90
    .globl hotprobe_calibration_twin
    .hidden hotprobe_calibration_twin
hotprobe_calibration_twin:
    push rbp
    mov rbp, rsp
    pop rbp
    ret
    .p2align 4, 0x90
    .globl hotprobe_calibration_loop
    .hidden hotprobe_calibration_loop
hotprobe_calibration_loop:
    push rbx
    push r12
    push r13
    mov rbx, rdi
    mov r12, rsi
2:
    test r12, r12
    jz 3f
    call rbx
    dec r12
    jmp 2b
3:
    pop r13
    pop r12
    pop rbx
    ret
"#
);

extern "C" {
    fn hotprobe_calibration_leaf();
    fn hotprobe_calibration_twin();
    fn hotprobe_calibration_loop(f: unsafe extern "C" fn(), n: u64);
}

/// The probe id calibration uses; never part of the registry or a snapshot.
pub const CALIBRATION_ID: u32 = u32::MAX - 1;
const LEAF_LEN: usize = 16;
const CALLS: u64 = 20_000;
const ROUNDS: usize = 7;

fn per_call(f: unsafe extern "C" fn()) -> u64 {
    let t0 = clock::now();
    // SAFETY: the loop calls a function of ours that takes nothing and returns nothing.
    unsafe { hotprobe_calibration_loop(f, CALLS) };
    clock::now().saturating_sub(t0) / CALLS
}

/// Calibrates on a short-lived thread of its own (so its counts never mix
/// with the program's) and sets the compensation. Returns (inner, total) ns.
pub fn run() -> Option<(f64, f64)> {
    std::thread::Builder::new().name("hotprobe-cal".into()).spawn(measure).ok()?.join().ok()?
}

fn measure() -> Option<(f64, f64)> {
    let leaf = hotprobe_calibration_leaf as *const () as usize;
    let meta = Meta {
        name: "(calibration)".into(),
        symbol: "hotprobe_calibration_leaf".into(),
        module: String::new(),
        offset: 0,
        size: LEAF_LEN as u64,
        address: leaf,
        link_address: 0,
    };
    let probe: &'static Probe = Box::leak(Box::new(Probe::new(CALIBRATION_ID, meta, i64::MAX / 2)));
    probe.settled.store(true, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: the leaf and its padding are LEAF_LEN bytes of our own code.
    let code: &'static [u8] = unsafe { std::slice::from_raw_parts(leaf as *const u8, LEAF_LEN) };
    let obj = crate::install::Loaded { path: Default::default(), bias: 0, is_main: false, code: vec![(leaf, leaf + LEAF_LEN)] };
    if crate::install::install(&[(probe, code)], &obj) != 1 {
        return None;
    }
    let thread = crate::engine::thread::current_or_create(crate::arch::x86_64::stubs::current_thread());
    if thread.is_null() {
        return None;
    }
    let (mut bare, mut probed, mut window) = (u64::MAX, u64::MAX, u64::MAX);
    let mut before = (0u64, 0u64);
    for _ in 0..ROUNDS {
        bare = bare.min(per_call(hotprobe_calibration_twin));
        probed = probed.min(per_call(hotprobe_calibration_leaf));
        // SAFETY: this thread's own state; the calibration probe's block exists after the calls.
        let s = unsafe { &*(*thread).stats_for(probe) };
        let (count, incl) = (s.count - before.0, s.inclusive - before.1);
        before = (s.count, s.inclusive);
        if count > 0 {
            window = window.min(incl / count);
        }
    }
    let total = probed.saturating_sub(bare);
    // The leaf's body is a few cycles; the call and loop are in `bare` too, so subtract
    // only a third of it as the body's share of the window.
    let inner = window.saturating_sub(bare / 3).min(total);
    compensate::set(inner, total);
    let per_ns = clock::ticks_per_ns();
    Some((inner as f64 / per_ns, total as f64 / per_ns))
}

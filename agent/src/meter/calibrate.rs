//! Measures what a probed call costs, at start. The measurement runs on a
//! tiny leaf function and the loops that call it, copied into an executable
//! page next to the main program (where the program's own probed functions
//! live — on this kind of machine the same probe costs very differently
//! depending on where the code sits, and inside the agent's own text it
//! costs far more than in a program). The leaf is probed with the real
//! trampoline and stubs; an identical twin stays bare.
//!
//! The difference per call is the probe's total cost; the mean of the
//! leaf's measured windows (the slowest 1% left out), less its tiny body,
//! is the part inside the window. A mean, not the median: some TSCs move
//! in steps of ~25 ticks (10 ns here), and the median of a window of a few
//! steps jumps by a whole step from run to run. Noise on a shared machine
//! only ever adds time, so the least disturbed of several interleaved
//! rounds is the best estimate.
//!
//! The leaf is called from a loop that is probed as well, so every timed
//! call is nested in a probed frame, as most calls in a program are: a
//! nested call takes the longer paths (the caller's frame checked on
//! entry, its child time and counts updated on exit), which calls at depth
//! 0 never take.
//!
//! The same probe can cost more at some code addresses than at others
//! (branch predictors index by address), so the leaf is placed at two
//! addresses and the cheaper placement is kept: over-compensating would
//! report short calls as zero.

use crate::engine::probe::{Meta, Probe};
use crate::meter::{clock, compensate};

/// The probe ids calibration uses, two per placement (the leaf's and its
/// loop's: a thread's statistics are keyed by id, and placements sharing
/// one would mix their windows); never part of the registry or a snapshot.
pub const CALIBRATION_ID: u32 = u32::MAX - 1 - 2 * PLACEMENTS as u32;
const CALLS: u64 = 10_000;
const ROUNDS: usize = 5;
const PLACEMENTS: usize = 2;

/// leaf/twin: `mov rax, rdi; add rax, 1; imul rax, rax; ret`, padded to 16.
const LEAF: [u8; 16] = [
    0x48, 0x89, 0xf8, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x0f, 0xaf, 0xc0, 0xc3, 0x90, 0x90, 0x90, 0x90,
];
const LEAF_AT: usize = 0;
const TWIN_AT: usize = 16;
const LOOP_LEAF_AT: usize = 64;
const LOOP_TWIN_AT: usize = 128;
const PLAIN_TWIN_AT: usize = 192;
/// Between calls the timed loops run an `lfence`, which lets no later
/// instruction start before every earlier one is done: it stands for the
/// program's own work, which a probe's work cannot overlap the way one
/// probed call overlaps the next in a loop of nothing but calls. Back to
/// back, the probe read cheaper than calls among other work cost, and
/// compensation fell short on tests/programs/nested.c (`bench.py nested`,
/// BENCHMARKS.md).
const FENCE: [u8; 3] = [0x0f, 0xae, 0xe8];

/// Where a loop's code starts: a 5-byte nop the loop's own probe patches.
const LOOP_NOP: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const LOOP_LEN: usize = 57;

/// `nop5; push rbx; mov rbx, rdi; L: mov rdi, rbx; call <target>; [lfence;]
/// dec rbx; jnz L; pop rbx; ret`. The nop is where a probe on the loop
/// itself goes (nothing branches into it).
fn call_loop(at: usize, target: usize, fence: bool) -> [u8; LOOP_LEN] {
    let mut code = [0x90u8; LOOP_LEN];
    code[..5].copy_from_slice(&LOOP_NOP);
    code[5..17].copy_from_slice(&[0x53, 0x48, 0x89, 0xfb, 0x48, 0x89, 0xdf, 0xe8, 0, 0, 0, 0]);
    let end = if fence {
        code[17..20].copy_from_slice(&FENCE);
        20
    } else {
        17
    };
    // dec rbx; jnz L (L at 9, from the end of the jnz); pop rbx; ret
    code[end..end + 7].copy_from_slice(&[0x48, 0xff, 0xcb, 0x75, 0, 0x5b, 0xc3]);
    code[end + 4] = (9 - (end as i32 + 5)) as u8;
    let rel = (target as i64 - (at as i64 + 17)) as i32;
    code[13..17].copy_from_slice(&rel.to_le_bytes());
    code
}

/// Calibrates on a short-lived thread of its own (so its counts never mix
/// with the program's) and sets the compensation. Returns (inner, total) ns.
pub fn run(near: (usize, usize)) -> Option<(f64, f64)> {
    compensate::set(0, 0);
    let best = std::thread::Builder::new()
        .name("hotprobe-cal".into())
        .spawn(move || {
            (0..PLACEMENTS)
                .filter_map(|placement| measure(near, CALIBRATION_ID + 2 * placement as u32))
                .min_by_key(|&(_, total)| total)
        })
        .ok()?
        .join()
        .ok()??;
    compensate::set(best.0, best.1);
    let per_ns = clock::ticks_per_ns();
    Some((best.0 as f64 / per_ns, best.1 as f64 / per_ns))
}

/// Maps the calibration code near [lo, hi) and makes it executable.
fn place_code(near: (usize, usize)) -> Option<usize> {
    let base = crate::maps::free_range_near(near.0, near.1, 4096, 1 << 30)?;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            base as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p as usize != base {
        return None;
    }
    let mut page = [0xCCu8; 256];
    page[LEAF_AT..LEAF_AT + 16].copy_from_slice(&LEAF);
    page[TWIN_AT..TWIN_AT + 16].copy_from_slice(&LEAF);
    page[LOOP_LEAF_AT..LOOP_LEAF_AT + LOOP_LEN].copy_from_slice(&call_loop(
        base + LOOP_LEAF_AT,
        base + LEAF_AT,
        true,
    ));
    page[LOOP_TWIN_AT..LOOP_TWIN_AT + LOOP_LEN].copy_from_slice(&call_loop(
        base + LOOP_TWIN_AT,
        base + TWIN_AT,
        true,
    ));
    page[PLAIN_TWIN_AT..PLAIN_TWIN_AT + LOOP_LEN].copy_from_slice(&call_loop(
        base + PLAIN_TWIN_AT,
        base + TWIN_AT,
        false,
    ));
    // SAFETY: our fresh page; it becomes executable before anything runs it.
    unsafe {
        core::ptr::copy_nonoverlapping(page.as_ptr(), base as *mut u8, page.len());
        if libc::mprotect(
            base as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
        ) != 0
        {
            return None;
        }
    }
    Some(base)
}

fn per_call(entry: usize) -> u64 {
    // SAFETY: `entry` is one of our loops: it takes a count and preserves what the ABI says.
    let run: extern "C" fn(u64) = unsafe { core::mem::transmute(entry) };
    let t0 = clock::now();
    run(CALLS);
    clock::now().saturating_sub(t0) / CALLS
}

/// A settled probe (never scored) on `size` bytes of the calibration page.
fn probe_at(id: u32, address: usize, size: usize) -> (&'static Probe, &'static [u8]) {
    let meta = Meta {
        name: "(calibration)".into(),
        symbol: String::new(),
        module: String::new(),
        offset: 0,
        size: size as u64,
        address,
        link_address: 0,
    };
    let probe: &'static Probe = Box::leak(Box::new(Probe::new(id, meta, i64::MAX / 2)));
    probe
        .settled
        .store(true, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: `size` bytes of our own page.
    let code: &'static [u8] = unsafe { std::slice::from_raw_parts(address as *const u8, size) };
    (probe, code)
}

/// One placement: (inner, total) ticks. `id` for the leaf, `id + 1` for
/// the loop that calls it.
fn measure(near: (usize, usize), id: u32) -> Option<(u64, u64)> {
    let base = place_code(near)?;
    let (probe, code) = probe_at(id, base + LEAF_AT, 16);
    let caller = probe_at(id + 1, base + LOOP_LEAF_AT, LOOP_LEN);
    let obj = crate::install::Loaded {
        path: Default::default(),
        bias: 0,
        is_main: false,
        code: vec![(base, base + 4096)],
    };
    if crate::install::install(&[(probe, code), caller], &obj) != 2 {
        return None;
    }
    let thread =
        crate::engine::thread::current_or_create(crate::arch::x86_64::stubs::current_thread());
    if thread.is_null() {
        return None;
    }
    let (mut bare, mut probed, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare.push(per_call(base + LOOP_TWIN_AT));
        probed.push(per_call(base + LOOP_LEAF_AT));
        plain.push(per_call(base + PLAIN_TWIN_AT));
    }
    // SAFETY: this thread's own state; the calibration probe's block exists after the calls.
    let stats = unsafe { &*(*thread).stats_for(probe) };
    let mut hist = crate::meter::histogram::Merged::new();
    stats.add_hist_to(&mut hist);
    if let Some(shared) = probe.shared_hist_if_any() {
        hist.add_shared(shared);
    }
    // A mean, not the median: see `Merged::trimmed_mean`.
    let window = hist.trimmed_mean(0.99)? as u64;
    let (bare, probed) = (bare.into_iter().min()?, probed.into_iter().min()?);
    let plain = plain.into_iter().min()?;
    let total = probed.saturating_sub(bare);
    // The leaf's body is a couple of cycles of a plain loop's bare call.
    let inner = window.saturating_sub(plain / 2).min(total);
    crate::debug!(
        "calibration at {base:#x}: bare {bare} (plain {plain}) probed {probed} window {window} ticks"
    );
    Some((inner, total))
}

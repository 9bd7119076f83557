//! The clock: `rdtsc` where the TSC is constant and non-stop (checked in
//! /proc/cpuinfo), calibrated against CLOCK_MONOTONIC; otherwise
//! CLOCK_MONOTONIC itself (through the vDSO), and the snapshot says so.
//!
//! The hot path reads raw ticks. A quick calibration at start gives the
//! thresholds in ticks; snapshots convert with a rate measured over the
//! whole run so far, which is far more precise.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) static USE_TSC: AtomicBool = AtomicBool::new(false);
static START_TICKS: AtomicU64 = AtomicU64::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);
/// Ticks per nanosecond × 2^32, from the start-up calibration.
static QUICK_RATE: AtomicU64 = AtomicU64::new(1 << 32);

#[inline(always)]
pub fn now() -> u64 {
    if USE_TSC.load(Ordering::Relaxed) {
        // SAFETY: rdtsc is available on every x86-64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    } else {
        crate::sys::monotonic_ns()
    }
}

/// The TSC, or None when the clock is CLOCK_MONOTONIC (for the fast paths,
/// which must not call into libc).
#[inline(always)]
pub fn tsc() -> Option<u64> {
    if USE_TSC.load(Ordering::Relaxed) {
        // SAFETY: rdtsc is available on every x86-64 CPU.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    } else {
        None
    }
}

#[inline(always)]
pub fn is_tsc() -> bool {
    USE_TSC.load(Ordering::Relaxed)
}

fn tsc_is_reliable() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    has("constant_tsc") && has("nonstop_tsc")
}

/// Decides the clock and calibrates it (about 2 ms when the TSC is used).
/// `monotonic_only`: ticks are CLOCK_MONOTONIC nanoseconds (the kernel
/// backend's records carry those).
pub fn init(monotonic_only: bool) {
    let tsc = !monotonic_only && tsc_is_reliable() && std::env::var_os("HOTPROBE_NO_TSC").is_none();
    USE_TSC.store(tsc, Ordering::Relaxed);
    let (t0, n0) = paired();
    START_TICKS.store(t0, Ordering::Relaxed);
    START_NS.store(n0, Ordering::Relaxed);
    if tsc {
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (t1, n1) = paired();
        let rate = ((t1 - t0) as f64 / (n1 - n0).max(1) as f64) * (1u64 << 32) as f64;
        QUICK_RATE.store(rate as u64, Ordering::Relaxed);
    }
}

/// A clock reading and a CLOCK_MONOTONIC reading taken together: the
/// closest of a few tries, each bracketing the clock between two monotonic
/// reads. Reading them one after the other, a thread preempted in between
/// got a quick rate off by the time it was away — 1 ms in the 2 ms
/// window doubles it, and the score card's thresholds (in ticks, from the
/// quick rate, for the whole run) with it. Seen in a redis loop at start-up.
fn paired() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..8 {
        let before = crate::sys::monotonic_ns();
        let ticks = now();
        let after = crate::sys::monotonic_ns();
        let width = after.saturating_sub(before);
        if width < best.0 {
            best = (width, ticks, before + width / 2);
        }
    }
    (best.1, best.2)
}

/// Ticks per nanosecond, as precise as the run so far allows.
pub fn ticks_per_ns() -> f64 {
    if !is_tsc() {
        return 1.0;
    }
    let dt = now().saturating_sub(START_TICKS.load(Ordering::Relaxed));
    let dn = crate::sys::monotonic_ns().saturating_sub(START_NS.load(Ordering::Relaxed));
    if dn > 50_000_000 {
        dt as f64 / dn as f64
    } else {
        QUICK_RATE.load(Ordering::Relaxed) as f64 / (1u64 << 32) as f64
    }
}

pub fn ns_to_ticks(ns: f64) -> u64 {
    (ns * QUICK_RATE.load(Ordering::Relaxed) as f64 / (1u64 << 32) as f64) as u64
}

/// The clock's reading when the agent started.
pub fn start_ticks() -> u64 {
    START_TICKS.load(Ordering::Relaxed)
}

/// Nanoseconds since the agent started, for `disabled_at_ns`.
pub fn since_start_ns() -> u64 {
    crate::sys::monotonic_ns().saturating_sub(START_NS.load(Ordering::Relaxed))
}

pub fn name() -> &'static str {
    if is_tsc() {
        "tsc"
    } else {
        "monotonic"
    }
}

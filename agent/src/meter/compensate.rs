//! Overhead compensation. A probed call costs `total` ticks more than a
//! bare one; `inner` of them fall inside the call's own measured window
//! (after the entry timestamp and before the exit timestamp). Calibrated at
//! start on a probed function of the agent's own, then subtracted:
//!
//! * inclusive = window − inner − descendants × total
//! * inherent  = window − inner − Σ direct callees' windows − callees × (total − inner)
//!
//! so a function is reported with the time it would take unprobed.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) static INNER: AtomicU64 = AtomicU64::new(0);
pub(crate) static TOTAL: AtomicU64 = AtomicU64::new(0);
static ON: AtomicBool = AtomicBool::new(false);

/// Compensated (inclusive, inherent) ticks of one call.
#[inline(always)]
pub fn adjust(window: u64, child_ticks: u64, child_calls: u32, desc_calls: u64) -> (u64, u64) {
    let inner = INNER.load(Ordering::Relaxed);
    let total = TOTAL.load(Ordering::Relaxed);
    let inclusive = window.saturating_sub(inner.saturating_add(desc_calls.saturating_mul(total)));
    let outer = total.saturating_sub(inner);
    let inherent = window.saturating_sub(
        inner
            .saturating_add(child_ticks)
            .saturating_add(child_calls as u64 * outer),
    );
    (inclusive, inherent)
}

pub fn set(inner_ticks: u64, total_ticks: u64) {
    INNER.store(inner_ticks, Ordering::Relaxed);
    TOTAL.store(total_ticks.max(inner_ticks), Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

pub fn is_on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// (inner, total) in ticks.
pub fn costs() -> (u64, u64) {
    (INNER.load(Ordering::Relaxed), TOTAL.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracts_the_probes_of_the_call_and_its_callees() {
        set(10, 30);
        // A leaf: only its own inner cost.
        assert_eq!(adjust(110, 0, 0, 0), (100, 100));
        // Two direct callees of 50 raw ticks each, one of which had one callee itself.
        let (incl, inh) = adjust(500, 100, 2, 3);
        assert_eq!(incl, 500 - 10 - 3 * 30);
        assert_eq!(inh, 500 - 10 - 100 - 2 * 20);
        // Never below zero.
        assert_eq!(adjust(5, 0, 0, 0), (0, 0));
    }
}

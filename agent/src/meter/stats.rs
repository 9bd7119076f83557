//! What one thread measured for one probe: 208 bytes, written only by that
//! thread (and its signal handlers), merged at thread exit and snapshots.
//! With its entry in the thread's probe map (at most 32 bytes at the map's
//! load limit) a thread pays at most 240 bytes per probe it calls.

use crate::engine::probe::Probe;
use crate::meter::histogram::{bucket, LOCAL_BUCKETS};

#[repr(C, align(16))]
pub struct ThreadProbeStats {
    pub probe: *const Probe,
    /// Activations of this probe open on this thread (recursion depth).
    pub active: u32,
    /// Outermost calls scored since the last merge into the probe's score.
    pub score_calls: u32,
    pub count: u64,
    pub abandoned: u64,
    /// Ticks, compensated, outermost activations only.
    pub inclusive: u64,
    /// Ticks, compensated, every activation.
    pub inherent: u64,
    pub max_inclusive: u64,
    /// Score change not yet merged into the probe's score.
    pub score_pending: i64,
    /// Low histogram buckets; overflow carries into the probe's shared histogram.
    pub hist: [u8; LOCAL_BUCKETS],
}

const _: () = assert!(core::mem::size_of::<ThreadProbeStats>() + 32 <= 256);

/// Adds one to a counter with a single instruction, so a signal handler
/// that interrupts the update cannot lose its own increment or ours.
#[inline(always)]
pub fn bump(counter: &mut u64, by: u64) {
    // SAFETY: one `add` on memory this thread owns.
    unsafe {
        core::arch::asm!("add qword ptr [{0}], {1}", in(reg) counter as *mut u64, in(reg) by, options(nostack))
    }
}

impl ThreadProbeStats {
    /// Records an outermost activation's inclusive time in the histogram.
    #[inline(always)]
    pub fn record_inclusive(&mut self, probe: &Probe, ticks: u64) {
        let b = bucket(ticks);
        if b < LOCAL_BUCKETS {
            // SAFETY: b < LOCAL_BUCKETS.
            let slot = unsafe { self.hist.get_unchecked_mut(b) };
            if *slot == u8::MAX {
                *slot = 0;
                probe.add_to_shared_hist(b, 256);
            } else {
                *slot += 1;
            }
        } else {
            probe.add_to_shared_hist(b, 1);
        }
        if ticks > self.max_inclusive {
            self.max_inclusive = ticks;
        }
    }
}

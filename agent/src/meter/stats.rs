//! What one thread measured for one probe: 128 bytes, two cache lines
//! (the counters, then the local histogram window), written only by that
//! thread (and its signal handlers), merged at thread exit and snapshots.
//!
//! What a (thread, called probe) costs in all is this block, its
//! calling-context node (48 bytes, one per distinct path to the probe) and
//! the two index slots that find them (4 bytes in a table a quarter to half
//! full, so 8 to 16 bytes, and as much again for the tables it grew out
//! of): at most 240 bytes for a probe called from one path, plus fixed
//! per-thread costs shared by all its probes.

use crate::engine::probe::Probe;
use crate::meter::histogram::{
    bucket, first_window, moved_window, Merged, LOCAL_BUCKETS, MOVE_AFTER, UNSET,
};

#[repr(C, align(64))]
pub struct ThreadProbeStats {
    pub probe: *const Probe,
    /// Activations of this probe open on this thread (recursion depth).
    pub active: u32,
    /// Outermost calls scored since the last merge into the probe's score.
    pub score_calls: u8,
    /// Calls outside the histogram window since it was last placed or kept.
    pub hist_misses: u8,
    /// The bucket `hist[0]` counts (UNSET before the first call).
    pub hist_base: u16,
    pub count: u64,
    pub abandoned: u64,
    /// Ticks, compensated, outermost activations only.
    pub inclusive: u64,
    /// Ticks, compensated, every activation.
    pub inherent: u64,
    pub max_inclusive: u64,
    /// Score change not yet merged into the probe's score.
    pub score_pending: i64,
    /// A window of histogram buckets from `hist_base`; overflow carries into
    /// the probe's shared histogram, and so do calls outside the window.
    pub hist: [u8; LOCAL_BUCKETS],
}

const _: () = assert!(core::mem::size_of::<ThreadProbeStats>() == 128);

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
    /// A fresh block for `probe`.
    pub fn new(probe: &Probe) -> ThreadProbeStats {
        ThreadProbeStats {
            probe,
            active: 0,
            score_calls: 0,
            hist_misses: 0,
            hist_base: UNSET,
            count: 0,
            abandoned: 0,
            inclusive: 0,
            inherent: 0,
            max_inclusive: 0,
            score_pending: 0,
            hist: [0; LOCAL_BUCKETS],
        }
    }

    /// Records an outermost activation's inclusive time in the histogram.
    #[inline(always)]
    pub fn record_inclusive(&mut self, probe: &Probe, ticks: u64) {
        let b = bucket(ticks);
        if self.hist_base == UNSET {
            self.hist_base = first_window(b);
        }
        let i = b.wrapping_sub(self.hist_base as usize);
        if i < LOCAL_BUCKETS {
            // SAFETY: i < LOCAL_BUCKETS.
            let slot = unsafe { self.hist.get_unchecked_mut(i) };
            if *slot == u8::MAX {
                *slot = 0;
                probe.add_to_shared_hist(b, 256);
                // A full bucket proves the window is where the calls are.
                self.hist_misses = 0;
            } else {
                *slot += 1;
            }
        } else {
            probe.add_to_shared_hist(b, 1);
            self.missed(probe, b);
        }
        if ticks > self.max_inclusive {
            self.max_inclusive = ticks;
        }
    }

    /// A call fell outside the window. After MOVE_AFTER of them, if the
    /// window holds fewer than twice as many, the calls are elsewhere (the
    /// first call was slow, or the function changed): its counts go to the
    /// shared histogram and it moves to the bucket of this call. Otherwise
    /// the misses are the odd long call, and it stays.
    #[cold]
    fn missed(&mut self, probe: &Probe, b: usize) {
        self.hist_misses += 1;
        if self.hist_misses < MOVE_AFTER {
            return;
        }
        self.hist_misses = 0;
        let hits: u32 = self.hist.iter().map(|&c| c as u32).sum();
        if hits >= 2 * MOVE_AFTER as u32 {
            return;
        }
        let base = self.hist_base as usize;
        for (k, c) in self.hist.iter_mut().enumerate() {
            if *c != 0 {
                probe.add_to_shared_hist(base + k, *c as u64);
                *c = 0;
            }
        }
        self.hist_base = moved_window(b);
    }

    /// Adds the local window to a merged histogram.
    pub fn add_hist_to(&self, merged: &mut Merged) {
        merged.add_local(self.hist_base, &self.hist);
    }

    /// Forgets the counts (a fork child starts from zero).
    pub fn zero(&mut self) {
        self.count = 0;
        self.abandoned = 0;
        self.inclusive = 0;
        self.inherent = 0;
        self.max_inclusive = 0;
        self.hist = [0; LOCAL_BUCKETS];
        self.hist_misses = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::probe::Meta;

    fn probe() -> Probe {
        let meta = Meta {
            name: "f".into(),
            symbol: "f".into(),
            module: String::new(),
            offset: 0,
            size: 16,
            address: 0,
            link_address: 0,
        };
        Probe::new(0, meta, 100)
    }

    fn merged(p: &Probe, s: &ThreadProbeStats) -> Merged {
        let mut m = Merged::new();
        s.add_hist_to(&mut m);
        if let Some(h) = p.shared_hist() {
            m.add_shared(h);
        }
        m
    }

    #[test]
    fn the_window_follows_the_calls_and_loses_none() {
        let p = probe();
        let mut s = ThreadProbeStats::new(&p);
        // A slow first call, then fast ones far below its window.
        s.record_inclusive(&p, 3000);
        assert_eq!(s.hist_base, first_window(bucket(3000)));
        for _ in 0..1000 {
            s.record_inclusive(&p, 5);
        }
        assert_eq!(s.hist_base, 0, "moved to where the calls are");
        let m = merged(&p, &s);
        assert_eq!(m.total(), 1001);
        assert_eq!(m.counts[5], 1000);
        assert_eq!(m.counts[bucket(3000)], 1);
        // The odd long call does not move it back.
        for i in 0..2000u64 {
            s.record_inclusive(&p, if i % 50 == 0 { 1 << 20 } else { 6 });
        }
        assert_eq!(s.hist_base, 0);
        assert_eq!(merged(&p, &s).total(), 3001);
    }
}

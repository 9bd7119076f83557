//! Log-linear histogram of durations in ticks: values below 16 have a bucket
//! each; above, every power of two is split into 16 buckets, so a value's
//! bucket midpoint is within 1/32 (3.1%) of it.
//!
//! Each (thread, probe) keeps a window of 64 buckets as bytes (4 powers of
//! two: a function's calls rarely spread wider), placed where its calls
//! fall: at its first call, with room below it (first calls are the slow
//! ones), and moved when most calls fall outside (`stats::missed`). A byte
//! that would overflow carries 256 into the probe's shared histogram, and
//! calls outside the window go there directly, so the shared histogram is
//! written at most once per 256 calls of a bucket, plus the odd outlier.
//!
//! A snapshot reads the windows while their threads write them: a count
//! carried or moved at that moment may be seen twice or not at all (the
//! percentiles are estimates; counts and times come from the counters).

use core::sync::atomic::{AtomicU64, Ordering};

pub const SUB: u32 = 16;
pub const SUB_BITS: u32 = 4;
/// Buckets in a shared histogram: exact 0..16, then 16 per power of two up to 2^64.
pub const BUCKETS: usize = (SUB + (64 - SUB_BITS) * SUB) as usize;
/// Buckets a thread keeps locally, per probe.
pub const LOCAL_BUCKETS: usize = 64;
/// `hist_base` of a window not placed yet.
pub const UNSET: u16 = u16::MAX;
/// Misses after which a window may move.
pub const MOVE_AFTER: u8 = 32;

/// The window for a first call in bucket `b`: 3 powers of two below it (warm
/// calls are faster), one above.
pub fn first_window(b: usize) -> u16 {
    b.saturating_sub(3 * SUB as usize)
        .min(BUCKETS - LOCAL_BUCKETS) as u16
}

/// The window moved to calls in bucket `b`: centred on it.
pub fn moved_window(b: usize) -> u16 {
    b.saturating_sub(2 * SUB as usize)
        .min(BUCKETS - LOCAL_BUCKETS) as u16
}

#[inline(always)]
pub fn bucket(ticks: u64) -> usize {
    if ticks < SUB as u64 {
        return ticks as usize;
    }
    let e = 63 - ticks.leading_zeros(); // >= SUB_BITS
    let sub = (ticks >> (e - SUB_BITS)) as u32 & (SUB - 1);
    (SUB + (e - SUB_BITS) * SUB + sub) as usize
}

/// The range of values a bucket holds: [low, high).
pub fn bucket_range(index: usize) -> (u64, u64) {
    let i = index as u32;
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let e = (i - SUB) / SUB + SUB_BITS;
    let sub = (i - SUB) % SUB;
    let width = 1u64 << (e - SUB_BITS);
    let low = (1u64 << e) + sub as u64 * width;
    (low, low.saturating_add(width))
}

/// A probe's shared histogram, allocated on first use with mmap (so it can
/// be created from a signal handler).
#[repr(C)]
pub struct Shared {
    pub buckets: [AtomicU64; BUCKETS],
}

impl Shared {
    #[inline]
    pub fn add(&self, index: usize, n: u64) {
        if let Some(b) = self.buckets.get(index) {
            b.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Shared histograms come from a pool of large mappings, carved with one
/// atomic add: the first spilled call of each of thousands of probes must
/// not cost a mapping (a system call, and a TLB shootdown on every core
/// when a racing one is returned). Signal-safe: a handler that interrupts
/// an allocation gets its own range. Never freed, like the probes.
const POOL_CHUNK: usize = 1 << 20;

#[repr(C, align(64))]
struct PoolChunk {
    used: core::sync::atomic::AtomicUsize,
}

static POOL: core::sync::atomic::AtomicPtr<PoolChunk> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// A zeroed `Shared` from the pool, or null when memory is refused.
pub fn pool_alloc() -> *mut Shared {
    let size = core::mem::size_of::<Shared>().next_multiple_of(64);
    loop {
        let chunk = POOL.load(Ordering::Acquire);
        if !chunk.is_null() {
            // SAFETY: a published chunk is a live mapping that starts with its header.
            let at = unsafe { (*chunk).used.fetch_add(size, Ordering::Relaxed) };
            if at + size <= POOL_CHUNK {
                // SAFETY: [at, at + size) lies inside the chunk and is handed out once.
                return unsafe { chunk.cast::<u8>().add(at).cast() };
            }
        }
        let fresh = crate::engine::arena::map(POOL_CHUNK, false).cast::<PoolChunk>();
        if fresh.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: our fresh, zeroed mapping; the header is the first 64 bytes.
        unsafe {
            (*fresh)
                .used
                .store(core::mem::size_of::<PoolChunk>(), Ordering::Relaxed)
        };
        if POOL
            .compare_exchange(chunk, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread (or a handler) put up a chunk first: use that one.
            crate::engine::arena::unmap(fresh.cast(), POOL_CHUNK);
        }
    }
}

/// Merges counts and answers quantiles, at snapshot time.
#[derive(Clone)]
pub struct Merged {
    pub counts: Vec<u64>,
}

impl Merged {
    pub fn new() -> Merged {
        Merged {
            counts: vec![0; BUCKETS],
        }
    }

    pub fn add_shared(&mut self, shared: &Shared) {
        for (c, b) in self.counts.iter_mut().zip(shared.buckets.iter()) {
            *c += b.load(Ordering::Relaxed);
        }
    }

    /// Adds a thread's window, which starts at bucket `base`.
    pub fn add_local(&mut self, base: u16, local: &[u8]) {
        if base == UNSET {
            return;
        }
        let counts = self.counts.iter_mut().skip(base as usize);
        for (c, &b) in counts.zip(local.iter()) {
            *c += b as u64;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which `q` of the samples fall (bucket midpoint), in ticks.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bucket_range(i);
                return Some(if hi - lo <= 1 {
                    lo as f64
                } else {
                    (lo as f64 + hi as f64) / 2.0
                });
            }
        }
        None
    }
}

impl Merged {
    /// The mean of the lowest `keep` of the samples (bucket midpoints), in
    /// ticks: what noise adds (preemption, interrupts) is only ever on top.
    /// Unlike a quantile, it is not biased where the clock itself moves in
    /// steps (some TSCs advance by ~25 ticks at a time): a short duration
    /// measured many times averages out to its real length.
    pub fn trimmed_mean(&self, keep: f64) -> Option<f64> {
        let total = self.total();
        let mut left = (keep * total as f64).ceil() as u64;
        if left == 0 {
            return None;
        }
        let n = left;
        let mut sum = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let take = c.min(left);
            let (lo, hi) = bucket_range(i);
            let mid = if hi - lo <= 1 {
                lo as f64
            } else {
                (lo as f64 + hi as f64 - 1.0) / 2.0
            };
            sum += take as f64 * mid;
            left -= take;
            if left == 0 {
                break;
            }
        }
        Some(sum / n as f64)
    }
}

impl Default for Merged {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_precise() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 40, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last || v > 100_000);
            last = b;
            let (lo, hi) = bucket_range(b);
            assert!(
                lo <= v && (v < hi || hi == u64::MAX),
                "{v} in bucket {b} [{lo},{hi})"
            );
            if v >= 16 {
                let mid = (lo as f64 + hi as f64) / 2.0;
                assert!(
                    ((mid - v as f64) / v as f64).abs() <= 1.0 / 32.0 + 1e-9,
                    "{v}"
                );
            }
        }
        assert!(bucket(u64::MAX) < BUCKETS);
        // A window spans 4 powers of two from 16 up; the first one, 0..128.
        assert_eq!(bucket(127), LOCAL_BUCKETS - 1);
        assert_eq!(bucket(16 << 4) - bucket(16), LOCAL_BUCKETS);
        assert_eq!(
            first_window(bucket(u64::MAX)) as usize,
            BUCKETS - LOCAL_BUCKETS
        );
        assert_eq!(first_window(5), 0);
    }

    #[test]
    fn trimmed_mean_averages_a_stepping_clock_and_drops_outliers() {
        let mut m = Merged::new();
        // A 60-tick duration read by a clock that moves in steps of 25.
        m.counts[bucket(50)] += 60;
        m.counts[bucket(75)] += 40;
        m.counts[bucket(1 << 30)] += 1;
        let mean = m.trimmed_mean(0.99).unwrap();
        assert!((mean - 60.0).abs() < 1.0, "{mean}");
        assert_eq!(m.quantile(0.5), Some(51.0), "the median sees only one step");
    }

    #[test]
    fn windows_add_at_their_base() {
        let mut m = Merged::new();
        let mut w = [0u8; LOCAL_BUCKETS];
        w[0] = 3;
        w[63] = 1;
        m.add_local(100, &w);
        m.add_local(UNSET, &w);
        assert_eq!((m.counts[100], m.counts[163], m.total()), (3, 1, 4));
    }

    #[test]
    fn quantiles() {
        let mut m = Merged::new();
        for v in 1..=1000u64 {
            m.counts[bucket(v * 100)] += 1;
        }
        let p50 = m.quantile(0.5).unwrap();
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.04, "{p50}");
        let p99 = m.quantile(0.99).unwrap();
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.04, "{p99}");
    }
}

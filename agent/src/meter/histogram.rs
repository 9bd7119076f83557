//! Log-linear histogram of durations in ticks: values below 16 have a bucket
//! each; above, every power of two is split into 16 buckets, so a value's
//! bucket midpoint is within 1/32 (3.1%) of it.
//!
//! Each (thread, probe) keeps the low buckets as bytes (144 bytes cover
//! values below 2^12 ticks, about 2 µs); a byte that would overflow carries
//! 256 into the probe's shared histogram, and longer calls go there
//! directly. So the shared histogram is written at most once per 256 short
//! calls of a bucket, or once per call of at least 2 µs (at most 500,000 a
//! second per thread).

use core::sync::atomic::{AtomicU64, Ordering};

pub const SUB: u32 = 16;
pub const SUB_BITS: u32 = 4;
/// Buckets in a shared histogram: exact 0..16, then 16 per power of two up to 2^64.
pub const BUCKETS: usize = (SUB + (64 - SUB_BITS) * SUB) as usize;
/// Buckets a thread keeps locally.
pub const LOCAL_BUCKETS: usize = (SUB + 8 * SUB) as usize;

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

    pub fn add_local(&mut self, local: &[u8]) {
        for (c, &b) in self.counts.iter_mut().zip(local.iter()) {
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
        assert_eq!(bucket((1 << 12) - 1), LOCAL_BUCKETS - 1);
        assert_eq!(bucket(1 << 12), LOCAL_BUCKETS);
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

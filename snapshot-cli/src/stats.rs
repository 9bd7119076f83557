//! Set and rank statistics used by `diff` and `converge`.

use crate::merge::{FuncKey, Merged};
use hotprobe_config::snapshot::ProbeState;
use std::collections::{BTreeMap, BTreeSet};

/// |A ∩ B| / |A ∪ B|; two empty sets are identical (1.0).
pub fn jaccard<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// Ranks 1..n with ties given their average rank.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share the mean of ranks start+1..=end.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

/// Spearman's rank correlation: the Pearson correlation of the ranks (ties
/// averaged). When either side has no spread (all values equal, or fewer
/// than two) it is 1.0 if the rank vectors are equal and 0.0 otherwise.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "spearman needs paired values");
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    if ra.is_empty() {
        return 1.0;
    }
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    if va == 0.0 || vb == 0.0 {
        return if ra == rb { 1.0 } else { 0.0 };
    }
    (cov / (va.sqrt() * vb.sqrt())).clamp(-1.0, 1.0)
}

/// The hot set of a merged view.
pub fn hot_set(m: &Merged) -> BTreeSet<FuncKey> {
    m.funcs
        .iter()
        .filter(|f| f.state == ProbeState::Hot)
        .map(|f| f.key.clone())
        .collect()
}

/// Share of a run's inherent time under which a function's rank is noise:
/// such functions tie with the absent ones, so the order of functions of a
/// few hundred nanoseconds in all (which a busy machine reshuffles from run
/// to run) does not make a settled hotspot table look unsettled.
pub const RANK_NOISE_SHARE: f64 = 0.01;

/// Spearman correlation of inherent totals over the union of the functions
/// that have calls on either side (only those in `within`, when given); a
/// function missing (or without calls) on one side, or under
/// `RANK_NOISE_SHARE` of that side's inherent total, counts 0 there.
pub fn inherent_rank_correlation(
    a: &Merged,
    b: &Merged,
    within: Option<&BTreeSet<FuncKey>>,
) -> f64 {
    let floor =
        |m: &Merged| m.funcs.iter().map(|f| f.inherent_ns as f64).sum::<f64>() * RANK_NOISE_SHARE;
    let (floor_a, floor_b) = (floor(a), floor(b));
    let counted =
        |f: &&crate::merge::Func| f.count > 0 && within.is_none_or(|w| w.contains(&f.key));
    let mut pairs: BTreeMap<&FuncKey, (f64, f64)> = BTreeMap::new();
    for f in a.funcs.iter().filter(counted) {
        pairs.entry(&f.key).or_default().0 = above(f.inherent_ns as f64, floor_a);
    }
    for f in b.funcs.iter().filter(counted) {
        pairs.entry(&f.key).or_default().1 = above(f.inherent_ns as f64, floor_b);
    }
    let (xa, xb): (Vec<f64>, Vec<f64>) = pairs.into_values().unzip();
    spearman(&xa, &xb)
}

/// The value, or 0 under the floor.
fn above(value: f64, floor: f64) -> f64 {
    if value < floor {
        0.0
    } else {
        value
    }
}

/// Whether a statistic shown with three decimals meets a threshold: what the
/// table shows is what is compared (a Spearman of 0.8999999 is shown, and
/// taken, as 0.900).
pub fn reaches(value: f64, min: f64) -> bool {
    (value * 1000.0).round() / 1000.0 >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_values() {
        let a: BTreeSet<_> = [1, 2, 3].into();
        let b: BTreeSet<_> = [2, 3, 4].into();
        assert_eq!(jaccard(&a, &b), 0.5);
        assert_eq!(jaccard(&a, &a), 1.0);
        assert_eq!(jaccard::<i32>(&BTreeSet::new(), &BTreeSet::new()), 1.0);
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
    }

    #[test]
    fn spearman_values() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // d = (0, 0, 1, -1, 0): 1 - 6·2 / (5·24) = 0.9
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, 4.0, 3.0, 5.0]) - 0.9).abs() < 1e-12
        );
        assert_eq!(spearman(&[5.0, 5.0], &[5.0, 5.0]), 1.0);
        assert_eq!(spearman(&[], &[]), 1.0);
    }

    #[test]
    fn functions_under_the_noise_share_tie() {
        let floored = |v: &[f64]| -> Vec<f64> {
            let floor = v.iter().sum::<f64>() * RANK_NOISE_SHARE;
            v.iter().map(|x| above(*x, floor)).collect()
        };
        let a = floored(&[900.0, 80.0, 5.0, 3.0, 2.0, 0.0]);
        assert_eq!(a, [900.0, 80.0, 0.0, 0.0, 0.0, 0.0]);
        let b = floored(&[900.0, 80.0, 2.0, 3.0, 5.0, 0.0]);
        assert!(
            (spearman(&a, &b) - 1.0).abs() < 1e-12,
            "reshuffled noise is not a change"
        );
        assert!(spearman(&[900.0, 80.0, 5.0, 3.0, 2.0], &[900.0, 80.0, 2.0, 3.0, 5.0]) < 0.9);
    }

    #[test]
    fn thresholds_compare_what_is_shown() {
        let one_swap_of_five = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, 3.0, 5.0, 4.0]);
        assert!(
            reaches(one_swap_of_five, 0.9),
            "{one_swap_of_five} shows as 0.900"
        );
        assert!(!reaches(0.8994, 0.9));
    }
}

//! Forgetting what was measured: in a fork child (which starts from zero),
//! and on request over the control channel (to leave out a warm-up).
//!
//! A fork child has one thread, so its counters are zeroed in place. A
//! reset request arrives while threads keep counting, so it records a
//! baseline that later snapshots subtract instead.

use crate::engine::probe;
use crate::engine::thread;
use crate::meter::merge::{self, View};
use crate::state::lock;
use std::sync::Mutex;

static BASELINE: Mutex<Option<View>> = Mutex::new(None);

/// Zeroes every counter (only call with a single thread alive).
pub fn zero_everything() {
    for p in probe::all() {
        *lock(&p.totals) = Default::default();
        p.untimed.store(0, core::sync::atomic::Ordering::Relaxed);
        if let Some(h) = (!p.hist.load(core::sync::atomic::Ordering::Relaxed).is_null())
            .then(|| p.shared_hist())
            .flatten()
        {
            for b in h.buckets.iter() {
                b.store(0, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    thread::with_thread_ptrs(|threads| {
        for &t in threads {
            // SAFETY: the only thread alive is the caller; nobody else touches these states.
            unsafe { zero_thread(&mut *t) };
        }
    });
    merge::reset_ended();
    *lock(&BASELINE) = None;
}

fn zero_thread(t: &mut thread::ThreadState) {
    t.unmetered = 0;
    t.switches = 0;
    for s in t.all_stats_mut() {
        s.zero();
    }
    t.tree.zero_counts();
}

/// Remembers the current counts; snapshots from now on report the difference.
pub fn set_baseline() {
    *lock(&BASELINE) = Some(merge::view());
}

/// Subtracts the baseline, if one was set, from a fresh view.
pub fn apply_baseline(view: &mut View) {
    let base = lock(&BASELINE);
    let Some(base) = base.as_ref() else { return };
    for (now, then) in view.probes.iter_mut().zip(base.probes.iter()) {
        let (n, t) = (&mut now.totals, &then.totals);
        n.count = n.count.saturating_sub(t.count);
        n.abandoned = n.abandoned.saturating_sub(t.abandoned);
        n.inclusive = n.inclusive.saturating_sub(t.inclusive);
        n.inherent = n.inherent.saturating_sub(t.inherent);
        if let (Some(h), Some(b)) = (now.hist.as_mut(), then.hist.as_ref()) {
            for (x, y) in h.counts.iter_mut().zip(b.counts.iter()) {
                *x = x.saturating_sub(*y);
            }
        }
    }
    let key = |v: &View, i: usize| -> Vec<u32> {
        let mut path = Vec::new();
        let mut at = i as u32;
        while let Some(n) = v.contexts.get(at as usize) {
            path.push(n.probe);
            at = n.parent;
        }
        path
    };
    let old: std::collections::HashMap<Vec<u32>, (u64, u64, u64)> = (0..base.contexts.len())
        .map(|i| {
            (
                key(base, i),
                (
                    base.contexts[i].count,
                    base.contexts[i].inclusive,
                    base.contexts[i].inherent,
                ),
            )
        })
        .collect();
    for i in 0..view.contexts.len() {
        if let Some(&(c, incl, inh)) = old.get(&key(view, i)) {
            let n = &mut view.contexts[i];
            n.count = n.count.saturating_sub(c);
            n.inclusive = n.inclusive.saturating_sub(incl);
            n.inherent = n.inherent.saturating_sub(inh);
        }
    }
    view.unmetered = view.unmetered.saturating_sub(base.unmetered);
    view.untimed = view.untimed.saturating_sub(base.untimed);
}

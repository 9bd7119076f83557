//! Second chances in `refine`. A function's inherent time is what its
//! *probed* callees leave it, so a function judged while some of its callees
//! were probed was judged on part of its own time: the callees' share was
//! theirs. When those callees leave the probe set, that time becomes the
//! function's own again, and a function that failed the thresholds may now
//! clear them. Without this, which function of a caller → callee chain ends
//! hot depends on the order in which the score card happened to take them
//! out, and two loops of one workload end with different hot sets.
//!
//! The rule: a function that is not kept comes back for another iteration
//! when its *projected* inherent time — with the callees that are not kept
//! counted as its own — exceeds its measured one by at least the inherent
//! threshold per call, or passes the active-function policy its measured
//! time failed; its inclusive time per call clears the score card's
//! inclusive threshold; and it was judged on at least [`MIN_CALLS`] calls.
//!
//! Warm-up: a function the score card took out within its first
//! [`MIN_CALLS`] calls, although the iteration before judged it hot over at
//! least that many, comes back once: a verdict on the first calls of a run
//! (cold caches, a calibration that ran while the machine was busy) is
//! weaker evidence than the hot one before it. Functions dropped in
//! earlier iterations are judged on the last iteration that probed them:
//! refine follows the chain of probe sets (`config.target.probe_set` of the
//! snapshots, then that set's `source`) back while the files are there.
//!
//! Removals the means disagree with, on by default (the rest needs
//! `--second-chance`): a function the score card took out over at least
//! [`MIN_CALLS`] calls although its mean inherent time clears refine's bar
//! and its mean inclusive time the score card's threshold comes back for
//! one more iteration when the iteration before probed it over as many
//! and did not take it out. Its calls sit on a threshold, the verdicts
//! disagree, and a removal is the verdict a loop cannot undo: redis's
//! `beforeSleep`, 59–104 ns of its own a call against 60 ns, was hot in
//! most iterations of sixteen loops and taken out in a few, each time
//! leaving that loop with a different hot set. A first iteration's
//! removal stands: the demo's `memtable_put` (a few slow calls among many
//! fast ones) came back from iteration 1 in 5 of 5 loaded demo loops (an
//! agent whose caller hold was later reverted) and was dropped again in
//! iteration 3, changing its callers' own time an
//! iteration later than the demo's hot set has to settle.

use crate::contexts::{self, Stacks};
use crate::load::{load_full, Inputs, LightSnapshot, Loaded};
use crate::merge::{merge, Func, FuncKey, Merged};
use hotprobe_config::snapshot::ProbeState;
use hotprobe_config::{ProbeSet, Snapshot};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How many probe sets back refine looks for earlier judgements.
pub const MAX_HISTORY: usize = 32;

/// Calls a judgement needs before its projection is trusted: a function
/// the score card took out within its first few hundred calls was judged on
/// its warm-up (cold caches, first-time paths), and so were the callees it
/// took out with it; projecting from those calls brings back functions
/// whose steady-state time is far lower.
pub const MIN_CALLS: u64 = 1000;

/// One iteration's snapshots: their merged functions and calling contexts.
pub struct Judged {
    pub merged: Merged,
    pub stacks: Stacks,
    /// The probe sets these snapshots ran with (to follow the chain back).
    probe_sets: BTreeSet<PathBuf>,
}

impl Judged {
    pub fn from_full(inputs: Inputs<Snapshot>) -> crate::error::Result<Judged> {
        let stacks = contexts::collect(&inputs)?;
        let probe_sets = inputs
            .snapshots
            .iter()
            .filter_map(|l| l.snap.config.probe_set_path().map(PathBuf::from))
            .collect();
        let light = Inputs {
            snapshots: inputs
                .snapshots
                .into_iter()
                .map(|l| Loaded {
                    path: l.path,
                    snap: LightSnapshot::from(l.snap),
                })
                .collect(),
            superseded: inputs.superseded,
        };
        Ok(Judged {
            merged: merge(light),
            stacks,
            probe_sets,
        })
    }
}

/// The iterations before `current`, newest first, as far back as the probe
/// sets and their sources are still on disk. A file that cannot be read
/// ends the chain there: history is a help, never a reason to fail.
pub fn earlier(current: &Judged, depth: usize) -> Vec<Judged> {
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut out = Vec::new();
    let mut sets = current.probe_sets.clone();
    while !sets.is_empty() && out.len() < depth.min(MAX_HISTORY) {
        let mut sources: Vec<PathBuf> = Vec::new();
        for set in &sets {
            let canonical = std::fs::canonicalize(set).unwrap_or_else(|_| set.clone());
            if !seen.insert(canonical) {
                continue;
            }
            let Ok(ps) = ProbeSet::read(set) else {
                continue;
            };
            sources.extend(source_paths(&ps.source, set));
        }
        sources.retain(|p| p.exists());
        if sources.is_empty() {
            break;
        }
        let Ok(inputs) = load_full(&sources) else {
            break;
        };
        let Ok(judged) = Judged::from_full(inputs) else {
            break;
        };
        sets = judged.probe_sets.clone();
        out.push(judged);
    }
    out
}

/// The inputs a probe set's `source` line names (`refine` joins them with
/// ", "); relative ones are taken from the set's directory.
fn source_paths(source: &str, set: &Path) -> Vec<PathBuf> {
    let base = set.parent().unwrap_or(Path::new("."));
    source
        .split(", ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let p = PathBuf::from(s);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        })
        .collect()
}

/// What the active-function policy asks of a function's own time.
#[derive(Debug, Clone, Copy)]
pub struct Bar {
    /// Inherent time per call, ns.
    pub min_inherent_ns: f64,
    /// Fraction of the iteration's inherent time.
    pub min_share: f64,
    /// The score card's inclusive threshold, ns per call.
    pub inclusive_ns: f64,
}

/// Why a function comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its callees that left would make this much of its time its own.
    Callees {
        measured_inherent_ns: u64,
        projected_inherent_ns: u64,
        calls: u64,
    },
    /// Taken out within its first `calls` calls (warm-up), though the
    /// iteration before judged it hot on `hot_calls`.
    WarmUp { calls: u64, hot_calls: u64 },
    /// Taken out over `calls` although its own time averaged
    /// `inherent_ns` a call (and its inclusive time cleared the score
    /// card's threshold); hot over `hot_calls_before` the iteration before,
    /// if it was.
    AboveTheBars {
        calls: u64,
        inherent_ns: u64,
        hot_calls_before: Option<u64>,
    },
}

/// A function brought back, and why.
#[derive(Debug, Clone)]
pub struct Chance {
    pub func: Func,
    pub reason: Reason,
}

/// Own time per function: measured (the stacks it ends), and projected
/// with every function that is not `kept` folded into its nearest caller.
struct Own {
    measured: u64,
    projected: u64,
    calls: u64,
}

fn own_times(stacks: &Stacks, kept: &HashSet<FuncKey>) -> HashMap<u32, Own> {
    let is_kept: Vec<bool> = stacks
        .frames
        .iter()
        .map(|f| kept.contains(&f.key))
        .collect();
    let mut own: HashMap<u32, Own> = HashMap::new();
    let mut tail: Vec<u32> = Vec::new();
    stacks.for_each(|path, w| {
        let Some(&last) = path.last() else { return };
        let e = own.entry(last).or_insert(Own {
            measured: 0,
            projected: 0,
            calls: 0,
        });
        e.measured += w.inherent_ns;
        e.calls += w.count;
        // This stack's own time goes, once the functions that are not kept
        // are gone, to the nearest kept caller; a function brought back
        // alone would take it if it stands between.
        tail.clear();
        for &frame in path.iter().rev() {
            if is_kept[frame as usize] {
                break;
            }
            if !tail.contains(&frame) {
                tail.push(frame);
            }
        }
        for &frame in &tail {
            own.entry(frame)
                .or_insert(Own {
                    measured: 0,
                    projected: 0,
                    calls: 0,
                })
                .projected += w.inherent_ns;
        }
    });
    own
}

/// The functions to bring back from `iterations` (newest first): not in
/// `kept`, not matching `exclude`, and judged — in the newest iteration
/// that probed them — either on part of their time (see the module docs)
/// or, when the score card took them out during warm-up (fewer than
/// [`MIN_CALLS`] calls), against the verdict of the iteration before that
/// judged them hot on at least as many. A warm-up verdict after a warm-up
/// verdict stands: a function comes back for that reason once.
pub fn chances(
    iterations: &[&Judged],
    kept: &HashSet<FuncKey>,
    bar: Bar,
    exclude: impl Fn(&Func) -> bool,
) -> Vec<Chance> {
    // Each function's newest judgement, and whether a warm-up verdict
    // there still waits for the one before it.
    let mut judged: HashSet<FuncKey> = HashSet::new();
    let mut warm_up: HashMap<FuncKey, (Func, u64)> = HashMap::new();
    let mut out = Vec::new();
    for it in iterations {
        // A warm-up verdict waits for the iteration just before; if that
        // one did not probe the function, the verdict stands.
        let mut waiting = std::mem::take(&mut warm_up);
        let own = own_times(&it.stacks, kept);
        let total = it.merged.total_inherent_ns() as f64;
        let frame_of: HashMap<&FuncKey, u32> = it
            .stacks
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| (&f.key, i as u32))
            .collect();
        for f in &it.merged.funcs {
            if f.state == ProbeState::Rejected {
                continue;
            }
            if let Some((newest, calls)) = waiting.remove(&f.key) {
                if f.state == ProbeState::Hot && f.count >= MIN_CALLS {
                    out.push(Chance {
                        func: newest,
                        reason: Reason::WarmUp {
                            calls,
                            hot_calls: f.count,
                        },
                    });
                }
                continue;
            }
            if !judged.insert(f.key.clone()) {
                continue;
            }
            if kept.contains(&f.key) || f.count == 0 || exclude(f) {
                continue;
            }
            if f.state == ProbeState::Disabled && f.count < MIN_CALLS {
                warm_up.insert(f.key.clone(), (f.clone(), f.count));
                continue;
            }
            let Some(o) = frame_of.get(&f.key).and_then(|i| own.get(i)) else {
                continue;
            };
            if o.calls < MIN_CALLS || o.projected <= o.measured {
                continue;
            }
            let passes = |inherent: u64| {
                inherent as f64 / o.calls as f64 >= bar.min_inherent_ns
                    || (total > 0.0 && inherent as f64 >= bar.min_share * total)
            };
            // A disabled function's verdict came from the score card, call
            // by call, not from its averages: it comes back when the callees
            // that left add at least the inherent threshold to a call's own
            // time (a debit on the inherent threshold becomes a credit). An
            // active one was dropped on its averages: it comes back when its
            // projected time passes the policy its measured time failed.
            let gain = (o.projected - o.measured) as f64 / o.calls as f64;
            let back = gain >= bar.min_inherent_ns || (!passes(o.measured) && passes(o.projected));
            if !back || f.avg_ns() < bar.inclusive_ns {
                continue;
            }
            out.push(Chance {
                func: f.clone(),
                reason: Reason::Callees {
                    measured_inherent_ns: o.measured,
                    projected_inherent_ns: o.projected,
                    calls: o.calls,
                },
            });
        }
    }
    out.sort_by(|a, b| a.func.key.cmp(&b.func.key));
    out
}

/// Removals the means disagree with (see the module docs): functions of
/// `current` the score card took out mid-run over at least [`MIN_CALLS`]
/// calls although their mean inherent and inclusive times clear `bar`,
/// which `before` (the iteration just before) probed over at least as many
/// and did not take out; not in `kept`, not matching `exclude`.
pub fn taken_out_above_the_bars(
    current: &Judged,
    before: Option<&Judged>,
    kept: &HashSet<FuncKey>,
    bar: Bar,
    exclude: impl Fn(&Func) -> bool,
) -> Vec<Chance> {
    let before: HashMap<&FuncKey, &Func> = before
        .map(|b| b.merged.funcs.iter().map(|f| (&f.key, f)).collect())
        .unwrap_or_default();
    current
        .merged
        .funcs
        .iter()
        .filter(|f| {
            // Taken out mid-run (with adaptive off `disabled` only
            // classifies, on every call of the run).
            f.state == ProbeState::Disabled
                && f.partial
                && f.count >= MIN_CALLS
                && f.avg_inherent_ns() >= bar.min_inherent_ns
                && f.avg_ns() >= bar.inclusive_ns
                && !kept.contains(&f.key)
                && !exclude(f)
        })
        .filter_map(|f| {
            let earlier = before.get(&f.key).filter(|e| {
                e.count >= MIN_CALLS && matches!(e.state, ProbeState::Hot | ProbeState::Active)
            })?;
            Some(Chance {
                func: f.clone(),
                reason: Reason::AboveTheBars {
                    calls: f.count,
                    inherent_ns: f.avg_inherent_ns() as u64,
                    hot_calls_before: (earlier.state == ProbeState::Hot).then_some(earlier.count),
                },
            })
        })
        .collect()
}

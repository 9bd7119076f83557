//! Satoris' hotspot score card (CONTRACT.md, "The score card"). Each
//! completed outermost call adds `credit` when its inclusive time is at or
//! above `threshold_us`, else subtracts `debit`; and the same for its
//! inherent time against `inherent_threshold_us`.
//!
//! Merging across threads: a thread keeps its score change in its own
//! statistics block and adds it to the probe's shared score every
//! `BATCH` scored calls (and when it ends or a snapshot is taken), so no
//! shared cache line is written on every call. A probe whose shared score
//! falls to 0 or below is disabled (once `MIN_SCORED_CALLS` of its calls
//! were scored, unless both windows below are 0); one that reaches `upper`
//! is hot for good. Neither is scored again.
//!
//! Callers are judged after their callees. A caller's inherent time is what
//! its probed callees leave it, and a callee that is removed hands its time
//! to the caller; judged side by side, a chain of thin dispatchers (redis's
//! `beforeSleep` → `handleClientsWithPendingWritesUsingThreads` →
//! `handleClientsWithPendingWrites` → `writeToClient`)
//! ended with whichever one lost its callee first hot, a different one from
//! run to run. So a call during which a direct probed callee returned while
//! still under judgement (unsettled, its score under `lower`) is not
//! scored (`held`), up to `HELD_CAP` such calls per probe, after which
//! (mutual recursion, a callee that never settles) it is scored anyway.
//! Scoring the held calls whose score cannot depend on the callees'
//! verdicts (own time already at the inherent threshold) was tried and
//! taken back: redis's functions of a few hundred calls (`ACLGetCommandID`,
//! 492 calls of ~1 µs) then ended just over `lower` in some loops and just
//! under it in others, and independent loops agreed in 4 of 28 pairs
//! against 20 of 28 beside it (BENCHMARKS.md, session 21).
//!
//! No verdict comes before `min_judging_ms`. redis's functions all run up
//! to twice as fast for tens of milliseconds at a time here, and programs
//! have start-up stretches of their own (the demo's `memtable_seek` is
//! 5–8 times faster while its memtable is nearly empty); a function whose
//! first few hundred calls fell in one was taken out, and refine dropped it
//! from the loop (BENCHMARKS.md). So once two whole batches past a
//! thread's first two (whose first call misses the caches) have had a call
//! that reached a threshold, the probe is warm, and for `min_judging_ms`
//! from then its score is held within initial..upper-1: a bad start is
//! forgotten, and what follows is judged from `initial` as if the probe
//! were new. A probe none of whose calls comes near a threshold (one
//! preempted call aside) goes as soon as `MIN_SCORED_CALLS` were scored.
//!
//! Removal waits longer than a hot verdict: a warm probe whose calls still
//! come near a threshold (a call at one in the last `KEPT_FAR` whole
//! batches) is kept at `initial` or above until `min_removal_ms`, up to
//! `KEPT_MAX` probes at once. A loop
//! cannot undo a removal (refine drops the function), and redis's
//! functions within ~1.5× of a threshold were removed in the loops whose
//! first half-second ran in one of the machine's fast stretches and hot in
//! the others. A probe whose calls stopped coming near one (CPython's
//! functions, slow only while its start-up warms the caches) goes after
//! `min_judging_ms` as before.
//!
//! A probe at the bottom is kept, its score held at 1, while it carries
//! weight (`keep_share`, `carries_weight`): CPython's `_PyObject_MakeTpCall`
//! (15 % of a run's own time; p50 91–228 ns a call, mean 350–650 ns) and
//! `sre_search` were taken out 1.2 s into some iterations and hot in the
//! others, and the demo's `run_lookup` (a bloom-filter miss returns at once,
//! a hit searches a run: 4 % of the run) half-way through one; each time the
//! hotspot table lost one of its top rows and the callers' own times moved.

use crate::engine::probe::{Life, Probe};
use crate::meter::stats::ThreadProbeStats;
use core::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

pub const BATCH: u8 = 16;
/// Batches with a call at a threshold that make a probe warm.
const WARM_BATCHES: u8 = 2;
/// Past `min_judging_ms`, a warm probe is kept for `min_removal_ms` only
/// while its calls still come near a threshold: fewer than this many
/// whole batches in a row without a call at one.
const KEPT_FAR: u8 = 32;
/// No probe is removed before this many of its calls were scored (all
/// threads together): a function's first calls can be its cheapest (the
/// demo's `memtable_seek`, 38 ns a call while its skip list is nearly
/// empty and some 280 ns once it fills, was removed after 64 calls in 6
/// of 10 runs on a busy machine, and in none of 14 with this), and a few
/// dozen calls more of a cold function cost next to nothing.
const MIN_SCORED_CALLS: u32 = 128;
/// `MIN_SCORED_CALLS`, or 0 when both windows are 0 (Satoris' rule).
static MIN_SCORED: AtomicU32 = AtomicU32::new(MIN_SCORED_CALLS);
/// Probes kept for the removal window at once, at most: each costs every
/// call of it while kept. CPython's iteration 1 had 82 to keep (0.66× bare,
/// against 0.85× removing them after `min_judging_ms`; with 32 at once
/// 0.83×, with 32 a run 0.87×, against 0.86× and 0.80× — noise). A slot is given
/// back when its probe is removed or turns hot, or its window ends: with 32 a run, redis's
/// cheap hot-path functions (`zmalloc`, 10 ns a call, kept for a few
/// milliseconds after a preempted call) used the slots up before its
/// dispatchers (`beforeSleep`, judged after its callees) asked.
const KEPT_MAX: u32 = 32;
/// Slots held now.
static KEPT: AtomicU32 = AtomicU32::new(0);

pub(crate) static INCLUSIVE_TICKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static INHERENT_TICKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static CREDIT: AtomicI64 = AtomicI64::new(1);
pub(crate) static DEBIT: AtomicI64 = AtomicI64::new(2);
static UPPER: AtomicI64 = AtomicI64::new(i64::MAX);
static INITIAL: AtomicI64 = AtomicI64::new(1);
/// `min_judging_ms` in clock ticks.
static MIN_JUDGING_TICKS: AtomicU64 = AtomicU64::new(0);
/// `min_removal_ms` (at least `min_judging_ms`) in clock ticks.
static MIN_REMOVAL_TICKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LOWER: AtomicI64 = AtomicI64::new(i64::MAX);

/// Calls of a probe left unscored while its callees are judged, at most.
pub const HELD_CAP: u32 = 4096;
/// `keep_share` in parts per million of the run's elapsed time (0 = off).
static KEEP_SHARE_PPM: AtomicU64 = AtomicU64::new(0);
/// A probe kept for its share must cost at most this fraction of the
/// function's own time a call (1/4): measuring it stays cheap.
const KEEP_COST_FACTOR: u64 = 4;
/// How long one thread's finding that a probe carries the run keeps it
/// for every thread, in clock ticks (100 ms).
static CARRIED_TICKS: AtomicU64 = AtomicU64::new(0);
static ADAPTIVE: AtomicBool = AtomicBool::new(true);

pub fn configure(h: &hotprobe_config::settings::Hotspot) {
    set_thresholds_us(h.threshold_us, h.inherent_threshold_us);
    CREDIT.store(h.credit, Ordering::Relaxed);
    DEBIT.store(h.debit, Ordering::Relaxed);
    UPPER.store(h.upper, Ordering::Relaxed);
    INITIAL.store(h.initial, Ordering::Relaxed);
    LOWER.store(h.lower, Ordering::Relaxed);
    MIN_JUDGING_TICKS.store(
        crate::meter::clock::ns_to_ticks(h.min_judging_ms * 1e6),
        Ordering::Relaxed,
    );
    MIN_REMOVAL_TICKS.store(
        crate::meter::clock::ns_to_ticks(h.min_judging_ms.max(h.min_removal_ms) * 1e6),
        Ordering::Relaxed,
    );
    let satoris = h.min_judging_ms == 0.0 && h.min_removal_ms == 0.0;
    MIN_SCORED.store(
        if satoris { 0 } else { MIN_SCORED_CALLS },
        Ordering::Relaxed,
    );
    ADAPTIVE.store(h.adaptive, Ordering::Relaxed);
    // Rounded, and a share above 0 stays above 0.
    let ppm = (h.keep_share * 1e6).round() as u64;
    KEEP_SHARE_PPM.store(
        if h.keep_share > 0.0 { ppm.max(1) } else { 0 },
        Ordering::Relaxed,
    );
    CARRIED_TICKS.store(crate::meter::clock::ns_to_ticks(100e6), Ordering::Relaxed);
}

/// The thresholds in force, in µs (inclusive, inherent), as f64 bits.
static THRESHOLDS_US: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The thresholds in force (µs): the configured ones, or higher where the
/// backend cannot measure below (`raise_to`).
pub fn thresholds_us() -> (f64, f64) {
    (
        f64::from_bits(THRESHOLDS_US[0].load(Ordering::Relaxed)),
        f64::from_bits(THRESHOLDS_US[1].load(Ordering::Relaxed)),
    )
}

fn set_thresholds_us(inclusive: f64, inherent: f64) {
    THRESHOLDS_US[0].store(inclusive.to_bits(), Ordering::Relaxed);
    THRESHOLDS_US[1].store(inherent.to_bits(), Ordering::Relaxed);
    INCLUSIVE_TICKS.store(
        crate::meter::clock::ns_to_ticks(inclusive * 1000.0),
        Ordering::Relaxed,
    );
    INHERENT_TICKS.store(
        crate::meter::clock::ns_to_ticks(inherent * 1000.0),
        Ordering::Relaxed,
    );
}

/// Raises the thresholds to at least `inclusive_us` / `inherent_us` (a
/// backend whose probe costs µs: a call it cannot time better than that
/// must not look warm). Returns the thresholds before and after when raised.
pub fn raise_to(inclusive_us: f64, inherent_us: f64) -> Option<((f64, f64), (f64, f64))> {
    let before = thresholds_us();
    let after = (before.0.max(inclusive_us), before.1.max(inherent_us));
    (after != before).then(|| {
        set_thresholds_us(after.0, after.1);
        (before, after)
    })
}

pub fn adaptive() -> bool {
    ADAPTIVE.load(Ordering::Relaxed)
}

/// The score change one completed outermost call earns (ticks, compensated).
#[inline(always)]
pub fn delta(inclusive: u64, inherent: u64) -> i64 {
    let credit = CREDIT.load(Ordering::Relaxed);
    let debit = DEBIT.load(Ordering::Relaxed);
    let mut delta = if inclusive >= INCLUSIVE_TICKS.load(Ordering::Relaxed) {
        credit
    } else {
        -debit
    };
    delta += if inherent >= INHERENT_TICKS.load(Ordering::Relaxed) {
        credit
    } else {
        -debit
    };
    delta
}

/// Whether the score card is still judging `probe`: unsettled, and its
/// score under `lower` (a probe at or above it is classified hot already).
#[inline(always)]
pub fn judging(probe: &Probe) -> bool {
    !probe.settled.load(Ordering::Relaxed)
        && probe.score.load(Ordering::Relaxed) < LOWER.load(Ordering::Relaxed)
}

/// Whether an outermost call of `probe` during which a callee was still
/// being judged goes unscored: yes, up to `HELD_CAP` such calls.
#[inline(always)]
pub fn held(probe: &Probe) -> bool {
    probe.held.load(Ordering::Relaxed) < HELD_CAP
        && probe.held.fetch_add(1, Ordering::Relaxed) < HELD_CAP
}

/// Scores one completed outermost call (ticks, compensated).
#[inline(always)]
pub fn after_call(probe: &Probe, stats: &mut ThreadProbeStats, inclusive: u64, inherent: u64) {
    stats.score_pending += delta(inclusive, inherent);
    stats.score_calls += 1;
    if stats.score_calls >= BATCH {
        flush(probe, stats);
    }
}

/// Adds a thread's pending score change to the probe's score and decides.
pub fn flush(probe: &Probe, stats: &mut ThreadProbeStats) {
    let pending = stats.score_pending;
    let calls = stats.score_calls;
    stats.score_pending = 0;
    stats.score_calls = 0;
    if pending == 0 || probe.settled.load(Ordering::Relaxed) {
        return;
    }
    let scored = count_scored(probe, calls);
    let mut now = Now(0);
    // Only whole batches past a thread's first two say whether its calls
    // come near a threshold (the first call, caches cold and pages to fault
    // in, is slow anyway), and it takes two such batches with a call at a
    // threshold to make the probe warm: one preemption in a call of a few
    // ns is not enough.
    let judged_batch = calls >= BATCH && stats.count > 2 * u64::from(BATCH);
    let warm = judged_batch && warm_batch(pending, calls);
    if judged_batch {
        note_far(probe, warm);
    }
    if warm
        && probe.warm_batches.load(Ordering::Relaxed) < WARM_BATCHES
        && probe.warm_batches.fetch_add(1, Ordering::Relaxed) + 1 == WARM_BATCHES
    {
        probe.judged_since.store(now.ticks(), Ordering::Relaxed);
    }
    let score = probe.score.fetch_add(pending, Ordering::Relaxed) + pending;
    let upper = UPPER.load(Ordering::Relaxed);
    if score <= 0 {
        if young(probe, &MIN_JUDGING_TICKS, &mut now) {
            raise_to_floor(probe, INITIAL.load(Ordering::Relaxed));
        } else if scored < MIN_SCORED.load(Ordering::Relaxed) {
            // Just above the bottom: the first batch past the count decides.
            raise_to_floor(probe, 1);
        } else if carried(probe, stats, &mut now) {
            // Before the removal window, so that the thread that carries
            // it stamps `carried_until` for the others (and takes no slot).
            raise_to_floor(probe, 1);
        } else if probe.far_batches.load(Ordering::Relaxed) < KEPT_FAR
            && young(probe, &MIN_REMOVAL_TICKS, &mut now)
            && keep(probe)
        {
            raise_to_floor(probe, INITIAL.load(Ordering::Relaxed));
        } else {
            disable(probe);
        }
    } else if score >= upper {
        if young(probe, &MIN_JUDGING_TICKS, &mut now) {
            probe.score.fetch_min(upper - 1, Ordering::Relaxed);
        } else if probe.transition(Life::Active, Life::Hot) {
            probe.settled.store(true, Ordering::Relaxed);
            release(probe);
        }
    }
}

/// Whether this thread's calls of the probe take at least
/// `KEEP_COST_FACTOR` calibrated probe costs each of their own: measuring
/// them costs at most a quarter of their time. No calibration: no.
fn worth_measuring(stats: &ThreadProbeStats) -> bool {
    let (_, probe_ticks) = crate::meter::compensate::costs();
    probe_ticks != 0
        && stats.count != 0
        && stats.inherent / stats.count >= probe_ticks.saturating_mul(KEEP_COST_FACTOR)
}

/// Whether taking the probe out would hide a large part of the program's
/// time for a small saving: this thread's own time in it is at least
/// `keep_share` of the time since the agent started, and worth measuring.
/// Its calls are mostly under the thresholds (its score is at the bottom)
/// and a few far over. The time is this thread's, the elapsed time the
/// agent's (a thread that started late, or a fork child, counts from the
/// agent's start: it errs towards removal).
fn carries_weight(stats: &ThreadProbeStats, now: &mut Now) -> bool {
    let share_ppm = KEEP_SHARE_PPM.load(Ordering::Relaxed);
    if share_ppm == 0 || !worth_measuring(stats) {
        return false;
    }
    let elapsed = now
        .ticks()
        .saturating_sub(crate::meter::clock::start_ticks());
    u128::from(stats.inherent) * 1_000_000 >= u128::from(elapsed) * u128::from(share_ppm)
}

/// Whether the probe at the bottom is kept for carrying the run: this
/// thread finds it does (and stamps `carried_until` 100 ms ahead), or
/// another thread found so within the last 100 ms and this thread's own
/// calls are worth measuring too. A thread that calls it now and then does
/// not take it out from under the one it carries; one whose calls are too
/// cheap to measure (a few ns each, where the probe costs it more than
/// the function does) still does.
fn carried(probe: &Probe, stats: &ThreadProbeStats, now: &mut Now) -> bool {
    if KEEP_SHARE_PPM.load(Ordering::Relaxed) == 0 {
        return false;
    }
    if carries_weight(stats, now) {
        let until = now
            .ticks()
            .saturating_add(CARRIED_TICKS.load(Ordering::Relaxed));
        probe.carried_until.fetch_max(until, Ordering::Relaxed);
        return true;
    }
    worth_measuring(stats) && now.ticks() < probe.carried_until.load(Ordering::Relaxed)
}

/// The clock, read at most once per flush and only when a decision needs it.
struct Now(u64);

impl Now {
    fn ticks(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = crate::meter::clock::now().max(1);
        }
        self.0
    }
}

/// Adds a batch to the probe's scored calls and returns the total; once
/// past the minimum the shared counter is only read, not written, so busy
/// probes do not contend on it.
fn count_scored(probe: &Probe, calls: u8) -> u32 {
    let so_far = probe.scored_calls.load(Ordering::Relaxed);
    if so_far >= MIN_SCORED.load(Ordering::Relaxed) {
        return so_far;
    }
    probe
        .scored_calls
        .fetch_add(u32::from(calls), Ordering::Relaxed)
        .saturating_add(u32::from(calls))
}

/// Keeps the score at `floor` or above, unless another thread removed the
/// probe meanwhile: a removed probe shows 0 or below.
fn raise_to_floor(probe: &Probe, floor: i64) {
    // Acquire pairs with `disable`'s release: raised after its lowering,
    // this sees `settled`.
    probe.score.fetch_max(floor, Ordering::AcqRel);
    if probe.settled.load(Ordering::Relaxed)
        && matches!(probe.life(), Life::Disabling | Life::Disabled)
    {
        probe.score.fetch_min(0, Ordering::Relaxed);
    }
}

/// Whether `probe` may be kept for the removal window: it holds a slot
/// already, or one of the `KEPT_MAX` is free.
fn keep(probe: &Probe) -> bool {
    if probe.kept.load(Ordering::Relaxed) {
        return true;
    }
    let take = |n: u32| (n < KEPT_MAX).then_some(n + 1);
    if KEPT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
        .is_err()
    {
        return false;
    }
    if probe.kept.swap(true, Ordering::Relaxed) {
        // Another thread took one for this probe meanwhile.
        KEPT.fetch_sub(1, Ordering::Relaxed);
    }
    // Pairs with the fence in `release`: either this thread sees `settled`
    // or the settling thread sees `kept` (else the slot would leak).
    fence(Ordering::SeqCst);
    if probe.settled.load(Ordering::Relaxed) {
        // Removed or hot meanwhile: nothing will give the slot back later.
        release(probe);
        return false;
    }
    true
}

/// Gives back `probe`'s slot, if it holds one (called once `settled` is
/// set: it was removed, is hot or its module was unloaded; or once its
/// removal window is over).
pub(crate) fn release(probe: &Probe) {
    fence(Ordering::SeqCst);
    if probe.kept.swap(false, Ordering::Relaxed) {
        KEPT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Gives back the slots of kept probes whose removal window is over. Runs
/// on the agent thread every tick: a kept probe not called since (a
/// start-up function), or whose score stayed above 0, would otherwise hold
/// its slot for the rest of the run. Once past its window a probe is not
/// kept again: at the bottom it is removed.
pub fn release_expired() {
    if KEPT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut now = Now(0);
    for probe in crate::engine::probe::all() {
        if probe.kept.load(Ordering::Relaxed) && !young(probe, &MIN_REMOVAL_TICKS, &mut now) {
            release(probe);
        }
    }
}

/// Counts whole batches in a row without a call at a threshold. Threads
/// race on it (load, then store): a lost update moves the count by a batch
/// or resets it a batch late, which the 32-batch margin absorbs, and it
/// costs no read-modify-write on a busy probe's flush.
fn note_far(probe: &Probe, warm: bool) {
    let n = probe.far_batches.load(Ordering::Relaxed);
    if warm {
        if n != 0 {
            probe.far_batches.store(0, Ordering::Relaxed);
        }
    } else if n < u8::MAX {
        probe.far_batches.store(n + 1, Ordering::Relaxed);
    }
}

/// Whether a batch of `calls` calls that earned `pending` reached a
/// threshold at all. A call earns `-2 debit` plus `credit + debit` per
/// threshold it reaches.
fn warm_batch(pending: i64, calls: u8) -> bool {
    let debit = i128::from(DEBIT.load(Ordering::Relaxed));
    i128::from(pending) > -2 * debit * i128::from(calls)
}

/// Whether `probe` is warm and has been for less than `window`
/// (`min_judging_ms` before it may turn hot, `min_removal_ms` before it
/// may be removed; read only when its score reaches a bound, so the clock
/// is not read on every flush). Warm but not yet stamped counts as young.
fn young(probe: &Probe, window: &AtomicU64, now: &mut Now) -> bool {
    let window = window.load(Ordering::Relaxed);
    if window == 0 || probe.warm_batches.load(Ordering::Relaxed) < WARM_BATCHES {
        return false;
    }
    match probe.judged_since.load(Ordering::Relaxed) {
        0 => true,
        since => now.ticks().saturating_sub(since) < window,
    }
}

/// The score fell to the bottom. Adaptive: calls stop being metered now and
/// the decider restores the original bytes soon. Otherwise the probe is
/// only classified and keeps counting.
fn disable(probe: &Probe) {
    if adaptive() {
        if probe.transition(Life::Active, Life::Disabling) {
            probe.settled.store(true, Ordering::Relaxed);
            release(probe);
            // A thread still in the window may have raised it meanwhile.
            probe.score.fetch_min(0, Ordering::AcqRel);
            probe.bypass.store(1, Ordering::Release);
            probe.disabled_at_ns.store(
                crate::meter::clock::since_start_ns().max(1),
                Ordering::Relaxed,
            );
            super::decider::wake();
        }
    } else if probe.transition(Life::Active, Life::Disabled) {
        // Classified only: it stays installed and its counts stay complete.
        probe.settled.store(true, Ordering::Relaxed);
        release(probe);
        probe.score.fetch_min(0, Ordering::AcqRel);
        *crate::state::lock(&probe.reason) =
            Some("score fell to 0 (classified only: adaptive is off)".into());
    }
}

//! A probe: the hot data the stubs and enter/exit touch (kept together,
//! never moved or freed, since trampolines point at it), and the registry of
//! all probes of the process.

use crate::meter::histogram::{self, Shared};
use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Mutex, RwLock};

/// Where a probe is in its life. Stored in `Probe::state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Life {
    /// Selected, not yet patched.
    Pending = 0,
    /// Installed and scored.
    Active = 1,
    /// Installed; reached `upper`: a hotspot for good, no longer scored.
    Hot = 2,
    /// Its score fell to the bottom: waiting for its bytes to go back.
    Disabling = 3,
    /// Original bytes restored.
    Disabled = 4,
    /// Never installed; `reason` says why.
    Rejected = 5,
}

impl Life {
    fn from_u8(v: u8) -> Life {
        match v {
            1 => Life::Active,
            2 => Life::Hot,
            3 => Life::Disabling,
            4 => Life::Disabled,
            5 => Life::Rejected,
            _ => Life::Pending,
        }
    }
}

/// Totals of threads that have ended, merged into their probe.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub count: u64,
    pub abandoned: u64,
    pub inclusive: u64,
    pub inherent: u64,
    pub max_inclusive: u64,
}

/// The identity of the function behind a probe.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Demangled name; may be the raw symbol until `Probe::name` demangles it
    /// (discovery at start does not demangle, to stay fast).
    pub name: String,
    pub symbol: String,
    pub module: String,
    pub offset: u64,
    pub size: u64,
    /// Runtime address of the function's first byte.
    pub address: usize,
    /// Link-time address, for source lookups.
    pub link_address: u64,
}

#[repr(C)]
pub struct Probe {
    /// Where calls continue: the relocated prologue.
    pub resume: AtomicUsize,
    /// Non-zero: calls pass straight through, unmetered. Offset 8 (the entry stub reads it).
    pub bypass: AtomicU32,
    pub id: u32,
    pub score: AtomicI64,
    state: AtomicU8,
    /// Set once the score card has decided for good (hot or disabled).
    pub settled: AtomicBool,
    /// The shared part of the histogram, allocated on first use.
    pub hist: AtomicPtr<Shared>,
    pub disabled_at_ns: AtomicU64,
    /// Calls counted but not timed: no thread state could take them.
    pub untimed: AtomicU64,
    /// Outermost calls left unscored because a callee was still being
    /// judged (score_card::held).
    pub held: AtomicU32,
    /// Clock ticks when the probe turned warm (0: not yet).
    pub judged_since: AtomicU64,
    /// Score batches with a call at a threshold, up to the two that make
    /// the probe warm (score_card::flush).
    pub warm_batches: AtomicU8,
    /// Whole score batches in a row without a call at a threshold, up to
    /// 255 (score_card: a probe whose calls stopped coming near one is not
    /// kept for `min_removal_ms`).
    pub far_batches: AtomicU8,
    /// Calls scored so far, all threads together, counted a batch at a
    /// time (score_card: no removal before `MIN_SCORED_CALLS`).
    pub scored_calls: AtomicU32,
    /// Holds one of the slots of probes kept for the removal window
    /// (score_card::keep; given back when it is removed, turns hot or its
    /// window ends).
    pub kept: AtomicBool,
    /// Clock ticks until which the probe is kept at the bottom because a
    /// thread found it carrying the run (score_card::carries_weight), so a
    /// thread that calls it rarely does not take it out meanwhile.
    pub carried_until: AtomicU64,
    pub totals: Mutex<Totals>,
    pub reason: Mutex<Option<String>>,
    pub meta: Meta,
    /// The patch, once installed (for removal).
    pub patch: Mutex<Option<crate::arch::patch::Patch>>,
    demangled: std::sync::OnceLock<String>,
}

pub const BYPASS_OFFSET: usize = 8;

impl Probe {
    pub fn new(id: u32, meta: Meta, initial_score: i64) -> Probe {
        Probe {
            resume: AtomicUsize::new(0),
            bypass: AtomicU32::new(1),
            id,
            score: AtomicI64::new(initial_score),
            state: AtomicU8::new(Life::Pending as u8),
            settled: AtomicBool::new(false),
            hist: AtomicPtr::new(core::ptr::null_mut()),
            disabled_at_ns: AtomicU64::new(0),
            untimed: AtomicU64::new(0),
            held: AtomicU32::new(0),
            judged_since: AtomicU64::new(0),
            warm_batches: AtomicU8::new(0),
            far_batches: AtomicU8::new(0),
            scored_calls: AtomicU32::new(0),
            kept: AtomicBool::new(false),
            carried_until: AtomicU64::new(0),
            totals: Mutex::new(Totals::default()),
            reason: Mutex::new(None),
            meta,
            patch: Mutex::new(None),
            demangled: std::sync::OnceLock::new(),
        }
    }

    /// The demangled name (C++ with parameter types, Rust without the hash),
    /// worked out on first use.
    pub fn name(&self) -> &str {
        self.demangled.get_or_init(|| {
            if self.meta.name != self.meta.symbol {
                self.meta.name.clone()
            } else {
                hotprobe_discover::demangle::display_name(&self.meta.symbol)
            }
        })
    }

    #[inline]
    pub fn life(&self) -> Life {
        Life::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_life(&self, life: Life) {
        self.state.store(life as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if still in `from`.
    pub fn transition(&self, from: Life, to: Life) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn reject(&self, reason: String) {
        *crate::state::lock(&self.reason) = Some(reason);
        self.set_life(Life::Rejected);
    }

    /// The shared histogram, allocated with mmap on first use (signal-safe).
    #[inline]
    pub fn shared_hist(&self) -> Option<&Shared> {
        let mut p = self.hist.load(Ordering::Acquire);
        if p.is_null() {
            let fresh = histogram::pool_alloc();
            if fresh.is_null() {
                return None;
            }
            // A histogram that loses the race stays in the pool, zeroed and
            // unused: a few KiB, rarely, against a system call every time.
            match self.hist.compare_exchange(
                core::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => p = fresh,
                Err(existing) => p = existing,
            }
        }
        // SAFETY: once published the histogram is never freed; zeroed memory is valid atomics.
        Some(unsafe { &*p })
    }

    /// The shared histogram if a call has spilled into it yet.
    pub fn shared_hist_if_any(&self) -> Option<&Shared> {
        let p = self.hist.load(Ordering::Acquire);
        // SAFETY: once published the histogram is never freed.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    pub fn add_to_shared_hist(&self, bucket: usize, n: u64) {
        if let Some(h) = self.shared_hist() {
            h.add(bucket.min(histogram::BUCKETS - 1), n);
        }
    }
}

/// Every probe of the process, in id order. Probes are leaked: trampolines
/// and in-flight frames may point at them until the process ends.
static PROBES: RwLock<Vec<&'static Probe>> = RwLock::new(Vec::new());

pub fn register(make: impl FnOnce(u32) -> Probe) -> &'static Probe {
    let mut all = PROBES.write().unwrap_or_else(|e| e.into_inner());
    let probe: &'static Probe = Box::leak(Box::new(make(all.len() as u32)));
    all.push(probe);
    probe
}

pub fn all() -> Vec<&'static Probe> {
    PROBES.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub fn count() -> usize {
    PROBES.read().unwrap_or_else(|e| e.into_inner()).len()
}

/// Whether `addr` is the first byte of a probed function (for the trap handler).
pub fn is_patch_site(addr: usize) -> bool {
    match PROBES.try_read() {
        Ok(all) => all.iter().any(|p| p.meta.address == addr),
        Err(_) => true,
    }
}

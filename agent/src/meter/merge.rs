//! Merging: a thread that ends hands its counts to its probes and its
//! calling contexts to the process tree; a snapshot adds the live threads'
//! counts on top, without stopping them.

use crate::engine::probe::{self, Probe, Totals};
use crate::engine::thread::{self, ThreadState};
use crate::meter::contexts::{FoldedEdge, ROOT};
use crate::meter::histogram::{self, Merged};
use crate::state::lock;
use std::collections::HashMap;
use std::sync::Mutex;

/// Calling contexts of ended threads, merged by path.
#[derive(Default)]
struct ProcessTree {
    index: HashMap<(u32, u32), u32>,
    nodes: Vec<MergedNode>,
    folded: HashMap<(u32, u32), (u64, u64)>,
}

#[derive(Clone, Copy, Default)]
pub struct MergedNode {
    /// Parent's index in the merged tree, or ROOT.
    pub parent: u32,
    pub probe: u32,
    pub count: u64,
    pub inclusive: u64,
    pub inherent: u64,
}

static ENDED_TREE: Mutex<Option<ProcessTree>> = Mutex::new(None);
static ENDED_UNMETERED: Mutex<u64> = Mutex::new(0);

impl ProcessTree {
    /// Adds one thread's tree; thread node indices map to merged ones.
    fn add_thread(&mut self, t: &ThreadState) {
        const SKIP: u32 = u32::MAX - 1;
        let registered = probe::count() as u32;
        let mut map: Vec<u32> = Vec::with_capacity(t.tree.len as usize);
        for i in 0..t.tree.len {
            // SAFETY: i < len: an initialised node of the thread's tree.
            let n = unsafe { &*t.tree.node(i) };
            let parent = if n.parent == ROOT {
                ROOT
            } else {
                map.get(n.parent as usize).copied().unwrap_or(SKIP)
            };
            // Calibration's probe is not the program's: leave it and its subtree out.
            if parent == SKIP || n.probe >= registered {
                map.push(SKIP);
                continue;
            }
            let next = self.nodes.len() as u32;
            let gid = *self.index.entry((parent, n.probe)).or_insert(next);
            if gid == next {
                self.nodes.push(MergedNode {
                    parent,
                    probe: n.probe,
                    ..Default::default()
                });
            }
            let m = &mut self.nodes[gid as usize];
            m.count += n.count;
            m.inclusive += n.inclusive;
            m.inherent += n.inherent;
            map.push(gid);
        }
        for e in t.tree.folded_edges().filter(|e| e.callee < registered) {
            let v = self.folded.entry((e.caller, e.callee)).or_default();
            v.0 += e.count;
            v.1 += e.inclusive;
        }
    }
}

/// Merges an ending thread into the probes and the process tree.
pub fn retire_thread(t: &mut ThreadState) {
    // Frames still open will never return: they were left by pthread_exit or cancellation.
    for sh in t.shadows() {
        for f in sh.live_frames() {
            // SAFETY: live frames of this thread point at its stats blocks.
            unsafe { (*(*f).stats).abandoned += 1 };
        }
    }
    for (_, raw) in t.stats.iter() {
        // SAFETY: values are this (ending) thread's stats blocks; nobody else writes them now.
        let s = unsafe { &mut *(raw as *mut crate::meter::stats::ThreadProbeStats) };
        // SAFETY: the probe is leaked.
        let p = unsafe { &*s.probe };
        let mut tot = lock(&p.totals);
        tot.count += s.count;
        tot.abandoned += s.abandoned;
        tot.inclusive += s.inclusive;
        tot.inherent += s.inherent;
        tot.max_inclusive = tot.max_inclusive.max(s.max_inclusive);
        drop(tot);
        for (b, &c) in s.hist.iter().enumerate() {
            if c != 0 {
                p.add_to_shared_hist(b, c as u64);
            }
        }
        if s.score_pending != 0 && !p.settled.load(core::sync::atomic::Ordering::Relaxed) {
            crate::adaptive::score_card::flush(p, s);
        }
    }
    lock(&ENDED_TREE)
        .get_or_insert_with(ProcessTree::default)
        .add_thread(t);
    *lock(&ENDED_UNMETERED) += t.unmetered;
}

/// Forgets everything measured (fork child, or a reset request).
pub fn reset_ended() {
    *lock(&ENDED_TREE) = None;
    *lock(&ENDED_UNMETERED) = 0;
}

/// One probe's numbers at snapshot time, in ticks.
#[derive(Default, Clone)]
pub struct ProbeView {
    pub totals: Totals,
    pub in_flight: u64,
    pub hist: Option<Box<Merged>>,
}

/// Everything a snapshot needs, read while threads keep running.
pub struct View {
    pub probes: Vec<ProbeView>,
    pub contexts: Vec<MergedNode>,
    pub folded: Vec<FoldedEdge>,
    pub unmetered: u64,
    pub untimed: u64,
    pub memory_bytes: u64,
    pub switches: u64,
}

pub fn view() -> View {
    let all = probe::all();
    thread::with_threads(|threads| {
        let mut probes: Vec<ProbeView> = all
            .iter()
            .map(|p| ProbeView {
                totals: lock(&p.totals).clone(),
                ..Default::default()
            })
            .collect();
        let mut tree = match lock(&ENDED_TREE).as_ref() {
            Some(t) => ProcessTree {
                index: t.index.clone(),
                nodes: t.nodes.clone(),
                folded: t.folded.clone(),
            },
            None => ProcessTree::default(),
        };
        let mut unmetered = *lock(&ENDED_UNMETERED);
        let mut untimed = 0;
        for (p, v) in all.iter().zip(probes.iter_mut()) {
            let n = p.untimed.load(core::sync::atomic::Ordering::Relaxed);
            v.totals.count += n;
            untimed += n;
        }
        let mut memory = 0u64;
        let mut switches = 0u64;
        let mut local_hists: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
        for t in threads {
            unmetered += t.unmetered;
            switches += t.switches;
            memory += t.arena.allocated as u64;
            for s in t.all_stats() {
                // SAFETY: leaked probe.
                let id = unsafe { (*s.probe).id } as usize;
                if let Some(v) = probes.get_mut(id) {
                    v.totals.count += s.count;
                    v.totals.abandoned += s.abandoned;
                    v.totals.inclusive += s.inclusive;
                    v.totals.inherent += s.inherent;
                    v.totals.max_inclusive = v.totals.max_inclusive.max(s.max_inclusive);
                    local_hists
                        .entry(id as u32)
                        .or_default()
                        .push(s.hist.to_vec());
                }
            }
            for sh in t.shadows() {
                for f in sh.live_frames() {
                    // SAFETY: frames of a registered thread; the probe is leaked.
                    let id = unsafe { (*(*f).probe).id } as usize;
                    if let Some(v) = probes.get_mut(id) {
                        v.in_flight += 1;
                    }
                }
            }
            tree.add_thread(t);
        }
        for (i, p) in all.iter().enumerate() {
            let locals = local_hists.remove(&(i as u32));
            let shared = p.hist.load(core::sync::atomic::Ordering::Acquire);
            if locals.is_none() && shared.is_null() {
                continue;
            }
            let mut m = Box::new(Merged::new());
            if !shared.is_null() {
                // SAFETY: a published shared histogram is never freed.
                m.add_shared(unsafe { &*shared });
            }
            for l in locals.unwrap_or_default() {
                m.add_local(&l);
            }
            probes[i].hist = Some(m);
        }
        let folded = tree
            .folded
            .iter()
            .map(|(&(caller, callee), &(count, inclusive))| FoldedEdge {
                caller,
                callee,
                count,
                inclusive,
            })
            .collect();
        memory += (all.len()
            * (core::mem::size_of::<Probe>() + crate::arch::x86_64::trampoline::SLOT_LEN))
            as u64;
        memory += all
            .iter()
            .filter(|p| !p.hist.load(core::sync::atomic::Ordering::Relaxed).is_null())
            .count() as u64
            * core::mem::size_of::<histogram::Shared>() as u64;
        View {
            probes,
            contexts: tree.nodes,
            folded,
            unmetered,
            untimed,
            memory_bytes: memory,
            switches,
        }
    })
}

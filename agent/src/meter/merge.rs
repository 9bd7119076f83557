//! Merging: a thread that ends hands its counts to its probes and its
//! calling contexts to the process tree; a snapshot adds the live threads'
//! counts on top, without stopping them.

use crate::engine::probe::{self, Probe, Totals};
use crate::engine::thread::{self, ThreadState};
use crate::meter::contexts::{self, FoldedEdge, Node, ROOT};
use crate::meter::histogram::{self, Merged, LOCAL_BUCKETS};
use crate::state::lock;
use std::collections::HashMap;
use std::sync::Mutex;

/// Calling contexts of ended threads, merged by path. Its nodes count
/// against the same cap as the live threads' (`contexts::take_node`).
#[derive(Default, Clone)]
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

/// Where a thread's node went in the merged tree.
#[derive(Clone, Copy)]
enum Placed {
    /// Left out (calibration's probe, and everything below it).
    Skip,
    /// A merged node (or ROOT, for the parent of a root).
    Node(u32),
    /// Folded past the cap: its own time went to merged node `into` (or
    /// nowhere, at ROOT); `probe` is the caller of its children.
    Folded { into: u32, probe: u32 },
}

static ENDED_TREE: Mutex<Option<ProcessTree>> = Mutex::new(None);
static ENDED_UNMETERED: Mutex<u64> = Mutex::new(0);

impl ProcessTree {
    /// Adds one thread's tree; thread node indices map to merged ones. With
    /// `capped`, new merged nodes take from the contexts cap and fold past it.
    fn add_thread(&mut self, t: &ThreadState, capped: bool) {
        let registered = probe::count() as u32;
        let len = t.tree.len();
        let mut placed: Vec<Placed> = Vec::with_capacity(len as usize);
        for i in 0..len {
            // SAFETY: i < len: an initialised node of the thread's tree.
            let n = unsafe { &*t.tree.node(i) };
            let parent = if n.parent == ROOT {
                Placed::Node(ROOT)
            } else {
                placed
                    .get(n.parent as usize)
                    .copied()
                    .unwrap_or(Placed::Skip)
            };
            // Calibration's probe is not the program's: leave it and its subtree out.
            let here = match parent {
                _ if n.probe >= registered => Placed::Skip,
                Placed::Skip => Placed::Skip,
                Placed::Node(pg) => match self.index.get(&(pg, n.probe)) {
                    Some(&gid) => {
                        let m = &mut self.nodes[gid as usize];
                        m.count += n.count;
                        m.inclusive += n.inclusive;
                        m.inherent += n.inherent;
                        Placed::Node(gid)
                    }
                    None if !capped || contexts::take_node() => {
                        let gid = self.nodes.len() as u32;
                        self.index.insert((pg, n.probe), gid);
                        self.nodes.push(MergedNode {
                            parent: pg,
                            probe: n.probe,
                            count: n.count,
                            inclusive: n.inclusive,
                            inherent: n.inherent,
                        });
                        Placed::Node(gid)
                    }
                    None => {
                        let caller = self.nodes.get(pg as usize).map_or(ROOT, |p| p.probe);
                        self.fold(pg, caller, n)
                    }
                },
                Placed::Folded { into, probe } => self.fold(into, probe, n),
            };
            placed.push(here);
        }
        for e in t.tree.folded_edges().filter(|e| e.callee < registered) {
            let v = self.folded.entry((e.caller, e.callee)).or_default();
            v.0 += e.count;
            v.1 += e.inclusive;
        }
    }

    /// A node past the cap: its calls become an edge from `caller`, its own
    /// time goes to merged node `into` (the contract: deeper paths fold
    /// into their parent).
    fn fold(&mut self, into: u32, caller: u32, n: &Node) -> Placed {
        if caller != ROOT {
            let v = self.folded.entry((caller, n.probe)).or_default();
            v.0 += n.count;
            v.1 += n.inclusive;
        }
        if let Some(m) = self.nodes.get_mut(into as usize) {
            m.inherent += n.inherent;
        }
        Placed::Folded {
            into,
            probe: n.probe,
        }
    }

    /// Heap bytes held, as the standard collections lay them out (a
    /// control byte per hash slot).
    fn bytes(&self) -> u64 {
        use core::mem::size_of;
        let index = self.index.capacity() * (size_of::<((u32, u32), u32)>() + 1);
        let folded = self.folded.capacity() * (size_of::<((u32, u32), (u64, u64))>() + 1);
        (index + folded + self.nodes.capacity() * size_of::<MergedNode>()) as u64
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
    for s in t.all_stats_mut() {
        // SAFETY: the probe is leaked.
        let p = unsafe { &*s.probe };
        let mut tot = lock(&p.totals);
        tot.count += s.count;
        tot.abandoned += s.abandoned;
        tot.inclusive += s.inclusive;
        tot.inherent += s.inherent;
        tot.max_inclusive = tot.max_inclusive.max(s.max_inclusive);
        drop(tot);
        let base = s.hist_base as usize;
        for (k, &c) in s.hist.iter().enumerate() {
            if c != 0 {
                p.add_to_shared_hist(base + k, c as u64);
            }
        }
        if s.score_pending != 0 && !p.settled.load(core::sync::atomic::Ordering::Relaxed) {
            crate::adaptive::score_card::flush(p, s);
        }
    }
    // The thread's nodes leave the budget and the merged tree takes what it adds.
    t.tree.release_count();
    lock(&ENDED_TREE)
        .get_or_insert_with(ProcessTree::default)
        .add_thread(t, true);
    *lock(&ENDED_UNMETERED) += t.unmetered;
}

/// Forgets everything measured (fork child, or a reset request).
pub fn reset_ended() {
    if let Some(tree) = lock(&ENDED_TREE).take() {
        contexts::give_back(tree.nodes.len() as u64);
    }
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
        let ended = lock(&ENDED_TREE);
        let mut memory = ended.as_ref().map_or(0, ProcessTree::bytes);
        let mut tree = ended.clone().unwrap_or_default();
        drop(ended);
        let mut unmetered = *lock(&ENDED_UNMETERED);
        let mut untimed = 0;
        for (p, v) in all.iter().zip(probes.iter_mut()) {
            let n = p.untimed.load(core::sync::atomic::Ordering::Relaxed);
            v.totals.count += n;
            untimed += n;
        }
        let mut switches = 0u64;
        let mut local_hists: HashMap<u32, Vec<(u16, [u8; LOCAL_BUCKETS])>> = HashMap::new();
        for t in threads {
            unmetered += t.unmetered;
            switches += t.switches;
            memory += t.memory_bytes();
            // Contexts before counters: a node is counted after its probe's
            // counter, so a thread's contexts never show more calls than its probes.
            tree.add_thread(t, false);
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
                        .push((s.hist_base, s.hist));
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
            for (base, window) in locals.unwrap_or_default() {
                m.add_local(base, &window);
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
        memory += all.iter().map(|p| probe_bytes(p)).sum::<u64>();
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

/// What a probe costs whoever calls it: its record, its trampoline slot,
/// its names, and its shared histogram once it has one.
fn probe_bytes(p: &Probe) -> u64 {
    let m = &p.meta;
    let mut bytes = core::mem::size_of::<Probe>()
        + crate::arch::x86_64::trampoline::SLOT_LEN
        + m.name.capacity()
        + m.symbol.capacity()
        + m.module.capacity();
    if !p.hist.load(core::sync::atomic::Ordering::Relaxed).is_null() {
        bytes += core::mem::size_of::<histogram::Shared>();
    }
    bytes as u64
}

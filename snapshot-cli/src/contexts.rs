//! The calling-context trees of snapshots as stacks of named frames, merged
//! across snapshots by the path of frame identities: what flame graphs and
//! pprof profiles are drawn from.

use crate::error::{CliError, Result};
use crate::load::Inputs;
use crate::merge::{display_name, FuncKey};
use crate::probetable::ProbeTable;
use hotprobe_config::snapshot::module_file_name;
use hotprobe_config::Snapshot;
use std::collections::HashMap;

/// One function as a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub key: FuncKey,
    /// The name for people (`name#N` when the module has several with this symbol).
    pub name: String,
    pub symbol: String,
    pub module_path: String,
    pub source: Option<String>,
    pub offset: u64,
}

/// What one calling context measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weights {
    pub count: u64,
    pub inclusive_ns: u64,
    pub inherent_ns: u64,
}

/// Stacks of frame indices (root first) with their weights.
#[derive(Debug, Clone, Default)]
pub struct Stacks {
    pub frames: Vec<Frame>,
    paths: Paths,
    pub executables: Vec<String>,
    pub pids: Vec<u32>,
    pub build_ids: HashMap<String, String>,
    pub started_unix_ns: u64,
    pub duration_ns: u64,
    pub truncated: bool,
    /// Context nodes whose probe or parent was not in the snapshot.
    pub dangling: usize,
}

/// How deep flame graphs and profiles draw a stack: a recursion 20,000
/// calls deep makes 20,000 stacks of up to 20,000 frames, 200 million
/// frames in all (`hotprobe flamegraph` took 12 s and 2.9 GB). What lies
/// deeper is drawn as one `[deeper frames]` frame on top of the stack it
/// was cut from.
pub const MAX_DRAWN_DEPTH: usize = 1000;

/// The name of the frame that stands for a cut stack's deeper frames.
pub const DEEPER_FRAMES: &str = "[deeper frames]";

impl Stacks {
    /// The frame names of a stack, root first.
    pub fn names(&self, stack: &[u32]) -> Vec<&str> {
        stack
            .iter()
            .map(|&i| self.frames[i as usize].name.as_str())
            .collect()
    }

    /// How many distinct stacks.
    pub fn len(&self) -> usize {
        self.paths.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.order.is_empty()
    }

    /// Every stack with its weights, a stack before those it is a prefix
    /// of and siblings by frame (the order of the frame sequences). The
    /// slice is one buffer, rewritten from call to call: memory stays in
    /// the tree's size however deep its stacks are.
    pub fn for_each(&self, mut f: impl FnMut(&[u32], &Weights)) {
        self.for_each_within(usize::MAX, |path, w, _| f(path, w));
    }

    /// The same, with the stacks longer than `max_depth` frames cut there:
    /// each cut stack's deeper frames come as one more entry, the cut
    /// stack with `deeper` true and the weights of all it cut off.
    pub fn for_each_within(&self, max_depth: usize, mut f: impl FnMut(&[u32], &Weights, bool)) {
        let mut path = Vec::new();
        let mut cut: Option<Weights> = None;
        for &(id, depth) in &self.paths.order {
            let w = &self.paths.weights[id as usize];
            if depth as usize >= max_depth {
                let c = cut.get_or_insert_with(Weights::default);
                c.count += w.count;
                c.inclusive_ns += w.inclusive_ns;
                c.inherent_ns += w.inherent_ns;
                continue;
            }
            if let Some(c) = cut.take() {
                f(&path, &c, true);
            }
            path.truncate(depth as usize);
            path.push(self.paths.links[id as usize].1);
            f(&path, w, false);
        }
        if let Some(c) = cut {
            f(&path, &c, true);
        }
    }
}

/// The parent of a root path.
const NO_PATH: u32 = u32::MAX;

/// Paths as a trie: each one is its parent path plus one frame, so merging
/// snapshots by path hashes two numbers a node, not the whole path.
#[derive(Debug, Clone, Default)]
struct Paths {
    /// (parent path, frame) of each path; a parent comes before its children.
    links: Vec<(u32, u32)>,
    index: HashMap<(u32, u32), u32>,
    weights: Vec<Weights>,
    /// (path, depth) depth first, children by frame; made by `seal`.
    order: Vec<(u32, u32)>,
}

impl Paths {
    fn intern(&mut self, parent: u32, frame: u32) -> u32 {
        let next = self.links.len() as u32;
        let id = *self.index.entry((parent, frame)).or_insert(next);
        if id == next {
            self.links.push((parent, frame));
            self.weights.push(Weights::default());
        }
        id
    }

    /// Orders the paths for walking, once all are in.
    fn seal(&mut self) {
        self.index = HashMap::new();
        let mut roots = Vec::new();
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); self.links.len()];
        for (id, &(parent, _)) in self.links.iter().enumerate() {
            match parent {
                NO_PATH => roots.push(id as u32),
                p => children[p as usize].push(id as u32),
            }
        }
        let links = &self.links;
        let by_frame = |v: &mut Vec<u32>| v.sort_unstable_by_key(|&c| links[c as usize].1);
        by_frame(&mut roots);
        let mut order = Vec::with_capacity(links.len());
        let mut todo: Vec<(u32, u32)> = roots.iter().rev().map(|&r| (r, 0)).collect();
        while let Some((id, depth)) = todo.pop() {
            order.push((id, depth));
            let kids = &mut children[id as usize];
            by_frame(kids);
            todo.extend(kids.iter().rev().map(|&c| (c, depth + 1)));
        }
        self.order = order;
    }
}

/// Merges the calling-context trees of snapshots.
pub fn collect(inputs: &Inputs<Snapshot>) -> Result<Stacks> {
    let mut st = Stacks {
        started_unix_ns: u64::MAX,
        ..Stacks::default()
    };
    let mut frame_of: HashMap<FuncKey, u32> = HashMap::new();
    let mut last_end = 0u64;
    let mut paths = Paths::default();
    for loaded in &inputs.snapshots {
        let s = &loaded.snap;
        st.truncated |= s.meter.contexts_truncated;
        st.pids.push(s.process.pid);
        let exe = module_file_name(&s.process.exe).to_string();
        if !exe.is_empty() && !st.executables.contains(&exe) {
            st.executables.push(exe);
        }
        if let Some(b) = &s.process.build_id {
            st.build_ids.insert(s.process.exe.clone(), b.clone());
        }
        if s.process.started_unix_ns > 0 {
            st.started_unix_ns = st.started_unix_ns.min(s.process.started_unix_ns);
            last_end = last_end.max(s.process.started_unix_ns + s.process.duration_ns);
        }
        st.duration_ns = st.duration_ns.max(s.process.duration_ns);
        // Probe id → frame index.
        let table = ProbeTable::from_records(&s.probes);
        let mut probe_frame: HashMap<u32, u32> = HashMap::with_capacity(s.probes.len());
        for (rec, (_, ordinal, ambiguous)) in s.probes.iter().zip(table.to_records()) {
            let symbol = if rec.symbol.is_empty() {
                rec.name.clone()
            } else {
                rec.symbol.clone()
            };
            let key = FuncKey {
                module: module_file_name(&rec.module).to_string(),
                symbol,
                ordinal,
            };
            let next = st.frames.len() as u32;
            let idx = *frame_of.entry(key.clone()).or_insert_with(|| {
                let base = if rec.name.is_empty() {
                    &key.symbol
                } else {
                    &rec.name
                };
                st.frames.push(Frame {
                    name: display_name(base, ambiguous, ordinal).replace(';', ":"),
                    key,
                    symbol: rec.symbol.clone(),
                    module_path: rec.module.clone(),
                    source: rec.source.clone(),
                    offset: rec.offset,
                });
                next
            });
            probe_frame.insert(rec.id, idx);
        }
        let node_index: HashMap<u32, usize> = s
            .contexts
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id, i))
            .collect();
        let mut frame_for = |probe: u32, st: &mut Stacks| -> u32 {
            if let Some(&f) = probe_frame.get(&probe) {
                return f;
            }
            st.dangling += 1;
            let key = FuncKey {
                module: String::new(),
                symbol: format!("[probe {probe}]"),
                ordinal: 0,
            };
            let next = st.frames.len() as u32;
            let idx = *frame_of.entry(key.clone()).or_insert_with(|| {
                st.frames.push(Frame {
                    name: key.symbol.clone(),
                    key,
                    symbol: String::new(),
                    module_path: String::new(),
                    source: None,
                    offset: 0,
                });
                next
            });
            probe_frame.insert(probe, idx);
            idx
        };
        // Each node's path is its parent's plus its own frame, interned once
        // per node (CPython's trees hold 60,000 nodes 70 deep on average:
        // walking every chain to the root, or hashing whole paths, took
        // seconds).
        let mut path_of: Vec<Option<u32>> = vec![None; s.contexts.len()];
        let mut on_chain = vec![false; s.contexts.len()];
        let mut chain = Vec::new();
        for i in 0..s.contexts.len() {
            // The ancestors without a path yet, nearest first, up to one
            // with a path, the root, a missing parent or a cycle.
            chain.clear();
            let mut cur = Some(i);
            let mut base = NO_PATH;
            while let Some(j) = cur {
                if let Some(p) = path_of[j] {
                    base = p;
                    break;
                }
                if on_chain[j] {
                    break; // a cycle: cut it here
                }
                on_chain[j] = true;
                chain.push(j);
                cur = match s.contexts[j].parent {
                    Some(p) => match node_index.get(&p) {
                        Some(&k) => Some(k),
                        None => {
                            st.dangling += 1;
                            None
                        }
                    },
                    None => None,
                };
            }
            for &j in chain.iter().rev() {
                on_chain[j] = false;
                base = paths.intern(base, frame_for(s.contexts[j].probe, &mut st));
                path_of[j] = Some(base);
            }
        }
        for (node, path) in s.contexts.iter().zip(path_of) {
            let w = &mut paths.weights[path.expect("every node has a path") as usize];
            w.count += node.count;
            w.inclusive_ns += node.inclusive_ns;
            w.inherent_ns += node.inherent_ns;
        }
    }
    paths.seal();
    st.paths = paths;
    if st.started_unix_ns == u64::MAX {
        st.started_unix_ns = 0;
    } else if last_end > st.started_unix_ns {
        st.duration_ns = st.duration_ns.max(last_end - st.started_unix_ns);
    }
    if st.is_empty() {
        let files: Vec<String> = inputs
            .snapshots
            .iter()
            .map(|l| l.path.display().to_string())
            .collect();
        return Err(CliError::failure(format!(
            "{}: no calling-context data (the snapshots have no `contexts`)",
            files.join(", ")
        )));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Loaded;
    use std::path::PathBuf;

    fn inputs(snaps: Vec<Snapshot>) -> Inputs<Snapshot> {
        Inputs {
            snapshots: snaps
                .into_iter()
                .map(|snap| Loaded {
                    path: PathBuf::from("x.json"),
                    snap,
                })
                .collect(),
            superseded: vec![],
        }
    }

    #[test]
    fn stacks_follow_parents_and_merge_by_path() {
        let st = collect(&inputs(vec![
            crate::fixture::server(1),
            crate::fixture::server(2),
        ]))
        .unwrap();
        let all = every_stack(&st);
        let find = |names: &[&str]| {
            all.iter()
                .find(|(k, _)| st.names(k) == names)
                .map(|(_, w)| *w)
        };
        let w = find(&[
            "main",
            "aeMain",
            "processCommand",
            "call",
            "getCommand",
            "lookupKey",
            "dictFind",
        ])
        .unwrap();
        assert_eq!((w.count, w.inherent_ns), (12_000, 2 * 6_000 * 400));
        assert!(find(&[
            "main",
            "aeMain",
            "processCommand",
            "call",
            "getCommand",
            "lookupKey",
            "dictFind",
            "compare#2"
        ])
        .is_some());
        assert_eq!(st.len(), crate::fixture::CONTEXTS.len());
        assert_eq!(all.len(), st.len());
        assert_eq!(st.dangling, 0);
    }

    fn every_stack(st: &Stacks) -> Vec<(Vec<u32>, Weights)> {
        let mut all = Vec::new();
        st.for_each(|p, w| all.push((p.to_vec(), *w)));
        all
    }

    /// Stacks over paths 5, 2, 5;1, 5;0, 5;1;3 (met in that order), each
    /// path's count its number.
    fn stacks_met_out_of_order() -> Stacks {
        let mut t = Paths::default();
        let five = t.intern(NO_PATH, 5);
        let two = t.intern(NO_PATH, 2);
        let one = t.intern(five, 1);
        let zero = t.intern(five, 0);
        let three = t.intern(one, 3);
        assert_eq!(t.intern(NO_PATH, 5), five, "a path is interned once");
        for (id, count) in [(five, 5), (two, 2), (one, 51), (zero, 50), (three, 513)] {
            t.weights[id as usize].count = count;
        }
        t.seal();
        Stacks {
            paths: t,
            ..Stacks::default()
        }
    }

    #[test]
    fn stacks_come_out_in_frame_order_whatever_order_they_were_met() {
        let counts: Vec<(Vec<u32>, u64)> = every_stack(&stacks_met_out_of_order())
            .into_iter()
            .map(|(p, w)| (p, w.count))
            .collect();
        assert_eq!(
            counts,
            vec![
                (vec![2], 2),
                (vec![5], 5),
                (vec![5, 0], 50),
                (vec![5, 1], 51),
                (vec![5, 1, 3], 513)
            ]
        );
    }

    #[test]
    fn stacks_cut_at_a_depth_sum_what_lies_deeper() {
        let st = stacks_met_out_of_order();
        let mut cut = Vec::new();
        st.for_each_within(1, |p, w, deeper| cut.push((p.to_vec(), w.count, deeper)));
        assert_eq!(
            cut,
            vec![
                (vec![2], 2, false),
                (vec![5], 5, false),
                (vec![5], 50 + 51 + 513, true)
            ]
        );
        cut.clear();
        st.for_each_within(2, |p, w, deeper| cut.push((p.to_vec(), w.count, deeper)));
        assert_eq!(cut.last(), Some(&(vec![5, 1], 513, true)));
        assert_eq!(cut.len(), 5);
    }

    #[test]
    fn cycles_and_dangling_parents_do_not_hang() {
        let mut s = crate::fixture::server(1);
        s.contexts[0].parent = Some(5); // a cycle through the root
        s.contexts[2].probe = 999; // an unknown probe
        s.contexts[3].parent = Some(12345); // a missing parent
        let st = collect(&inputs(vec![s])).unwrap();
        assert!(st.dangling >= 2);
        assert!(st.frames.iter().any(|f| f.name == "[probe 999]"));
    }

    #[test]
    fn no_contexts_is_an_error() {
        let mut s = crate::fixture::server(1);
        s.contexts.clear();
        assert!(collect(&inputs(vec![s]))
            .unwrap_err()
            .message
            .contains("no calling-context data"));
    }
}

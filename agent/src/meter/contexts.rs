//! The calling-context tree of one thread: a node per distinct path of
//! probed callers. Nodes live in a slab (they never move); an index from
//! (parent node, probe) finds a child in one lookup.
//!
//! The process-wide cap (`meter.contexts_cap`) bounds the nodes of all live
//! threads and of the merged tree of ended ones together. Past it, a call
//! folds: its own time goes to the nearest node above it, its edge (from
//! the probe that really called it) is counted separately, and so is every
//! call below it, so edges and counts stay exact.

use crate::engine::arena::Arena;
use crate::engine::slab::Slab;
use crate::engine::table::{Index, MAX_INDEX};
use crate::meter::stats::ThreadProbeStats;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const ROOT: u32 = u32::MAX;

/// A folded frame's `ctx` is FOLDED_CTX | the node its own time goes to
/// (NO_NODE at a root). No node has such a parent, so the fast path never
/// finds a child under it and the slow path folds the children too.
pub const FOLDED_CTX: u32 = 1 << 31;
const NO_NODE: u32 = 0x00FF_FFFF;

/// The `ctx` of a call folded under a frame whose `ctx` is `parent_ctx`.
pub fn folded_ctx(parent_ctx: u32) -> u32 {
    if parent_ctx == ROOT {
        FOLDED_CTX | NO_NODE
    } else {
        FOLDED_CTX | parent_ctx
    }
}

/// The node a folded frame's own time goes to.
pub fn folded_into(ctx: u32) -> Option<u32> {
    let n = ctx & !FOLDED_CTX;
    (ctx != ROOT && n != NO_NODE).then_some(n)
}

static NODES_USED: AtomicU64 = AtomicU64::new(0);
static CAP: AtomicU64 = AtomicU64::new(500_000);
static TRUNCATED: AtomicBool = AtomicBool::new(false);

pub fn set_cap(cap: u64) {
    CAP.store(cap, Ordering::Relaxed);
}

pub fn truncated() -> bool {
    TRUNCATED.load(Ordering::Relaxed)
}

/// Takes one node from the process-wide budget; false (and truncated) past the cap.
pub fn take_node() -> bool {
    if NODES_USED.fetch_add(1, Ordering::Relaxed) >= CAP.load(Ordering::Relaxed) {
        NODES_USED.fetch_sub(1, Ordering::Relaxed);
        TRUNCATED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// Whether the budget is spent: a caller can skip blocking signals (two
/// system calls) for a node it cannot get. Racy by design — a node given
/// back lets the next call try again.
pub fn is_full() -> bool {
    NODES_USED.load(Ordering::Relaxed) >= CAP.load(Ordering::Relaxed)
}

/// Marks the tree as having folded calls past the cap.
pub fn note_truncated() {
    TRUNCATED.store(true, Ordering::Relaxed);
}

/// Gives `n` nodes back to the budget.
pub fn give_back(n: u64) {
    NODES_USED.fetch_sub(n, Ordering::Relaxed);
}

#[repr(C)]
pub struct Node {
    pub parent: u32,
    pub probe: u32,
    pub count: u64,
    pub inclusive: u64,
    pub inherent: u64,
    pub stats: *mut ThreadProbeStats,
    /// The node's own index (its context), for the entry stub, which finds
    /// nodes by address.
    pub index: u32,
}

impl Node {
    #[inline(always)]
    fn key(&self) -> u64 {
        key(self.parent, self.probe)
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FoldedEdge {
    pub caller: u32,
    pub callee: u32,
    pub count: u64,
    pub inclusive: u64,
}

#[repr(C)]
pub struct Tree {
    map: Index,
    nodes: Slab<Node, NODE_SHIFT>,
    /// (caller probe, callee probe) → folded edge, for calls past the cap.
    folded_map: Index,
    folded: Slab<FoldedEdge, 5>,
    /// Nodes taken from the process-wide budget and not given back.
    counted: u32,
}

const MAX_FOLDED: u32 = 1 << 16;

/// Nodes per chunk of the slab, as a power of two.
pub const NODE_SHIFT: u32 = 5;
// The stubs compare (parent, probe) as one little-endian word at offset 0.
const _: () = assert!(core::mem::offset_of!(Node, parent) == 0);
const _: () = assert!(core::mem::offset_of!(Node, probe) == 4);
const _: () = assert!(core::mem::size_of::<Node>() == 48);

#[inline(always)]
fn key(parent: u32, probe: u32) -> u64 {
    ((parent as u64) << 32) | probe as u64
}

impl Tree {
    pub const fn new() -> Tree {
        Tree {
            map: Index::new(),
            nodes: Slab::new(),
            folded_map: Index::new(),
            folded: Slab::new(),
            counted: 0,
        }
    }

    #[inline(always)]
    pub fn find(&self, parent: u32, probe: u32) -> Option<u32> {
        let nodes = &self.nodes;
        self.map.find(key(parent, probe), |i| {
            // SAFETY: a published node.
            nodes.checked(i).map(|n| unsafe { (*n).key() })
        })
    }

    /// Node `index` (below `len`).
    #[inline(always)]
    pub fn node(&self, index: u32) -> *mut Node {
        self.nodes.get(index)
    }

    pub fn len(&self) -> u32 {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The child of `parent` for `probe`, made if need be; None past the cap
    /// (or out of memory). Signals are blocked by the caller.
    pub fn add(
        &mut self,
        arena: &mut Arena,
        parent: u32,
        probe: u32,
        stats: *mut ThreadProbeStats,
    ) -> Option<u32> {
        // A signal handler may have made it since the caller looked.
        if let Some(c) = self.find(parent, probe) {
            return Some(c);
        }
        if self.nodes.len() > MAX_INDEX || !take_node() {
            TRUNCATED.store(true, Ordering::Relaxed);
            return None;
        }
        let made = self.make_node(arena, parent, probe, stats);
        match made {
            Some(_) => self.counted += 1,
            None => give_back(1),
        }
        made
    }

    fn make_node(
        &mut self,
        arena: &mut Arena,
        parent: u32,
        probe: u32,
        stats: *mut ThreadProbeStats,
    ) -> Option<u32> {
        let nodes = &self.nodes;
        // SAFETY: published nodes.
        if !self
            .map
            .reserve(arena, |i| nodes.checked(i).map(|n| unsafe { (*n).key() }))
        {
            return None;
        }
        let node = Node {
            parent,
            probe,
            count: 0,
            inclusive: 0,
            inherent: 0,
            stats,
            // What `push` returns: the owner appends with signals blocked.
            index: self.nodes.len(),
        };
        let index = self.nodes.push(arena, node, MAX_INDEX + 1)?;
        let nodes = &self.nodes;
        // SAFETY: published nodes. Room was reserved, so this cannot fail.
        let ok = self.map.insert(arena, key(parent, probe), index, |i| {
            nodes.checked(i).map(|n| unsafe { (*n).key() })
        });
        debug_assert!(ok);
        Some(index)
    }

    /// Counts a call that got no node of its own. Signals are blocked by
    /// the caller when the edge is new (`folded_index` said None).
    pub fn add_folded(&mut self, arena: &mut Arena, caller: u32, callee: u32, inclusive: u64) {
        let k = key(caller, callee);
        let index = match self.folded_index(k) {
            Some(i) => i,
            // Full: such calls keep their probe counts, not their edge; and
            // they must not block signals on every call to learn that.
            None if self.folded.len() >= MAX_FOLDED => return,
            None => {
                let _blocked = crate::sys::SignalsBlocked::new();
                match self.new_folded(arena, caller, callee) {
                    Some(i) => i,
                    None => return,
                }
            }
        };
        // SAFETY: a published edge of this thread.
        let e = unsafe { &mut *self.folded.get(index) };
        crate::meter::stats::bump(&mut e.count, 1);
        crate::meter::stats::bump(&mut e.inclusive, inclusive);
    }

    fn folded_index(&self, k: u64) -> Option<u32> {
        let folded = &self.folded;
        self.folded_map.find(k, |i| {
            // SAFETY: a published edge.
            folded
                .checked(i)
                .map(|e| unsafe { key((*e).caller, (*e).callee) })
        })
    }

    #[cold]
    fn new_folded(&mut self, arena: &mut Arena, caller: u32, callee: u32) -> Option<u32> {
        let k = key(caller, callee);
        if let Some(i) = self.folded_index(k) {
            return Some(i);
        }
        let folded = &self.folded;
        // SAFETY: published edges.
        let key_of = |i: u32| {
            folded
                .checked(i)
                .map(|e| unsafe { key((*e).caller, (*e).callee) })
        };
        if !self.folded_map.reserve(arena, key_of) {
            return None;
        }
        let edge = FoldedEdge {
            caller,
            callee,
            count: 0,
            inclusive: 0,
        };
        let index = self.folded.push(arena, edge, MAX_FOLDED)?;
        let folded = &self.folded;
        // SAFETY: as above; room was reserved.
        self.folded_map.insert(arena, k, index, |i| {
            folded
                .checked(i)
                .map(|e| unsafe { key((*e).caller, (*e).callee) })
        });
        Some(index)
    }

    pub fn folded_edges(&self) -> impl Iterator<Item = FoldedEdge> + '_ {
        // SAFETY: published edges.
        self.folded.iter().map(|e| unsafe { *e })
    }

    /// Forgets the counts, keeping the paths (a fork child starts from zero).
    pub fn zero_counts(&mut self) {
        for n in self.nodes.iter() {
            // SAFETY: published nodes; only the caller's thread is alive.
            let n = unsafe { &mut *n };
            (n.count, n.inclusive, n.inherent) = (0, 0, 0);
        }
        for e in self.folded.iter() {
            // SAFETY: as above.
            let e = unsafe { &mut *e };
            (e.count, e.inclusive) = (0, 0);
        }
    }

    /// Gives this tree's nodes back to the process-wide budget (once).
    pub fn release_count(&mut self) {
        give_back(self.counted as u64);
        self.counted = 0;
    }
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_found_again() {
        let mut arena = Arena::new();
        let mut t = Tree::new();
        set_cap(1_000_000);
        for p in 0..5000u32 {
            assert_eq!(t.add(&mut arena, ROOT, p, core::ptr::null_mut()), Some(p));
        }
        for p in 0..5000u32 {
            let c = t.add(&mut arena, p, p, core::ptr::null_mut()).unwrap();
            assert_eq!(t.find(p, p), Some(c));
        }
        for p in 0..5000u32 {
            let i = t.find(ROOT, p).unwrap();
            // SAFETY: i < len.
            assert_eq!(unsafe { (*t.node(i)).probe }, p);
        }
        assert_eq!(t.len(), 10_000);
        // 48-byte nodes in chunks of 32, plus index slots of 4 bytes at most a quarter
        // full, plus the tables they grew out of.
        let bytes = arena.allocated as f64 / 10_000.0;
        assert!(bytes <= 48.0 * 1.01 + 32.0 + 2.0, "{bytes} bytes per node");
        t.release_count();
        arena.release();
    }

    #[test]
    fn folded_frames_keep_their_node_apart_from_real_ones() {
        assert_eq!(folded_into(folded_ctx(ROOT)), None);
        assert_eq!(folded_into(folded_ctx(7)), Some(7));
        assert_ne!(folded_ctx(ROOT), ROOT);
        let mut arena = Arena::new();
        let mut t = Tree::new();
        set_cap(1_000_000);
        t.add(&mut arena, ROOT, 1, core::ptr::null_mut()).unwrap();
        assert_eq!(t.find(folded_ctx(0), 1), None);
        t.add_folded(&mut arena, 1, 2, 5);
        t.add_folded(&mut arena, 1, 2, 7);
        let e: Vec<FoldedEdge> = t.folded_edges().collect();
        assert_eq!((e.len(), e[0].count, e[0].inclusive), (1, 2, 12));
        t.release_count();
        arena.release();
    }
}

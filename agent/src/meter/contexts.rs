//! The calling-context tree of one thread: a node per distinct path of
//! probed callers. Nodes live in chunks that never move; a map from
//! (parent node, probe) finds a child in one lookup.
//!
//! The process-wide cap (`meter.contexts_cap`) bounds the nodes of all
//! threads together; past it, a call folds into its parent's node and its
//! edge is counted separately, so edges stay exact.

use crate::engine::arena::Arena;
use crate::engine::table::U64Map;
use crate::meter::stats::ThreadProbeStats;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const ROOT: u32 = u32::MAX;
/// Nodes live in chunks of 64, 128, 256… (chunk k holds 64·2^k nodes): a
/// thread that calls a few probes pays for a few nodes, and an index maps
/// to its chunk with one bit scan.
const FIRST: usize = 64;
const MAX_CHUNKS: usize = 22;

/// (chunk, offset in it) of node `i`.
#[inline(always)]
fn locate(i: usize) -> (usize, usize) {
    let k = (usize::BITS - 1 - (i / FIRST + 1).leading_zeros()) as usize;
    (k, i - FIRST * ((1 << k) - 1))
}

fn chunk_len(k: usize) -> usize {
    FIRST << k
}

static NODES_USED: AtomicU64 = AtomicU64::new(0);
static CAP: AtomicU64 = AtomicU64::new(100_000);
static TRUNCATED: AtomicBool = AtomicBool::new(false);

pub fn set_cap(cap: u64) {
    CAP.store(cap, Ordering::Relaxed);
}

pub fn truncated() -> bool {
    TRUNCATED.load(Ordering::Relaxed)
}

pub fn reset_process_counts() {
    NODES_USED.store(0, Ordering::Relaxed);
    TRUNCATED.store(false, Ordering::Relaxed);
}

#[repr(C)]
pub struct Node {
    pub parent: u32,
    pub probe: u32,
    pub count: u64,
    pub inclusive: u64,
    pub inherent: u64,
    pub stats: *mut ThreadProbeStats,
}

#[repr(C)]
pub struct Tree {
    map: U64Map,
    chunks: *mut *mut Node,
    pub len: u32,
    /// (caller probe << 32 | callee probe) → index into `folded`, for calls past the cap.
    folded_map: U64Map,
    folded: *mut FoldedEdge,
    folded_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FoldedEdge {
    pub caller: u32,
    pub callee: u32,
    pub count: u64,
    pub inclusive: u64,
}

const MAX_FOLDED: usize = 1 << 16;

#[inline(always)]
fn key(parent: u32, probe: u32) -> u64 {
    ((parent as u64) << 32) | probe as u64
}

impl Tree {
    pub const fn new() -> Tree {
        Tree {
            map: U64Map::empty(),
            chunks: core::ptr::null_mut(),
            len: 0,
            folded_map: U64Map::empty(),
            folded: core::ptr::null_mut(),
            folded_len: 0,
        }
    }

    #[inline(always)]
    pub fn find(&self, parent: u32, probe: u32) -> Option<u32> {
        self.map.get(key(parent, probe)).map(|v| v as u32)
    }

    #[inline(always)]
    pub fn node(&self, index: u32) -> *mut Node {
        let (k, at) = locate(index as usize);
        // SAFETY: callers pass indices below `len`; their chunk exists.
        unsafe { (*self.chunks.add(k)).add(at) }
    }

    /// A new child node, or None past the cap (or out of memory).
    pub fn add(
        &mut self,
        arena: &mut Arena,
        parent: u32,
        probe: u32,
        stats: *mut ThreadProbeStats,
    ) -> Option<u32> {
        if NODES_USED.fetch_add(1, Ordering::Relaxed) >= CAP.load(Ordering::Relaxed) {
            NODES_USED.fetch_sub(1, Ordering::Relaxed);
            TRUNCATED.store(true, Ordering::Relaxed);
            return None;
        }
        let made = self.make_node(arena, parent, probe, stats);
        if made.is_none() {
            NODES_USED.fetch_sub(1, Ordering::Relaxed);
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
        if self.chunks.is_null() {
            self.chunks = arena.alloc(MAX_CHUNKS * 8, 64) as *mut *mut Node;
            if self.chunks.is_null() {
                return None;
            }
        }
        let index = self.len as usize;
        let (chunk, _) = locate(index);
        if chunk >= MAX_CHUNKS {
            return None;
        }
        // SAFETY: chunk < MAX_CHUNKS.
        let slot = unsafe { self.chunks.add(chunk) };
        // SAFETY: slot is inside the chunk table.
        if unsafe { (*slot).is_null() } {
            let fresh =
                arena.alloc(chunk_len(chunk) * core::mem::size_of::<Node>(), 64) as *mut Node;
            if fresh.is_null() {
                return None;
            }
            // SAFETY: as above.
            unsafe { *slot = fresh };
        }
        let node = self.node(index as u32);
        // SAFETY: node points into a zeroed chunk owned by this tree.
        unsafe {
            *node = Node {
                parent,
                probe,
                count: 0,
                inclusive: 0,
                inherent: 0,
                stats,
            }
        };
        if !self.map.insert(arena, key(parent, probe), index as u64) {
            return None;
        }
        self.len += 1;
        Some(index as u32)
    }

    /// Counts a call that did not get a node of its own.
    pub fn add_folded(&mut self, arena: &mut Arena, caller: u32, callee: u32, inclusive: u64) {
        let k = key(caller, callee);
        let index = match self.folded_map.get(k) {
            Some(i) => i as usize,
            None => {
                if self.folded.is_null() {
                    self.folded = arena.alloc(MAX_FOLDED * core::mem::size_of::<FoldedEdge>(), 64)
                        as *mut FoldedEdge;
                }
                if self.folded.is_null() || self.folded_len as usize >= MAX_FOLDED {
                    return;
                }
                let i = self.folded_len as usize;
                // SAFETY: i < MAX_FOLDED.
                unsafe {
                    *self.folded.add(i) = FoldedEdge {
                        caller,
                        callee,
                        count: 0,
                        inclusive: 0,
                    }
                };
                if !self.folded_map.insert(arena, k, i as u64) {
                    return;
                }
                self.folded_len += 1;
                i
            }
        };
        // SAFETY: index < folded_len.
        let e = unsafe { &mut *self.folded.add(index) };
        e.count += 1;
        e.inclusive += inclusive;
    }

    pub fn folded_edges(&self) -> impl Iterator<Item = FoldedEdge> + '_ {
        // SAFETY: entries below folded_len are initialised.
        (0..self.folded_len as usize).map(move |i| unsafe { *self.folded.add(i) })
    }

    pub fn release_count(&self) {
        NODES_USED.fetch_sub(self.len as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_indices() {
        let mut expect = (0usize, 0usize);
        for i in 0..100_000usize {
            assert_eq!(locate(i), expect, "{i}");
            expect.1 += 1;
            if expect.1 == chunk_len(expect.0) {
                expect = (expect.0 + 1, 0);
            }
        }
    }

    #[test]
    fn nodes_are_found_again() {
        let mut arena = Arena::new();
        let mut t = Tree::new();
        set_cap(1_000_000);
        for p in 0..5000u32 {
            assert_eq!(t.add(&mut arena, ROOT, p, core::ptr::null_mut()), Some(p));
        }
        for p in 0..5000u32 {
            let i = t.find(ROOT, p).unwrap();
            // SAFETY: i < len.
            assert_eq!(unsafe { (*t.node(i)).probe }, p);
        }
        t.release_count();
        arena.release();
    }
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

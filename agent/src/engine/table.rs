//! An open-addressing index from a 64-bit key to the index of an element
//! in a slab, for the per-thread lookups of the hot path (calling
//! contexts) and of the slow one (statistics blocks, folded edges).
//!
//! A slot is 4 bytes: the element's index and 8 bits of the key's hash.
//! The key itself is read back from the element (which the caller touches
//! next anyway), so the table costs 8 to 16 bytes per entry (half to a
//! quarter full), and a lookup touches one cache line of it.
//!
//! Only the owning thread changes a table, with signals blocked; it and its
//! signal handlers read it. A handler may grow the table while the code it
//! interrupted is half way through a lookup in the old one: the size is
//! read before the slots (so an old, smaller table is never read with a
//! newer, larger size), old tables are never freed, and every index read
//! is checked against the element it names, so a stale table can only make
//! a lookup miss, and the slow path, which looks again, decides.

use crate::engine::arena::Arena;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The largest element index a slot can hold.
pub const MAX_INDEX: u32 = 0x00FF_FFFE;
const EMPTY: u32 = 0;
const FIRST_CAP: usize = 16;

#[repr(C)]
pub struct Index {
    slots: AtomicPtr<u32>,
    /// Slots − 1 (a power of two − 1), 0 while there is no table.
    mask: AtomicU32,
    len: u32,
}

/// (first slot, 8-bit tag) of a key.
#[inline(always)]
fn hash(key: u64) -> (usize, u32) {
    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as usize, (h >> 56) as u32)
}

#[inline(always)]
fn slot(tag: u32, index: u32) -> u32 {
    (tag << 24) | (index + 1)
}

impl Index {
    pub const fn new() -> Index {
        Index {
            slots: AtomicPtr::new(core::ptr::null_mut()),
            mask: AtomicU32::new(0),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element index stored for `key`. `key_of(i)` gives the key of
    /// element `i`, or None when there is no element `i`.
    #[inline(always)]
    pub fn find(&self, key: u64, key_of: impl Fn(u32) -> Option<u64>) -> Option<u32> {
        // The size first: see the module comment.
        let mask = self.mask.load(Ordering::Acquire) as usize;
        let slots = self.slots.load(Ordering::Relaxed);
        if slots.is_null() {
            return None;
        }
        let (mut i, tag) = hash(key);
        let mut left = mask;
        loop {
            i &= mask;
            // SAFETY: i <= mask, and the table read holds at least mask + 1 slots.
            let s = unsafe { *slots.add(i) };
            if s == EMPTY {
                return None;
            }
            if s >> 24 == tag {
                let index = (s & 0x00FF_FFFF).wrapping_sub(1);
                if key_of(index) == Some(key) {
                    return Some(index);
                }
            }
            if left == 0 {
                return None;
            }
            left -= 1;
            i += 1;
        }
    }

    /// Makes room for one more entry, so that the next `insert` cannot
    /// fail. False when memory ran out.
    pub fn reserve(&mut self, arena: &mut Arena, key_of: impl Fn(u32) -> Option<u64>) -> bool {
        let slots = self.slots.load(Ordering::Relaxed);
        let cap = if slots.is_null() {
            0
        } else {
            self.mask.load(Ordering::Relaxed) as usize + 1
        };
        if (self.len as usize + 1) * 2 <= cap {
            return true;
        }
        self.grow(arena, (cap * 2).max(FIRST_CAP), key_of)
    }

    /// Adds `key` → `index` (the key must not be there yet). The caller
    /// blocks signals. False when memory ran out.
    pub fn insert(
        &mut self,
        arena: &mut Arena,
        key: u64,
        index: u32,
        key_of: impl Fn(u32) -> Option<u64>,
    ) -> bool {
        if index > MAX_INDEX || !self.reserve(arena, key_of) {
            return false;
        }
        let mask = self.mask.load(Ordering::Relaxed) as usize;
        // SAFETY: `reserve` left a table of mask + 1 slots with a free one.
        unsafe { place(self.slots.load(Ordering::Relaxed), mask, key, index) };
        self.len += 1;
        true
    }

    fn grow(&mut self, arena: &mut Arena, cap: usize, key_of: impl Fn(u32) -> Option<u64>) -> bool {
        let fresh = arena.alloc(cap * 4, 64) as *mut u32;
        if fresh.is_null() {
            return false;
        }
        let old = self.slots.load(Ordering::Relaxed);
        let old_slots = if old.is_null() {
            0
        } else {
            self.mask.load(Ordering::Relaxed) as usize + 1
        };
        for i in 0..old_slots {
            // SAFETY: i < the old table's size.
            let s = unsafe { *old.add(i) };
            if s == EMPTY {
                continue;
            }
            let index = (s & 0x00FF_FFFF).wrapping_sub(1);
            if let Some(key) = key_of(index) {
                // SAFETY: the fresh table has cap > 2 × len slots, zeroed (empty).
                unsafe { place(fresh, cap - 1, key, index) };
            }
        }
        // The old table stays readable (arena memory is never reused), so a
        // lookup this store interrupts still ends.
        self.slots.store(fresh, Ordering::Relaxed);
        self.mask.store((cap - 1) as u32, Ordering::Release);
        true
    }
}

/// Puts `key` → `index` in the first free slot of its run.
///
/// # Safety
/// `slots` holds mask + 1 slots, at least one of them empty.
unsafe fn place(slots: *mut u32, mask: usize, key: u64, index: u32) {
    let (mut i, tag) = hash(key);
    loop {
        i &= mask;
        // SAFETY: i <= mask.
        let s = unsafe { &mut *slots.add(i) };
        if *s == EMPTY {
            // One 4-byte store: a signal handler sees the slot empty or complete.
            *s = slot(tag, index);
            return;
        }
        i += 1;
    }
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_grow_and_cost() {
        let mut arena = Arena::new();
        let mut m = Index::new();
        let keys: Vec<u64> = (0..10_000u64).map(|k| k * 7 + (k << 33)).collect();
        let key_of = |i: u32| keys.get(i as usize).copied();
        assert_eq!(m.find(3, key_of), None);
        for i in 0..keys.len() as u32 {
            assert!(m.insert(&mut arena, keys[i as usize], i, key_of));
        }
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(m.find(k, key_of), Some(i as u32));
        }
        assert_eq!(m.find(1, key_of), None);
        assert_eq!(m.len(), 10_000);
        // 32,768 slots of 4 bytes, plus the tables it grew out of.
        assert!(arena.allocated <= 2 * 32_768 * 4, "{}", arena.allocated);
        arena.release();
    }

    #[test]
    fn a_stale_or_garbled_table_only_misses() {
        let mut arena = Arena::new();
        let mut m = Index::new();
        let keys = [10u64, 20, 30];
        let key_of = |i: u32| keys.get(i as usize).copied();
        for i in 0..3 {
            assert!(m.insert(&mut arena, keys[i as usize], i, key_of));
        }
        // Garble every slot: indices out of range, or naming the wrong element.
        let slots = m.slots.load(Ordering::Relaxed);
        for i in 0..=m.mask.load(Ordering::Relaxed) as usize {
            // SAFETY: within the table.
            unsafe { *slots.add(i) = if i % 2 == 0 { u32::MAX } else { 0xFF00_0002 } };
        }
        assert_eq!(m.find(10, key_of), None);
        assert_eq!(m.find(99, key_of), None);
        arena.release();
    }
}

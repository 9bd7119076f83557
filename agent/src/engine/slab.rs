//! An array that grows in fixed chunks and never moves an element: a
//! thread's statistics blocks, calling-context nodes and folded edges. It
//! costs what it holds plus at most one partly used chunk, where a
//! doubling array would cost up to twice what it holds.
//!
//! The owning thread appends (with signals blocked, so appends never
//! nest); snapshots on other threads read the elements below `len` while
//! it does. Chunks are found through a directory that is replaced, never
//! changed below `len`, when it fills; old directories are never freed, so
//! a reader holding one still finds every element it was published with.

use crate::engine::arena::Arena;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

#[repr(C)]
pub struct Slab<T, const SHIFT: u32> {
    dir: AtomicPtr<*mut T>,
    /// Chunks the directory has room for (owner only).
    dir_cap: u32,
    len: AtomicU32,
}

impl<T, const SHIFT: u32> Slab<T, SHIFT> {
    const PER_CHUNK: usize = 1 << SHIFT;
    const FIRST_DIR: u32 = 4;

    pub const fn new() -> Self {
        Slab {
            dir: AtomicPtr::new(core::ptr::null_mut()),
            dir_cap: 0,
            len: AtomicU32::new(0),
        }
    }

    /// Elements published so far (everything below is initialised).
    #[inline(always)]
    pub fn len(&self) -> u32 {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`. Callers pass `i < len()`.
    #[inline(always)]
    pub fn get(&self, i: u32) -> *mut T {
        let dir = self.dir.load(Ordering::Acquire);
        // SAFETY: i < len, so its chunk is in every directory published with or after that len.
        unsafe { (*dir.add((i >> SHIFT) as usize)).add(i as usize & (Self::PER_CHUNK - 1)) }
    }

    /// Element `i`, or None past the end.
    #[inline(always)]
    pub fn checked(&self, i: u32) -> Option<*mut T> {
        (i < self.len()).then(|| self.get(i))
    }

    /// Appends `value`: its index, or None when out of memory or at `limit`
    /// elements. The caller blocks signals (appends must not nest).
    pub fn push(&mut self, arena: &mut Arena, value: T, limit: u32) -> Option<u32> {
        let i = self.len.load(Ordering::Relaxed);
        if i >= limit {
            return None;
        }
        let chunk = (i >> SHIFT) as usize;
        if i as usize & (Self::PER_CHUNK - 1) == 0 {
            if chunk >= self.dir_cap as usize && !self.grow_dir(arena) {
                return None;
            }
            let bytes = Self::PER_CHUNK * core::mem::size_of::<T>();
            let fresh = arena.alloc(bytes, core::mem::align_of::<T>().max(64)) as *mut T;
            if fresh.is_null() {
                return None;
            }
            // SAFETY: chunk < dir_cap; no reader looks at this entry before `len` covers it.
            unsafe { *self.dir.load(Ordering::Relaxed).add(chunk) = fresh };
        }
        // SAFETY: element i lies in a chunk that exists; nobody reads it before `len` covers it.
        unsafe { self.get(i).write(value) };
        self.len.store(i + 1, Ordering::Release);
        Some(i)
    }

    /// A directory twice the size with the same entries. The old one stays
    /// (arena memory is never reused): a snapshot may be reading it.
    fn grow_dir(&mut self, arena: &mut Arena) -> bool {
        let cap = if self.dir_cap == 0 {
            Self::FIRST_DIR
        } else {
            self.dir_cap * 2
        };
        let fresh = arena.alloc(cap as usize * 8, 64) as *mut *mut T;
        if fresh.is_null() {
            return false;
        }
        let old = self.dir.load(Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: the old directory holds dir_cap entries, the new one twice that.
            unsafe { core::ptr::copy_nonoverlapping(old, fresh, self.dir_cap as usize) };
        }
        self.dir.store(fresh, Ordering::Release);
        self.dir_cap = cap;
        true
    }

    /// Every published element, in order.
    pub fn iter(&self) -> impl Iterator<Item = *mut T> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

impl<T, const SHIFT: u32> Default for Slab<T, SHIFT> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_stay_put_and_cost_what_they_hold() {
        let mut arena = Arena::new();
        let mut s: Slab<u64, 3> = Slab::new();
        let mut first = Vec::new();
        for v in 0..1000u64 {
            let i = s.push(&mut arena, v * 3, u32::MAX).unwrap();
            assert_eq!(i as u64, v);
            first.push(s.get(i));
        }
        for (v, &p) in first.iter().enumerate() {
            assert_eq!(s.get(v as u32), p);
            // SAFETY: published element.
            assert_eq!(unsafe { *p }, v as u64 * 3);
        }
        assert_eq!(s.checked(1000), None);
        assert!(s.push(&mut arena, 0, 1000).is_none(), "limit");
        // 125 chunks of 64 bytes, and directories of 4..256 entries.
        assert!(
            arena.allocated <= 1000 * 8 + 2 * 256 * 8 + 64,
            "{}",
            arena.allocated
        );
        arena.release();
    }
}

//! An open-addressing map from u64 to u64 in arena memory, for the per-thread
//! tables the hot path reads (calling contexts, per-probe statistics). It
//! grows by moving to a table twice the size; lookups never allocate.

use crate::engine::arena::Arena;

const EMPTY: u64 = u64::MAX;

#[repr(C)]
pub struct U64Map {
    keys: *mut u64,
    values: *mut u64,
    mask: usize,
    len: usize,
}

#[inline(always)]
fn hash(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

impl U64Map {
    pub const fn empty() -> U64Map {
        U64Map {
            keys: core::ptr::null_mut(),
            values: core::ptr::null_mut(),
            mask: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u64> {
        if self.keys.is_null() {
            return None;
        }
        let mut i = hash(key) & self.mask;
        loop {
            // SAFETY: i <= mask and both arrays hold mask + 1 entries.
            let k = unsafe { *self.keys.add(i) };
            if k == key {
                // SAFETY: as above.
                return Some(unsafe { *self.values.add(i) });
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts or replaces. False when memory ran out (the entry is not stored).
    pub fn insert(&mut self, arena: &mut Arena, key: u64, value: u64) -> bool {
        debug_assert!(key != EMPTY);
        if self.keys.is_null() || (self.len + 1) * 2 > self.mask + 1 {
            let cap = if self.keys.is_null() {
                64
            } else {
                (self.mask + 1) * 2
            };
            if !self.grow(arena, cap) {
                return false;
            }
        }
        let mut i = hash(key) & self.mask;
        loop {
            // SAFETY: i <= mask; arrays hold mask + 1 entries.
            unsafe {
                let k = *self.keys.add(i);
                if k == key || k == EMPTY {
                    *self.values.add(i) = value;
                    if k == EMPTY {
                        // Publish the value before the key: a signal handler reading the
                        // map in between must never see a key with a stale value.
                        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
                        *self.keys.add(i) = key;
                        self.len += 1;
                    }
                    return true;
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    fn grow(&mut self, arena: &mut Arena, cap: usize) -> bool {
        let keys = arena.alloc(cap * 8, 64) as *mut u64;
        let values = arena.alloc(cap * 8, 64) as *mut u64;
        if keys.is_null() || values.is_null() {
            return false;
        }
        // SAFETY: fresh arrays of `cap` entries.
        unsafe {
            for i in 0..cap {
                *keys.add(i) = EMPTY;
            }
        }
        let mut fresh = U64Map {
            keys,
            values,
            mask: cap - 1,
            len: 0,
        };
        for (k, v) in self.iter() {
            let mut i = hash(k) & fresh.mask;
            // SAFETY: indices stay within the fresh arrays.
            unsafe {
                while *fresh.keys.add(i) != EMPTY {
                    i = (i + 1) & fresh.mask;
                }
                *fresh.values.add(i) = v;
                *fresh.keys.add(i) = k;
            }
            fresh.len += 1;
        }
        // Switch in one store of each field; the old arrays stay valid (arena memory).
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        *self = fresh;
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let n = if self.keys.is_null() {
            0
        } else {
            self.mask + 1
        };
        (0..n).filter_map(move |i| {
            // SAFETY: i < mask + 1.
            let k = unsafe { *self.keys.add(i) };
            // SAFETY: as above.
            (k != EMPTY).then(|| (k, unsafe { *self.values.add(i) }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_grow() {
        let mut arena = Arena::new();
        let mut m = U64Map::empty();
        assert_eq!(m.get(3), None);
        for k in 0..10_000u64 {
            assert!(m.insert(&mut arena, k * 7, k));
        }
        for k in 0..10_000u64 {
            assert_eq!(m.get(k * 7), Some(k));
        }
        assert_eq!(m.get(1), None);
        assert!(m.insert(&mut arena, 14, 99));
        assert_eq!(m.get(14), Some(99));
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.iter().count(), 10_000);
        arena.release();
    }
}

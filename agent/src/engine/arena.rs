//! Memory for per-thread state, from mmap: async-signal-safe (a thread's
//! first probed call may come from a signal handler, even inside malloc),
//! and returned whole when the thread ends.

use core::ptr::null_mut;

const CHUNK: usize = 1 << 20;

/// Maps `len` bytes of zeroed, private read-write memory, or null.
pub fn map(len: usize, reserve_only: bool) -> *mut u8 {
    let flags = libc::MAP_PRIVATE
        | libc::MAP_ANONYMOUS
        | if reserve_only { libc::MAP_NORESERVE } else { 0 };
    // SAFETY: an anonymous mapping with no address hint touches no existing memory.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

pub fn unmap(p: *mut u8, len: usize) {
    if !p.is_null() {
        // SAFETY: p/len describe a mapping made by `map` that nothing uses any more.
        unsafe { libc::munmap(p.cast(), len) };
    }
}

/// A bump allocator over mmap'd chunks. Chunks are linked through their
/// first word so they can all be unmapped at the end. Nothing is freed or
/// reused before then: readers on other threads (snapshots) and lookups a
/// signal handler interrupted may still be reading what was replaced.
#[repr(C)]
pub struct Arena {
    chunk: *mut u8,
    used: usize,
    size: usize,
    /// Bytes handed out, alignment included, for `meter.memory_bytes` (the
    /// untouched rest of a chunk is never made resident).
    pub allocated: usize,
}

impl Arena {
    pub const fn new() -> Arena {
        Arena {
            chunk: null_mut(),
            used: 0,
            size: 0,
            allocated: 0,
        }
    }

    /// Zeroed memory of `len` bytes aligned to `align` (a power of two ≤ 4096), or null.
    /// Not reentrant: callers block signals (see `sys::SignalsBlocked`).
    pub fn alloc(&mut self, len: usize, align: usize) -> *mut u8 {
        let start = (self.used + align - 1) & !(align - 1);
        if self.chunk.is_null() || start + len > self.size {
            let size = (len + 64 + 4095).max(CHUNK) & !4095;
            let fresh = map(size, false);
            if fresh.is_null() {
                return null_mut();
            }
            // SAFETY: the chunk starts with room for the link word and the size.
            unsafe {
                *(fresh as *mut *mut u8) = self.chunk;
                *(fresh.add(8) as *mut usize) = size;
            }
            self.chunk = fresh;
            self.size = size;
            self.used = 16;
            return self.alloc(len, align);
        }
        self.allocated += start + len - self.used;
        self.used = start + len;
        // SAFETY: start + len <= size, inside the current chunk.
        unsafe { self.chunk.add(start) }
    }

    /// Unmaps every chunk.
    pub fn release(&mut self) {
        let mut c = self.chunk;
        while !c.is_null() {
            // SAFETY: every chunk begins with the link to the previous one and its size.
            let (next, size) = unsafe { (*(c as *mut *mut u8), *(c.add(8) as *mut usize)) };
            unmap(c, size);
            c = next;
        }
        *self = Arena::new();
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

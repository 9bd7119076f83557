//! Per-site switches shared with the BPF program: an array map of u64
//! mapped into the agent, so turning a site on or off is one store.
//!
//! A site's word is 0 when it is off, else `generation + 1` of the link
//! whose hits it accepts. Every link's cookies carry their generation, so
//! while a site is attached by two links (an old one being replaced and
//! its replacement) only one of them records a hit; see `super::relink`.
//! Closing a link costs the kernel a grace period (~60 ms here, one link
//! at a time), so links are replaced in groups rather than one per probe,
//! and a switched-off site stops recording at once, before its breakpoint
//! is gone.

use super::sys;
use core::sync::atomic::{AtomicU64, Ordering};

/// Indices 0..FIRST_SITE are the calibration's own sites.
pub const CALIBRATION_ENTRY: u32 = 1;
pub const CALIBRATION_EXIT: u32 = 2;
pub const FIRST_SITE: u32 = 3;
/// Sites of one process image (entries and exits of all its probes).
pub const CAPACITY: u32 = 1 << 18;
/// Generations are 16 bits of the cookie.
pub const GENERATIONS: u32 = 0xffff;

pub struct Flags {
    pub fd: i32,
    words: *mut AtomicU64,
}

// SAFETY: the mapping is shared memory of atomics, valid until drop.
unsafe impl Send for Flags {}

/// Array maps lay values out 8-byte aligned: hence u64 words.
const BYTES: usize = CAPACITY as usize * 8;

impl Flags {
    /// Creates and maps the switches, all off.
    pub fn create(floor: i32) -> Result<Flags, i32> {
        let fd = sys::map_create(sys::BPF_MAP_TYPE_ARRAY, 4, 8, CAPACITY, sys::BPF_F_MMAPABLE)?;
        let fd = super::open::move_fd(fd, floor);
        // SAFETY: a fresh shared mapping of the mmapable array's values.
        let words = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if words == libc::MAP_FAILED {
            let e = sys_errno();
            sys::close(fd);
            return Err(e);
        }
        Ok(Flags {
            fd,
            words: words.cast(),
        })
    }

    fn word(&self, index: u32) -> Option<&AtomicU64> {
        // SAFETY: index < CAPACITY lies inside the mapping, which lives as long as self.
        (index < CAPACITY).then(|| unsafe { &*self.words.add(index as usize) })
    }

    /// Whether `index` is on.
    pub fn is_on(&self, index: u32) -> bool {
        self.word(index)
            .is_some_and(|w| w.load(Ordering::Relaxed) != 0)
    }

    /// Accept hits at `index` from links of `generation`.
    pub fn accept(&self, index: u32, generation: u32) {
        if let Some(w) = self.word(index) {
            w.store(generation as u64 + 1, Ordering::Release);
        }
    }

    /// Moves `index` to `generation` unless it was switched off meanwhile.
    pub fn move_to(&self, index: u32, generation: u32) {
        if let Some(w) = self.word(index) {
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                (v != 0).then_some(generation as u64 + 1)
            });
        }
    }

    pub fn off(&self, index: u32) {
        if let Some(w) = self.word(index) {
            w.store(0, Ordering::Release);
        }
    }
}

impl Drop for Flags {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once (in a fork child this only
        // drops the child's view of the parent's map).
        unsafe { libc::munmap(self.words.cast(), BYTES) };
    }
}

fn sys_errno() -> i32 {
    crate::sys::errno()
}

/// The cookie of site `index` in links of `generation`.
pub fn cookie(index: u32, generation: u32, wide: bool) -> u64 {
    index as u64
        | ((generation as u64 & 0xffff) << 32)
        | if wide { super::prog::WIDE_BIT } else { 0 }
}

/// (site index, generation) of a cookie.
pub fn split(cookie: u64) -> (u32, u32) {
    (cookie as u32, ((cookie >> 32) & 0xffff) as u32)
}

//! The per-thread (per-context) shadow stack of probed frames.
//!
//! Signal safety without a guard: only the owning thread and its signal
//! handlers touch a shadow stack, and handlers nest strictly. Every change
//! is therefore made visible by one store to `top`, which packs the depth
//! and a *pending* bit:
//!
//! * push: `top = (d+1)<<1 | 1` (reserve, pending), fill frame d,
//!   `top = (d+1)<<1` (commit). A handler arriving in between sees the
//!   pending bit: it pushes above frame d and never reads or pops it.
//! * pop: read the frame, then `top = frame.prev_top` — restoring exactly
//!   what was there before the push, pending bit included.
//!
//! Frames are matched by the address of their return-address slot, so
//! frames left behind by longjmp or unwinding are found and closed.

use crate::engine::probe::Probe;
use crate::meter::contexts::Node;
use crate::meter::stats::ThreadProbeStats;

pub const PENDING: usize = 1;
/// Frames per shadow stack: 20,000-deep recursion fits many times over.
pub const CAPACITY: usize = 1 << 18;

/// The slot holds the frame's hook (its return is hooked).
pub const HOOKED: u32 = 1;
/// The call got no calling-context node of its own (past the cap).
pub const FOLDED: u32 = 2;
/// A direct probed callee returned while the score card was still judging
/// it: this call's inherent time is not yet what it will be once that
/// callee is kept or removed, so the call is not scored (score_card::held).
pub const PROVISIONAL: u32 = 4;
/// Pushed by a signal handler's call while the frame below was still
/// pending (the handler interrupted that call's entry): committing this
/// frame leaves `top` without the pending bit, so this flag is what keeps
/// the half-built frame below out of `live_frames`. Treated as live, it
/// was re-hooked by a handler's backtrace from the stale return address
/// its slot held on the last call from there, and the interrupted entry
/// then read the hook as its return address (`sigprof 10000 backtrace`
/// aborted with a lost return in about 1 run of 200 under load).
pub const OVER_PENDING: u32 = 8;

/// Sets `bit` in a frame's flags with one instruction. Every writer of a
/// committed frame's flags goes through this or `clear_flag`, so a signal
/// handler that sets a bit of its own between our read and write (the exit
/// stub marks its parent PROVISIONAL) cannot be undone by a stale store.
#[inline(always)]
pub fn set_flag(flags: &mut u32, bit: u32) {
    // SAFETY: one `or` on memory this thread owns.
    unsafe {
        core::arch::asm!("or dword ptr [{0}], {1:e}", in(reg) flags as *mut u32, in(reg) bit, options(nostack))
    }
}

/// Clears `bit` in a frame's flags with one instruction (see `set_flag`).
#[inline(always)]
pub fn clear_flag(flags: &mut u32, bit: u32) {
    // SAFETY: one `and` on memory this thread owns.
    unsafe {
        core::arch::asm!("and dword ptr [{0}], {1:e}", in(reg) flags as *mut u32, in(reg) !bit, options(nostack))
    }
}

#[repr(C)]
pub struct Frame {
    /// Address of the return-address slot: the frame's key.
    pub slot: usize,
    /// The real return address (0 when the backend does not hook returns).
    pub ret: usize,
    pub probe: *const Probe,
    pub stats: *mut ThreadProbeStats,
    /// The calling-context node (null when FOLDED): the exit stub updates
    /// it without looking it up.
    pub node: *mut Node,
    /// Clock at entry.
    pub start: u64,
    /// Raw ticks of direct probed callees.
    pub child_ticks: u64,
    /// `top` before this frame was pushed.
    pub prev_top: usize,
    /// All probed descendants (for overhead compensation).
    pub desc_calls: u64,
    /// The calling-context node, or `contexts::folded_ctx(…)` when FOLDED.
    pub ctx: u32,
    /// Direct probed callees.
    pub child_calls: u32,
    pub flags: u32,
    /// The probe of the probed frame below (ROOT if none). Written only by
    /// the slow path, and read only for FOLDED frames, which it alone pushes.
    pub caller: u32,
    /// What the return slot holds while the frame is hooked: the landing of
    /// the trampoline the call came through (0 when returns are not hooked).
    /// Also rounds the frame to 96 bytes: the stubs find frame `d` at
    /// `(d << 1) * 48`, a shift and a scaled add.
    pub hook: usize,
}

const _: () = assert!(core::mem::size_of::<Frame>() == 96);

#[repr(C)]
pub struct Shadow {
    pub top: usize,
    pub frames: *mut Frame,
    /// The stack this shadow's frames live on, when known: frames below a
    /// new call are declared dead at push only within it.
    pub stack_lo: usize,
    pub stack_hi: usize,
    /// The ucontext this shadow belongs to (0: the thread's own stack).
    pub key: usize,
}

impl Shadow {
    pub const fn empty() -> Shadow {
        Shadow {
            top: 0,
            frames: core::ptr::null_mut(),
            stack_lo: 0,
            stack_hi: 0,
            key: 0,
        }
    }

    /// Maps the frame array (reserved, pages are touched only as used).
    pub fn init(&mut self, key: usize) -> bool {
        self.frames =
            crate::engine::arena::map(CAPACITY * core::mem::size_of::<Frame>(), true) as *mut Frame;
        self.key = key;
        self.top = 0;
        !self.frames.is_null()
    }

    /// Bytes of the frame array that are resident: the pages the deepest
    /// calls so far have touched (the rest is only reserved).
    pub fn resident_bytes(&self) -> u64 {
        if self.frames.is_null() {
            return 0;
        }
        let len = CAPACITY * core::mem::size_of::<Frame>();
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: frames/len is our own mapping; vec has one byte per page.
        if unsafe { libc::mincore(self.frames.cast(), len, vec.as_mut_ptr()) } != 0 {
            return 0;
        }
        vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * 4096
    }

    pub fn release(&mut self) {
        crate::engine::arena::unmap(self.frames.cast(), CAPACITY * core::mem::size_of::<Frame>());
        self.frames = core::ptr::null_mut();
    }

    #[inline(always)]
    pub fn depth(&self) -> usize {
        self.top >> 1
    }

    #[inline(always)]
    pub fn pending(&self) -> bool {
        self.top & PENDING != 0
    }

    /// Frame `i` (0 = outermost).
    #[inline(always)]
    pub fn frame(&self, i: usize) -> *mut Frame {
        debug_assert!(i < CAPACITY);
        // SAFETY: i < CAPACITY, inside the mapping.
        unsafe { self.frames.add(i) }
    }

    #[inline(always)]
    pub fn same_stack(&self, a: usize, b: usize) -> bool {
        self.stack_lo <= a && a < self.stack_hi && self.stack_lo <= b && b < self.stack_hi
    }

    /// Frames below this index are committed or half built (`OVER_PENDING`).
    pub fn committed_depth(&self) -> usize {
        let d = self.depth().min(CAPACITY);
        if self.pending() {
            d.saturating_sub(1)
        } else {
            d
        }
    }

    /// Whether frame `i` (below `committed_depth`) is a half-built one
    /// under a signal handler's frames.
    #[inline(always)]
    pub fn half_built(&self, i: usize) -> bool {
        // SAFETY: i + 1 is a committed frame.
        i + 1 < self.committed_depth() && unsafe { (*self.frame(i + 1)).flags } & OVER_PENDING != 0
    }

    /// The committed frames, outermost first (for snapshots and unwinding).
    pub fn live_frames(&self) -> impl DoubleEndedIterator<Item = *mut Frame> + '_ {
        (0..self.committed_depth())
            .filter(move |&i| !self.half_built(i))
            .map(move |i| self.frame(i))
    }
}

/// Stores to `top` must not be reordered with the frame writes around them
/// by the compiler; the CPU does not reorder a thread's own stores as seen
/// by its own signal handlers.
#[inline(always)]
pub fn fence() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_at(sh: &Shadow, i: usize, slot: usize, flags: u32) {
        // SAFETY: frame i of our own mapping; all-zero is a valid Frame (null pointers).
        unsafe {
            let f = sh.frame(i);
            f.write(core::mem::zeroed());
            (*f).slot = slot;
            (*f).flags = flags;
        }
    }

    fn live_slots(sh: &Shadow) -> Vec<usize> {
        // SAFETY: live frames are written above.
        sh.live_frames().map(|f| unsafe { (*f).slot }).collect()
    }

    #[test]
    fn a_half_built_frame_under_a_handlers_frame_is_not_live() {
        let mut sh = Shadow::empty();
        assert!(sh.init(0));
        frame_at(&sh, 0, 0x3000, HOOKED);
        frame_at(&sh, 1, 0x2000, HOOKED);
        // Frame 2's entry is interrupted while pending: top = depth 3 | PENDING.
        frame_at(&sh, 2, 0x1000, HOOKED);
        sh.top = (3 << 1) | PENDING;
        assert_eq!(live_slots(&sh), [0x3000, 0x2000]);
        // A handler's call commits its own frame on top of it.
        frame_at(&sh, 3, 0x800, HOOKED | OVER_PENDING);
        sh.top = 4 << 1;
        assert_eq!(live_slots(&sh), [0x3000, 0x2000, 0x800]);
        assert!(sh.half_built(2) && !sh.half_built(1) && !sh.half_built(3));
        // SAFETY: as in live_slots.
        let innermost_first: Vec<usize> = sh
            .live_frames()
            .rev()
            .map(|f| unsafe { (*f).slot })
            .collect();
        assert_eq!(innermost_first, [0x800, 0x2000, 0x3000]);
        // The handler's call returns; the interrupted entry commits.
        sh.top = (3 << 1) | PENDING;
        assert_eq!(live_slots(&sh), [0x3000, 0x2000]);
        sh.top = 3 << 1;
        assert_eq!(live_slots(&sh), [0x3000, 0x2000, 0x1000]);
        sh.release();
    }
}

//! The fast paths of enter and exit: the common case only, in code that
//! uses no SSE register, so the stubs need not save xmm0–15 around it.
//! Anything unusual (a thread's first call, a new calling context, frames
//! to close, a histogram byte about to overflow, a score to merge) returns
//! 0 *before changing anything*, and the stub then saves the vector
//! registers and runs the full path in `enter_exit`.
//!
//! What they touch: the thread state, the probe, one index slot, the
//! chunk directory, the context node, the parent frame and the new one,
//! and the statistics block (counters on one cache line, the histogram
//! window on the next).
//!
//! A test disassembles the built agent and checks that these two functions
//! touch no xmm/ymm register and call nothing.

use crate::arch::x86_64::stubs::exit_stub_address;
use crate::engine::probe::Probe;
use crate::engine::shadow::{fence, Frame, CAPACITY, FOLDED, HOOKED, PENDING};
use crate::engine::thread::{ThreadState, ENDED};
use crate::meter::contexts::ROOT;
use crate::meter::histogram::{bucket, LOCAL_BUCKETS};
use crate::meter::stats::bump;
use crate::meter::{clock, compensate};
use core::ptr::{addr_of_mut, write_volatile};
use core::sync::atomic::Ordering;

/// Field by field, volatile: the compiler may not merge these stores into
/// vector stores.
macro_rules! set {
    ($frame:expr, $field:ident, $value:expr) => {
        write_volatile(addr_of_mut!((*$frame).$field), $value)
    };
}

/// # Safety
/// Called only from the entry stub, as `hotprobe_enter`.
#[inline(never)]
pub unsafe extern "C" fn hotprobe_enter_fast(
    probe: *const Probe,
    slot: *mut usize,
    tls: *mut ThreadState,
) -> usize {
    if (tls as usize) <= ENDED {
        return 0;
    }
    // SAFETY: see `hotprobe_enter`: the stub passes a leaked probe, the call's return slot
    // and this thread's live state.
    unsafe {
        let probe = &*probe;
        let t = &mut *tls;
        let sh = &mut *t.shadow;
        let top = sh.top;
        let depth = top >> 1;
        if top & PENDING != 0 || depth >= CAPACITY - 1 || t.count_only.load(Ordering::Relaxed) {
            return 0;
        }
        let ret = *slot;
        let parent_ctx = if depth == 0 {
            ROOT
        } else {
            let parent = sh.frame(depth - 1);
            let pslot = (*parent).slot;
            // A frame at or below this call's slot may be dead: the full path decides.
            if pslot < slot as usize || (pslot == slot as usize && ret != exit_stub_address()) {
                return 0;
            }
            (*parent).ctx
        };
        let Some(ctx) = t.tree.find(parent_ctx, probe.id) else {
            return 0;
        };
        let node = t.tree.node(ctx);
        let stats = (*node).stats;
        if !clock::is_tsc() {
            return 0;
        }
        sh.top = ((depth + 1) << 1) | PENDING;
        fence();
        let frame: *mut Frame = sh.frame(depth);
        set!(frame, slot, slot as usize);
        set!(frame, ret, ret);
        set!(frame, probe, probe as *const Probe);
        set!(frame, stats, stats);
        set!(frame, child_ticks, 0);
        set!(frame, prev_top, top);
        set!(frame, desc_calls, 0);
        set!(frame, ctx, ctx);
        set!(frame, child_calls, 0);
        set!(frame, flags, HOOKED);
        bump(&mut (*stats).count, 1);
        (*stats).active += 1;
        bump(&mut (*node).count, 1);
        *slot = exit_stub_address();
        set!(frame, start, clock::tsc().unwrap_or(0));
        fence();
        sh.top = (depth + 1) << 1;
        probe.resume.load(Ordering::Relaxed)
    }
}

/// What the exit fast path returns, in rax:rdx: the real return address,
/// or 0 when the full path must run — which then meters the call with the
/// fast path's own timestamp (`now`, passed on in rdx), not one taken after
/// the detour: a call must land in the same histogram bucket whichever path
/// meters it, or the window the full path keeps never sees where the fast
/// path's calls fall, and every call of a short function stays on the full
/// path.
#[repr(C)]
pub struct Exit {
    pub ret: usize,
    pub now: u64,
}

impl Exit {
    #[inline(always)]
    fn decline(now: u64) -> Exit {
        Exit { ret: 0, now }
    }
}

/// # Safety
/// Called only from the exit stub, as `hotprobe_exit`.
#[inline(never)]
pub unsafe extern "C" fn hotprobe_exit_fast(slot: *mut usize, tls: *mut ThreadState) -> Exit {
    let Some(now) = clock::tsc() else {
        return Exit::decline(0);
    };
    if (tls as usize) <= ENDED {
        return Exit::decline(now);
    }
    // SAFETY: see `hotprobe_exit`.
    unsafe {
        let t = &mut *tls;
        let sh = &mut *t.shadow;
        let top = sh.top;
        let depth = top >> 1;
        if top & PENDING != 0 || depth == 0 {
            return Exit::decline(now);
        }
        let f = sh.frame(depth - 1);
        if (*f).slot != slot as usize || (*f).flags & FOLDED != 0 {
            return Exit::decline(now);
        }
        let probe = &*(*f).probe;
        let s = &mut *(*f).stats;
        let window = now.saturating_sub((*f).start);
        let (inclusive, inherent) =
            compensate::adjust(window, (*f).child_ticks, (*f).child_calls, (*f).desc_calls);
        let outermost = s.active == 1;
        // The bucket's place in this thread's window (huge when outside, or unset).
        let b = bucket(inclusive).wrapping_sub(s.hist_base as usize);
        let scoring = outermost && !probe.settled.load(Ordering::Relaxed);
        if outermost && (b >= LOCAL_BUCKETS || *s.hist.get_unchecked(b) == u8::MAX) {
            return Exit::decline(now);
        }
        if scoring && s.score_calls + 1 >= crate::adaptive::score_card::BATCH {
            return Exit::decline(now);
        }
        // Committed from here on.
        let ret = (*f).ret;
        let ctx = (*f).ctx;
        let desc = (*f).desc_calls;
        fence();
        sh.top = (*f).prev_top;
        fence();
        s.active -= 1;
        bump(&mut s.inherent, inherent);
        if outermost {
            bump(&mut s.inclusive, inclusive);
            *s.hist.get_unchecked_mut(b) += 1;
            if inclusive > s.max_inclusive {
                s.max_inclusive = inclusive;
            }
            if scoring {
                s.score_pending += crate::adaptive::score_card::delta(inclusive, inherent);
                s.score_calls += 1;
            }
        }
        let node = t.tree.node(ctx);
        bump(&mut (*node).inclusive, inclusive);
        bump(&mut (*node).inherent, inherent);
        let new_top = sh.top;
        if new_top & PENDING == 0 && new_top >> 1 > 0 {
            let p = sh.frame((new_top >> 1) - 1);
            bump(&mut (*p).child_ticks, window);
            (*p).child_calls = (*p).child_calls.wrapping_add(1);
            bump(&mut (*p).desc_calls, 1 + desc);
        }
        Exit { ret, now }
    }
}

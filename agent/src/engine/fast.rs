//! The entry's second tier: the common case the stub's own assembly could
//! not take because this thread's hint for the call's context was missing
//! or stale. It finds the context in the thread's index, leaves a hint for
//! the stub, and pushes the frame; it uses no SSE register, so the stub
//! need not save xmm0–15 around it. Anything unusual (a thread's first
//! call, a new calling context, frames to close) returns 0 *before
//! changing anything*, and the stub then saves the vector registers and
//! runs the full path in `enter_exit`.
//!
//! The exit's steady state is all in the exit stub (arch::x86_64::stubs).
//!
//! A test disassembles the built agent and checks that this function and
//! the stubs' own paths touch no xmm/ymm register and call nothing.

use crate::engine::probe::Probe;
use crate::engine::shadow::{fence, Frame, CAPACITY, HOOKED, PENDING};
use crate::engine::thread::{hint_slot, ThreadState, ENDED};
use crate::meter::contexts::ROOT;
use crate::meter::stats::bump;
use core::ptr::{addr_of_mut, write_volatile};
use core::sync::atomic::Ordering;

/// Field by field, volatile: the compiler may not merge these stores into
/// vector stores.
macro_rules! set {
    ($frame:expr, $field:ident, $value:expr) => {
        write_volatile(addr_of_mut!((*$frame).$field), $value)
    };
}

/// `start`: the stub's timestamp (0 without a TSC, when this declines);
/// `hook`: what the hooked slot will hold (the trampoline's landing).
/// Returns 1 when the call is hooked (the trampoline's dispatch calls the
/// body), 0 when the full path must decide.
///
/// # Safety
/// Called only from the entry stub, as `hotprobe_enter`.
#[inline(never)]
pub unsafe extern "C" fn hotprobe_enter_fast(
    probe: *const Probe,
    slot: *mut usize,
    tls: *mut ThreadState,
    start: u64,
    hook: usize,
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
            if pslot < slot as usize || (pslot == slot as usize && ret != (*parent).hook) {
                return 0;
            }
            (*parent).ctx
        };
        let Some(ctx) = t.tree.find(parent_ctx, probe.id) else {
            return 0;
        };
        let node = t.tree.node(ctx);
        let stats = (*node).stats;
        if start == 0 {
            return 0; // no TSC
        }
        // The entry stub's own path finds it from here on (one store: a
        // signal handler that fills the same hint leaves one valid value).
        write_volatile(&mut t.hints[hint_slot(parent_ctx, probe.id)], node as usize);
        sh.top = ((depth + 1) << 1) | PENDING;
        fence();
        let frame: *mut Frame = sh.frame(depth);
        set!(frame, slot, slot as usize);
        set!(frame, ret, ret);
        set!(frame, probe, probe as *const Probe);
        set!(frame, stats, stats);
        set!(frame, node, node);
        set!(frame, child_ticks, 0);
        set!(frame, prev_top, top);
        set!(frame, desc_calls, 0);
        set!(frame, ctx, ctx);
        set!(frame, child_calls, 0);
        set!(frame, flags, HOOKED);
        set!(frame, hook, hook);
        bump(&mut (*stats).count, 1);
        (*stats).active += 1;
        bump(&mut (*node).count, 1);
        *slot = hook;
        // The stub's own timestamp, read where the steady state reads it:
        // the calibrated cost inside the window assumes that place.
        set!(frame, start, start);
        fence();
        sh.top = (depth + 1) << 1;
        1
    }
}

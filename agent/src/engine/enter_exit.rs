//! The full paths of enter and exit (`engine::fast` has the common case):
//! `hotprobe_enter`/`hotprobe_exit` for the stubs, built on `push` and
//! `pop_and_meter`, which the kernel backend drives too. Neither allocates
//! in steady state, takes a lock or calls into libc; they touch the probe,
//! this thread's state, one statistics block and one context node.

use crate::adaptive::score_card as score;
use crate::engine::probe::Probe;
use crate::engine::shadow::{
    fence, set_flag, Frame, Shadow, CAPACITY, FOLDED, HOOKED, OVER_PENDING, PROVISIONAL,
};
use crate::engine::thread::{current_or_create, ThreadState};
use crate::meter::contexts::{folded_ctx, folded_into, ROOT};
use crate::meter::stats::bump;
use crate::meter::{clock, compensate};
use core::sync::atomic::Ordering;

/// Called by the entry stub (when the fast path declined). Returns 1 when
/// the call is hooked (the trampoline's dispatch then calls the body, and
/// the slot holds `hook`, the trampoline's landing), else where the call
/// continues unhooked.
///
/// # Safety
/// Called only from the entry stub: `probe` is a registered probe, `slot`
/// the address of the call's return address, `tls` this thread's TLS word.
pub unsafe extern "C" fn hotprobe_enter(
    probe: *const Probe,
    slot: *mut usize,
    tls: *mut ThreadState,
    hook: usize,
) -> usize {
    // SAFETY: the trampoline passes a leaked, never-freed probe.
    let probe = unsafe { &*probe };
    let resume = probe.resume.load(Ordering::Relaxed);
    let thread = current_or_create(tls);
    if thread.is_null() {
        // The thread is starting or ending (its state is being built or is gone).
        probe.untimed.fetch_add(1, Ordering::Relaxed);
        return resume;
    }
    // SAFETY: a live thread state is only used by its own thread (and its signal handlers,
    // which nest and follow the shadow stack protocol); the slot holds the return address.
    unsafe {
        let t = &mut *thread;
        if t.count_only.load(Ordering::Relaxed) {
            probe.untimed.fetch_add(1, Ordering::Relaxed);
            return resume;
        }
        let ret = *slot;
        if push(t, probe, slot as usize, ret, hook, None) {
            *slot = hook;
            return 1;
        }
    }
    resume
}

/// Pushes a frame for a call of `probe` whose return address is at `slot`
/// (holding `ret`, or 0 when returns are not hooked; `hook` is what the
/// caller then puts in the slot), after closing the frames the call proves
/// dead. `start` is the entry time, or None to read the clock last (so the
/// bookkeeping stays outside the call's window). False when the call
/// cannot be metered (counted in `unmetered`).
pub fn push(
    t: &mut ThreadState,
    probe: &Probe,
    slot: usize,
    ret: usize,
    hook: usize,
    start: Option<u64>,
) -> bool {
    // SAFETY: `shadow` always points at one of this thread's shadows.
    let pending = unsafe { (*t.shadow).pending() };
    if !pending {
        close_dead_frames(t, slot, ret);
    }
    // SAFETY: as above.
    let sh = unsafe { &mut *t.shadow };
    let top = sh.top;
    let depth = top >> 1;
    if depth >= CAPACITY {
        probe.untimed.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let parent = committed_parent(sh, top);
    // SAFETY: a committed frame of this shadow; its probe is leaked.
    let (parent_ctx, caller, parent_folded) = parent.map_or((ROOT, ROOT, false), |p| unsafe {
        ((*p).ctx, (*(*p).probe).id, (*p).flags & FOLDED != 0)
    });
    let (ctx, folded) = if parent_folded {
        // Below a folded call everything folds, so edges keep their real callers.
        (parent_ctx, FOLDED)
    } else {
        match t.tree.find(parent_ctx, probe.id) {
            Some(c) => (c, 0),
            None => new_context(t, parent_ctx, probe),
        }
    };
    let node = if folded == 0 {
        t.tree.node(ctx)
    } else {
        core::ptr::null_mut()
    };
    let stats = if folded == 0 {
        // SAFETY: ctx is a node of this thread's tree.
        unsafe { (*node).stats }
    } else {
        t.stats_for(probe)
    };
    if stats.is_null() {
        probe.untimed.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let flags = folded | if ret != 0 { HOOKED } else { 0 } | if pending { OVER_PENDING } else { 0 };
    sh.top = ((depth + 1) << 1) | 1;
    fence();
    let frame = sh.frame(depth);
    // SAFETY: frame `depth` is reserved for us; stats and the node belong to this thread.
    unsafe {
        frame.write(Frame {
            slot,
            ret,
            probe,
            stats,
            node,
            start: start.unwrap_or(0),
            child_ticks: 0,
            prev_top: top,
            desc_calls: 0,
            ctx,
            child_calls: 0,
            flags,
            caller,
            hook: if ret != 0 { hook } else { 0 },
        });
        let s = &mut *stats;
        bump(&mut s.count, 1);
        s.active += 1;
        if folded == 0 {
            bump(&mut (*node).count, 1);
        }
        if start.is_none() {
            (*frame).start = clock::now();
        }
    }
    fence();
    sh.top = (depth + 1) << 1;
    true
}

/// The frame below a new one whose data is complete, if any.
#[inline(always)]
fn committed_parent(sh: &Shadow, top: usize) -> Option<*mut Frame> {
    let depth = top >> 1;
    let committed = if top & 1 != 0 {
        depth.checked_sub(1)?
    } else {
        depth
    };
    committed.checked_sub(1).map(|i| sh.frame(i))
}

#[cold]
/// A new context node for `probe` under `parent_ctx`: (node, 0), or
/// (folded ctx, FOLDED) past the cap. Signals stay blocked meanwhile, so a
/// handler's calls never see the thread's tables half changed.
fn new_context(t: &mut ThreadState, parent_ctx: u32, probe: &Probe) -> (u32, u32) {
    let stats = t.stats_for(probe);
    // Past the cap every call on this path comes here again: it must not
    // pay for blocking signals each time to learn that.
    if stats.is_null() {
        return (folded_ctx(parent_ctx), FOLDED);
    }
    if crate::meter::contexts::is_full() {
        crate::meter::contexts::note_truncated();
        return (folded_ctx(parent_ctx), FOLDED);
    }
    let _blocked = crate::sys::SignalsBlocked::new();
    match t.tree.add(&mut t.arena, parent_ctx, probe.id, stats) {
        Some(c) => (c, 0),
        None => (folded_ctx(parent_ctx), FOLDED),
    }
}

/// Closes frames on top of the shadow stack that a new call at `slot`
/// (holding `ret`) proves dead: deeper on the same stack (left by longjmp,
/// or by unwinding that no hook saw). A frame with this very slot is the
/// caller of a tail call when the slot still holds its hook, and dead
/// otherwise.
#[inline(always)]
fn close_dead_frames(t: &mut ThreadState, slot: usize, ret: usize) {
    // SAFETY: see hotprobe_enter.
    let sh = unsafe { &mut *t.shadow };
    loop {
        let d = sh.depth();
        if d == 0 || sh.pending() {
            return;
        }
        let f = sh.frame(d - 1);
        // SAFETY: committed frame.
        let (fslot, hook) = unsafe { ((*f).slot, (*f).hook) };
        let slot_hooked = ret != 0 && ret == hook;
        let dead = (fslot < slot || (fslot == slot && !slot_hooked)) && sh.same_stack(fslot, slot);
        if !dead {
            return;
        }
        abandon_top(t);
    }
}

/// Pops the top frame as abandoned (left without a return).
pub fn abandon_top(t: &mut ThreadState) {
    // SAFETY: see hotprobe_enter.
    let sh = unsafe { &mut *t.shadow };
    let d = sh.depth();
    if d == 0 {
        return;
    }
    let f = sh.frame(d - 1);
    // SAFETY: committed frame; its stats block belongs to this thread.
    unsafe {
        let s = &mut *(*f).stats;
        bump(&mut s.abandoned, 1);
        s.active = s.active.saturating_sub(1);
        sh.top = (*f).prev_top;
    }
}

/// Called by the exit stub (when the fast path declined), with the fast
/// path's timestamp. Returns the real return address.
///
/// # Safety
/// Called only from the exit stub, with the address of the slot that held
/// the call's hook and this thread's TLS word.
pub unsafe extern "C" fn hotprobe_exit(slot: *mut usize, tls: *mut ThreadState, now: u64) -> usize {
    // The fast path's timestamp when it declined (0 when it had none).
    let now = if now != 0 { now } else { clock::now() };
    let slot = slot as usize;
    if (tls as usize) <= crate::engine::thread::ENDED {
        return crate::engine::recover::lost_return(slot);
    }
    // SAFETY: only hooked frames reach the exit stub, so this thread has a state.
    let t = unsafe { &mut *tls };
    match pop_and_meter(t, slot, now) {
        Some(ret) => ret,
        None => crate::engine::recover::lost_return(slot),
    }
}

/// Closes the frame whose return slot is `slot` at time `now` and meters
/// the call. Returns the frame's return address (0 when not hooked), or
/// None when no frame of this thread has that slot.
pub fn pop_and_meter(t: &mut ThreadState, slot: usize, now: u64) -> Option<usize> {
    let (f, parent_follows) = crate::engine::recover::take_frame(t, slot)?;
    // SAFETY: `take_frame` left `shadow` pointing at the shadow the frame came from.
    let sh = unsafe { &mut *t.shadow };
    let window = now.saturating_sub(f.start);
    let (inclusive, inherent) =
        compensate::adjust(window, f.child_ticks, f.child_calls, f.desc_calls);
    // SAFETY: the probe is leaked; stats and nodes belong to this thread.
    unsafe {
        let probe = &*f.probe;
        let s = &mut *f.stats;
        s.active = s.active.saturating_sub(1);
        bump(&mut s.inherent, inherent);
        if s.active == 0 {
            bump(&mut s.inclusive, inclusive);
            s.record_inclusive(probe, inclusive);
            if !probe.settled.load(Ordering::Relaxed)
                && (f.flags & PROVISIONAL == 0 || !score::held(probe))
            {
                score::after_call(probe, s, inclusive, inherent);
            }
        }
        if f.flags & FOLDED == 0 {
            let node = &mut *t.tree.node(f.ctx);
            bump(&mut node.inclusive, inclusive);
            bump(&mut node.inherent, inherent);
        } else {
            fold(t, &f, inclusive, inherent);
        }
        if let Some(p) = top_frame(sh).filter(|_| parent_follows) {
            let p = &mut *p;
            bump(&mut p.child_ticks, window);
            p.child_calls = p.child_calls.wrapping_add(1);
            bump(&mut p.desc_calls, 1 + f.desc_calls);
            if p.probe != f.probe && score::judging(probe) {
                set_flag(&mut p.flags, PROVISIONAL);
            }
        }
    }
    Some(f.ret)
}

/// The top frame if it is committed.
#[inline(always)]
fn top_frame(sh: &Shadow) -> Option<*mut Frame> {
    if sh.pending() {
        return None;
    }
    sh.depth().checked_sub(1).map(|i| sh.frame(i))
}

/// A call past the context cap: its own time goes to the nearest node
/// above it (so flame graph widths still add up) and its edge, from the
/// probe that called it, to the folded edges.
#[cold]
fn fold(t: &mut ThreadState, f: &Frame, inclusive: u64, inherent: u64) {
    if let Some(n) = folded_into(f.ctx) {
        // SAFETY: a node of this thread's tree.
        bump(unsafe { &mut (*t.tree.node(n)).inherent }, inherent);
    }
    if f.caller != ROOT {
        // SAFETY: the probe is leaked.
        let callee = unsafe { (*f.probe).id };
        t.tree.add_folded(&mut t.arena, f.caller, callee, inclusive);
    }
}

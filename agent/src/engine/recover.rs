//! Finding the frame an exit belongs to when it is not simply the top one:
//! frames left above it by longjmp or unwinding, user contexts switched
//! without a hook, and the last resort when no frame is found at all.

use crate::engine::enter_exit::abandon_top;
use crate::engine::shadow::{fence, Frame, Shadow};
use crate::engine::thread::ThreadState;

/// Removes the frame whose return slot is `slot` from this thread's shadow
/// stacks and returns it, with whether the frame now on top is its caller.
#[inline(always)]
pub fn take_frame(t: &mut ThreadState, slot: usize) -> Option<(Frame, bool)> {
    // SAFETY: `shadow` always points at one of this thread's shadows.
    let sh = unsafe { &mut *t.shadow };
    let d = sh.depth();
    if d > 0 && !sh.pending() {
        let top = sh.frame(d - 1);
        // SAFETY: committed top frame.
        if unsafe { (*top).slot } == slot {
            // SAFETY: as above; the frame is copied out before `top` moves.
            let f = unsafe { core::ptr::read(top) };
            fence();
            sh.top = f.prev_top;
            return Some((f, true));
        }
    }
    take_slow(t, slot)
}

fn position(sh: &Shadow, slot: usize) -> Option<usize> {
    // SAFETY: indices below the committed depth are committed frames.
    (0..sh.committed_depth())
        .rev()
        .find(|&i| !sh.half_built(i) && unsafe { (*sh.frame(i)).slot } == slot)
}

#[cold]
fn take_slow(t: &mut ThreadState, slot: usize) -> Option<(Frame, bool)> {
    if position(unsafe { &*t.shadow }, slot).is_none() {
        // A user context ended or was left without a switch we saw: find the shadow
        // that holds the frame and make it current.
        let own: *mut Shadow = &mut t.own_shadow;
        let candidates =
            core::iter::once(own).chain(t.context_shadows.iter().copied().filter(|p| !p.is_null()));
        // SAFETY: the candidates are this thread's shadows.
        let found = candidates
            .into_iter()
            .find(|&c| position(unsafe { &*c }, slot).is_some())?;
        t.set_shadow(found);
        t.switches += 1;
    }
    // SAFETY: as above.
    let sh = unsafe { &mut *t.shadow };
    let index = position(sh, slot)?;
    let above = (index + 1)..sh.committed_depth();
    // SAFETY: committed frames.
    let all_deeper = above.clone().all(|j| unsafe { (*sh.frame(j)).slot } < slot);
    if all_deeper && !sh.pending() {
        // longjmp or unwinding left these frames: they are over.
        while sh.depth() > index + 1 {
            abandon_top(t);
        }
        // SAFETY: as above.
        let sh = unsafe { &mut *t.shadow };
        // SAFETY: the frame is now the committed top.
        let f = unsafe { core::ptr::read(sh.frame(index)) };
        fence();
        sh.top = f.prev_top;
        return Some((f, true));
    }
    // Frames of another stack sit above (a stack switch we did not see):
    // take this frame out from under them and keep them.
    t.switches += 1;
    // SAFETY: as above.
    let sh = unsafe { &mut *t.shadow };
    // SAFETY: index is a committed frame.
    let f = unsafe { core::ptr::read(sh.frame(index)) };
    let depth = sh.depth();
    for j in index..depth.saturating_sub(1) {
        // SAFETY: j + 1 < depth <= CAPACITY.
        unsafe {
            let mut moved = core::ptr::read(sh.frame(j + 1));
            moved.prev_top = moved.prev_top.saturating_sub(2);
            sh.frame(j).write(moved);
        }
    }
    fence();
    sh.top = sh.top.saturating_sub(2);
    Some((f, false))
}

/// No frame of this thread has this slot. Another thread may hold it (a
/// user context resumed on another thread): borrow its return address.
/// If nobody has it, returning is impossible: say why and abort.
#[cold]
pub fn lost_return(slot: usize) -> usize {
    let mut found = 0usize;
    crate::engine::thread::for_each(|other| {
        for sh in other.shadows() {
            for f in sh.live_frames() {
                // SAFETY: registered thread states stay valid under the registry lock.
                let f = unsafe { &*f };
                if found == 0 && f.slot == slot && f.ret != 0 {
                    found = f.ret;
                }
            }
        }
    });
    if found != 0 {
        return found;
    }
    crate::error!(
        "lost the return address of a probed call (slot {slot:#x}): the program switched stacks in a way hotprobe cannot follow; exclude the function with HOTPROBE_EXCLUDE"
    );
    // SAFETY: abort never returns; there is no address to return to.
    unsafe { libc::abort() }
}

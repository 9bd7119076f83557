//! User contexts (makecontext/swapcontext/setcontext): each context runs on
//! its own stack, so each gets its own shadow stack, keyed by the ucontext
//! it was saved in or made from. A switch saves the running context's
//! shadow under the outgoing ucontext and makes the incoming one current.
//! (A context that returns into its `uc_link` goes through libc alone; the
//! exit path then finds its frames in the other shadow by itself.)

use crate::arch::x86_64::stubs::current_thread;
use crate::engine::shadow::Shadow;
use crate::engine::thread::{ThreadState, ENDED, MAX_CONTEXT_SHADOWS};

crate::real!(SWAPCONTEXT, "swapcontext");
crate::real!(SETCONTEXT, "setcontext");

fn this_thread() -> Option<&'static mut ThreadState> {
    let t = current_thread();
    // SAFETY: a non-sentinel TLS pointer is this thread's live state.
    ((t as usize) > ENDED).then(|| unsafe { &mut *t })
}

/// The shadow saved under `key`, or a fresh one for a context we never saw.
fn shadow_for(t: &mut ThreadState, key: usize, stack: Option<(usize, usize)>) -> *mut Shadow {
    if t.own_shadow.key == key {
        return &mut t.own_shadow;
    }
    for &s in t.context_shadows.iter().filter(|s| !s.is_null()) {
        // SAFETY: this thread's shadows.
        if unsafe { (*s).key } == key {
            return s;
        }
    }
    let free = t
        .context_shadows
        .iter()
        .position(|s| s.is_null())
        .or_else(|| {
            // Full: reuse an empty shadow that is not running.
            let current = t.shadow;
            // SAFETY: this thread's shadows.
            t.context_shadows
                .iter()
                .position(|&s| s != current && unsafe { (*s).depth() } == 0)
        });
    let Some(i) = free else { return t.shadow };
    if t.context_shadows[i].is_null() {
        let s = {
            // Arena allocation must not nest with a signal handler's.
            let _blocked = crate::sys::SignalsBlocked::new();
            t.arena.alloc(core::mem::size_of::<Shadow>(), 64) as *mut Shadow
        };
        // SAFETY: fresh zeroed arena memory.
        if s.is_null() || !unsafe { (*s).init(key) } {
            return t.shadow;
        }
        t.context_shadows[i] = s;
    }
    let s = t.context_shadows[i];
    // SAFETY: as above.
    unsafe {
        (*s).key = key;
        (*s).top = 0;
        if let Some((lo, hi)) = stack {
            (*s).stack_lo = lo;
            (*s).stack_hi = hi;
        }
    }
    let _ = MAX_CONTEXT_SHADOWS;
    s
}

fn stack_of(ucp: *const libc::ucontext_t) -> Option<(usize, usize)> {
    if ucp.is_null() {
        return None;
    }
    // SAFETY: the program passes a valid ucontext.
    let st = unsafe { (*ucp).uc_stack };
    (!st.ss_sp.is_null() && st.ss_size > 0)
        .then(|| (st.ss_sp as usize, st.ss_sp as usize + st.ss_size))
}

#[no_mangle]
pub unsafe extern "C" fn swapcontext(
    oucp: *mut libc::ucontext_t,
    ucp: *const libc::ucontext_t,
) -> i32 {
    if let Some(t) = this_thread() {
        // SAFETY: the current shadow is this thread's.
        unsafe { (*t.shadow).key = oucp as usize };
        let next = shadow_for(t, ucp as usize, stack_of(ucp));
        t.set_shadow(next);
    }
    // SAFETY: the real libc function.
    let real: extern "C" fn(*mut libc::ucontext_t, *const libc::ucontext_t) -> i32 =
        unsafe { core::mem::transmute(SWAPCONTEXT.get()) };
    real(oucp, ucp)
}

#[no_mangle]
pub unsafe extern "C" fn setcontext(ucp: *const libc::ucontext_t) -> i32 {
    if let Some(t) = this_thread() {
        let next = shadow_for(t, ucp as usize, stack_of(ucp));
        t.set_shadow(next);
    }
    // SAFETY: the real libc function.
    let real: extern "C" fn(*const libc::ucontext_t) -> i32 =
        unsafe { core::mem::transmute(SETCONTEXT.get()) };
    real(ucp)
}

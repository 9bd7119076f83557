//! Unwinders must see the real return addresses, not the hooks (the
//! trampolines' landings) that probed calls' return slots hold.
//!
//! Before anything walks the stack (`_Unwind_RaiseException`,
//! `_Unwind_Resume`, `_Unwind_Resume_or_Rethrow`, `_Unwind_Backtrace`,
//! glibc's `backtrace`, `pthread_exit`), the real return addresses go back
//! into this thread's hooked slots. When the unwinder lands in a frame
//! (`_Unwind_SetIP`, which every personality routine — C++ and Rust — calls
//! just before control goes to a landing pad), frames deeper than that frame
//! are over: they are closed as abandoned, and the frames still live get
//! their hooks back. Backtraces re-hook everything afterwards.
//!
//! The wrappers an unwind passes through are `extern "C-unwind"`: a Rust
//! `extern "C"` frame would abort the program when unwound.

use crate::arch::x86_64::stubs::current_thread;
use crate::engine::enter_exit::abandon_top;
use crate::engine::shadow::{clear_flag, set_flag, HOOKED};
use crate::engine::thread::{ThreadState, ENDED};

fn this_thread() -> Option<&'static mut ThreadState> {
    let t = current_thread();
    // SAFETY: a non-sentinel TLS pointer is this thread's live state.
    ((t as usize) > ENDED).then(|| unsafe { &mut *t })
}

/// Puts the real return addresses back into every hooked slot of this
/// thread. Innermost first: frames of a tail-call chain share one slot,
/// which holds the innermost frame's hook, and each frame's real return
/// address is the hook of the frame below it.
pub fn unhook_all() {
    let Some(t) = this_thread() else { return };
    // SAFETY: `shadow` points at one of this thread's shadows.
    let sh = unsafe { &*t.shadow };
    for f in sh.live_frames().rev() {
        // SAFETY: committed frames; their slots are on live stack frames while hooked.
        unsafe {
            if (*f).flags & HOOKED != 0 {
                let slot = (*f).slot as *mut usize;
                if *slot == (*f).hook {
                    *slot = (*f).ret;
                }
                clear_flag(&mut (*f).flags, HOOKED);
            }
        }
    }
}

/// Closes frames deeper than `live_from` (the lowest live return slot) and
/// re-hooks the frames still live.
pub fn rehook_from(live_from: usize) {
    let Some(t) = this_thread() else { return };
    loop {
        // SAFETY: as above.
        let sh = unsafe { &*t.shadow };
        let d = sh.depth();
        if d == 0 || sh.pending() {
            break;
        }
        // SAFETY: committed frame.
        let slot = unsafe { (*sh.frame(d - 1)).slot };
        if slot >= live_from {
            break;
        }
        abandon_top(t);
    }
    // SAFETY: as above.
    let sh = unsafe { &*t.shadow };
    for f in sh.live_frames() {
        // SAFETY: live frames at or above the landing frame: their slots hold their return addresses.
        unsafe {
            if (*f).flags & HOOKED == 0 && (*f).ret != 0 && (*f).slot >= live_from {
                let slot = (*f).slot as *mut usize;
                if *slot == (*f).ret {
                    *slot = (*f).hook;
                    set_flag(&mut (*f).flags, HOOKED);
                }
            }
        }
    }
}

type UnwindException = libc::c_void;
type UnwindContext = libc::c_void;

crate::real!(RAISE, "_Unwind_RaiseException");
crate::real!(RESUME, "_Unwind_Resume");
crate::real!(RESUME_OR_RETHROW, "_Unwind_Resume_or_Rethrow");
crate::real!(SET_IP, "_Unwind_SetIP");
crate::real!(GET_CFA, "_Unwind_GetCFA");
crate::real!(UNWIND_BACKTRACE, "_Unwind_Backtrace");
crate::real!(BACKTRACE, "backtrace");
crate::real!(PTHREAD_EXIT, "pthread_exit");

#[no_mangle]
pub unsafe extern "C-unwind" fn _Unwind_RaiseException(exc: *mut UnwindException) -> i32 {
    unhook_all();
    // SAFETY: the real libgcc function with its own signature.
    let real: extern "C-unwind" fn(*mut UnwindException) -> i32 =
        unsafe { core::mem::transmute(RAISE.get()) };
    let rc = real(exc);
    // No handler was found: the stack is unchanged, every frame still live.
    rehook_from(0);
    rc
}

#[no_mangle]
pub unsafe extern "C-unwind" fn _Unwind_Resume(exc: *mut UnwindException) -> ! {
    unhook_all();
    // SAFETY: as above; _Unwind_Resume does not return.
    let real: extern "C-unwind" fn(*mut UnwindException) -> ! =
        unsafe { core::mem::transmute(RESUME.get()) };
    real(exc)
}

#[no_mangle]
pub unsafe extern "C-unwind" fn _Unwind_Resume_or_Rethrow(exc: *mut UnwindException) -> i32 {
    unhook_all();
    // SAFETY: as above.
    let real: extern "C-unwind" fn(*mut UnwindException) -> i32 =
        unsafe { core::mem::transmute(RESUME_OR_RETHROW.get()) };
    let rc = real(exc);
    rehook_from(0);
    rc
}

#[no_mangle]
pub unsafe extern "C" fn _Unwind_SetIP(context: *mut UnwindContext, ip: usize) {
    let get_cfa = GET_CFA.get();
    if get_cfa != 0 {
        // SAFETY: the real libgcc function.
        let cfa: extern "C" fn(*mut UnwindContext) -> usize =
            unsafe { core::mem::transmute(get_cfa) };
        // The landing frame's own return slot is just below its CFA.
        rehook_from(cfa(context).wrapping_sub(8));
    }
    // SAFETY: as above.
    let real: extern "C" fn(*mut UnwindContext, usize) =
        unsafe { core::mem::transmute(SET_IP.get()) };
    real(context, ip)
}

#[no_mangle]
pub unsafe extern "C" fn _Unwind_Backtrace(
    trace: *mut libc::c_void,
    arg: *mut libc::c_void,
) -> i32 {
    unhook_all();
    // SAFETY: as above.
    let real: extern "C" fn(*mut libc::c_void, *mut libc::c_void) -> i32 =
        unsafe { core::mem::transmute(UNWIND_BACKTRACE.get()) };
    let rc = real(trace, arg);
    rehook_from(0);
    rc
}

/// glibc's `backtrace` reaches libgcc through a private handle, so
/// `_Unwind_Backtrace` above never sees it: wrap it too. The walk starts
/// inside this wrapper, so one more frame is asked for and ours dropped.
#[no_mangle]
pub unsafe extern "C" fn backtrace(buffer: *mut *mut libc::c_void, size: i32) -> i32 {
    if buffer.is_null() || size <= 0 {
        return 0;
    }
    unhook_all();
    // SAFETY: as above.
    let real: extern "C" fn(*mut *mut libc::c_void, i32) -> i32 =
        unsafe { core::mem::transmute(BACKTRACE.get()) };
    let mut frames = [core::ptr::null_mut::<libc::c_void>(); 257];
    let want = (size as usize + 1).min(frames.len());
    let got = real(frames.as_mut_ptr(), want as i32).max(0) as usize;
    rehook_from(0);
    let n = got.saturating_sub(1).min(size as usize);
    // SAFETY: the caller's buffer holds `size` entries; n <= size.
    unsafe { core::ptr::copy_nonoverlapping(frames.as_ptr().add(1), buffer, n) };
    n as i32
}

#[no_mangle]
pub unsafe extern "C-unwind" fn pthread_exit(retval: *mut libc::c_void) -> ! {
    unhook_all();
    // SAFETY: as above; pthread_exit does not return.
    let real: extern "C-unwind" fn(*mut libc::c_void) -> ! =
        unsafe { core::mem::transmute(PTHREAD_EXIT.get()) };
    real(retval)
}

crate::real!(PTHREAD_CANCEL, "pthread_cancel");

/// A cancelled thread is unwound by glibc through a private libgcc handle
/// that no hook sees, and a frame without a landing pad under a hooked one
/// would stop that unwind early (destructors above it would not run). So the
/// canceller puts the target's real return addresses back, and the target
/// only counts its calls from then on. Writing another thread's slots races
/// only with that thread's own returns, which read the shadow stack, not the
/// slot: a frame that returns meanwhile is closed as abandoned later.
#[no_mangle]
pub unsafe extern "C" fn pthread_cancel(thread: libc::pthread_t) -> i32 {
    crate::guard::fail_open("pthread_cancel", (), || {
        crate::engine::thread::with_threads(|threads| {
            for t in threads.iter().filter(|t| t.pthread == thread) {
                t.count_only
                    .store(true, core::sync::atomic::Ordering::SeqCst);
                for sh in t.shadows() {
                    // Innermost first, as in unhook_all (tail-call chains).
                    for f in sh.live_frames().rev() {
                        // SAFETY: registered states stay valid under the registry lock; the
                        // slots of live hooked frames are on the target's live stack.
                        unsafe {
                            let slot = (*f).slot as *mut usize;
                            if (*f).flags & HOOKED != 0
                                && (*f).ret != 0
                                && core::ptr::read_volatile(slot) == (*f).hook
                            {
                                core::ptr::write_volatile(slot, (*f).ret);
                            }
                        }
                    }
                }
            }
        });
    });
    // SAFETY: the real libc function.
    let real: extern "C" fn(libc::pthread_t) -> i32 =
        unsafe { core::mem::transmute(PTHREAD_CANCEL.get()) };
    real(thread)
}

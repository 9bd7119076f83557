//! Threads the program starts through pthread_create run a small wrapper
//! first: it records the bounds of the thread's stack (so frames a longjmp
//! left behind can be told apart from frames of another stack) before the
//! real start routine runs. Thread ends are seen by a pthread key destructor
//! (engine::thread), which also covers pthread_exit and cancellation.
//! The wrapper is `extern "C-unwind"` so that pthread_exit and cancellation
//! may unwind through it.

use crate::engine::thread::current_or_create;

crate::real!(PTHREAD_CREATE, "pthread_create");

struct Start {
    routine: extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
}

extern "C-unwind" fn start(boxed: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `boxed` is the Box<Start> leaked by pthread_create below.
    let Start { routine, arg } = *unsafe { Box::from_raw(boxed as *mut Start) };
    crate::guard::fail_open("thread start", (), || {
        if !crate::state::is_active() {
            return;
        }
        let t = current_or_create(crate::arch::x86_64::stubs::current_thread());
        if t.is_null() {
            return;
        }
        // SAFETY: pthread_self is always valid; attr is initialised by pthread_getattr_np.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
                let mut addr: *mut libc::c_void = core::ptr::null_mut();
                let mut size: usize = 0;
                if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
                    (*t).set_stack(addr as usize, addr as usize + size);
                }
                libc::pthread_attr_destroy(&mut attr);
            }
        }
    });
    routine(arg)
}

#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) -> i32 {
    type Create = extern "C" fn(
        *mut libc::pthread_t,
        *const libc::pthread_attr_t,
        extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void,
        *mut libc::c_void,
    ) -> i32;
    // SAFETY: the real libc function with this signature.
    let real: Create = unsafe { core::mem::transmute(PTHREAD_CREATE.get()) };
    if !crate::state::is_active()
        || crate::worker::SPAWNING.load(core::sync::atomic::Ordering::Relaxed)
    {
        return real(thread, attr, routine, arg);
    }
    let boxed = Box::into_raw(Box::new(Start { routine, arg }));
    let rc = real(thread, attr, start, boxed.cast());
    if rc != 0 {
        // SAFETY: the thread was not created, so the box is still ours.
        drop(unsafe { Box::from_raw(boxed) });
    }
    rc
}

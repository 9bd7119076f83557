//! The snapshot at normal exit, from an atexit handler registered in the
//! constructor: it runs after the program's own handlers, so it sees
//! everything the program did.

use hotprobe_config::snapshot::Reason;

extern "C" fn at_exit() {
    crate::guard::fail_open("exit snapshot", (), || {
        if !crate::state::is_active() || crate::arch::x86_64::stubs::in_vfork_child() {
            return;
        }
        if let Err(e) = crate::export::snapshot::write_final(Reason::Exit, None) {
            crate::error!("{e}");
        }
        crate::state::deactivate();
        crate::worker::shut_down();
    })
}

pub fn register() {
    // SAFETY: at_exit is a plain extern "C" fn with no arguments.
    unsafe { libc::atexit(at_exit) };
}

crate::real!(UNDERSCORE_EXIT, "_exit");
crate::real!(UNDERSCORE_CAPITAL_EXIT, "_Exit");

/// `_exit` skips atexit handlers (shells and fork children end this way),
/// so the final snapshot is written here first. Not in a vfork child, which
/// shares the parent's memory: its `_exit` is the parent's business.
#[no_mangle]
pub unsafe extern "C" fn _exit(status: i32) -> ! {
    at_exit();
    // SAFETY: the real libc function; it does not return.
    let real: extern "C" fn(i32) -> ! = unsafe { core::mem::transmute(UNDERSCORE_EXIT.get()) };
    real(status)
}

#[no_mangle]
pub unsafe extern "C" fn _Exit(status: i32) -> ! {
    at_exit();
    // SAFETY: as above.
    let real: extern "C" fn(i32) -> ! =
        unsafe { core::mem::transmute(UNDERSCORE_CAPITAL_EXIT.get()) };
    real(status)
}

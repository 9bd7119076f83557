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

//! fork: the child is a new process image. It starts with zeroed counters,
//! a new identity and its own snapshot file, and restarts the agent thread.
//! Locks the child could inherit held are taken before the fork.

use crate::arch::x86_64::stubs::current_thread;
use crate::state::{self, lock};

extern "C" fn prepare() {
    crate::engine::thread::lock_for_fork();
}

extern "C" fn parent() {
    crate::engine::thread::unlock_after_fork();
}

extern "C" fn child() {
    crate::engine::thread::unlock_after_fork();
    crate::guard::fail_open("fork child", (), || {
        let Some(agent) = state::agent() else { return };
        if !state::is_active() {
            return;
        }
        if !agent.settings.target.follow.allows(&agent.exe_name) {
            // Not followed: the child's probes stop metering and it writes no snapshot.
            state::deactivate();
            for p in crate::engine::probe::all() {
                p.bypass.store(1, core::sync::atomic::Ordering::Release);
            }
            return;
        }
        let mut id = lock(&agent.identity);
        let parent_pid = id.pid;
        id.pid = crate::sys::getpid();
        id.ppid = parent_pid;
        id.forked_from = Some(parent_pid);
        id.started_unix_ns = crate::sys::unix_ns();
        id.started_mono_ns = crate::sys::monotonic_ns();
        id.sequence = 0;
        id.claimed_path = None;
        drop(id);
        crate::engine::thread::after_fork_in_child(current_thread());
        crate::meter::reset::zero_everything();
        crate::worker::restart_in_child();
    })
}

pub fn register() {
    // SAFETY: the handlers are plain extern "C" fns.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

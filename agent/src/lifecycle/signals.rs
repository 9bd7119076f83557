//! A process ended by a signal whose default action kills it (SIGTERM,
//! SIGINT, SIGHUP, SIGSEGV…) still leaves a snapshot, reason `signal`, and
//! then dies by that same signal, so its parent sees the same status.
//!
//! Only signals at their default action get our handler: a signal ignored by
//! inheritance (`nohup`) stays ignored, and a handler the program installs
//! later simply replaces ours.

const FATAL: [i32; 17] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGSYS,
];

pub fn install() {
    for &sig in &FATAL {
        // SAFETY: querying and setting dispositions with valid sigaction structs.
        unsafe {
            let mut old: libc::sigaction = core::mem::zeroed();
            if libc::sigaction(sig, core::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut act: libc::sigaction = core::mem::zeroed();
            act.sa_sigaction = on_fatal as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, core::ptr::null_mut());
        }
    }
}

extern "C" fn on_fatal(sig: i32, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    if crate::state::is_active() && !crate::arch::x86_64::stubs::in_vfork_child() {
        crate::worker::snapshot_from_signal(sig);
    }
    // SAFETY: async-signal-safe calls only: restore the default and let the signal act.
    unsafe {
        let mut dfl: libc::sigaction = core::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, core::ptr::null_mut());
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, core::ptr::null_mut());
        // A fault raised by the CPU comes back when the instruction re-runs; others are re-sent.
        let kernel_fault = !info.is_null()
            && (*info).si_code > 0
            && matches!(
                sig,
                libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL
            );
        if !kernel_fault {
            libc::syscall(libc::SYS_tgkill, libc::getpid(), crate::sys::gettid(), sig);
        }
    }
}

//! CPU and kernel features that decide whether inline patching is safe, and
//! the SIGTRAP handler of the breakpoint-first patch protocol.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Why inline probes cannot work in this process, if so: a hardware shadow
/// stack (CET) would fault on every replaced return address, and indirect
/// branch tracking would fault on a jump landing where `endbr64` was.
pub fn inline_refusal() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let features = status
        .lines()
        .find(|l| l.starts_with("x86_Thread_features:"))
        .unwrap_or("");
    let on: Vec<&str> = features.split_whitespace().skip(1).collect();
    if on.contains(&"shstk") {
        return Some("the process runs with a hardware shadow stack (CET shstk), which forbids the return-address replacement inline probes need; run without it (GLIBC_TUNABLES=glibc.cpu.x86_shstk=0) or use HOTPROBE_BACKEND=kernel".into());
    }
    if on.contains(&"ibt") {
        return Some("the process runs with indirect branch tracking (CET IBT), which forbids patching function entries; use HOTPROBE_BACKEND=kernel".into());
    }
    None
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);

/// Installs the SIGTRAP handler once, remembering the program's own.
pub fn install_trap_handler() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: a zeroed sigaction with our handler and SA_SIGINFO is valid.
    unsafe {
        let mut act: libc::sigaction = core::mem::zeroed();
        act.sa_sigaction = on_trap as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        let mut old: libc::sigaction = core::mem::zeroed();
        if libc::sigaction(libc::SIGTRAP, &act, &mut old) == 0 {
            *crate::state::lock(&PREVIOUS) = Some(old);
        }
    }
}

extern "C" fn on_trap(sig: i32, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let uc = unsafe { &mut *(context as *mut libc::ucontext_t) };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let site = rip.wrapping_sub(1);
    if let Some(resume) = super::patch::trap_resume(site) {
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] = resume as i64;
        super::patch::TRAPS_TAKEN.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // A breakpoint of ours that is already gone: run the finished instruction.
    // SAFETY: site is the address of the int3 just executed, so it is mapped.
    if crate::engine::probe::is_patch_site(site) && unsafe { *(site as *const u8) } != 0xCC {
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] = site as i64;
        return;
    }
    chain(sig, info, context);
}

/// Passes a trap that is not ours to the program's handler, or dies of it.
fn chain(sig: i32, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.try_lock().ok().and_then(|g| *g);
    match previous {
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the program installed this as a three-argument handler.
                let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { core::mem::transmute(old.sa_sigaction) };
                f(sig, info, context);
            } else {
                // SAFETY: the program installed this as a one-argument handler.
                let f: extern "C" fn(i32) = unsafe { core::mem::transmute(old.sa_sigaction) };
                f(sig);
            }
        }
        Some(old) if old.sa_sigaction == libc::SIG_IGN => {}
        _ => {
            // SAFETY: restore the default action and re-raise: the process ends as it would have.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
    }
}

//! Libraries loaded later with dlopen are probed when they match the
//! module globs; after dlclose, probes of an object that is gone are marked
//! (its code, and so its patches, went with it; trampolines stay).

crate::real!(DLOPEN, "dlopen");
crate::real!(DLCLOSE, "dlclose");

#[no_mangle]
pub unsafe extern "C" fn dlopen(file: *const libc::c_char, mode: i32) -> *mut libc::c_void {
    // SAFETY: the real libc function.
    let real: extern "C" fn(*const libc::c_char, i32) -> *mut libc::c_void =
        unsafe { core::mem::transmute(DLOPEN.get()) };
    let handle = real(file, mode);
    if !handle.is_null()
        && crate::state::is_active()
        && !crate::arch::x86_64::stubs::in_vfork_child()
    {
        crate::guard::fail_open("dlopen", (), || {
            if let Some(agent) = crate::state::agent() {
                let (installed, rejected) = crate::install::probe_new_objects(agent);
                if installed + rejected > 0 {
                    crate::info!("dlopen: {installed} probes installed, {rejected} rejected");
                }
            }
        });
    }
    handle
}

#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut libc::c_void) -> i32 {
    // SAFETY: the real libc function.
    let real: extern "C" fn(*mut libc::c_void) -> i32 =
        unsafe { core::mem::transmute(DLCLOSE.get()) };
    let rc = real(handle);
    if rc == 0 && crate::state::is_active() {
        crate::guard::fail_open("dlclose", (), crate::install::forget_unloaded);
    }
    rc
}

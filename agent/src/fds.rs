//! The agent's descriptors stay out of the program's low numbers (select()
//! breaks past FD_SETSIZE, and programs assume 0–2 and small numbers).

/// Moves `fd` to the lowest free number at or above 512 (close-on-exec).
pub fn move_high(fd: i32) -> i32 {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 512) };
    if high < 0 {
        return fd;
    }
    // SAFETY: fd is ours and now duplicated.
    unsafe { libc::close(fd) };
    high
}

/// A close-on-exec pipe with both ends moved high: (read, write).
pub fn pipe() -> Option<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    Some((move_high(fds[0]), move_high(fds[1])))
}

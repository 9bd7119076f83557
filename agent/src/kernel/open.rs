//! Descriptors: where the backend's go, and how many it may have.
//!
//! The image holds four (ring, drop counter, site switches, program) plus
//! one uprobe_multi link per object file with probes in it (any number of
//! sites); while links are replaced, an object briefly holds its old and
//! its new link. They stay out of the program's numbers: at 512 and up when
//! the soft RLIMIT_NOFILE is roomy or cannot be raised; otherwise from the
//! soft limit up, raising it towards the hard limit as links are added.
//! The program and its children see the new limit, so every raise is a
//! warning. When even the hard limit is not enough, the probes that fit
//! are probed and the rest are rejected with the reason.

/// Moves `fd` to the lowest free number at or above `floor` (close-on-exec).
pub fn move_fd(fd: i32, floor: i32) -> i32 {
    if fd >= floor {
        // SAFETY: setting FD_CLOEXEC on a descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        return fd;
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
    if high < 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        return fd;
    }
    super::sys::close(fd);
    high
}

pub fn nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

/// The backend's share of the descriptor table.
#[derive(Debug)]
pub struct Budget {
    /// The backend's descriptors go at or above this number.
    pub floor: i32,
    /// Descriptors the backend holds now.
    pub held: u64,
}

/// Descriptors left free below the soft limit for the agent's other uses.
const SPARE: u64 = 32;

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    pub fn new() -> Budget {
        let (soft, hard) = nofile();
        let floor = if soft >= 4096 || hard <= soft {
            512.min(soft / 2)
        } else {
            soft.max(512)
        };
        Budget {
            floor: floor.min(i32::MAX as u64 / 2) as i32,
            held: 0,
        }
    }

    /// Makes room for `need` more descriptors if the limits allow; returns
    /// whether they fit (and then counts them as held).
    pub fn take(&mut self, need: u64) -> bool {
        let (soft, hard) = nofile();
        let wanted = self.floor as u64 + self.held + need + SPARE;
        let mut limit = soft;
        if wanted > soft && soft < hard {
            // Raise in steps, not one descriptor at a time.
            let new = (wanted + 256).min(hard);
            let r = libc::rlimit {
                rlim_cur: new,
                rlim_max: hard,
            };
            // SAFETY: setrlimit with a valid struct; raising the soft limit up to the hard one is always allowed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
                limit = new;
                // Every change is logged: the program (and its children)
                // run under a limit they did not set.
                crate::warn!(
                    "kernel backend: raised RLIMIT_NOFILE's soft limit from {soft} to {new} (hard {hard}) for its descriptors; the program and its children see the new limit"
                );
            }
        }
        if wanted > limit {
            return false;
        }
        self.held += need;
        true
    }

    pub fn give_back(&mut self, n: u64) {
        self.held = self.held.saturating_sub(n);
    }
}

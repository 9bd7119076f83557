//! Closing uprobe links, and replacing them (`links::relink`). The kernel waits for an RCU grace period when a
//! link goes (~40–80 ms here), and concurrent closes share grace periods,
//! so closes are handed to a closer thread that closes each batch from up
//! to `PARALLEL` threads at once: disabling probes never stalls the reader
//! or the agent thread, and a whole image's links go in about one grace
//! period at its end.

use crate::spin_lock::SpinLock;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

const PARALLEL: usize = 32;

static QUEUE: SpinLock<Vec<i32>> = SpinLock::new(Vec::new());
/// The pipe that wakes the closer thread: (read, write).
static WAKE_R: AtomicI32 = AtomicI32::new(-1);
static WAKE_W: AtomicI32 = AtomicI32::new(-1);
/// The reader asks for the links to be replaced (`links::relink`).
static RELINK: AtomicBool = AtomicBool::new(false);

/// Starts the closer thread (again, in a fork child).
pub fn start() {
    for fd in [&WAKE_R, &WAKE_W] {
        super::sys::close(fd.swap(-1, Ordering::Relaxed));
    }
    let Some((r, w)) = crate::fds::pipe() else {
        return;
    };
    WAKE_R.store(r, Ordering::Relaxed);
    WAKE_W.store(w, Ordering::Relaxed);
    if super::agent_thread("hotprobe-close", run).is_none() {
        crate::warn!("cannot start the thread that closes disabled kernel probes; they are closed at the next snapshot");
    }
}

/// Asks the closer thread to replace the links soon.
pub fn request_relink() {
    if !RELINK.swap(true, Ordering::AcqRel) {
        wake();
    }
}

/// Closes `fds` soon, off the caller's thread.
pub fn submit(fds: Vec<i32>) {
    if fds.is_empty() {
        return;
    }
    QUEUE.lock().extend(fds);
    wake();
}

fn wake() {
    let w = WAKE_W.load(Ordering::Relaxed);
    if w < 0 {
        close_now(core::mem::take(&mut *QUEUE.lock()));
        if RELINK.swap(false, Ordering::AcqRel) {
            super::links::relink();
        }
        return;
    }
    // SAFETY: one byte to our own pipe.
    unsafe { libc::write(w, [1u8].as_ptr().cast(), 1) };
}

fn run() {
    let r = WAKE_R.load(Ordering::Relaxed);
    loop {
        let mut pfd = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
        if pfd.revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 64];
            // SAFETY: reading into our buffer from our pipe.
            unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
        }
        if pfd.revents & (libc::POLLNVAL | libc::POLLHUP) != 0 {
            return;
        }
        let batch = core::mem::take(&mut *QUEUE.lock());
        crate::guard::fail_open("kernel closer", (), || close_now(batch));
        if RELINK.swap(false, Ordering::AcqRel) {
            crate::guard::fail_open("kernel relink", (), super::links::relink);
        }
    }
}

/// Closes `fds` from up to `PARALLEL` threads at once and waits for them.
pub fn close_now(fds: Vec<i32>) {
    if fds.len() <= 1 {
        fds.into_iter().for_each(super::sys::close);
        return;
    }
    let lanes = fds.len().min(PARALLEL);
    let mut shares: Vec<Vec<i32>> = vec![Vec::new(); lanes];
    for (i, fd) in fds.into_iter().enumerate() {
        shares[i % lanes].push(fd);
    }
    let handles: Vec<_> = shares
        .into_iter()
        .filter_map(|share| {
            let backup = share.clone();
            match super::agent_thread("hotprobe-close", move || {
                share.into_iter().for_each(super::sys::close)
            }) {
                Some(h) => Some(h),
                None => {
                    backup.into_iter().for_each(super::sys::close);
                    None
                }
            }
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// Fork: the queue's lock must not be inherited held.
pub fn lock_for_fork() {
    QUEUE.lock_raw();
}

pub fn unlock_after_fork() {
    QUEUE.unlock_raw();
}

/// In a fork child: what the parent had queued are copies here (cheap to
/// close: the parent still holds them); the closer thread is gone.
pub fn reset_in_child() {
    RELINK.store(false, Ordering::Relaxed);
    let queued = core::mem::take(&mut *QUEUE.lock());
    queued.into_iter().for_each(super::sys::close);
    start();
}

//! The agent's own thread: removes disabled probes, writes interval
//! snapshots, serves the control channel, and writes the snapshot a fatal
//! signal asks for (a signal handler cannot allocate, so it hands off here
//! and waits). It runs with every signal blocked, so signals meant for the
//! program never land on it.

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use hotprobe_config::snapshot::Reason;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::Mutex;

static WAKE_R: AtomicI32 = AtomicI32::new(-1);
static WAKE_W: AtomicI32 = AtomicI32::new(-1);
static ACK_R: AtomicI32 = AtomicI32::new(-1);
static ACK_W: AtomicI32 = AtomicI32::new(-1);
static WORKER_TID: AtomicI32 = AtomicI32::new(0);
static GENERATION: AtomicI32 = AtomicI32::new(0);
static LISTENER: Mutex<Option<UnixListener>> = Mutex::new(None);
/// Set while the agent spawns its own thread (the pthread_create hook lets it be).
pub static SPAWNING: AtomicBool = AtomicBool::new(false);

const TICK_MS: i32 = 20;

pub fn start() {
    let Some((wr, ww)) = crate::fds::pipe() else {
        return;
    };
    let Some((ar, aw)) = crate::fds::pipe() else {
        return;
    };
    WAKE_R.store(wr, Ordering::Relaxed);
    WAKE_W.store(ww, Ordering::Relaxed);
    ACK_R.store(ar, Ordering::Relaxed);
    ACK_W.store(aw, Ordering::Relaxed);
    let pid = crate::sys::getpid();
    match crate::export::control::listen(pid) {
        Ok(l) => *crate::state::lock(&LISTENER) = Some(l),
        Err(e) => crate::info!("no control channel (`hotprobe snapshot {pid}` will not work): {e}"),
    }
    spawn();
}

fn spawn() {
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    // SAFETY: plain signal-mask calls on sets we own.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        SPAWNING.store(true, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("hotprobe".into())
            .spawn(move || run(generation));
        SPAWNING.store(false, Ordering::Relaxed);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        if let Err(e) = spawned {
            crate::warn!(
                "cannot start the agent thread: {e}; probes will not be removed at runtime"
            );
        }
    }
}

fn run(generation: i32) {
    WORKER_TID.store(crate::sys::gettid(), Ordering::Relaxed);
    let interval_ns =
        crate::state::agent().map_or(0.0, |a| a.settings.snapshot.interval_s * 1e9) as u64;
    let mut next_interval = crate::sys::monotonic_ns() + interval_ns;
    while GENERATION.load(Ordering::Relaxed) == generation {
        let listener_fd = crate::state::lock(&LISTENER)
            .as_ref()
            .map_or(-1, |l| l.as_raw_fd());
        let mut fds = [
            libc::pollfd {
                fd: WAKE_R.load(Ordering::Relaxed),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: listener_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, TICK_MS) };
        crate::guard::fail_open("agent thread", (), || {
            if fds[0].revents & libc::POLLIN != 0 {
                serve_signal_requests();
            }
            if fds[1].revents & libc::POLLIN != 0 {
                accept_control();
            }
            if fds[1].revents & libc::POLLNVAL != 0 {
                // The program closed our descriptor (daemons close everything): open anew.
                *crate::state::lock(&LISTENER) =
                    crate::export::control::listen(crate::sys::getpid()).ok();
            }
            if !crate::state::is_active() {
                return;
            }
            crate::adaptive::decider::run_pending();
            crate::adaptive::score_card::release_expired();
            if interval_ns > 0 && crate::sys::monotonic_ns() >= next_interval {
                next_interval = crate::sys::monotonic_ns() + interval_ns;
                if let Err(e) = crate::export::snapshot::write(Reason::Interval) {
                    crate::warn!("{e}");
                }
            }
        });
    }
}

fn accept_control() {
    let listener = crate::state::lock(&LISTENER);
    let Some(l) = listener.as_ref() else { return };
    while let Ok((stream, _)) = l.accept() {
        crate::export::control::serve(stream);
    }
}

fn serve_signal_requests() {
    let mut buf = [0u8; 16];
    // SAFETY: buf is a valid buffer; the pipe is ours.
    let n = unsafe {
        libc::read(
            WAKE_R.load(Ordering::Relaxed),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    for &sig in buf.iter().take(n.max(0) as usize) {
        if crate::state::is_active() {
            match crate::export::snapshot::write_final(Reason::Signal, Some(sig as i32)) {
                Ok(_) => crate::state::deactivate(),
                Err(e) => crate::error!("{e}"),
            }
            crate::export::control::remove_socket(crate::sys::getpid());
        }
        // SAFETY: one byte to our own pipe.
        unsafe { libc::write(ACK_W.load(Ordering::Relaxed), [1u8].as_ptr().cast(), 1) };
    }
}

/// From a signal handler: asks the agent thread for the snapshot and waits
/// for it (at most 10 s). Async-signal-safe. False when nobody can write it.
pub fn snapshot_from_signal(sig: i32) -> bool {
    let tid = WORKER_TID.load(Ordering::Relaxed);
    if tid == 0 || tid == crate::sys::gettid() {
        return false;
    }
    let byte = [sig as u8];
    // SAFETY: write/poll/read on our own pipes with valid buffers.
    unsafe {
        if libc::write(WAKE_W.load(Ordering::Relaxed), byte.as_ptr().cast(), 1) != 1 {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: ACK_R.load(Ordering::Relaxed),
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 10_000) != 1 {
            return false;
        }
        let mut ack = [0u8; 1];
        libc::read(ACK_R.load(Ordering::Relaxed), ack.as_mut_ptr().cast(), 1) == 1
    }
}

/// In a fork child: the parent's pipes and socket are shared with it, and
/// its thread is gone. Make our own and start again.
pub fn restart_in_child() {
    for fd in [&WAKE_R, &WAKE_W, &ACK_R, &ACK_W] {
        let old = fd.swap(-1, Ordering::Relaxed);
        if old >= 0 {
            // SAFETY: the child's copies of the parent's pipe ends are ours to close.
            unsafe { libc::close(old) };
        }
    }
    // The listener belongs to the parent's socket file; closing our copy leaves it alone.
    if let Some(l) = crate::state::lock(&LISTENER).take() {
        drop(l);
    }
    WORKER_TID.store(0, Ordering::Relaxed);
    start();
}

/// At the end of the image: the socket file goes away.
pub fn shut_down() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::export::control::remove_socket(crate::sys::getpid());
}

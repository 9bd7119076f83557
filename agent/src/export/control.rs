//! The control channel: `hotprobe snapshot PID` asks a running agent for a
//! snapshot (and optionally a reset) over a Unix socket that only the same
//! user can reach — a 0700 directory of theirs, and the peer's uid checked
//! with SO_PEERCRED. It never uses a signal the program might use.
//!
//! Socket: `$XDG_RUNTIME_DIR/hotprobe/<pid>.sock` when that directory
//! exists, else `/tmp/hotprobe-<uid>/<pid>.sock`. Protocol: one request line
//! (`snapshot`, `reset`, `snapshot+reset`), one reply line (`ok <path>`,
//! `ok`, or `error <message>`).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

pub fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
    {
        Some(d) => d.join("hotprobe"),
        None => PathBuf::from(format!("/tmp/hotprobe-{}", crate::sys::getuid())),
    }
}

pub fn socket_path(pid: u32) -> PathBuf {
    socket_dir().join(format!("{pid}.sock"))
}

/// A private directory of ours, or why not.
fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.uid() != crate::sys::getuid() || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of this user (mode 0700)",
            dir.display()
        ));
    }
    Ok(())
}

/// Opens the listening socket, its descriptor moved out of the program's low numbers.
pub fn listen(pid: u32) -> Result<UnixListener, String> {
    let dir = socket_dir();
    private_dir(&dir)?;
    let path = socket_path(pid);
    let _ = std::fs::remove_file(&path); // a stale socket of an earlier image with this pid
    let listener = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let high = crate::fds::move_high(listener.into_raw_fd());
    // SAFETY: `high` is the descriptor we just moved the listener to.
    Ok(unsafe { UnixListener::from_raw_fd(high) })
}

pub fn remove_socket(pid: u32) {
    let _ = std::fs::remove_file(socket_path(pid));
}

fn peer_is_us(stream: &UnixStream) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred/len are valid out-pointers of the right size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    rc == 0 && cred.uid == crate::sys::getuid()
}

/// Serves one connection: reads the request, does it, answers.
pub fn serve(stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    if !peer_is_us(&stream) {
        let _ = out.write_all(b"error permission denied\n");
        return;
    }
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let reply = match line.trim() {
        "snapshot" => snapshot(),
        "reset" => {
            crate::meter::reset::set_baseline();
            "ok".to_string()
        }
        "snapshot+reset" => {
            let r = snapshot();
            crate::meter::reset::set_baseline();
            r
        }
        other => format!("error unknown request `{other}` (use snapshot, reset or snapshot+reset)"),
    };
    let _ = out.write_all(format!("{reply}\n").as_bytes());
}

fn snapshot() -> String {
    match crate::export::snapshot::write(hotprobe_config::snapshot::Reason::Request) {
        Ok(path) => format!("ok {}", path.display()),
        Err(e) => format!("error {e}"),
    }
}

//! The agent's control channel, client side. Kept small so the agent can
//! mirror [`socket_dir`] exactly.
//!
//! Protocol: a Unix stream socket at `$XDG_RUNTIME_DIR/hotprobe/<pid>.sock`
//! when `XDG_RUNTIME_DIR` is set and is a directory, else
//! `/tmp/hotprobe-<uid>/<pid>.sock`; the directory has mode 0700 and belongs
//! to the user, and the agent checks the peer's uid (SO_PEERCRED). The
//! client sends one line — `snapshot`, `reset` or `snapshot+reset` — and
//! reads one line back: `ok <absolute path>`, `ok`, or `error <message>`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory of the control sockets.
pub fn socket_dir(xdg_runtime_dir: Option<&OsStr>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(d) if !d.is_empty() && Path::new(d).is_dir() => Path::new(d).join("hotprobe"),
        _ => PathBuf::from(format!("/tmp/hotprobe-{uid}")),
    }
}

/// The control socket of process `pid`.
pub fn socket_path(pid: u32, xdg_runtime_dir: Option<&OsStr>, uid: u32) -> PathBuf {
    socket_dir(xdg_runtime_dir, uid).join(format!("{pid}.sock"))
}

/// What to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Snapshot,
    Reset,
    SnapshotReset,
}

impl Request {
    pub fn line(self) -> &'static str {
        match self {
            Request::Snapshot => "snapshot\n",
            Request::Reset => "reset\n",
            Request::SnapshotReset => "snapshot+reset\n",
        }
    }
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ok <path>`: the snapshot file written.
    Written(PathBuf),
    /// `ok`.
    Done,
}

/// Where to look and how long to wait.
#[derive(Debug, Clone)]
pub struct Client {
    pub xdg_runtime_dir: Option<std::ffi::OsString>,
    pub uid: u32,
    pub timeout: Duration,
}

impl Client {
    /// The calling user's view: `XDG_RUNTIME_DIR`, real uid, 10 s.
    pub fn from_env() -> Client {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        Client {
            xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR"),
            uid,
            timeout: Duration::from_secs(10),
        }
    }

    /// The sockets to try: the agent's rule for our environment, then the
    /// /tmp fallback (the agent may have had no XDG_RUNTIME_DIR).
    pub fn candidates(&self, pid: u32) -> Vec<PathBuf> {
        let mut v = vec![socket_path(pid, self.xdg_runtime_dir.as_deref(), self.uid)];
        let fallback = socket_path(pid, None, self.uid);
        if !v.contains(&fallback) {
            v.push(fallback);
        }
        v
    }

    /// Sends one request to process `pid` and returns the agent's reply.
    pub fn request(&self, pid: u32, req: Request) -> Result<Reply, String> {
        check_process(pid)?;
        let candidates = self.candidates(pid);
        let mut stale = None;
        for path in &candidates {
            if !path.exists() {
                continue;
            }
            check_dir(path.parent().unwrap_or(Path::new("/")), self.uid)?;
            match UnixStream::connect(path) {
                Ok(stream) => return self.converse(stream, pid, path, req),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(format!(
                        "permission denied: cannot connect to {}",
                        path.display()
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    stale = Some(path.clone())
                }
                Err(e) => return Err(format!("cannot connect to {}: {e}", path.display())),
            }
        }
        if let Some(path) = stale {
            return Err(format!(
                "process {pid} is not running hotprobe: nobody listens on {} (a stale socket)",
                path.display()
            ));
        }
        let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        Err(format!(
            "process {pid} is not running hotprobe (no control socket at {}); start it with `hotprobe run` or LD_PRELOAD=libhotprobe.so",
            list.join(" or ")
        ))
    }

    fn converse(
        &self,
        mut stream: UnixStream,
        pid: u32,
        path: &Path,
        req: Request,
    ) -> Result<Reply, String> {
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        let io_err = |e: std::io::Error| {
            if timed_out(&e) {
                format!(
                    "the agent in process {pid} did not answer within {} s",
                    self.timeout.as_secs_f64()
                )
            } else {
                format!("{}: {e}", path.display())
            }
        };
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(io_err)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(io_err)?;
        stream.write_all(req.line().as_bytes()).map_err(io_err)?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(io_err)?;
        parse_reply(&line).map_err(|e| format!("agent in process {pid}: {e}"))
    }
}

/// Parses the agent's one-line answer.
pub fn parse_reply(line: &str) -> Result<Reply, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line == "ok" {
        return Ok(Reply::Done);
    }
    if let Some(path) = line.strip_prefix("ok ") {
        return Ok(Reply::Written(PathBuf::from(path)));
    }
    if let Some(message) = line.strip_prefix("error ") {
        return Err(message.to_string());
    }
    if line.is_empty() {
        return Err("closed the connection without an answer".into());
    }
    Err(format!("unexpected answer `{line}`"))
}

/// Fails clearly when the process does not exist or is not ours.
fn check_process(pid: u32) -> Result<(), String> {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return Err(format!("no such process: {pid}"));
    };
    if p <= 0 {
        return Err(format!("no such process: {pid}"));
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(p, 0) } == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Err(format!("no such process: {pid}")),
        Some(libc::EPERM) => Err(format!(
            "permission denied: process {pid} belongs to another user"
        )),
        _ => Ok(()),
    }
}

/// The socket directory must be ours and private, or another user could
/// stand in for the agent.
fn check_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() != uid {
        return Err(format!(
            "refusing {}: it belongs to uid {}, not to you (uid {uid})",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "refusing {}: others may use it (mode {:o}; the agent makes it 0700)",
            dir.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    #[test]
    fn socket_paths_follow_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            socket_path(42, Some(dir.path().as_os_str()), 1000),
            dir.path().join("hotprobe/42.sock")
        );
        assert_eq!(
            socket_path(42, None, 1000),
            PathBuf::from("/tmp/hotprobe-1000/42.sock")
        );
        assert_eq!(
            socket_path(42, Some(OsStr::new("")), 7),
            PathBuf::from("/tmp/hotprobe-7/42.sock")
        );
        assert_eq!(
            socket_path(42, Some(OsStr::new("/no/such/dir")), 7),
            PathBuf::from("/tmp/hotprobe-7/42.sock")
        );
    }

    #[test]
    fn replies_parse() {
        assert_eq!(
            parse_reply("ok /tmp/a.json\n"),
            Ok(Reply::Written("/tmp/a.json".into()))
        );
        assert_eq!(parse_reply("ok\n"), Ok(Reply::Done));
        assert_eq!(parse_reply("error busy\n"), Err("busy".into()));
        assert!(parse_reply("").is_err());
        assert!(parse_reply("huh\n").is_err());
    }

    /// A fake agent: answers one request on the socket of this very process.
    fn fake_agent(xdg: &Path, answer: &'static str) -> (std::thread::JoinHandle<String>, u32) {
        let pid = std::process::id();
        let dir = xdg.join("hotprobe");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let listener = UnixListener::bind(dir.join(format!("{pid}.sock"))).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            (&stream).write_all(answer.as_bytes()).unwrap();
            line
        });
        (handle, pid)
    }

    fn client(xdg: &Path) -> Client {
        Client {
            xdg_runtime_dir: Some(xdg.as_os_str().to_owned()),
            uid: unsafe { libc::getuid() },
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn talks_to_a_fake_agent() {
        let xdg = tempfile::tempdir().unwrap();
        let (agent, pid) = fake_agent(xdg.path(), "ok /tmp/hotprobe-x-1.json\n");
        let reply = client(xdg.path())
            .request(pid, Request::SnapshotReset)
            .unwrap();
        assert_eq!(reply, Reply::Written("/tmp/hotprobe-x-1.json".into()));
        assert_eq!(agent.join().unwrap(), "snapshot+reset\n");
    }

    #[test]
    fn agent_errors_are_reported() {
        let xdg = tempfile::tempdir().unwrap();
        let (agent, pid) = fake_agent(xdg.path(), "error snapshot already in progress\n");
        let e = client(xdg.path())
            .request(pid, Request::Snapshot)
            .unwrap_err();
        assert!(e.contains("snapshot already in progress"), "{e}");
        agent.join().unwrap();
    }

    #[test]
    fn clear_errors_without_an_agent() {
        let xdg = tempfile::tempdir().unwrap();
        let c = client(xdg.path());
        let e = c
            .request(std::process::id(), Request::Snapshot)
            .unwrap_err();
        assert!(e.contains("is not running hotprobe"), "{e}");
        let e = c.request(i32::MAX as u32, Request::Snapshot).unwrap_err();
        assert!(e.contains("no such process"), "{e}");
    }

    #[test]
    fn refuses_a_shared_directory() {
        let xdg = tempfile::tempdir().unwrap();
        let dir = xdg.path().join("hotprobe");
        std::fs::create_dir_all(&dir).unwrap();
        let pid = std::process::id();
        let _listener = UnixListener::bind(dir.join(format!("{pid}.sock"))).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = client(xdg.path())
            .request(pid, Request::Snapshot)
            .unwrap_err();
        assert!(e.contains("refusing"), "{e}");
    }
}

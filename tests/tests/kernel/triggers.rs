//! Snapshot triggers under the kernel backend: SIGTERM, `hotprobe snapshot
//! PID` and the interval, as metering.rs tests them for inline, with the
//! harness's live-server helpers.

use super::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn start_server(s: &Scratch, run: Run) -> Live {
    start_live(s, run)
}

#[test]
fn sigterm_leaves_a_snapshot_and_the_same_exit_status() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("server.c", "server", &["-O2"]);
    let bare = start_server(&s, Run::new(&prog, s.path()).bare());
    std::thread::sleep(Duration::from_millis(100));
    kill(bare.pid, libc::SIGTERM);
    let (bare_status, _) = bare.finish();
    let live = start_server(&s, kernel(Run::new(&prog, s.path())));
    std::thread::sleep(Duration::from_millis(300));
    kill(live.pid, libc::SIGTERM);
    let (status, _) = live.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert_eq!(status.code(), bare_status.code());
    assert_eq!(status.signal(), bare_status.signal());
    let snaps = snapshots_in(s.path());
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = &snaps[0].1;
    assert_eq!(snap.process.reason, Reason::Signal);
    assert_eq!(snap.process.signal, Some(libc::SIGTERM));
    assert!(count(snap, "handle_request") > 0);
    assert_clean(snap);
}

#[test]
fn snapshots_on_request_are_consistent_while_the_program_runs_and_reset_works() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("server.c", "server", &["-O2"]);
    let live = start_server(&s, kernel(Run::new(&prog, s.path())));
    let socket = s.path().join("hotprobe").join(format!("{}.sock", live.pid));
    let mut last = 0;
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(60));
        let snap = hotprobe_snapshot(&s, live.pid);
        assert_eq!(snap.process.sequence, i + 1);
        assert_eq!(snap.process.reason, Reason::Request);
        assert_eq!(snap.agent.backend, "kernel");
        let n = count(&snap, "handle_request");
        assert!(n >= last, "counts went backwards: {last} then {n}");
        assert!(n > 0, "request {} saw no calls", i + 1);
        last = n;
        assert_clean(&snap);
    }
    assert_eq!(ask(&socket, "reset"), "ok");
    let reply = ask(&socket, "snapshot");
    let snap = Snapshot::read(Path::new(reply.strip_prefix("ok ").unwrap())).unwrap();
    assert!(
        count(&snap, "handle_request") < last,
        "a reset leaves the warm-up out"
    );
    kill(live.pid, libc::SIGTERM);
    live.finish();
    assert!(!socket.exists(), "the socket goes away with the process");
}

/// `hotprobe snapshot PID`, as a user asks (the socket opens once the
/// agent is up: retried for a while); the snapshot at the path it prints.
fn hotprobe_snapshot(s: &Scratch, pid: u32) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = std::process::Command::new(cli_path())
            .args(["snapshot", &pid.to_string(), "--timeout", "5"])
            .current_dir(s.path())
            .env("XDG_RUNTIME_DIR", s.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run hotprobe snapshot");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() {
            let path = PathBuf::from(text(&out.stdout).trim());
            return Snapshot::read(&path)
                .unwrap_or_else(|e| panic!("{} is not a snapshot: {e}", path.display()));
        }
        assert!(
            Instant::now() < deadline,
            "hotprobe snapshot {pid} failed: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request on the agent's control socket, one line back.
fn ask(socket: &Path, request: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("cannot reach the agent at {}: {e}", socket.display()));
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply.trim().to_string()
}

#[test]
fn interval_snapshots_rewrite_one_file_then_the_final_one() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("spin.c", "spin", &["-O2"]);
    let ran = interval_snapshots_then_the_final_one(kernel(Run::new(&prog, s.path())));
    let snap = ran.snapshot();
    assert_eq!(count(snap, "outer"), 3000);
    assert_clean(snap);
}

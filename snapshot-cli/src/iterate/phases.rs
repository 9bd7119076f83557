//! One iteration's processes: the single command, or the server (started,
//! waited for, stopped) and the load generator. Every child runs in its own
//! process group with stdin closed and its output in the iteration
//! directory (`<role>.stdout`, `<role>.stderr`), so a terminal's Ctrl-C
//! reaches only hotprobe, which then stops the workload itself: the server
//! gets its stop signal (or stop command) and `stop_timeout` to exit and
//! write its snapshot, then SIGKILL. A process is never left running: the
//! [`Proc`] guard kills its whole group when dropped, and each child gets
//! SIGKILL should hotprobe die without cleaning up (`PR_SET_PDEATHSIG`).

use super::interrupt::{self, signal_name};
use super::progress::{Phase, Progress};
use super::workload::{join_words, Ready, Server, Stop};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often children and the interrupt flag are polled.
const POLL: Duration = Duration::from_millis(20);
/// How often readiness is tried.
const READY_RETRY: Duration = Duration::from_millis(25);
/// How long a single command's leftover processes get after SIGTERM.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// Why an iteration did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// SIGINT/SIGTERM/SIGHUP reached hotprobe.
    Interrupted(i32),
    /// The workload failed; the message says how and where its output is.
    Error(String),
}

pub type Outcome<T> = std::result::Result<T, Failure>;

fn interrupted() -> Outcome<()> {
    match interrupt::received() {
        Some(sig) => Err(Failure::Interrupted(sig)),
        None => Ok(()),
    }
}

/// How a process ended, in words.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by {}", signal_name(s)),
        (None, None) => "ended".to_string(),
    }
}

/// The environment of the workload's commands.
pub struct Env<'a> {
    /// The agent's variables (LD_PRELOAD, HOTPROBE_*), for the probed process.
    pub agent: &'a BTreeMap<String, OsString>,
    /// Agent variables to remove from the probed process's inherited environment.
    pub agent_remove: &'a [&'a str],
    /// The workload's own variables, for every command.
    pub extra: &'a BTreeMap<String, String>,
}

/// A running child, in its own process group, killed with its group when dropped.
pub struct Proc {
    child: Child,
    pub pid: i32,
    pub role: &'static str,
    pub stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `words` with output into `dir/<role>.stdout` and `.stderr`.
    pub fn spawn(
        words: &[String],
        dir: &Path,
        role: &'static str,
        env: &Env,
        probed: bool,
    ) -> Outcome<Proc> {
        let out_path = dir.join(format!("{role}.stdout"));
        let err_path = dir.join(format!("{role}.stderr"));
        let open = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Failure::Error(format!("{}: cannot create: {e}", p.display())))
        };
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..])
            .stdin(Stdio::null())
            .stdout(open(&out_path)?)
            .stderr(open(&err_path)?)
            .process_group(0)
            .envs(env.extra);
        if probed {
            for k in env.agent_remove {
                cmd.env_remove(k);
            }
            cmd.envs(env.agent);
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec. If
        // hotprobe itself is killed (SIGKILL cannot be caught), the child
        // dies with it instead of running on unattended.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::getppid() != parent
                {
                    libc::_exit(127);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            Failure::Error(format!(
                "cannot start the {role} command `{}`: {e}",
                words[0]
            ))
        })?;
        Ok(Proc {
            pid: child.id() as i32,
            child,
            role,
            stderr_path: err_path,
            status: None,
        })
    }

    /// Its status, once it has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends `sig` to its whole process group.
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: kill on the group we created (pgid == the child's pid).
        unsafe { libc::kill(-self.pid, sig) };
    }

    /// Whether any process of its group is still alive (zombies waiting
    /// for their reaper do not count).
    pub fn group_alive(&self) -> bool {
        // SAFETY: signal 0 only checks for existence.
        let exists = unsafe { libc::kill(-self.pid, 0) == 0 };
        exists && group_has_live_member(self.pid)
    }

    /// Waits for it to exit until `deadline`; `None` when the deadline passed.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// `sig` to the group, up to `grace` for it to exit, then SIGKILL.
    /// Returns the exit status and whether SIGKILL was needed.
    pub fn stop(&mut self, sig: i32, grace: Duration) -> (Option<ExitStatus>, bool) {
        if self.try_status().is_none() {
            self.signal_group(sig);
        }
        self.finish(grace)
    }

    /// Waits up to `grace` for the process and the rest of its group, then
    /// kills what is left.
    pub fn finish(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        let deadline = Instant::now() + grace;
        let mut status = self.wait_until(deadline);
        while status.is_some() && self.group_alive() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let killed = status.is_none() || self.group_alive();
        if killed {
            self.signal_group(libc::SIGKILL);
            status = status.or_else(|| self.child.wait().ok());
            self.status = status;
            // SIGKILL is delivered asynchronously: let the rest of the group die.
            let gone = Instant::now() + Duration::from_secs(1);
            while self.group_alive() && Instant::now() < gone {
                std::thread::sleep(POLL);
            }
        }
        (status, killed)
    }
}

/// Whether /proc lists a process of group `pgid` that is not a zombie.
/// Without a readable /proc, every member counts as live.
fn group_has_live_member(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let pgrp = f.nth(1).and_then(|g| g.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() || self.group_alive() {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The phases of one iteration and how long each took.
pub struct Phases<'a> {
    pub progress: &'a Progress,
    current: Option<(Phase, Instant)>,
    pub done: Vec<(Phase, Duration)>,
}

impl<'a> Phases<'a> {
    pub fn new(progress: &'a Progress) -> Phases<'a> {
        Phases {
            progress,
            current: None,
            done: Vec::new(),
        }
    }

    pub fn enter(&mut self, phase: Phase) {
        self.end();
        self.current = Some((phase, Instant::now()));
        self.progress.phase(phase);
    }

    pub fn end(&mut self) {
        if let Some((p, t)) = self.current.take() {
            self.done.push((p, t.elapsed()));
        }
    }
}

/// Where the output that throughput is read from went.
pub struct Ran {
    pub output: Vec<PathBuf>,
    /// How the server ended, for a server workload.
    pub server_exit: Option<String>,
}

fn output_of(dir: &Path, role: &str) -> Vec<PathBuf> {
    vec![
        dir.join(format!("{role}.stdout")),
        dir.join(format!("{role}.stderr")),
    ]
}

/// Runs the single command under the agent until it exits.
pub fn run_single(
    words: &[String],
    timeout: Option<Duration>,
    dir: &Path,
    env: &Env,
    phases: &mut Phases,
) -> Outcome<Ran> {
    phases.enter(Phase::Running);
    let mut p = Proc::spawn(words, dir, "command", env, true)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(status) = p.try_status() {
            // Leftovers of the group (a daemon it started) get SIGTERM, then SIGKILL.
            if p.group_alive() {
                p.stop(libc::SIGTERM, LEFTOVER_GRACE);
            }
            if !status.success() {
                return Err(Failure::Error(format!(
                    "the command `{}` {}; its output is in {}",
                    join_words(words),
                    describe(status),
                    p.stderr_path.display()
                )));
            }
            break;
        }
        if let Err(f) = interrupted() {
            phases.enter(Phase::Stopping);
            p.stop(libc::SIGTERM, LEFTOVER_GRACE * 5);
            return Err(f);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            phases.enter(Phase::Stopping);
            p.stop(libc::SIGTERM, LEFTOVER_GRACE * 5);
            return Err(Failure::Error(format!(
                "the command `{}` ran longer than the load timeout ({:.0} s) and was stopped",
                join_words(words),
                timeout.unwrap_or_default().as_secs_f64()
            )));
        }
        std::thread::sleep(POLL);
    }
    phases.end();
    Ok(Ran {
        output: output_of(dir, "command"),
        server_exit: None,
    })
}

/// Starts the server under the agent, waits until it is ready, runs the
/// load, and stops the server. The server is stopped on every path.
pub fn run_server(
    server: &Server,
    load: &[String],
    load_timeout: Option<Duration>,
    dir: &Path,
    env: &Env,
    phases: &mut Phases,
) -> Outcome<Ran> {
    phases.enter(Phase::StartingServer);
    let mut srv = Proc::spawn(&server.command, dir, "server", env, true)?;
    phases.enter(Phase::WaitingReady);
    let mut result = wait_ready(server, &mut srv, dir, env);
    if result.is_ok() {
        phases.enter(Phase::Load);
        result = run_load(load, load_timeout, &mut srv, dir, env);
    }
    phases.enter(Phase::Stopping);
    let exit = stop_server(server, &mut srv, dir, env);
    phases.end();
    let server_exit = match exit {
        Ok(s) => s,
        Err(e) => {
            result = result.and(Err(e.clone()));
            e_text(&e)
        }
    };
    result.map(|_| Ran {
        output: output_of(dir, "load"),
        server_exit: Some(server_exit),
    })
}

fn e_text(f: &Failure) -> String {
    match f {
        Failure::Error(m) => m.clone(),
        Failure::Interrupted(s) => format!("interrupted by {}", signal_name(*s)),
    }
}

fn server_died(srv: &Proc, status: ExitStatus, when: &str) -> Failure {
    Failure::Error(format!(
        "the server {} {when}; its output is in {}",
        describe(status),
        srv.stderr_path.display()
    ))
}

fn wait_ready(server: &Server, srv: &mut Proc, dir: &Path, env: &Env) -> Outcome<()> {
    let deadline = Instant::now() + server.ready_timeout;
    loop {
        interrupted()?;
        if let Some(status) = srv.try_status() {
            return Err(server_died(srv, status, "before it became ready"));
        }
        let ready = match &server.ready {
            Ready::Port { host, port } => port_accepts(host, *port),
            Ready::Command(words) => ready_command(words, deadline, dir, env)?,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let check = match &server.ready {
                Ready::Port { host, port } => format!("{host}:{port} accepted no connection"),
                Ready::Command(w) => format!(
                    "`{}` never succeeded (its output is in {})",
                    join_words(w),
                    dir.join("ready.stderr").display()
                ),
            };
            return Err(Failure::Error(format!(
                "the server did not become ready within {:.0} s: {check}; its output is in {}",
                server.ready_timeout.as_secs_f64(),
                srv.stderr_path.display()
            )));
        }
        let pause = Instant::now() + READY_RETRY;
        while Instant::now() < pause {
            interrupted()?;
            std::thread::sleep(POLL);
        }
    }
}

fn port_accepts(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(250)).is_ok())
}

/// One try of the readiness command; true when it exited 0.
fn ready_command(words: &[String], deadline: Instant, dir: &Path, env: &Env) -> Outcome<bool> {
    let mut p = Proc::spawn(words, dir, "ready", env, false)?;
    loop {
        if let Some(status) = p.try_status() {
            return Ok(status.success());
        }
        if let Err(f) = interrupted() {
            p.stop(libc::SIGKILL, Duration::from_secs(1));
            return Err(f);
        }
        if Instant::now() >= deadline {
            p.stop(libc::SIGKILL, Duration::from_secs(1));
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

fn run_load(
    load: &[String],
    timeout: Option<Duration>,
    srv: &mut Proc,
    dir: &Path,
    env: &Env,
) -> Outcome<()> {
    let mut p = Proc::spawn(load, dir, "load", env, false)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(status) = p.try_status() {
            if p.group_alive() {
                p.stop(libc::SIGTERM, LEFTOVER_GRACE);
            }
            if !status.success() {
                return Err(Failure::Error(format!(
                    "the load command `{}` {}; its output is in {}",
                    join_words(load),
                    describe(status),
                    p.stderr_path.display()
                )));
            }
            return Ok(());
        }
        if let Some(status) = srv.try_status() {
            p.stop(libc::SIGTERM, LEFTOVER_GRACE);
            return Err(server_died(srv, status, "during the load"));
        }
        if let Err(f) = interrupted() {
            p.stop(libc::SIGTERM, LEFTOVER_GRACE);
            return Err(f);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            p.stop(libc::SIGTERM, LEFTOVER_GRACE);
            return Err(Failure::Error(format!(
                "the load command `{}` ran longer than the load timeout ({:.0} s) and was stopped",
                join_words(load),
                timeout.unwrap_or_default().as_secs_f64()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Stops the server; how it ended, or why that is a failure (it had to be
/// killed, so it wrote no final snapshot).
fn stop_server(server: &Server, srv: &mut Proc, dir: &Path, env: &Env) -> Outcome<String> {
    if let Some(status) = srv.try_status() {
        // Died already (reported by the phase that saw it); clean up its group.
        srv.stop(libc::SIGTERM, LEFTOVER_GRACE);
        return Ok(describe(status));
    }
    match &server.stop {
        Stop::Signal(sig) => srv.signal_group(*sig),
        Stop::Command(words) => {
            let mut p = Proc::spawn(words, dir, "stop", env, false)?;
            let deadline = Instant::now() + server.stop_timeout;
            if p.wait_until(deadline).is_none() {
                p.stop(libc::SIGKILL, Duration::from_secs(1));
            }
        }
    }
    let (status, killed) = srv.finish(server.stop_timeout);
    let how = status.map_or("ended".to_string(), describe);
    if killed {
        return Err(Failure::Error(format!(
            "the server did not stop within {:.0} s of {} and was killed with SIGKILL ({how}), so it may have written no snapshot; its output is in {}",
            server.stop_timeout.as_secs_f64(),
            match &server.stop {
                Stop::Signal(s) => signal_name(*s),
                Stop::Command(w) => format!("`{}`", join_words(w)),
            },
            srv.stderr_path.display()
        )));
    }
    Ok(how)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> (BTreeMap<String, OsString>, BTreeMap<String, String>) {
        (BTreeMap::new(), BTreeMap::new())
    }

    #[test]
    fn a_stopped_group_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (a, x) = env();
        let e = Env {
            agent: &a,
            agent_remove: &[],
            extra: &x,
        };
        let words: Vec<String> = ["sh", "-c", "sleep 30 & sleep 30"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut p = Proc::spawn(&words, dir.path(), "server", &e, false).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(p.group_alive());
        let (status, killed) = p.stop(libc::SIGTERM, Duration::from_secs(5));
        assert!(!killed, "sh and both sleeps die of SIGTERM");
        assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGTERM));
        assert!(!p.group_alive());
    }

    #[test]
    fn a_process_ignoring_the_signal_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, x) = env();
        let e = Env {
            agent: &a,
            agent_remove: &[],
            extra: &x,
        };
        let words: Vec<String> = ["sh", "-c", "trap '' TERM; sleep 30"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut p = Proc::spawn(&words, dir.path(), "server", &e, false).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (_, killed) = p.stop(libc::SIGTERM, Duration::from_millis(300));
        assert!(killed);
        assert!(!p.group_alive());
    }
}

//! A real server under the agent: Debian's redis-server (stripped, its
//! ~3,200 `.dynsym` functions all probed) answers the same replies as bare
//! to a fixed script of commands, serves `redis-benchmark`, and exits
//! cleanly on SIGTERM with a snapshot — with every probe kept and counting
//! (`HOTPROBE_ADAPTIVE=0`), and with the score card removing cold ones live.
//!
//! `scripts/test.sh` installs redis-server and redis-tools when it runs as
//! root; elsewhere, without them, the test says it skipped.

use hotprobe_config::snapshot::{ProbeState, Snapshot};
use hotprobe_tests::*;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli_reply(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Commands of every kind of value, with replies that do not depend on
/// time or on the server's address.
const SCRIPT: &[&[&str]] = &[
    &["SET", "k1", "v1"],
    &["GET", "k1"],
    &["APPEND", "k1", "-more"],
    &["GETRANGE", "k1", "0", "4"],
    &["INCRBY", "counter", "41"],
    &["INCR", "counter"],
    &["MSET", "a", "1", "b", "2", "c", "3"],
    &["MGET", "a", "b", "c", "missing"],
    &["RPUSH", "list", "x", "y", "z"],
    &["LPUSH", "list", "w"],
    &["LRANGE", "list", "0", "-1"],
    &["LPOP", "list"],
    &["HSET", "hash", "f1", "1", "f2", "2"],
    &["HINCRBY", "hash", "f1", "10"],
    &["HGET", "hash", "f1"],
    &["HLEN", "hash"],
    &["SADD", "set", "m1", "m2", "m3"],
    &["SISMEMBER", "set", "m2"],
    &["SCARD", "set"],
    &["ZADD", "zset", "1", "one", "2", "two", "3", "three"],
    &["ZRANGE", "zset", "0", "-1", "WITHSCORES"],
    &["ZSCORE", "zset", "two"],
    &["EXISTS", "k1", "nope"],
    &["TYPE", "hash"],
    &["DEL", "k1", "a"],
    &["DBSIZE"],
    &[
        "EVAL",
        "return redis.call('INCR', KEYS[1]) * 2",
        "1",
        "counter",
    ],
    &["NOSUCHCOMMAND"],
    &["GET", "counter"],
];

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, agent_env: Option<&[(&str, &str)]>) -> Server {
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("HOTPROBE_") || k == "LD_PRELOAD" {
                cmd.env_remove(k);
            }
        }
        if let Some(env) = agent_env {
            cmd.env("LD_PRELOAD", agent_path());
            cmd.envs(env.iter().copied());
        }
        let child = cmd.spawn().expect("redis-server");
        let server = Server { child, port };
        let start = Instant::now();
        while cli_reply(port, &["PING"]).trim() != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "redis-server not ready on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn replies(&self) -> Vec<String> {
        SCRIPT.iter().map(|c| cli_reply(self.port, c)).collect()
    }

    fn benchmark(&self, requests: u32) -> String {
        let out = Command::new("redis-benchmark")
            .args(["-p", &self.port.to_string(), "-t", "set,get", "-c", "8"])
            .args(["-n", &requests.to_string(), "-q"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-benchmark");
        assert!(out.status.success(), "redis-benchmark failed");
        String::from_utf8_lossy(&out.stdout).replace('\r', "\n")
    }

    /// SIGTERM, then the exit status and stderr.
    fn stop(self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let out = self.child.wait_with_output().expect("wait");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn skip_without_redis() -> bool {
    let missing: Vec<&str> = ["redis-server", "redis-cli", "redis-benchmark"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} not installed (scripts/test.sh installs redis-server and redis-tools as root)",
            missing.join(", ")
        );
        return true;
    }
    false
}

/// Runs the script and a benchmark under the agent with `env`; checks the
/// replies against a bare server's and returns the snapshot.
fn under_agent(env: &[(&str, &str)], requests: u32) -> Snapshot {
    let s = Scratch::new();
    let bare = Server::start(s.path(), None);
    // The script changes what it reads, and the benchmark adds its keys:
    // the second run answers differently.
    let first = bare.replies();
    bare.benchmark(1_000);
    let want = [first, bare.replies()];
    let (status, _) = bare.stop();
    assert!(status.success(), "bare redis-server: {status:?}");

    let out = s.join("snap-{pid}.json");
    let mut with_output = env.to_vec();
    with_output.push(("HOTPROBE_OUTPUT", out.to_str().unwrap()));
    let probed = Server::start(s.path(), Some(&with_output));
    assert_eq!(probed.replies(), want[0], "replies under the agent");
    let bench = probed.benchmark(requests);
    for test in ["SET", "GET"] {
        assert!(
            bench.contains(&format!("{test}: ")) && bench.contains("requests per second"),
            "{bench}"
        );
    }
    assert_eq!(probed.replies(), want[1], "replies after the load");
    let (status, stderr) = probed.stop();
    assert!(
        status.success(),
        "exit under the agent: {status:?}\n{stderr}"
    );
    let agent_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hotprobe:"))
        .collect();
    assert!(
        agent_lines.len() <= 1 && agent_lines.iter().all(|l| l.contains("not probed")),
        "at the default level only the summary of rejected functions: {agent_lines:?}"
    );
    let snaps = snapshot_files(s.path());
    assert_eq!(snaps.len(), 1, "one snapshot: {snaps:?}");
    Snapshot::read(&snaps[0]).unwrap()
}

#[test]
fn redis_with_every_function_probed_and_counting_answers_as_bare() {
    if skip_without_redis() {
        return;
    }
    let requests = 20_000;
    let snap = under_agent(&[("HOTPROBE_ADAPTIVE", "0")], requests);
    let installed = snap
        .probes
        .iter()
        .filter(|p| p.state != ProbeState::Rejected)
        .count();
    assert!(installed > 2_500, "every .dynsym function: {installed}");
    assert_eq!(snap.meter.unmetered, 0);
    assert!(
        snap.probes
            .iter()
            .all(|p| p.state != ProbeState::Disabled || p.disabled_at_ns.is_none()),
        "adaptive off: nothing removed"
    );
    // Every command the server ran went through call() and processCommand():
    // the benchmark's SETs and GETs, the script twice and the PINGs.
    let calls = probe(&snap, "call").count;
    assert!(
        calls >= 2 * requests as u64 + 2 * SCRIPT.len() as u64,
        "call: {calls}"
    );
    assert!(probe(&snap, "processCommand").count >= 2 * requests as u64);
    assert!(probe(&snap, "setCommand").count >= requests as u64);
    assert!(probe(&snap, "getCommand").count >= requests as u64);
}

#[test]
fn redis_with_the_score_card_on_keeps_the_request_path_and_answers_as_bare() {
    if skip_without_redis() {
        return;
    }
    let snap = under_agent(&[], 50_000);
    let disabled = snap
        .probes
        .iter()
        .filter(|p| p.state == ProbeState::Disabled && p.disabled_at_ns.is_some())
        .count();
    assert!(
        disabled > 50,
        "cold probes removed while redis ran: {disabled}"
    );
    let state = |name: &str| probe(&snap, name).state;
    assert_eq!(state("processCommand"), ProbeState::Hot);
    assert_eq!(state("readQueryFromClient"), ProbeState::Hot);
}

/// Runs `scripts/redis.sh` for one short iteration; returns its exit
/// status, its output, and the workload the loop recorded.
fn redis_script(results: &Path, extra: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/redis.sh"))
        .args(extra)
        .args(["-n", "5000", "--iterations", "1", "--out"])
        .arg(results)
        .stdin(Stdio::null())
        .output()
        .expect("bash scripts/redis.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let workload = std::fs::read_to_string(results.join("loop/workload.toml")).unwrap_or_default();
    (out.status.success(), text, workload)
}

fn can_use_cpus_0_and_1() -> bool {
    ["0", "1"].iter().all(|cpu| {
        Command::new("taskset")
            .args(["-c", cpu, "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn redis_script_pins_the_server_and_the_load_unless_told_not_to() {
    if skip_without_redis() {
        return;
    }
    let s = Scratch::new();
    let (ok, text, workload) = redis_script(&s.join("pinned"), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("bare (no agent): SET:"), "{text}");
    let snaps = std::fs::read_dir(s.join("pinned/loop/iter-1"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("redis-server-") && name.ends_with(".json")
        })
        .count();
    assert_eq!(snaps, 1, "the pinned server wrote its snapshot: {text}");
    if can_use_cpus_0_and_1() {
        assert!(
            workload.contains("--server_cpulist 0") && workload.contains("taskset -c 1 "),
            "pinned: {workload}"
        );
    } else {
        assert!(text.contains("run unpinned"), "says it cannot pin: {text}");
    }
    let (ok, text, workload) = redis_script(&s.join("unpinned"), &["--no-pin"]);
    assert!(ok, "{text}");
    assert!(
        !workload.is_empty()
            && !workload.contains("server_cpulist")
            && !workload.contains("taskset"),
        "--no-pin: {workload}"
    );
}

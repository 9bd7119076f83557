//! Harness for the end-to-end tests: compiles small C, C++ and Rust programs
//! from `tests/programs/` into a temporary directory, runs them bare and
//! under the preloaded agent, and reads their snapshots through the
//! contract crate's types.
//!
//! The agent and CLI under test are the release builds
//! (`cargo build --release --workspace`), found next to the test binary.

use hotprobe_config::snapshot::{ProbeRecord, Snapshot};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The directory holding `libhotprobe.so` and `hotprobe` (target/<profile>).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn built(name: &str) -> PathBuf {
    for dir in [build_dir(), build_dir().parent().unwrap().join("release")] {
        let p = dir.join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not built: run `cargo build --release --workspace` first (scripts/test.sh does)"
    );
}

pub fn agent_path() -> PathBuf {
    built("libhotprobe.so")
}

pub fn cli_path() -> PathBuf {
    built("hotprobe")
}

pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// A scratch directory for one test: built programs, snapshots, configs.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("hotprobe-test-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }

    /// Compiles `tests/programs/<source>` (C with gcc, C++ with g++, Rust
    /// with rustc, by extension) to `<out>` with extra flags.
    pub fn build(&self, source: &str, out: &str, flags: &[&str]) -> PathBuf {
        self.build_from(&programs_dir().join(source), out, flags)
    }

    pub fn build_from(&self, src: &Path, out: &str, flags: &[&str]) -> PathBuf {
        let out_path = self.join(out);
        let ext = src.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mut cmd = match ext {
            "c" => {
                let mut c = Command::new("gcc");
                c.args(["-g", "-o"])
                    .arg(&out_path)
                    .arg(src)
                    .args(flags)
                    .arg("-lpthread");
                c
            }
            "cc" | "cpp" => {
                let mut c = Command::new("g++");
                c.args(["-g", "-o"])
                    .arg(&out_path)
                    .arg(src)
                    .args(flags)
                    .arg("-lpthread");
                c
            }
            "rs" => {
                let mut c = Command::new("rustc");
                c.args(["--edition", "2021", "-g", "-o"])
                    .arg(&out_path)
                    .arg(src)
                    .args(flags);
                c
            }
            _ => panic!("unknown source kind {}", src.display()),
        };
        let output = cmd.output().expect("run the compiler");
        assert!(
            output.status.success(),
            "compiling {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        out_path
    }
}

/// How to run a program.
pub struct Run {
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    agent: bool,
    stdin: Option<Vec<u8>>,
}

/// What a run left behind.
#[derive(Debug)]
pub struct Ran {
    pub output: Output,
    pub snapshots: Vec<(PathBuf, Snapshot)>,
}

impl Run {
    /// A run in `cwd` (also where snapshots go unless HOTPROBE_OUTPUT is set).
    pub fn new(program: &Path, cwd: &Path) -> Run {
        Run {
            program: program.to_path_buf(),
            args: vec![],
            env: BTreeMap::new(),
            cwd: cwd.to_path_buf(),
            agent: true,
            stdin: None,
        }
    }

    pub fn args(mut self, args: &[&str]) -> Run {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Run {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn bare(mut self) -> Run {
        self.agent = false;
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Run {
        self.stdin = Some(bytes.to_vec());
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(&self.cwd);
        for (k, _) in std::env::vars() {
            if k.starts_with("HOTPROBE_") || k == "LD_PRELOAD" {
                cmd.env_remove(k);
            }
        }
        if self.agent {
            cmd.env("LD_PRELOAD", agent_path());
        }
        cmd.envs(&self.env);
        cmd
    }

    pub fn run(self) -> Ran {
        let before = snapshot_files(&self.cwd);
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        if let Some(bytes) = &self.stdin {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(bytes).unwrap();
        }
        let output = child.wait_with_output().expect("wait");
        let snapshots = snapshot_files(&self.cwd)
            .into_iter()
            .filter(|p| !before.contains(p))
            .map(|p| {
                let s = Snapshot::read(&p)
                    .unwrap_or_else(|e| panic!("agent wrote an unreadable snapshot: {e}"));
                (p, s)
            })
            .collect();
        Ran { output, snapshots }
    }
}

/// The `*.json` files in a directory, sorted.
pub fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Ran {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The nanoseconds a test program says (a stderr line `PHASE off-cpu N`,
    /// as spin.c writes) its thread spent off the CPU in a phase.
    pub fn off_cpu_ns(&self, phase: &str) -> f64 {
        let key = format!("{phase} off-cpu ");
        self.stderr()
            .lines()
            .find_map(|l| {
                l.strip_prefix(key.as_str())
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no `{key}` line in {:?}", self.stderr()))
    }

    /// The only snapshot of the run.
    pub fn snapshot(&self) -> &Snapshot {
        assert_eq!(
            self.snapshots.len(),
            1,
            "expected one snapshot, got {:?}\nstderr: {}",
            self.snapshots.iter().map(|s| &s.0).collect::<Vec<_>>(),
            self.stderr()
        );
        &self.snapshots[0].1
    }

    /// Asserts the same stdout and exit status as `bare`.
    pub fn assert_same_as(&self, bare: &Ran) {
        assert_eq!(
            self.stdout(),
            bare.stdout(),
            "stdout differs under the agent; stderr:\n{}",
            self.stderr()
        );
        assert_eq!(
            self.output.status.code(),
            bare.output.status.code(),
            "exit code differs; stderr:\n{}",
            self.stderr()
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&self.output.status),
            std::os::unix::process::ExitStatusExt::signal(&bare.output.status),
            "terminating signal differs"
        );
    }
}

/// Looks a probe up by demangled name (or raw symbol).
pub fn probe<'a>(snap: &'a Snapshot, name: &str) -> &'a ProbeRecord {
    find_probe(snap, name).unwrap_or_else(|| {
        let names: Vec<&str> = snap.probes.iter().map(|p| p.name.as_str()).collect();
        panic!("no probe `{name}` in the snapshot; probes: {names:?}")
    })
}

pub fn find_probe<'a>(snap: &'a Snapshot, name: &str) -> Option<&'a ProbeRecord> {
    snap.probes
        .iter()
        .find(|p| p.name == name || p.symbol == name)
}

/// Runs the `hotprobe` CLI.
pub fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(cli_path())
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run hotprobe")
}

/// A program we talk to while it runs (tests/programs/server.c and the
/// like): started, it prints `ready PID` on stdout.
pub struct Live {
    pub child: std::process::Child,
    pub pid: u32,
    pub out: std::io::BufReader<std::process::ChildStdout>,
}

/// Starts `run` (with the control socket's directory in the scratch
/// directory) and waits for its `ready PID` line.
pub fn start_live(s: &Scratch, run: Run) -> Live {
    use std::io::BufRead;
    let mut cmd = run
        .env("XDG_RUNTIME_DIR", s.path().to_str().unwrap())
        .command();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn server");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let pid = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no ready line: {line:?}"));
    Live { child, pid, out }
}

impl Live {
    /// Waits for the exit; the status and the rest of stdout.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        (status, rest)
    }
}

/// Sends `sig` to one of our children.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

/// The snapshots in `dir`, read.
pub fn snapshots_in(dir: &Path) -> Vec<(PathBuf, Snapshot)> {
    snapshot_files(dir)
        .into_iter()
        .map(|p| (p.clone(), Snapshot::read(&p).unwrap()))
        .collect()
}

/// spin.c 3000 rounds with `HOTPROBE_INTERVAL=0.1` (`run` says how the
/// agent is set up): one file, rewritten by interval snapshots, then the
/// final one. Returns the final snapshot's run.
pub fn interval_snapshots_then_the_final_one(run: Run) -> Ran {
    let ran = run
        .args(&["3000", "10"])
        .env("HOTPROBE_INTERVAL", "0.1")
        .run();
    let snap = ran.snapshot();
    assert_eq!(snap.process.reason, hotprobe_config::snapshot::Reason::Exit);
    assert!(
        snap.process.sequence >= 3,
        "interval snapshots before the final one: sequence {}",
        snap.process.sequence
    );
    ran
}

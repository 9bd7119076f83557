//! `hotprobe run -- CMD…`: runs a command under the agent.
//!
//! The agent is `libhotprobe.so` next to the `hotprobe` binary unless
//! `--agent` names one. hotprobe waits for the command and exits as it did:
//! with its exit code, or killed by the same signal. SIGINT, SIGTERM, SIGHUP
//! and SIGQUIT sent to hotprobe are passed on to the command — except those
//! the terminal sends, which reach the command directly already.

use crate::error::{CliError, Result};
use hotprobe_config::settings::parse_bool;
use hotprobe_config::{ProbeSet, Settings};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// hotprobe's own failure before the command ran (like `env`).
pub const EXIT_CANNOT_START: i32 = 125;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

pub const AGENT_FILE: &str = "libhotprobe.so";

pub const AFTER_HELP: &str = "\
Options set the agent's environment variables (HOTPROBE_CONFIG,
HOTPROBE_INCLUDE, HOTPROBE_EXCLUDE, HOTPROBE_MODULES, HOTPROBE_OUTPUT,
HOTPROBE_PROBESET, HOTPROBE_BACKEND, HOTPROBE_ADAPTIVE, HOTPROBE_LOG,
HOTPROBE_FOLLOW, HOTPROBE_INTERVAL) and put the agent first in LD_PRELOAD.
hotprobe exits as the command did (its code, or the same signal); 125 means
hotprobe itself could not start it (agent missing, bad config or probe set),
126 that the command cannot be executed, 127 that it was not found.

Examples:
  hotprobe run -- ./server --port 6379
  hotprobe run --include 'dict*,process*' --output 'snaps/{exe}-{pid}.json' -- ./server
  hotprobe run --probes probes.toml --adaptive 0 -- ./bench
  hotprobe run --modules 'main,*libcache*' -- ./server";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Inline,
    Kernel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogArg {
    Error,
    Warn,
    Info,
    Debug,
}

fn parse_bool_arg(s: &str) -> std::result::Result<bool, String> {
    parse_bool(s).ok_or_else(|| format!("`{s}` is not a boolean (use 1/0, true/false, yes/no)"))
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct RunArgs {
    /// The agent library [default: libhotprobe.so next to the hotprobe binary].
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// The agent's TOML config file (HOTPROBE_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Globs over demangled function names to probe (repeatable, or comma-separated).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Globs over function names not to probe.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Globs over loaded object paths to probe; `main` is the executable.
    #[arg(long, value_name = "GLOB")]
    pub modules: Vec<String>,
    /// Snapshot path template: {exe}, {pid}, {ts} expand.
    #[arg(long, short, value_name = "TEMPLATE")]
    pub output: Option<String>,
    /// A probe set written by `hotprobe refine`: exactly these functions.
    #[arg(long, value_name = "FILE")]
    pub probes: Option<PathBuf>,
    /// Probe mechanism: in-process patching (inline) or perf_event uprobes (kernel).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Disable cold probes while the program runs (1) or keep every probe (0).
    #[arg(long, value_name = "BOOL", value_parser = parse_bool_arg)]
    pub adaptive: Option<bool>,
    /// The agent's log level (messages on stderr, prefixed `hotprobe:`).
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log: Option<LogArg>,
    /// Child processes to stay active in: all, none, or globs over executable names.
    #[arg(long, value_name = "WHICH")]
    pub follow: Option<String>,
    /// Also write a snapshot every SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub interval: Option<f64>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Finds the agent: `--agent`, else `libhotprobe.so` in `exe_dir`.
pub fn find_agent(explicit: Option<&Path>, exe_dir: Option<&Path>) -> Result<PathBuf> {
    let fail = |m: String| CliError::with_code(EXIT_CANNOT_START, m);
    let path = match (explicit, exe_dir) {
        (Some(p), _) => {
            if !p.is_file() {
                return Err(fail(format!("--agent {}: no such file", p.display())));
            }
            p.to_path_buf()
        }
        (None, Some(dir)) => {
            let p = dir.join(AGENT_FILE);
            if !p.is_file() {
                return Err(fail(format!(
                    "the agent {AGENT_FILE} is not next to hotprobe (looked for {}); build it with `cargo build --release --workspace`, or pass --agent PATH",
                    p.display()
                )));
            }
            p
        }
        (None, None) => {
            return Err(fail(format!(
                "cannot tell where hotprobe is installed to find {AGENT_FILE}; pass --agent PATH"
            )))
        }
    };
    std::fs::canonicalize(&path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// The variables to set for the command (in a stable order).
pub fn environment(
    args: &RunArgs,
    agent: &Path,
    existing_preload: Option<&OsStr>,
) -> Result<BTreeMap<String, OsString>> {
    let fail = |m: String| CliError::with_code(EXIT_CANNOT_START, m);
    let mut env = BTreeMap::new();
    if agent.to_string_lossy().contains([':', ' ', '\t', '\n']) {
        return Err(fail(format!("the agent path {} holds a colon or a space, which LD_PRELOAD cannot carry; move or link it elsewhere", agent.display())));
    }
    let mut preload = agent.as_os_str().to_owned();
    if let Some(old) = existing_preload.filter(|v| !v.is_empty()) {
        let already =
            old.to_string_lossy().split([':', ' ']).next() == Some(&*agent.to_string_lossy());
        if already {
            preload = old.to_owned();
        } else {
            preload.push(":");
            preload.push(old);
        }
    }
    env.insert("LD_PRELOAD".to_string(), preload);
    if let Some(c) = &args.config {
        if !c.is_file() {
            return Err(fail(format!("--config {}: no such file", c.display())));
        }
        env.insert("HOTPROBE_CONFIG".into(), absolute(c).into_os_string());
    }
    if let Some(p) = &args.probes {
        ProbeSet::read(p).map_err(|e| fail(e.to_string()))?;
        env.insert("HOTPROBE_PROBESET".into(), absolute(p).into_os_string());
    }
    for (var, values) in [
        ("HOTPROBE_INCLUDE", &args.include),
        ("HOTPROBE_EXCLUDE", &args.exclude),
        ("HOTPROBE_MODULES", &args.modules),
    ] {
        if !values.is_empty() {
            env.insert(var.into(), values.join(",").into());
        }
    }
    if let Some(o) = &args.output {
        env.insert("HOTPROBE_OUTPUT".into(), o.into());
    }
    if let Some(b) = args.backend {
        env.insert(
            "HOTPROBE_BACKEND".into(),
            if b == BackendArg::Inline {
                "inline"
            } else {
                "kernel"
            }
            .into(),
        );
    }
    if let Some(a) = args.adaptive {
        env.insert("HOTPROBE_ADAPTIVE".into(), if a { "1" } else { "0" }.into());
    }
    if let Some(l) = args.log {
        let level = match l {
            LogArg::Error => "error",
            LogArg::Warn => "warn",
            LogArg::Info => "info",
            LogArg::Debug => "debug",
        };
        env.insert("HOTPROBE_LOG".into(), level.into());
    }
    if let Some(f) = &args.follow {
        env.insert("HOTPROBE_FOLLOW".into(), f.into());
    }
    if let Some(i) = args.interval {
        env.insert("HOTPROBE_INTERVAL".into(), i.to_string().into());
    }
    Ok(env)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Checks the settings the agent will see, so mistakes show before the run
/// (the agent itself fails open and would only log them).
pub fn check_settings(env: &BTreeMap<String, OsString>) -> Result<()> {
    let lookup = |k: &str| {
        env.get(k)
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| std::env::var(k).ok())
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Settings::load(&lookup, &cwd)
        .map(|_| ())
        .map_err(|e| CliError::with_code(EXIT_CANNOT_START, e.to_string()))
}

static CHILD: AtomicI32 = AtomicI32::new(0);
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let pid = CHILD.load(Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    // A terminal's ^C reaches the whole foreground group, the command included.
    if pid > 0 && !from_kernel {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction with our handler and an empty mask is valid.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                forward;
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Dies by `sig` as the command did (no core file of hotprobe's own).
fn die_by(sig: libc::c_int) -> i32 {
    // SAFETY: plain libc calls on our own process.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    // A signal whose default is not to die (it cannot have killed the command).
    128 + sig
}

pub fn run(args: &RunArgs) -> Result<i32> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let agent = find_agent(args.agent.as_deref(), exe_dir.as_deref())?;
    let env = environment(args, &agent, std::env::var_os("LD_PRELOAD").as_deref())?;
    check_settings(&env)?;
    let Some((program, rest)) = args.command.split_first() else {
        return Err(CliError::usage(
            "no command to run; write `hotprobe run [OPTIONS] -- CMD [ARGS…]`",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.args(rest).envs(&env);
    install_forwarding();
    let mut child = cmd.spawn().map_err(|e| {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            _ => EXIT_CANNOT_EXEC,
        };
        CliError::with_code(
            code,
            format!("cannot run `{}`: {e}", program.to_string_lossy()),
        )
    })?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait().map_err(|e| {
        CliError::with_code(EXIT_CANNOT_START, format!("waiting for the command: {e}"))
    })?;
    CHILD.store(0, Ordering::SeqCst);
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(code),
        (None, Some(sig)) => Ok(die_by(sig)),
        (None, None) => Ok(EXIT_CANNOT_START),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(argv: &[&str]) -> RunArgs {
        Wrap::try_parse_from(std::iter::once("run").chain(argv.iter().copied()))
            .unwrap()
            .run
    }

    #[test]
    fn agent_is_found_next_to_the_binary_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_agent(None, Some(dir.path())).unwrap_err();
        assert_eq!(e.code, EXIT_CANNOT_START);
        assert!(
            e.message.contains("libhotprobe.so is not next to hotprobe"),
            "{e}"
        );
        std::fs::write(dir.path().join(AGENT_FILE), b"").unwrap();
        assert!(find_agent(None, Some(dir.path()))
            .unwrap()
            .ends_with(AGENT_FILE));
        assert!(find_agent(Some(&dir.path().join("nope.so")), None)
            .unwrap_err()
            .message
            .contains("no such file"));
    }

    #[test]
    fn variables_follow_the_flags() {
        let a = args(&[
            "--include",
            "a*",
            "--include",
            "b*",
            "--modules",
            "main",
            "--output",
            "o-{pid}.json",
            "--backend",
            "kernel",
            "--adaptive",
            "no",
            "--log",
            "debug",
            "--",
            "prog",
            "-x",
        ]);
        assert_eq!(
            a.command,
            vec![OsString::from("prog"), OsString::from("-x")]
        );
        let env = environment(
            &a,
            Path::new("/opt/libhotprobe.so"),
            Some(OsStr::new("/usr/lib/other.so")),
        )
        .unwrap();
        assert_eq!(env["LD_PRELOAD"], "/opt/libhotprobe.so:/usr/lib/other.so");
        assert_eq!(env["HOTPROBE_INCLUDE"], "a*,b*");
        assert_eq!(env["HOTPROBE_MODULES"], "main");
        assert_eq!(env["HOTPROBE_OUTPUT"], "o-{pid}.json");
        assert_eq!(env["HOTPROBE_BACKEND"], "kernel");
        assert_eq!(env["HOTPROBE_ADAPTIVE"], "0");
        assert_eq!(env["HOTPROBE_LOG"], "debug");
        assert!(!env.contains_key("HOTPROBE_EXCLUDE"));
        let again = environment(
            &a,
            Path::new("/opt/libhotprobe.so"),
            Some(OsStr::new("/opt/libhotprobe.so:/x.so")),
        )
        .unwrap();
        assert_eq!(again["LD_PRELOAD"], "/opt/libhotprobe.so:/x.so");
    }

    #[test]
    fn bad_probe_set_and_config_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let set = dir.path().join("p.toml");
        std::fs::write(&set, "schema = \"hotprobe.probeset/9\"\n").unwrap();
        let a = args(&["--probes", set.to_str().unwrap(), "--", "true"]);
        let e = environment(&a, Path::new("/a.so"), None).unwrap_err();
        assert!(
            e.message.contains("p.toml:1") && e.message.contains("schema"),
            "{e}"
        );
        let a = args(&["--config", "/no/such.toml", "--", "true"]);
        assert!(environment(&a, Path::new("/a.so"), None)
            .unwrap_err()
            .message
            .contains("no such file"));
    }
}

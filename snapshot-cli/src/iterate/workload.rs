//! The workload `hotprobe iterate` runs: from a TOML file (`--workload`),
//! overridden by command-line flags, checked into a [`Plan`].

use crate::converge::Thresholds;
use crate::error::{CliError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Seconds to wait for the server to become ready, by default.
pub const DEFAULT_READY_TIMEOUT_S: f64 = 30.0;
/// Seconds the server gets to stop after the stop signal or command.
pub const DEFAULT_STOP_TIMEOUT_S: f64 = 10.0;
/// Iterations at most, by default.
pub const DEFAULT_ITERATIONS: usize = 5;
/// The loop never stops early before this many iterations.
pub const MIN_ITERATIONS_BEFORE_EARLY_STOP: usize = 3;

/// A command: a string split into words like a shell does (quotes and
/// backslashes; no variables, globs, pipes or redirections), or an array of
/// words.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CommandLine {
    Line(String),
    Words(Vec<String>),
}

impl CommandLine {
    /// The words; `what` names the command in errors.
    pub fn words(&self, what: &str) -> Result<Vec<String>> {
        let words = match self {
            CommandLine::Line(s) => {
                split_words(s).map_err(|e| CliError::usage(format!("{what} `{s}`: {e}")))?
            }
            CommandLine::Words(w) => w.clone(),
        };
        if words.is_empty() || words[0].is_empty() {
            return Err(CliError::usage(format!("{what} is empty")));
        }
        Ok(words)
    }
}

/// The words of a command as one line that [`split_words`] reads back the
/// same: a word that is empty or holds anything but `[A-Za-z0-9_./:=@%+,-]`
/// is single-quoted (`'` as `'\''`). For messages, so that `--save ''`
/// does not show as `--save`.
pub fn join_words(words: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(safe) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a command line into words: whitespace separates, `'…'` keeps
/// everything, `"…"` keeps everything but `\"` and `\\`, `\` outside quotes
/// escapes the next character.
pub fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("a backslash ends the line".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The workload file (every key optional; command-line flags win).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    /// One command under the agent: the whole workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    /// A regular expression over the load generator's (or the command's)
    /// output; its first capture group is the throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_regex: Option<String>,
    /// Extra environment variables for every command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadFile>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub agent: AgentFile,
    #[serde(default, skip_serializing_if = "is_default")]
    pub refine: RefineFile,
    #[serde(default, rename = "loop", skip_serializing_if = "is_default")]
    pub looping: LoopFile,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    /// Ready when this command exits 0 (tried every 25 ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_command: Option<CommandLine>,
    /// Ready when this TCP port accepts a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_port: Option<u16>,
    /// The host of `ready_port` (default 127.0.0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_timeout_s: Option<f64>,
    /// A signal name (`SIGTERM`, `TERM`, `INT`…) or number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Stops the server instead of a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_command: Option<CommandLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    /// The load (or the single command) fails when it runs longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefineFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_inherent_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_chance: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoopFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
    /// Run every iteration even when the hot set settles earlier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_early_stop: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_jaccard: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_spearman: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Rows of the final hotspot table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
}

impl WorkloadFile {
    /// Reads a workload file; errors name the file, line and key.
    pub fn read(path: &Path) -> Result<WorkloadFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::failure(format!("{}: cannot read: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            CliError::failure(format!(
                "{}{}: {}",
                path.display(),
                line.map_or(String::new(), |l| format!(":{l}")),
                e.message()
            ))
        })
    }

    /// The file as TOML (what `workload.toml` in the results holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// How readiness is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Command(Vec<String>),
    Port { host: String, port: u16 },
}

/// How the server is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Signal(i32),
    Command(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub command: Vec<String>,
    pub ready: Ready,
    pub ready_timeout: Duration,
    pub stop: Stop,
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// One command under the agent.
    Single { command: Vec<String> },
    /// A server under the agent and a load generator outside it.
    Server { server: Server, load: Vec<String> },
}

/// Everything the loop needs, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub load_timeout: Option<Duration>,
    pub throughput: Option<regex::Regex>,
    pub env: BTreeMap<String, String>,
    pub agent: AgentFile,
    pub refine: RefineFile,
    pub iterations: usize,
    pub early_stop: bool,
    pub thresholds: Thresholds,
    pub out: Option<PathBuf>,
    pub rows: usize,
}

/// A signal by name (`SIGTERM`, `term`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let sig = match name {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => {
            return Err(CliError::usage(format!(
                "`{s}` is not a signal (use TERM, INT, HUP, QUIT, KILL, USR1, USR2 or a number)"
            )))
        }
    };
    Ok(sig)
}

/// `PORT` or `HOST:PORT`.
pub fn parse_address(s: &str) -> Result<(Option<String>, u16)> {
    let bad = || CliError::usage(format!("--ready-port `{s}`: expected PORT or HOST:PORT"));
    match s.rsplit_once(':') {
        Some((host, port)) => Ok((
            Some(host.trim_matches(['[', ']']).to_string()),
            port.parse().map_err(|_| bad())?,
        )),
        None => Ok((None, s.parse().map_err(|_| bad())?)),
    }
}

fn seconds(v: Option<f64>, default: f64, what: &str) -> Result<Duration> {
    let v = v.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 {
        return Err(CliError::usage(format!(
            "{what} must be a number of seconds above 0, not {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl WorkloadFile {
    /// Checks the merged settings into a plan.
    pub fn plan(&self) -> Result<Plan> {
        let load_command = self.load.as_ref().and_then(|l| l.command.as_ref());
        let workload = match (&self.command, &self.server, load_command) {
            (Some(c), None, None) => Workload::Single {
                command: c.words("the command")?,
            },
            (Some(_), _, _) => {
                return Err(CliError::usage(
                    "give either one command (`-- CMD…` or `command`) or a server and a load, not both",
                ))
            }
            (None, Some(s), Some(l)) => {
                let command = s
                    .command
                    .as_ref()
                    .ok_or_else(|| CliError::usage("the server has no command (--server CMD)"))?
                    .words("the server command")?;
                let load = l.words("the load command")?;
                let ready = match (&s.ready_command, s.ready_port) {
                    (Some(c), None) => Ready::Command(c.words("the readiness command")?),
                    (None, Some(port)) => Ready::Port {
                        host: s.ready_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                        port,
                    },
                    (Some(_), Some(_)) => {
                        return Err(CliError::usage(
                            "give one readiness check: --ready-cmd or --ready-port, not both",
                        ))
                    }
                    (None, None) => {
                        return Err(CliError::usage(
                            "a server needs a readiness check: --ready-cmd CMD (ready when it exits 0) or --ready-port [HOST:]PORT (ready when it accepts a connection)",
                        ))
                    }
                };
                let stop = match (&s.stop_command, &s.stop_signal) {
                    (Some(c), None) => Stop::Command(c.words("the stop command")?),
                    (None, sig) => Stop::Signal(parse_signal(sig.as_deref().unwrap_or("TERM"))?),
                    (Some(_), Some(_)) => {
                        return Err(CliError::usage(
                            "give one way to stop the server: --stop-signal or --stop-cmd, not both",
                        ))
                    }
                };
                Workload::Server {
                    server: Server {
                        command,
                        ready,
                        ready_timeout: seconds(
                            s.ready_timeout_s,
                            DEFAULT_READY_TIMEOUT_S,
                            "--ready-timeout",
                        )?,
                        stop,
                        stop_timeout: seconds(
                            s.stop_timeout_s,
                            DEFAULT_STOP_TIMEOUT_S,
                            "--stop-timeout",
                        )?,
                    },
                    load,
                }
            }
            (None, Some(_), None) => {
                return Err(CliError::usage(
                    "a server needs a load command (--load CMD) that drives it",
                ))
            }
            (None, None, Some(_)) => {
                return Err(CliError::usage(
                    "a load command needs a server (--server CMD); for one program, give it after `--`",
                ))
            }
            (None, None, None) => {
                return Err(CliError::usage(
                    "no workload: give `-- CMD…`, or --server CMD with --ready-cmd/--ready-port and --load CMD, or --workload FILE",
                ))
            }
        };
        let throughput = match &self.throughput_regex {
            Some(r) => {
                let re = regex::Regex::new(r)
                    .map_err(|e| CliError::usage(format!("--throughput-regex `{r}`: {e}")))?;
                if re.captures_len() < 2 {
                    return Err(CliError::usage(format!(
                        "--throughput-regex `{r}` has no capture group: put the number in (…)"
                    )));
                }
                Some(re)
            }
            None => None,
        };
        let load_timeout = match self.load.as_ref().and_then(|l| l.timeout_s) {
            Some(v) => Some(seconds(Some(v), v, "--load-timeout")?),
            None => None,
        };
        let l = &self.looping;
        let thresholds = Thresholds {
            min_jaccard: l.min_jaccard.unwrap_or(Thresholds::default().min_jaccard),
            min_spearman: l.min_spearman.unwrap_or(Thresholds::default().min_spearman),
        };
        for (name, v) in [
            ("--min-jaccard", thresholds.min_jaccard),
            ("--min-spearman", thresholds.min_spearman),
        ] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(CliError::usage(format!(
                    "{name} {v} is out of range (-1 to 1)"
                )));
            }
        }
        let iterations = l.iterations.unwrap_or(DEFAULT_ITERATIONS);
        if iterations == 0 {
            return Err(CliError::usage("--iterations must be at least 1"));
        }
        if let Some(s) = self.refine.min_share {
            if !(0.0..=100.0).contains(&s) {
                return Err(CliError::usage(format!(
                    "--min-share {s} is not a percentage (0 to 100)"
                )));
            }
        }
        if self
            .refine
            .min_inherent_us
            .is_some_and(|v| !v.is_finite() || v < 0.0)
        {
            return Err(CliError::usage(
                "--min-inherent-us must be a number of microseconds ≥ 0",
            ));
        }
        Ok(Plan {
            workload,
            load_timeout,
            throughput,
            env: self.env.clone(),
            agent: self.agent.clone(),
            refine: self.refine.clone(),
            iterations,
            early_stop: !l.no_early_stop.unwrap_or(false),
            thresholds,
            out: l.out.clone(),
            rows: l.rows.unwrap_or(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\" \n" f\ g  "#).unwrap(),
            vec!["a", "b c", r#"d "e" \n"#, "f g"]
        );
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
        assert!(split_words("a \\").is_err());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn words_join_so_they_split_back() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            join_words(&w(&[
                "redis-server",
                "--port",
                "7000",
                "--save",
                "",
                "--appendonly",
                "no"
            ])),
            "redis-server --port 7000 --save '' --appendonly no"
        );
        for v in [
            w(&["a", "b c", "it's", "$HOME", "x\\y", "\"q\"", "", "*"]),
            w(&["sh", "-c", "echo 'hi' | wc -c"]),
            w(&[]),
        ] {
            assert_eq!(
                split_words(&join_words(&v)).unwrap(),
                v,
                "{}",
                join_words(&v)
            );
        }
    }

    #[test]
    fn signals_and_addresses() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(parse_address("6379").unwrap(), (None, 6379));
        assert_eq!(
            parse_address("localhost:80").unwrap(),
            (Some("localhost".into()), 80)
        );
        assert!(parse_address("x:y").is_err());
    }

    #[test]
    fn file_describes_a_server_and_load() {
        let f: WorkloadFile = toml::from_str(
            r#"
throughput_regex = '([0-9.]+) requests per second'
[server]
command = ["redis-server", "--port", "7000"]
ready_port = 7000
stop_signal = "INT"
[load]
command = "redis-benchmark -p 7000 -q"
[agent]
modules = ["main"]
[loop]
iterations = 4
"#,
        )
        .unwrap();
        let p = f.plan().unwrap();
        match &p.workload {
            Workload::Server { server, load } => {
                assert_eq!(server.command[0], "redis-server");
                assert_eq!(
                    server.ready,
                    Ready::Port {
                        host: "127.0.0.1".into(),
                        port: 7000
                    }
                );
                assert_eq!(server.stop, Stop::Signal(libc::SIGINT));
                assert_eq!(load, &vec!["redis-benchmark", "-p", "7000", "-q"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.iterations, 4);
        assert!(p.early_stop);
        let again: WorkloadFile = toml::from_str(&f.to_toml()).unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn mistakes_are_named() {
        let e = toml::from_str::<WorkloadFile>("[server]\nready_prot = 1\n").unwrap_err();
        assert!(e.to_string().contains("ready_prot"), "{e}");
        let plan = |t: &str| {
            toml::from_str::<WorkloadFile>(t)
                .unwrap()
                .plan()
                .unwrap_err()
        };
        assert!(plan("").message.contains("no workload"));
        assert!(plan("[server]\ncommand='s'\n[load]\ncommand='l'\n")
            .message
            .contains("readiness"));
        assert!(plan("command='x'\nthroughput_regex='[0-9]+'\n")
            .message
            .contains("capture group"));
        assert!(plan("command='x'\n[loop]\niterations=0\n")
            .message
            .contains("at least 1"));
    }
}

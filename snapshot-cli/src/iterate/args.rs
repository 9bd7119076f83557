//! `hotprobe iterate`'s command line, and the workload file with the flags
//! laid over it.

use super::workload::{parse_address, CommandLine, LoadFile, ServerFile, WorkloadFile};
use crate::error::{CliError, Result};
use std::ffi::OsString;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
The workload is one command under the agent (after `--`), or a server under
the agent with a readiness check and a load generator that runs outside it:
each iteration starts the server, waits until it is ready, runs the load,
and stops the server (its stop signal, SIGTERM by default, or a stop
command; after --stop-timeout, SIGKILL). Commands given as one string are
split into words like a shell does (quotes, backslashes) but run without a
shell: write `sh -c '…'` for pipes or variables.

Iteration 1 probes every function --modules/--include/--exclude/--config
select; iteration N+1 runs with the probe set `hotprobe refine` writes from
iteration N (same policy flags). After each iteration from the third on,
the loop stops once the hot set has settled: Jaccard index of the last two
hot sets ≥ --min-jaccard (0.9) and Spearman's rank correlation of the
inherent totals of the functions hot in either ≥ --min-spearman (0.9), as
`hotprobe converge` computes them, and the next refinement would bring no
function back for another try.

Results (--out DIR, default hotprobe-results/<date-time>/): workload.toml
(the effective workload), iter-N/ with the snapshots ({exe}-{pid}.json),
probes.toml (the set it ran with), <role>.stdout/.stderr of each command
(command, server, ready, load, stop) and iteration.toml (seconds per phase,
throughput, how the server ended); at the end summary.md and flamegraph.svg.
stdout gets the per-iteration table (with the load's throughput when
--throughput-regex is given: every match's first group), the convergence
table and the hotspot table of the last iteration. A failure (the server
exits or is not ready in time, the load or command fails) keeps the results
so far and exits 1; SIGINT/SIGTERM stops the workload and exits 130.

Workload file (--workload FILE, TOML; every key optional, flags win):

  command = \"./kvstore --bench 200000\"        # one command, or:
  throughput_regex = '([0-9.]+) requests per second'
  env = { MALLOC_ARENA_MAX = \"2\" }           # for every command
  [server]
  command = [\"redis-server\", \"--port\", \"7000\", \"--save\", \"\"]
  ready_port = 7000                 # or ready_command = \"redis-cli -p 7000 ping\"
  ready_host = \"127.0.0.1\"
  ready_timeout_s = 30
  stop_signal = \"SIGTERM\"           # or stop_command = \"redis-cli -p 7000 shutdown\"
  stop_timeout_s = 10
  [load]
  command = \"redis-benchmark -p 7000 -t set,get -n 100000 -q\"
  timeout_s = 600
  [agent]                           # passed on as `hotprobe run` does
  modules = [\"main\"]
  include = [\"*\"]
  exclude = []
  config = \"hotprobe.toml\"
  follow = \"all\"
  [refine]                          # the refine policy (hotprobe refine --help)
  top = 200
  min_inherent_us = 0.5
  min_share = 1.0
  keep = [\"processCommand\"]
  drop = []
  second_chance = true              # the default; false: refine step 7 off
  [loop]
  iterations = 5
  no_early_stop = false
  min_jaccard = 0.9
  min_spearman = 0.9
  out = \"results/redis\"
  rows = 20                         # rows of the final hotspot table

Examples:
  hotprobe iterate -- ./kvstore --bench 200000
  hotprobe iterate --server 'redis-server --port 7000 --save \"\"' --ready-port 7000 \\
      --load 'redis-benchmark -p 7000 -t set,get -n 100000 -q' \\
      --throughput-regex '([0-9.]+) requests per second'
  hotprobe iterate --workload redis.toml --iterations 3 --out results/";

#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct IterateArgs {
    /// A TOML workload file (see below); flags override its keys.
    #[arg(long, short, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// The server command, run under the agent.
    #[arg(long, value_name = "CMD", help_heading = "Workload")]
    pub server: Option<String>,
    /// The server is ready when this command exits 0 (tried every 25 ms).
    #[arg(long, value_name = "CMD", help_heading = "Workload")]
    pub ready_cmd: Option<String>,
    /// The server is ready when this TCP port accepts a connection.
    #[arg(long, value_name = "[HOST:]PORT", help_heading = "Workload")]
    pub ready_port: Option<String>,
    /// Seconds the server gets to become ready [default: 30].
    #[arg(long, value_name = "SECS", help_heading = "Workload")]
    pub ready_timeout: Option<f64>,
    /// The load generator, run (without the agent) once the server is ready.
    #[arg(long, value_name = "CMD", help_heading = "Workload")]
    pub load: Option<String>,
    /// Stop the load (or the single command) and fail after this many seconds.
    #[arg(long, value_name = "SECS", help_heading = "Workload")]
    pub load_timeout: Option<f64>,
    /// Signal that stops the server (sent to its process group) [default: SIGTERM].
    #[arg(long, value_name = "SIG", help_heading = "Workload")]
    pub stop_signal: Option<String>,
    /// Command that stops the server, instead of a signal.
    #[arg(long, value_name = "CMD", help_heading = "Workload")]
    pub stop_cmd: Option<String>,
    /// Seconds the server gets to exit after being told to stop, then SIGKILL [default: 10].
    #[arg(long, value_name = "SECS", help_heading = "Workload")]
    pub stop_timeout: Option<f64>,
    /// Regex over the load's output; its first capture group is the throughput.
    #[arg(long, value_name = "REGEX", help_heading = "Workload")]
    pub throughput_regex: Option<String>,

    /// At most this many iterations [default: 5].
    #[arg(long, short = 'n', value_name = "N", help_heading = "Loop")]
    pub iterations: Option<usize>,
    /// Run every iteration even when the hot set settles earlier.
    #[arg(long, help_heading = "Loop")]
    pub no_early_stop: bool,
    /// Jaccard index of the last two hot sets needed to call it settled [default: 0.9].
    #[arg(long, value_name = "X", help_heading = "Loop")]
    pub min_jaccard: Option<f64>,
    /// Rank correlation of the last two iterations needed to call it settled [default: 0.9].
    #[arg(long, value_name = "X", help_heading = "Loop")]
    pub min_spearman: Option<f64>,
    /// The results directory [default: hotprobe-results/<date-time>].
    #[arg(long, short, value_name = "DIR", help_heading = "Loop")]
    pub out: Option<PathBuf>,
    /// Rows of the final hotspot table [default: 20].
    #[arg(long, value_name = "N", help_heading = "Loop")]
    pub rows: Option<usize>,

    /// The agent library [default: libhotprobe.so next to the hotprobe binary].
    #[arg(long, value_name = "PATH", help_heading = "Agent")]
    pub agent: Option<PathBuf>,
    /// The agent's TOML config file (HOTPROBE_CONFIG).
    #[arg(long, value_name = "FILE", help_heading = "Agent")]
    pub config: Option<PathBuf>,
    /// Globs over loaded object paths to probe; `main` is the executable.
    #[arg(long, value_name = "GLOB", help_heading = "Agent")]
    pub modules: Vec<String>,
    /// Globs over demangled function names to probe.
    #[arg(long, value_name = "GLOB", help_heading = "Agent")]
    pub include: Vec<String>,
    /// Globs over function names not to probe.
    #[arg(long, value_name = "GLOB", help_heading = "Agent")]
    pub exclude: Vec<String>,
    /// Child processes the agent stays active in: all, none, or globs over executable names.
    #[arg(long, value_name = "WHICH", help_heading = "Agent")]
    pub follow: Option<String>,

    /// Refine: keep at most N probes, those with the largest inherent total.
    #[arg(long, value_name = "N", help_heading = "Refine")]
    pub top: Option<usize>,
    /// Refine: keep active functions whose inherent time per call is at least this (µs).
    #[arg(long, value_name = "US", help_heading = "Refine")]
    pub min_inherent_us: Option<f64>,
    /// Refine: keep active functions with at least this percentage of all inherent time [default: 1].
    #[arg(long, value_name = "PCT", help_heading = "Refine")]
    pub min_share: Option<f64>,
    /// Refine: always keep functions matching these globs.
    #[arg(long, value_name = "GLOB", help_heading = "Refine")]
    pub keep: Vec<String>,
    /// Refine: drop functions matching these globs.
    #[arg(long, value_name = "GLOB", help_heading = "Refine")]
    pub drop: Vec<String>,
    /// Refine: bring functions back for another try (hotprobe refine --help,
    /// step 7; the default). The loop does not stop while any function
    /// would come back (step 6 or 7).
    #[arg(long, help_heading = "Refine")]
    pub second_chance: bool,
    /// Refine: step 7 off.
    #[arg(long, help_heading = "Refine", conflicts_with = "second_chance")]
    pub no_second_chance: bool,

    /// The single command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

fn line(s: &Option<String>) -> Option<CommandLine> {
    s.clone().map(CommandLine::Line)
}

/// The workload file (or nothing) with the flags laid over it.
pub fn merged_workload(args: &IterateArgs) -> Result<WorkloadFile> {
    let mut f = match &args.workload {
        Some(p) => WorkloadFile::read(p)?,
        None => WorkloadFile::default(),
    };
    if !args.command.is_empty() {
        let words = args
            .command
            .iter()
            .map(|w| {
                w.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| CliError::usage(format!("the command word {w:?} is not UTF-8")))
            })
            .collect::<Result<Vec<_>>>()?;
        f.command = Some(CommandLine::Words(words));
    }
    let server_flags = args.server.is_some()
        || args.ready_cmd.is_some()
        || args.ready_port.is_some()
        || args.ready_timeout.is_some()
        || args.stop_signal.is_some()
        || args.stop_cmd.is_some()
        || args.stop_timeout.is_some();
    if server_flags {
        let s = f.server.get_or_insert_with(ServerFile::default);
        s.command = line(&args.server).or(s.command.take());
        if let Some(c) = line(&args.ready_cmd) {
            s.ready_command = Some(c);
            s.ready_port = None;
        }
        if let Some(a) = &args.ready_port {
            let (host, port) = parse_address(a)?;
            s.ready_port = Some(port);
            s.ready_host = host.or(s.ready_host.take());
            s.ready_command = None;
        }
        s.ready_timeout_s = args.ready_timeout.or(s.ready_timeout_s);
        if let Some(sig) = &args.stop_signal {
            s.stop_signal = Some(sig.clone());
            s.stop_command = None;
        }
        if let Some(c) = line(&args.stop_cmd) {
            s.stop_command = Some(c);
            s.stop_signal = None;
        }
        s.stop_timeout_s = args.stop_timeout.or(s.stop_timeout_s);
    }
    if args.load.is_some() || args.load_timeout.is_some() {
        let l = f.load.get_or_insert_with(LoadFile::default);
        l.command = line(&args.load).or(l.command.take());
        l.timeout_s = args.load_timeout.or(l.timeout_s);
    }
    f.throughput_regex = args.throughput_regex.clone().or(f.throughput_regex);
    let a = &mut f.agent;
    a.agent = args.agent.clone().or(a.agent.take());
    a.config = args.config.clone().or(a.config.take());
    a.follow = args.follow.clone().or(a.follow.take());
    for (flag, key) in [
        (&args.modules, &mut a.modules),
        (&args.include, &mut a.include),
        (&args.exclude, &mut a.exclude),
    ] {
        if !flag.is_empty() {
            *key = flag.clone();
        }
    }
    let r = &mut f.refine;
    r.top = args.top.or(r.top);
    if args.second_chance {
        r.second_chance = Some(true);
    }
    if args.no_second_chance {
        r.second_chance = Some(false);
    }
    r.min_inherent_us = args.min_inherent_us.or(r.min_inherent_us);
    r.min_share = args.min_share.or(r.min_share);
    for (flag, key) in [(&args.keep, &mut r.keep), (&args.drop, &mut r.drop)] {
        if !flag.is_empty() {
            *key = flag.clone();
        }
    }
    let l = &mut f.looping;
    l.iterations = args.iterations.or(l.iterations);
    if args.no_early_stop {
        l.no_early_stop = Some(true);
    }
    l.min_jaccard = args.min_jaccard.or(l.min_jaccard);
    l.min_spearman = args.min_spearman.or(l.min_spearman);
    l.out = args.out.clone().or(l.out.take());
    l.rows = args.rows.or(l.rows);
    Ok(f)
}

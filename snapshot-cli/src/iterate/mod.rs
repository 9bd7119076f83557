//! `hotprobe iterate`: the measurement loop. Iteration 1 probes everything
//! the filters select; each next iteration runs with the probe set refined
//! from the one before, until the hot set has settled (or `--iterations`
//! ran). See [`AFTER_HELP`] for the workload file.

pub mod interrupt;
pub mod phases;
pub mod progress;
pub mod summary;
pub mod workload;

use crate::converge::{converge_dirs, Convergence};
use crate::error::{CliError, Result};
use crate::load::json_files_in;
use crate::refine::{self, RefineArgs};
use crate::run::{self, RunArgs};
use hotprobe_config::ProbeSet;
use interrupt::{signal_name, EXIT_INTERRUPTED};
use phases::{Env, Failure, Outcome, Phases, Ran};
use progress::{Phase, Progress};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use summary::{IterRecord, Summary};
use workload::{
    parse_address, CommandLine, LoadFile, Plan, ServerFile, Workload, WorkloadFile,
    MIN_ITERATIONS_BEFORE_EARLY_STOP,
};

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
hot sets ≥ --min-jaccard (0.9) and Spearman's rank correlation of inherent
totals ≥ --min-spearman (0.9), as `hotprobe converge` computes them.

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

/// `YYYYmmdd-HHMMSS` in local time.
fn timestamp() -> String {
    // SAFETY: time and localtime_r with valid pointers to our own storage.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    }
}

/// Creates the results directory; an existing one must be empty.
fn results_dir(out: Option<&Path>) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => {
            let base = PathBuf::from("hotprobe-results").join(timestamp());
            let mut d = base.clone();
            let mut n = 2;
            while d.exists() {
                d = PathBuf::from(format!("{}-{n}", base.display()));
                n += 1;
            }
            d
        }
    };
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .map_err(|e| CliError::failure(format!("{}: {e}", dir.display())))?
            .next()
            .is_none();
        if !empty {
            return Err(CliError::failure(format!(
                "{}: the results directory is not empty; choose another --out or remove it",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failure(format!("{}: cannot create: {e}", dir.display())))?;
    Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
}

fn describe_workload(w: &Workload) -> String {
    match w {
        Workload::Single { command } => command.join(" "),
        Workload::Server { server, load } => format!(
            "server `{}`, load `{}`",
            server.command.join(" "),
            load.join(" ")
        ),
    }
}

/// Writes the next iteration's probe set from `prev`; its entry count.
fn refine_into(prev: &Path, set: &Path, plan: &Plan) -> Outcome<usize> {
    let r = &plan.refine;
    let args = RefineArgs {
        snapshots: vec![prev.to_path_buf()],
        output: set.to_path_buf(),
        top: r.top,
        min_inherent_us: r.min_inherent_us,
        min_share: r.min_share.unwrap_or(1.0),
        keep: r.keep.clone(),
        drop: r.drop.clone(),
    };
    let mut sink = Vec::new();
    let mut log = Vec::new();
    refine::run(&args, &mut sink, &mut log)
        .map_err(|e| Failure::Error(format!("refining {}: {}", prev.display(), e.message)))?;
    let _ = std::fs::write(set.with_file_name("refine.log"), &log);
    let n = ProbeSet::read(set)
        .map_err(|e| Failure::Error(e.to_string()))?
        .probes
        .len();
    if n == 0 {
        return Err(Failure::Error(format!(
            "nothing to probe next: {} left no hot function and no active one above the refine thresholds (run the workload longer, or lower --min-inherent-us / --min-share)",
            prev.display()
        )));
    }
    Ok(n)
}

/// The agent's variables for one iteration.
fn agent_env(
    plan: &Plan,
    agent: &Path,
    dir: &Path,
    set: Option<&Path>,
) -> Result<std::collections::BTreeMap<String, OsString>> {
    let a = &plan.agent;
    let args = RunArgs {
        agent: None,
        config: a.config.clone(),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        modules: a.modules.clone(),
        output: Some(dir.join("{exe}-{pid}.json").display().to_string()),
        probes: set.map(Path::to_path_buf),
        backend: None,
        adaptive: None,
        log: None,
        follow: a.follow.clone(),
        interval: None,
        command: vec![],
    };
    let env = run::environment(&args, agent, std::env::var_os("LD_PRELOAD").as_deref())
        .map_err(|e| CliError::failure(e.message))?;
    run::check_settings(&env).map_err(|e| CliError::failure(e.message))?;
    Ok(env)
}

struct Loop<'a> {
    plan: &'a Plan,
    agent: PathBuf,
    out: PathBuf,
    progress: &'a Progress,
}

impl Loop<'_> {
    /// One iteration: refine (from the second on), then the workload.
    fn iteration(&self, n: usize, prev: Option<&Path>, rec: &mut IterRecord) -> Outcome<Ran> {
        let mut phases = Phases::new(self.progress);
        let result = self.iteration_phases(n, prev, rec, &mut phases);
        phases.end();
        rec.timings(&phases.done);
        result
    }

    fn iteration_phases(
        &self,
        n: usize,
        prev: Option<&Path>,
        rec: &mut IterRecord,
        phases: &mut Phases,
    ) -> Outcome<Ran> {
        let dir = rec.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::Error(format!("{}: cannot create: {e}", dir.display())))?;
        let set = dir.join("probes.toml");
        if let Some(prev) = prev {
            phases.enter(Phase::Refining);
            rec.probe_set = Some(refine_into(prev, &set, self.plan)?);
        }
        if let Some(sig) = interrupt::received() {
            return Err(Failure::Interrupted(sig));
        }
        let agent_env = agent_env(self.plan, &self.agent, &dir, (n > 1).then_some(&*set))
            .map_err(|e| Failure::Error(e.message))?;
        let remove: &[&str] = if n > 1 { &[] } else { &["HOTPROBE_PROBESET"] };
        let env = Env {
            agent: &agent_env,
            agent_remove: remove,
            extra: &self.plan.env,
        };
        match &self.plan.workload {
            Workload::Single { command } => {
                phases::run_single(command, self.plan.load_timeout, &dir, &env, phases)
            }
            Workload::Server { server, load } => {
                phases::run_server(server, load, self.plan.load_timeout, &dir, &env, phases)
            }
        }
    }

    /// Runs the iterations; the records and why it stopped early, if it failed.
    fn run(&self) -> (Vec<IterRecord>, Option<Convergence>, Option<Failure>) {
        let mut records: Vec<IterRecord> = Vec::new();
        let mut done: Vec<PathBuf> = Vec::new();
        let mut convergence = None;
        for n in 1..=self.plan.iterations {
            if let Some(sig) = interrupt::received() {
                return (records, convergence, Some(Failure::Interrupted(sig)));
            }
            self.progress.iteration(n);
            let mut rec = IterRecord {
                iteration: n,
                dir: self.out.join(format!("iter-{n}")),
                probe_set: None,
                snapshots: 0,
                seconds: Default::default(),
                total_seconds: 0.0,
                throughput: vec![],
                server_exit: None,
                failed: None,
            };
            let result = self.iteration(n, done.last().map(PathBuf::as_path), &mut rec);
            self.progress.idle();
            rec.snapshots = json_files_in(&rec.dir).map_or(0, |v| v.len());
            let failure = match result {
                Ok(ran) => {
                    rec.server_exit = ran.server_exit;
                    if let Some(re) = &self.plan.throughput {
                        rec.throughput = summary::throughput(re, &ran.output);
                    }
                    (rec.snapshots == 0).then(|| Failure::Error(format!(
                        "iteration {n} wrote no snapshot into {}: is the agent loaded (a dynamically linked program)? see the `hotprobe:` lines in its .stderr file there",
                        rec.dir.display()
                    )))
                }
                Err(f) => Some(f),
            };
            rec.failed = failure.as_ref().map(|f| match f {
                Failure::Interrupted(s) => format!("interrupted by {}", signal_name(*s)),
                Failure::Error(m) => m.clone(),
            });
            if let Err(e) = rec.write() {
                self.progress.note(&e.message);
            }
            records.push(rec);
            if failure.is_some() {
                return (records, convergence, failure);
            }
            done.push(self.out.join(format!("iter-{n}")));
            match converge_dirs(&done, self.plan.thresholds) {
                Ok(c) => {
                    self.note_iteration(n, &c);
                    let settled = c.settled;
                    convergence = Some(c);
                    if settled && self.plan.early_stop && n >= MIN_ITERATIONS_BEFORE_EARLY_STOP {
                        self.progress.note(&format!(
                            "the hot set has settled after {n} iterations; stopping"
                        ));
                        break;
                    }
                }
                Err(e) => return (records, convergence, Some(Failure::Error(e.message))),
            }
        }
        (records, convergence, None)
    }

    fn note_iteration(&self, n: usize, c: &Convergence) {
        let Some(it) = c.iterations.last() else {
            return;
        };
        let rec = format!(
            "iteration {n} done: {} snapshot{}, {} probes installed, {} hot",
            it.snapshots,
            if it.snapshots == 1 { "" } else { "s" },
            it.installed,
            it.hot
        );
        let cmp = match (it.jaccard, it.spearman) {
            (Some(j), Some(s)) => format!(
                "; against iteration {}: Jaccard {j:.3}, Spearman {s:.3}{}",
                n - 1,
                if c.settled { " (settled)" } else { "" }
            ),
            _ => String::new(),
        };
        self.progress.note(&format!("{rec}{cmp}"));
    }
}

pub fn run(args: &IterateArgs, out: &mut dyn Write) -> Result<i32> {
    let file = merged_workload(args)?;
    let plan = file.plan()?;
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let agent = run::find_agent(plan.agent.agent.as_deref(), exe_dir.as_deref())
        .map_err(|e| CliError::failure(e.message))?;
    if let Some(c) = &plan.agent.config {
        if !c.is_file() {
            return Err(CliError::failure(format!(
                "--config {}: no such file",
                c.display()
            )));
        }
    }
    let out_dir = results_dir(plan.out.as_deref())?;
    let _ = std::fs::write(out_dir.join("workload.toml"), file.to_toml());
    interrupt::install();
    let mut progress = Progress::new(plan.iterations);
    progress.note(&format!(
        "{} iteration{} at most of {}; results in {}",
        plan.iterations,
        if plan.iterations == 1 { "" } else { "s" },
        describe_workload(&plan.workload),
        out_dir.display()
    ));
    let lp = Loop {
        plan: &plan,
        agent,
        out: out_dir.clone(),
        progress: &progress,
    };
    let (records, convergence, failure) = lp.run();
    progress.finish();
    let stopped = failure.as_ref().map(|f| match f {
        Failure::Interrupted(s) => format!(
            "interrupted by {} in iteration {}; the workload was stopped",
            signal_name(*s),
            records.len().max(1)
        ),
        Failure::Error(m) => m.clone(),
    });
    let workload = describe_workload(&plan.workload);
    let summary = Summary {
        out_dir: &out_dir,
        workload: &workload,
        records: &records,
        convergence: convergence.as_ref(),
        rows: plan.rows,
        with_throughput: plan.throughput.is_some(),
        stopped: stopped.as_deref(),
    };
    if records.iter().any(|r| r.failed.is_none()) {
        if let Err(why) = summary.write_flamegraph() {
            eprintln!("hotprobe: no flame graph: {why}");
        }
    }
    summary.write_markdown()?;
    summary.print(out)?;
    out.flush()?;
    match failure {
        None => Ok(0),
        Some(Failure::Interrupted(s)) => Err(CliError::with_code(
            EXIT_INTERRUPTED,
            format!(
                "interrupted by {}; the workload was stopped; results so far in {}",
                signal_name(s),
                out_dir.display()
            ),
        )),
        Some(Failure::Error(m)) => Err(CliError::failure(format!(
            "{m}; results so far in {}",
            out_dir.display()
        ))),
    }
}

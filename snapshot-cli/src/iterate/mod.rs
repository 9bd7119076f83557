//! `hotprobe iterate`: the measurement loop. Iteration 1 probes everything
//! the filters select; each next iteration runs with the probe set refined
//! from the one before, until the hot set has settled (or `--iterations`
//! ran). See [`AFTER_HELP`] for the workload file.

pub mod args;
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
pub use args::{merged_workload, IterateArgs, AFTER_HELP};
use hotprobe_config::ProbeSet;
use interrupt::{signal_name, EXIT_INTERRUPTED};
use phases::{Env, Failure, Outcome, Phases, Ran};
use progress::{Phase, Progress};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use summary::{IterRecord, Summary};
use workload::{join_words, Plan, Workload, MIN_ITERATIONS_BEFORE_EARLY_STOP};

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

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn describe_workload(w: &Workload) -> String {
    match w {
        Workload::Single { command } => join_words(command),
        Workload::Server { server, load } => format!(
            "server `{}`, load `{}`",
            join_words(&server.command),
            join_words(load)
        ),
    }
}

/// How the loop refines the snapshots in `prev` into `set`.
fn refine_args(prev: &Path, set: &Path, plan: &Plan) -> RefineArgs {
    let r = &plan.refine;
    RefineArgs {
        snapshots: vec![prev.to_path_buf()],
        output: set.to_path_buf(),
        top: r.top,
        min_inherent_us: r.min_inherent_us,
        min_share: r.min_share.unwrap_or(1.0),
        keep: r.keep.clone(),
        drop: r.drop.clone(),
        second_chance: false,
        no_second_chance: !r.second_chance.unwrap_or(true),
    }
}

/// Functions the next refinement would bring back for another try: while
/// there are any, the loop has not reached a fixed point.
fn pending_chances(prev: &Path, plan: &Plan) -> Vec<String> {
    refine::compute(&refine_args(prev, Path::new("-"), plan))
        .map(|r| r.chances.iter().map(|c| c.func.display_name()).collect())
        .unwrap_or_default()
}

/// Writes the next iteration's probe set from `prev`; its entry count.
fn refine_into(prev: &Path, set: &Path, plan: &Plan) -> Outcome<usize> {
    let args = refine_args(prev, set, plan);
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
                        let back = pending_chances(done.last().unwrap(), self.plan);
                        if back.is_empty() {
                            self.progress.note(&format!(
                                "the hot set has settled after {n} iterations; stopping"
                            ));
                            break;
                        }
                        if n < self.plan.iterations {
                            self.progress.note(&format!(
                                "the hot set agrees with the last iteration's, but {} dropped earlier come{} back for another try ({}); going on",
                                plural(back.len(), "function"),
                                if back.len() == 1 { "s" } else { "" },
                                back.join(", ")
                            ));
                        }
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

//! `hotprobe converge`: has the hot set settled over the iterations?
//! [`converge_dirs`] is the library entry point `iterate` uses.

use crate::error::{CliError, Result};
use crate::load::load_light;
use crate::merge::{merge, FuncKey, Merged};
use crate::output::{color_enabled, ColorChoice, Style};
use crate::stats::{hot_set, inherent_rank_correlation, jaccard, reaches};
use crate::table::{Column, Table};
use hotprobe_config::snapshot::ProbeState;
use hotprobe_config::ProbeSet;
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const AFTER_HELP: &str = "\
Each directory is one iteration: its *.json snapshots and, if present, the
probes.toml it ran with. Per iteration: probes installed (functions not
rejected), the hot set, and against the previous iteration the Jaccard index
of the hot sets and Spearman's rank correlation of inherent totals over the
functions hot in either (the order of the hotspot table; 0 where absent or
under 1% of the run's inherent time, so that noise-level functions tie).
Both are compared as shown, to three decimals. The hot set has settled when
the last two iterations reach both --min-jaccard and --min-spearman.

Examples:
  hotprobe converge iter1/ iter2/ iter3/
  hotprobe converge iter*/ --min-jaccard 0.95 --check";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvergeFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ConvergeArgs {
    /// One directory per iteration, in order.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Jaccard index of the last two hot sets needed to call it settled.
    #[arg(long, value_name = "X", default_value_t = 0.9)]
    pub min_jaccard: f64,
    /// Rank correlation of the last two iterations needed to call it settled.
    #[arg(long, value_name = "X", default_value_t = 0.9)]
    pub min_spearman: f64,
    /// Exit 1 when the hot set has not settled.
    #[arg(long)]
    pub check: bool,
    #[arg(long, short, value_enum, default_value_t = ConvergeFormat::Table)]
    pub format: ConvergeFormat,
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// When the hot set counts as settled.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Thresholds {
    pub min_jaccard: f64,
    pub min_spearman: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_jaccard: 0.9,
            min_spearman: 0.9,
        }
    }
}

/// One iteration's row.
#[derive(Debug, Clone, Serialize)]
pub struct Iteration {
    pub dir: PathBuf,
    pub snapshots: usize,
    /// Functions not rejected.
    pub installed: usize,
    /// Entries of the probes.toml the iteration ran with, if it has one.
    pub probe_set: Option<usize>,
    pub hot: usize,
    /// Against the previous iteration.
    pub jaccard: Option<f64>,
    pub spearman: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    pub iterations: Vec<Iteration>,
    pub thresholds: Thresholds,
    /// The last two iterations meet both thresholds.
    pub settled: bool,
    /// The first iteration from which every step met the thresholds (0-based).
    pub settled_since: Option<usize>,
    pub verdict: String,
}

/// One iteration's merged snapshots and its probe-set size.
pub struct IterationData {
    pub dir: PathBuf,
    pub merged: Merged,
    pub probe_set: Option<usize>,
}

/// Reads an iteration directory.
pub fn read_iteration(dir: &Path) -> Result<IterationData> {
    if !dir.is_dir() {
        return Err(CliError::failure(format!(
            "{}: not a directory (converge takes one directory per iteration)",
            dir.display()
        )));
    }
    let merged = merge(load_light(&[dir.to_path_buf()])?);
    let set_path = dir.join("probes.toml");
    let probe_set = if set_path.is_file() {
        Some(ProbeSet::read(&set_path)?.probes.len())
    } else {
        None
    };
    Ok(IterationData {
        dir: dir.to_path_buf(),
        merged,
        probe_set,
    })
}

/// Reads the iterations and decides whether the hot set has settled.
pub fn converge_dirs(dirs: &[PathBuf], t: Thresholds) -> Result<Convergence> {
    let data: Vec<IterationData> = dirs
        .iter()
        .map(|d| read_iteration(d))
        .collect::<Result<_>>()?;
    Ok(converge(&data, t))
}

/// The computation, on iterations already read.
pub fn converge(data: &[IterationData], t: Thresholds) -> Convergence {
    let mut iterations = Vec::with_capacity(data.len());
    let mut meets = Vec::with_capacity(data.len());
    for (i, it) in data.iter().enumerate() {
        let m = &it.merged;
        let (jac, spear) = match i.checked_sub(1).map(|p| &data[p].merged) {
            Some(prev) => {
                let (hot_prev, hot_now) = (hot_set(prev), hot_set(m));
                let either: BTreeSet<FuncKey> = hot_prev.union(&hot_now).cloned().collect();
                (
                    Some(jaccard(&hot_prev, &hot_now)),
                    Some(inherent_rank_correlation(prev, m, Some(&either))),
                )
            }
            None => (None, None),
        };
        meets.push(
            jac.is_some_and(|j| reaches(j, t.min_jaccard))
                && spear.is_some_and(|s| reaches(s, t.min_spearman)),
        );
        iterations.push(Iteration {
            dir: it.dir.clone(),
            snapshots: m.files.len(),
            installed: m
                .funcs
                .iter()
                .filter(|f| f.state != ProbeState::Rejected)
                .count(),
            probe_set: it.probe_set,
            hot: m
                .funcs
                .iter()
                .filter(|f| f.state == ProbeState::Hot)
                .count(),
            jaccard: jac,
            spearman: spear,
        });
    }
    let settled = meets.last().copied().unwrap_or(false);
    let settled_since = if settled {
        let first_failing_from_end = meets.iter().rposition(|ok| !ok).unwrap_or(0);
        Some(first_failing_from_end)
    } else {
        None
    };
    let verdict = match (data.len(), settled) {
        (0 | 1, _) => "not settled: needs at least two iterations to compare".to_string(),
        (_, true) => format!(
            "settled: the last two iterations agree (Jaccard ≥ {}, Spearman ≥ {}){}",
            t.min_jaccard,
            t.min_spearman,
            settled_since.map_or(String::new(), |s| format!(", since iteration {}", s + 1))
        ),
        (_, false) => {
            let last = &iterations[iterations.len() - 1];
            format!(
                "not settled: the last step has Jaccard {} (needs ≥ {}) and Spearman {} (needs ≥ {}); run another iteration",
                fmt3(last.jaccard),
                t.min_jaccard,
                fmt3(last.spearman),
                t.min_spearman
            )
        }
    };
    Convergence {
        iterations,
        thresholds: t,
        settled,
        settled_since,
        verdict,
    }
}

/// The per-iteration table (`#`, snapshots, probe set, installed, hot,
/// Jaccard, Spearman, directory).
pub fn table(c: &Convergence) -> Table {
    let mut t = Table::new(vec![
        Column::right("#"),
        Column::right("Snapshots"),
        Column::right("Probe set"),
        Column::right("Installed"),
        Column::right("Hot"),
        Column::right("Jaccard"),
        Column::right("Spearman"),
        Column::flex("Directory"),
    ]);
    for (i, it) in c.iterations.iter().enumerate() {
        t.push(vec![
            (i + 1).to_string().into(),
            it.snapshots.to_string().into(),
            it.probe_set
                .map_or("-".to_string(), |n| n.to_string())
                .into(),
            it.installed.to_string().into(),
            it.hot.to_string().into(),
            fmt3(it.jaccard).into(),
            fmt3(it.spearman).into(),
            it.dir.display().to_string().into(),
        ]);
    }
    t
}

/// A similarity value with three decimals, `-` when absent.
pub fn fmt3(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}

pub fn run(args: &ConvergeArgs, out: &mut dyn Write) -> Result<i32> {
    for (name, v) in [
        ("--min-jaccard", args.min_jaccard),
        ("--min-spearman", args.min_spearman),
    ] {
        if !(-1.0..=1.0).contains(&v) {
            return Err(CliError::usage(format!(
                "{name} {v} is out of range (-1 to 1)"
            )));
        }
    }
    let c = converge_dirs(
        &args.dirs,
        Thresholds {
            min_jaccard: args.min_jaccard,
            min_spearman: args.min_spearman,
        },
    )?;
    match args.format {
        ConvergeFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &c).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        ConvergeFormat::Table => {
            let color = color_enabled(args.color);
            let t = table(&c);
            write!(
                out,
                "{}",
                t.render(Some(crate::output::table_width()), color)
            )?;
            let style = if c.settled {
                Style::Green
            } else {
                Style::Yellow
            };
            writeln!(out, "\n{}", style.paint(&c.verdict, color))?;
        }
    }
    out.flush()?;
    Ok(if args.check && !c.settled { 1 } else { 0 })
}

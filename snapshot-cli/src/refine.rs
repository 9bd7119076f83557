//! `hotprobe refine`: the probe set for the next iteration.

use crate::error::{CliError, Result};
use crate::load::{load_full, Inputs};
use crate::merge::{Func, FuncKey, Merged};
use crate::output::write_output;
use crate::report::{glob_list, name_matches};
use crate::second_chance::{self, Bar, Chance, Judged, Reason};
use crate::units::fmt_ns;
use hotprobe_config::snapshot::ProbeState;
use hotprobe_config::{GlobList, ProbeSet, ProbeSetEntry, Snapshot};
use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const AFTER_HELP: &str = "\
Policy (in this order):
  1. every function the score card left `hot` is kept;
  2. an `active` function with calls is kept when its inherent time per call
     is at least --min-inherent-us (default: the snapshot's
     hotspot.inherent_threshold_us), or its inherent total is at least
     --min-share percent of all inherent time;
  3. `disabled` (cold) and `rejected` (unprobeable) functions are dropped;
  4. --drop GLOB removes matching functions; --top N keeps the N with the
     largest inherent total (of those steps 1, 2, 6 and 7 keep);
  5. --keep GLOB adds matching functions whatever their numbers (unless
     rejected), and wins over --drop and --top;
  6. a function the score card took out over at least 1,000 calls
     although its mean inherent time is at least --min-inherent-us and its
     mean inclusive time at least the score card's threshold comes back
     for one more iteration when the iteration before probed it over at
     least 1,000 calls and did not take it out: its calls sit on a
     threshold, the verdicts disagree, and a removal is the verdict a loop
     cannot undo (the iteration before is the snapshots the probe set these
     ran with was refined from, while the files are there; calls are
     counted over all of an iteration's snapshots; a first iteration's
     removals stand);
  7. unless --no-second-chance: a function that is not kept, judged while
     probed callees took their share of its time, comes back when those
     callees are not kept and their time, counted as its own again, adds at
     least the inherent threshold per call (or makes it pass step 2), its
     inclusive time per call clears the score card's threshold, and it was
     judged on at least 1,000 calls (fewer are mostly warm-up); and a
     function the score card took out within its first 1,000 calls comes
     back once when the iteration before judged it hot on more. Functions
     dropped in earlier iterations are judged on the last iteration that
     probed them, found by following the probe set the snapshots ran with
     and that set's `source`, while the files are there. It aims at the
     order in which the score card takes a caller → callee chain out
     deciding which of them ends hot: in five series of eight redis loops
     each, the loops with it agreed in 109 pairs of 140, those without in
     68 (BENCHMARKS.md).
Globs match the demangled name, `name#N`, or the raw symbol. Entries name the
module by file name and carry an offset only when the module has several
functions with that symbol (seen in the snapshots, or an entry with an offset
in the probe set the snapshots ran with, if that file is still there). The
output is sorted, so equal data gives a byte-identical file.

Examples:
  hotprobe refine hotprobe-server-4242.json -o probes.toml
  hotprobe refine runs/1/ -o probes.toml --top 50 --keep 'processCommand'
  hotprobe refine snaps/ -o - --min-inherent-us 1 --drop 'std::*'";

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct RefineArgs {
    /// Snapshot files, or directories holding *.json snapshots.
    #[arg(required = true, value_name = "SNAP")]
    pub snapshots: Vec<PathBuf>,
    /// Where to write the probe set (`-` for standard output).
    #[arg(long, short, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// Keep at most N probes: those with the largest inherent total.
    #[arg(long, short = 'n', value_name = "N")]
    pub top: Option<usize>,
    /// Keep active functions whose inherent time per call is at least this (µs).
    #[arg(long, value_name = "US")]
    pub min_inherent_us: Option<f64>,
    /// Keep active functions with at least this percentage of all inherent time.
    #[arg(long, value_name = "PCT", default_value_t = 1.0)]
    pub min_share: f64,
    /// Always keep functions matching these globs (repeatable, or comma-separated).
    #[arg(long, value_name = "GLOB")]
    pub keep: Vec<String>,
    /// Drop functions matching these globs.
    #[arg(long, value_name = "GLOB")]
    pub drop: Vec<String>,
    /// Bring functions back for another try (step 7 below): the default.
    #[arg(long)]
    pub second_chance: bool,
    /// Step 7 off.
    #[arg(long, conflicts_with = "second_chance")]
    pub no_second_chance: bool,
}

/// The refinement policy's knobs.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub top: Option<usize>,
    /// Per-call inherent time threshold in ns.
    pub min_inherent_ns: f64,
    /// Fraction (0..1) of all inherent time.
    pub min_share: f64,
    pub keep: Option<GlobList>,
    pub drop: Option<GlobList>,
    /// (module file name, symbol) pairs known to name several functions of
    /// their module, though the snapshots hold only one of them: a snapshot
    /// of a run with a probe set sees only the probed functions.
    pub known_ambiguous: BTreeSet<(String, String)>,
    /// Step 7: bring functions back for another try.
    pub second_chance: bool,
}

/// Why a function was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Hot,
    Active,
    Kept,
    /// Brought back for another iteration (see `second_chance`).
    Retried,
}

/// Steps 1–3 of the policy (minus --drop): the hot functions and the
/// active ones above the bar.
fn by_state<'a>(m: &'a Merged, policy: &Policy) -> Vec<(&'a Func, Why)> {
    let total_inherent = m.total_inherent_ns() as f64;
    m.funcs
        .iter()
        .filter_map(|f| {
            let why = match f.state {
                ProbeState::Hot => Why::Hot,
                ProbeState::Active
                    if f.count > 0
                        && (f.avg_inherent_ns() >= policy.min_inherent_ns
                            || (total_inherent > 0.0
                                && f.inherent_ns as f64 >= policy.min_share * total_inherent)) =>
                {
                    Why::Active
                }
                _ => return None,
            };
            (!matches(&policy.drop, f)).then_some((f, why))
        })
        .collect()
}

fn matches(g: &Option<GlobList>, f: &Func) -> bool {
    g.as_ref().is_some_and(|g| name_matches(g, f))
}

/// Applies the policy to `current`, with second chances from `earlier`
/// iterations (newest first); the kept functions, sorted by identity, and why.
pub fn select(
    current: &Judged,
    earlier: &[Judged],
    policy: &Policy,
    bar: Bar,
) -> (Vec<(Func, Why)>, Vec<Chance>) {
    let m = &current.merged;
    let mut chosen: Vec<(Func, Why)> = by_state(m, policy)
        .into_iter()
        .map(|(f, why)| (f.clone(), why))
        .collect();
    let kept_anyway = |f: &Func| f.state != ProbeState::Rejected && matches(&policy.keep, f);
    // What the next run probes whatever second chances bring: the functions
    // second chances are judged against.
    let kept: HashSet<FuncKey> = chosen
        .iter()
        .map(|(f, _)| f.key.clone())
        .chain(
            m.funcs
                .iter()
                .filter(|f| kept_anyway(f))
                .map(|f| f.key.clone()),
        )
        .collect();
    let mut iterations = vec![current];
    iterations.extend(earlier.iter());
    let dropped = |f: &Func| matches(&policy.drop, f);
    let mut chances = if policy.second_chance {
        second_chance::chances(&iterations, &kept, bar, dropped)
    } else {
        Vec::new()
    };
    for c in second_chance::taken_out_above_the_bars(current, earlier.first(), &kept, bar, dropped)
    {
        if !chances.iter().any(|o| o.func.key == c.func.key) {
            chances.push(c);
        }
    }
    chances.sort_by(|a, b| a.func.key.cmp(&b.func.key));
    chosen.extend(chances.iter().map(|c| (c.func.clone(), Why::Retried)));
    if let Some(n) = policy.top {
        chosen.sort_by(|a, b| {
            b.0.inherent_ns
                .cmp(&a.0.inherent_ns)
                .then_with(|| a.0.key.cmp(&b.0.key))
        });
        chosen.truncate(n);
    }
    for f in m.funcs.iter().filter(|f| kept_anyway(f)) {
        if !chosen.iter().any(|(c, _)| c.key == f.key) {
            chosen.push((f.clone(), Why::Kept));
        }
    }
    chosen.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    let chances = chances
        .into_iter()
        .filter(|c| {
            chosen
                .iter()
                .any(|(f, why)| *why == Why::Retried && f.key == c.func.key)
        })
        .collect();
    (chosen, chances)
}

/// The probe-set entry of a function; the offset only for a symbol that
/// names several functions of the module.
pub fn entry(f: &Func, known_ambiguous: &BTreeSet<(String, String)>) -> ProbeSetEntry {
    let ambiguous =
        f.ambiguous || known_ambiguous.contains(&(f.key.module.clone(), f.key.symbol.clone()));
    ProbeSetEntry {
        module: f.key.module.clone(),
        symbol: f.key.symbol.clone(),
        // For people (the contract's example carries it even when equal to the symbol).
        name: f.name.clone(),
        offset: ambiguous.then_some(f.offset),
    }
}

/// The entries with an offset in the probe sets the snapshots ran with
/// (`config.target.probe_set`, when the file is still there).
pub fn ambiguous_in_probe_sets(inputs: &Inputs<Snapshot>) -> BTreeSet<(String, String)> {
    let sets: BTreeSet<&str> = inputs
        .snapshots
        .iter()
        .filter_map(|l| l.snap.config.probe_set_path())
        .collect();
    sets.into_iter()
        .filter_map(|p| ProbeSet::read(Path::new(p)).ok())
        .flat_map(|set| set.probes)
        .filter(|e| e.offset.is_some())
        .map(|e| (e.module, e.symbol))
        .collect()
}

/// The `source` line: the inputs as given, sorted.
pub fn source_of(inputs: &[PathBuf]) -> String {
    let mut names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

/// A refinement: the probe set and how it came about.
pub struct Refined {
    pub set: ProbeSet,
    /// Kept by the policy: hot, active, --keep.
    pub hot: usize,
    pub active: usize,
    pub kept: usize,
    /// Brought back for another iteration (see `second_chance`).
    pub chances: Vec<Chance>,
    pub min_inherent_ns: f64,
    /// Probed (not rejected) functions in the snapshots, and how many files.
    pub probed: usize,
    pub files: usize,
}

/// Applies the policy to the snapshots `args` names; writes nothing.
pub fn compute(args: &RefineArgs) -> Result<Refined> {
    if !(0.0..=100.0).contains(&args.min_share) {
        return Err(CliError::usage(format!(
            "--min-share {} is not a percentage (0 to 100)",
            args.min_share
        )));
    }
    if args
        .min_inherent_us
        .is_some_and(|v| v.is_nan() || v < 0.0 || !v.is_finite())
    {
        return Err(CliError::usage(
            "--min-inherent-us must be a number of microseconds ≥ 0",
        ));
    }
    let keep = glob_list(&args.keep, "--keep")?;
    let drop = glob_list(&args.drop, "--drop")?;
    let full = load_full(&args.snapshots)?;
    let known_ambiguous = ambiguous_in_probe_sets(&full);
    let current = Judged::from_full(full)?;
    let merged = &current.merged;
    let min_inherent_ns = args
        .min_inherent_us
        .unwrap_or(merged.hotspot.inherent_threshold_us)
        * 1e3;
    let policy = Policy {
        top: args.top,
        min_inherent_ns,
        min_share: args.min_share / 100.0,
        keep,
        drop,
        known_ambiguous,
        second_chance: !args.no_second_chance,
    };
    // Removals above the bars need the iteration before; second chances
    // the whole chain.
    let depth = if !args.no_second_chance {
        second_chance::MAX_HISTORY
    } else {
        1
    };
    let earlier = second_chance::earlier(&current, depth);
    let bar = Bar {
        min_inherent_ns,
        min_share: policy.min_share,
        inclusive_ns: merged.hotspot.threshold_us * 1e3,
    };
    let (chosen, chances) = select(&current, &earlier, &policy, bar);
    let count = |w: Why| chosen.iter().filter(|(_, why)| *why == w).count();
    let (hot, active, kept) = (count(Why::Hot), count(Why::Active), count(Why::Kept));
    let entries: Vec<ProbeSetEntry> = chosen
        .iter()
        .map(|(f, _)| entry(f, &policy.known_ambiguous))
        .collect();
    let probed = merged
        .funcs
        .iter()
        .filter(|f| f.state != ProbeState::Rejected)
        .count();
    Ok(Refined {
        set: ProbeSet::new(source_of(&args.snapshots), entries),
        hot,
        active,
        kept,
        chances,
        min_inherent_ns,
        probed,
        files: merged.files.len(),
    })
}

pub fn run(args: &RefineArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let r = compute(args)?;
    let text = r.set.to_toml();
    let to_stdout = args.output == Path::new("-");
    if to_stdout {
        out.write_all(text.as_bytes())?;
        out.flush()?;
    } else {
        write_output(&args.output, text.as_bytes())?;
    }
    writeln!(
        err,
        "hotprobe: wrote {} probes to {}: {} hot, {} active at ≥ {}/call or ≥ {}% of inherent time, {} kept by --keep, {} back for another try (of {} probed functions in {} snapshot{})",
        r.set.probes.len(),
        if to_stdout { "standard output".to_string() } else { args.output.display().to_string() },
        r.hot,
        r.active,
        fmt_ns(r.min_inherent_ns),
        args.min_share,
        r.kept,
        r.chances.len(),
        r.probed,
        r.files,
        if r.files == 1 { "" } else { "s" }
    )?;
    for c in &r.chances {
        let why = match c.reason {
            Reason::Callees {
                measured_inherent_ns,
                projected_inherent_ns,
                calls,
            } => format!(
                "{}/call of its own while its callees were probed, {}/call without the callees that left",
                fmt_ns(measured_inherent_ns as f64 / calls as f64),
                fmt_ns(projected_inherent_ns as f64 / calls as f64),
            ),
            Reason::WarmUp { calls, hot_calls } => format!(
                "taken out after {calls} calls, hot over {hot_calls} the iteration before"
            ),
            Reason::AboveTheBars {
                calls,
                inherent_ns,
                hot_calls_before,
            } => format!(
                "taken out over {calls} calls though its own time averaged {}/call{}",
                fmt_ns(inherent_ns as f64),
                hot_calls_before
                    .map(|n| format!(", hot over {n} the iteration before"))
                    .unwrap_or_default()
            ),
        };
        writeln!(
            err,
            "hotprobe: back for another try: {} ({why})",
            c.func.display_name()
        )?;
    }
    Ok(0)
}

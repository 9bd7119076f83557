//! `hotprobe diff A B`: what changed between two snapshots (or two sets).

use crate::comparable::Comparable;
use crate::error::{CliError, Result};
use crate::failif::{self, Condition, Metric};
use crate::load::load_light;
use crate::merge::{merge, Func, FuncKey, Merged};
use crate::output::{color_enabled, table_width, ColorChoice, Style};
use crate::probetable::ProbeFields;
use crate::report::{glob_list, name_matches, plural, Header};
use crate::stats::{hot_set, inherent_rank_correlation, jaccard};
use crate::table::{Cell, Column, Table};
use crate::units::{fmt_count, fmt_ns, fmt_pct, parse_duration_ns};
use hotprobe_config::snapshot::ProbeState;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
A and B are snapshot files or directories of them; each side is merged as
`report` merges. Functions are matched by (module file name, symbol,
ordinal), so builds in different directories compare.

Shown: functions added and removed (probed on one side only), state changes
into and out of `hot`, and for functions with calls on both sides the change
of Count, Avg and Avg (I) when it passes the noise floor: at least --noise
percent AND, for times, at least --noise-floor. Summary: the Jaccard index
of the hot sets and Spearman's rank correlation of inherent totals over every
function with calls on either side (0 where it has none).

--fail-if METRIC OP VALUE (repeatable or comma-separated) exits 1 when any
holds. Per function (over functions with calls on both sides whose time
change passes --noise-floor): count, avg, avg_inherent, total, inherent,
p50, p99, max, with a relative change (`avg_inherent>+10%`) or an absolute
one (`avg>+500ns`, `count<-1000`). Overall: hot_added, hot_removed, added,
removed, changed, jaccard, spearman (`jaccard<0.9`). OP is > >= < <=.
Times are wall-clock: on a busy machine a preemption adds milliseconds to
whichever call it lands in and moves averages of short runs; p50 (the
median inclusive time) is the gate that ignores it.

Snapshots of different agent versions are compared on their common
fields: a measurement that A's or B's snapshots lack (an older agent wrote no
p50_inclusive_ns) is left out of the table and the gates, and a note says
which. A --fail-if on such a metric cannot be checked: it fails (exit 1) and
says why, since passing would claim a check that was never made.

Examples:
  hotprobe diff before.json after.json
  hotprobe diff runs/base/ runs/new/ --noise 10 --noise-floor 100ns
  hotprobe diff base/ new/ --fail-if 'avg_inherent>+10%,hot_removed>0'
  hotprobe diff base/ new/ --format json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct DiffArgs {
    /// The baseline: a snapshot file or a directory of snapshots.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The comparison: a snapshot file or a directory of snapshots.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Relative change (percent) below which a change is not shown.
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    pub noise: f64,
    /// Absolute change of a time below which it is not shown (e.g. 50ns, 1us).
    #[arg(long, value_name = "TIME", default_value = "50ns")]
    pub noise_floor: String,
    /// Exit 1 when this holds (repeatable, or comma-separated); see below.
    #[arg(long, value_name = "EXPR")]
    pub fail_if: Vec<String>,
    /// Only functions whose name matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out functions whose name matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Show at most N changed functions (the largest changes of inherent total).
    #[arg(long, short = 'n', value_name = "N")]
    pub top: Option<usize>,
    #[arg(long, short, value_enum, default_value_t = DiffFormat::Table)]
    pub format: DiffFormat,
    /// Do not truncate names.
    #[arg(long, short)]
    pub wide: bool,
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// The noise floor.
#[derive(Debug, Clone, Copy)]
pub struct Noise {
    /// Fraction (5% → 0.05).
    pub relative: f64,
    pub floor_ns: f64,
}

/// One side of a function. A measurement is `None` (null in JSON) where
/// the side's snapshots lack its field (see `comparable.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub state: ProbeState,
    pub count: u64,
    pub inclusive_ns: Option<u64>,
    pub inherent_ns: Option<u64>,
    pub avg_ns: Option<f64>,
    pub avg_inherent_ns: Option<f64>,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
}

impl Side {
    fn of(f: &Func, fields: ProbeFields) -> Side {
        let known = |field: &str, v: u64| fields.has(field).then_some(v);
        let finite = |v: f64| Some(v).filter(|v| v.is_finite());
        let has_count = fields.has("count");
        Side {
            state: f.state,
            count: f.count,
            inclusive_ns: known("inclusive_ns", f.inclusive_ns),
            inherent_ns: known("inherent_ns", f.inherent_ns),
            avg_ns: finite(f.avg_ns()).filter(|_| has_count && fields.has("inclusive_ns")),
            avg_inherent_ns: finite(f.avg_inherent_ns())
                .filter(|_| has_count && fields.has("inherent_ns")),
            p50_ns: known("p50_inclusive_ns", f.p50_inclusive_ns),
            p99_ns: known("p99_inclusive_ns", f.p99_inclusive_ns),
            max_ns: known("max_inclusive_ns", f.max_inclusive_ns),
        }
    }

    fn probed(&self) -> bool {
        self.state != ProbeState::Rejected
    }

    pub fn metric(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Count => Some(self.count as f64),
            Metric::Avg => self.avg_ns,
            Metric::AvgInherent => self.avg_inherent_ns,
            Metric::Total => self.inclusive_ns.map(|v| v as f64),
            Metric::Inherent => self.inherent_ns.map(|v| v as f64),
            Metric::P50 => self.p50_ns.map(|v| v as f64),
            Metric::P99 => self.p99_ns.map(|v| v as f64),
            Metric::Max => self.max_ns.map(|v| v as f64),
            _ => None,
        }
    }
}

/// One function on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct FuncDiff {
    #[serde(flatten)]
    pub key: FuncKey,
    pub name: String,
    pub a: Option<Side>,
    pub b: Option<Side>,
}

impl FuncDiff {
    fn probed_a(&self) -> bool {
        self.a.as_ref().is_some_and(Side::probed)
    }
    fn probed_b(&self) -> bool {
        self.b.as_ref().is_some_and(Side::probed)
    }
    fn hot_a(&self) -> bool {
        self.a.as_ref().is_some_and(|s| s.state == ProbeState::Hot)
    }
    fn hot_b(&self) -> bool {
        self.b.as_ref().is_some_and(|s| s.state == ProbeState::Hot)
    }

    /// Both sides, each with calls.
    pub fn common(&self) -> Option<(&Side, &Side)> {
        match (&self.a, &self.b) {
            (Some(a), Some(b)) if a.count > 0 && b.count > 0 => Some((a, b)),
            _ => None,
        }
    }

    /// (A, B, relative change) of a metric on common functions.
    pub fn change(&self, m: Metric) -> Option<(f64, f64, f64)> {
        let (a, b) = self.common()?;
        let (x, y) = (a.metric(m)?, b.metric(m)?);
        let rel = if x == 0.0 {
            if y == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (y - x) / x
        };
        Some((x, y, rel))
    }

    /// Whether the change of `m` passes the noise floor.
    pub fn significant(&self, m: Metric, noise: Noise) -> bool {
        self.change(m).is_some_and(|(x, y, rel)| {
            rel.abs() >= noise.relative
                && (!m.is_time() || (y - x).abs() >= noise.floor_ns)
                && x != y
        })
    }

    pub fn changed(&self, noise: Noise) -> bool {
        [Metric::Count, Metric::Avg, Metric::AvgInherent]
            .iter()
            .any(|&m| self.significant(m, noise))
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub functions_a: usize,
    pub functions_b: usize,
    pub added: usize,
    pub removed: usize,
    pub hot_a: usize,
    pub hot_b: usize,
    pub hot_added: usize,
    pub hot_removed: usize,
    pub changed: usize,
    pub jaccard: f64,
    /// `None` (null) where a side's snapshots have no inherent times.
    pub spearman: Option<f64>,
    /// `None` (null) where the side's snapshots have no inherent times.
    pub inherent_a_ns: Option<u64>,
    pub inherent_b_ns: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub funcs: Vec<FuncDiff>,
    pub summary: Summary,
    pub notes: Vec<String>,
    /// The measurement fields each side lacks: metrics built on them are not compared.
    pub comparable: Comparable,
}

/// Compares two merged views.
pub fn compare(a: &Merged, b: &Merged, noise: Noise) -> Diff {
    let mut map: BTreeMap<&FuncKey, FuncDiff> = BTreeMap::new();
    for f in &a.funcs {
        map.insert(
            &f.key,
            FuncDiff {
                key: f.key.clone(),
                name: f.display_name(),
                a: Some(Side::of(f, a.probe_fields)),
                b: None,
            },
        );
    }
    for f in &b.funcs {
        map.entry(&f.key)
            .or_insert_with(|| FuncDiff {
                key: f.key.clone(),
                name: f.display_name(),
                a: None,
                b: None,
            })
            .b = Some(Side::of(f, b.probe_fields));
    }
    let funcs: Vec<FuncDiff> = map.into_values().collect();
    let (hot_a, hot_b) = (hot_set(a), hot_set(b));
    let comparable = Comparable::of(a, b);
    let summary = Summary {
        functions_a: funcs.iter().filter(|f| f.probed_a()).count(),
        functions_b: funcs.iter().filter(|f| f.probed_b()).count(),
        added: funcs
            .iter()
            .filter(|f| f.probed_b() && !f.probed_a())
            .count(),
        removed: funcs
            .iter()
            .filter(|f| f.probed_a() && !f.probed_b())
            .count(),
        hot_a: hot_a.len(),
        hot_b: hot_b.len(),
        hot_added: hot_b.difference(&hot_a).count(),
        hot_removed: hot_a.difference(&hot_b).count(),
        changed: funcs.iter().filter(|f| f.changed(noise)).count(),
        jaccard: jaccard(&hot_a, &hot_b),
        spearman: comparable
            .metric(Metric::Spearman)
            .then(|| inherent_rank_correlation(a, b, None)),
        inherent_a_ns: a
            .probe_fields
            .has("inherent_ns")
            .then(|| a.total_inherent_ns()),
        inherent_b_ns: b
            .probe_fields
            .has("inherent_ns")
            .then(|| b.total_inherent_ns()),
    };
    let mut notes = Vec::new();
    if a.agent_versions != b.agent_versions {
        notes.push(format!(
            "A was written by agent {} and B by agent {}: compared on their common fields",
            join_set(&a.agent_versions),
            join_set(&b.agent_versions)
        ));
    }
    notes.extend(comparable.notes());
    if a.backends != b.backends {
        notes.push(format!(
            "A used backend {} and B backend {}: times are not directly comparable",
            join_set(&a.backends),
            join_set(&b.backends)
        ));
    }
    if a.hotspot != b.hotspot {
        notes.push(
            "the score cards differ (config.hotspot): hot sets are not directly comparable".into(),
        );
    }
    if !a.exact() || !b.exact() {
        notes.push("unmetered calls or lost records on one side: counts are not exact".into());
    }
    Diff {
        funcs,
        summary,
        notes,
        comparable,
    }
}

fn join_set(s: &std::collections::BTreeSet<String>) -> String {
    let v: Vec<&str> = s
        .iter()
        .map(String::as_str)
        .map(|x| if x.is_empty() { "unknown" } else { x })
        .collect();
    v.join("+")
}

/// A `--fail-if` condition that holds, or that cannot be checked, with the
/// functions it holds for.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub condition: String,
    /// The overall value, for overall metrics.
    pub value: Option<f64>,
    /// (name, change) for per-function metrics.
    pub functions: Vec<(String, String)>,
    /// Why the condition could not be checked (a side lacks the fields its
    /// metric needs). Such a gate fails: passing it would claim a check
    /// that was never made.
    pub unchecked: Option<String>,
}

/// Evaluates the conditions; returns those that hold or cannot be checked.
pub fn evaluate(d: &Diff, conditions: &[Condition], noise: Noise) -> Vec<Failure> {
    let mut failures = Vec::new();
    for c in conditions {
        if let Some(why) = d.comparable.why_not(c.metric) {
            failures.push(Failure {
                condition: c.text.clone(),
                value: None,
                functions: Vec::new(),
                unchecked: Some(why),
            });
        } else if c.metric.per_function() {
            let mut hits = Vec::new();
            for f in &d.funcs {
                let Some((x, y, rel)) = f.change(c.metric) else {
                    continue;
                };
                if c.metric.is_time() && (y - x).abs() < noise.floor_ns {
                    continue;
                }
                let (measured, shown) = if c.relative {
                    if !rel.is_finite() {
                        continue;
                    }
                    (rel, fmt_pct(rel))
                } else if c.metric.is_time() {
                    (
                        y - x,
                        format!("{}{}", if y >= x { "+" } else { "" }, fmt_ns(y - x)),
                    )
                } else {
                    (y - x, format!("{:+}", y - x))
                };
                if c.op.holds(measured, c.value) {
                    hits.push((f.name.clone(), shown));
                }
            }
            if !hits.is_empty() {
                failures.push(Failure {
                    condition: c.text.clone(),
                    value: None,
                    functions: hits,
                    unchecked: None,
                });
            }
        } else {
            let s = &d.summary;
            let v = match c.metric {
                Metric::HotAdded => s.hot_added as f64,
                Metric::HotRemoved => s.hot_removed as f64,
                Metric::Added => s.added as f64,
                Metric::Removed => s.removed as f64,
                Metric::Changed => s.changed as f64,
                Metric::Jaccard => s.jaccard,
                // Not comparable was handled above.
                _ => s.spearman.unwrap_or(0.0),
            };
            if c.op.holds(v, c.value) {
                failures.push(Failure {
                    condition: c.text.clone(),
                    value: Some(v),
                    functions: Vec::new(),
                    unchecked: None,
                });
            }
        }
    }
    failures
}

#[derive(Serialize)]
struct JsonDiff<'a> {
    schema: &'static str,
    a: &'a Header,
    b: &'a Header,
    noise_pct: f64,
    noise_floor_ns: f64,
    summary: &'a Summary,
    notes: &'a [String],
    missing_fields: &'a Comparable,
    added: Vec<&'a FuncDiff>,
    removed: Vec<&'a FuncDiff>,
    state_changes: Vec<&'a FuncDiff>,
    changed: Vec<&'a FuncDiff>,
    failed: &'a [Failure],
}

pub fn run(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let conditions = failif::parse_all(&args.fail_if).map_err(CliError::usage)?;
    if args.noise.is_nan() || args.noise < 0.0 || !args.noise.is_finite() {
        return Err(CliError::usage(format!(
            "--noise {} is not a percentage",
            args.noise
        )));
    }
    let floor_ns = parse_duration_ns(&args.noise_floor)
        .filter(|v| *v >= 0.0)
        .ok_or_else(|| {
            CliError::usage(format!(
                "--noise-floor `{}` is not a duration (e.g. 50ns, 1us)",
                args.noise_floor
            ))
        })?;
    let noise = Noise {
        relative: args.noise / 100.0,
        floor_ns,
    };
    let include = glob_list(&args.include, "--include")?;
    let exclude = glob_list(&args.exclude, "--exclude")?;
    let mut a = merge(load_light(std::slice::from_ref(&args.a))?);
    let mut b = merge(load_light(std::slice::from_ref(&args.b))?);
    for m in [&mut a, &mut b] {
        m.funcs.retain(|f| {
            include.as_ref().map_or(true, |g| name_matches(g, f))
                && !exclude.as_ref().is_some_and(|g| name_matches(g, f))
        });
    }
    let d = compare(&a, &b, noise);
    let failures = evaluate(&d, &conditions, noise);
    let added: Vec<&FuncDiff> = d
        .funcs
        .iter()
        .filter(|f| f.probed_b() && !f.probed_a())
        .collect();
    let removed: Vec<&FuncDiff> = d
        .funcs
        .iter()
        .filter(|f| f.probed_a() && !f.probed_b())
        .collect();
    let state_changes: Vec<&FuncDiff> = d
        .funcs
        .iter()
        .filter(|f| f.probed_a() && f.probed_b() && f.hot_a() != f.hot_b())
        .collect();
    let mut changed: Vec<&FuncDiff> = d.funcs.iter().filter(|f| f.changed(noise)).collect();
    // Without inherent times on a side, the inclusive ones rank the changes.
    let impact = |f: &FuncDiff| {
        f.change(Metric::Inherent)
            .or_else(|| f.change(Metric::Total))
            .map_or(0.0, |(x, y, _)| (y - x).abs())
    };
    changed.sort_by(|x, y| {
        impact(y)
            .total_cmp(&impact(x))
            .then_with(|| x.key.cmp(&y.key))
    });
    let changed_total = changed.len();
    if let Some(n) = args.top {
        changed.truncate(n);
    }
    let (ha, hb) = (Header::of(&a, a.funcs.len()), Header::of(&b, b.funcs.len()));
    match args.format {
        DiffFormat::Json => {
            let doc = JsonDiff {
                schema: "hotprobe.diff/1",
                a: &ha,
                b: &hb,
                noise_pct: args.noise,
                noise_floor_ns: floor_ns,
                summary: &d.summary,
                notes: &d.notes,
                missing_fields: &d.comparable,
                added,
                removed,
                state_changes,
                changed,
                failed: &failures,
            };
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        DiffFormat::Table => {
            let color = color_enabled(args.color);
            let view = TableView {
                d: &d,
                ha: &ha,
                hb: &hb,
                added: &added,
                removed: &removed,
                state_changes: &state_changes,
                changed: &changed,
            };
            view.write(out, args, noise, changed_total, color)?;
        }
    }
    out.flush()?;
    for f in &failures {
        if let Some(why) = &f.unchecked {
            writeln!(
                err,
                "hotprobe: fail-if `{}` cannot be checked: {why}; the gate fails \
                 (gate on a metric both sides have, or compare snapshots of agents that write it)",
                f.condition
            )?;
        } else if let Some(v) = f.value {
            writeln!(
                err,
                "hotprobe: fail-if `{}` holds: the value is {}",
                f.condition,
                round3(v)
            )?;
        } else {
            let list: Vec<String> = f
                .functions
                .iter()
                .take(10)
                .map(|(n, c)| format!("{n} ({c})"))
                .collect();
            let more = if f.functions.len() > 10 {
                format!(", and {} more", f.functions.len() - 10)
            } else {
                String::new()
            };
            writeln!(
                err,
                "hotprobe: fail-if `{}` holds for {}: {}{more}",
                f.condition,
                plural(f.functions.len(), "function"),
                list.join(", ")
            )?;
        }
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn round3(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

struct TableView<'a> {
    d: &'a Diff,
    ha: &'a Header,
    hb: &'a Header,
    added: &'a [&'a FuncDiff],
    removed: &'a [&'a FuncDiff],
    state_changes: &'a [&'a FuncDiff],
    changed: &'a [&'a FuncDiff],
}

const LIST_LIMIT: usize = 20;

impl TableView<'_> {
    fn write(
        &self,
        out: &mut dyn Write,
        args: &DiffArgs,
        noise: Noise,
        changed_total: usize,
        color: bool,
    ) -> std::io::Result<()> {
        let s = &self.d.summary;
        writeln!(
            out,
            "{}",
            Style::Bold.paint(&format!("A: {}", side_line(self.ha, &args.a)), color)
        )?;
        writeln!(
            out,
            "{}",
            Style::Bold.paint(&format!("B: {}", side_line(self.hb, &args.b)), color)
        )?;
        for n in &self.d.notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(
            out,
            "hot set: {} → {} (+{} −{}) · Jaccard {} · Spearman {} (inherent totals, {} functions)",
            s.hot_a,
            s.hot_b,
            s.hot_added,
            s.hot_removed,
            round3(s.jaccard),
            s.spearman.map_or("–".to_string(), round3),
            self.d
                .funcs
                .iter()
                .filter(|f| f.a.as_ref().is_some_and(|x| x.count > 0)
                    || f.b.as_ref().is_some_and(|x| x.count > 0))
                .count()
        )?;
        writeln!(
            out,
            "probed: {} → {} ({} added, {} removed) · inherent total {} → {} · {} changed beyond the noise floor ({}%, {})",
            fmt_count(s.functions_a as u64),
            fmt_count(s.functions_b as u64),
            s.added,
            s.removed,
            s.inherent_a_ns.map_or("–".to_string(), |v| fmt_ns(v as f64)),
            s.inherent_b_ns.map_or("–".to_string(), |v| fmt_ns(v as f64)),
            s.changed,
            args.noise,
            fmt_ns(noise.floor_ns)
        )?;
        if self.added.is_empty()
            && self.removed.is_empty()
            && self.state_changes.is_empty()
            && self.changed.is_empty()
        {
            writeln!(out, "\nno change beyond the noise floor")?;
            return Ok(());
        }
        let state = |x: &Option<Side>| {
            x.as_ref()
                .map_or("absent".to_string(), |s| s.state.as_str().to_string())
        };
        if !self.state_changes.is_empty() {
            writeln!(out, "\n{}", Style::Bold.paint("State changes", color))?;
            for f in self.state_changes {
                let (label, style) = if f.hot_b() {
                    ("gone hot ", Style::Red)
                } else {
                    ("gone cold", Style::Green)
                };
                writeln!(
                    out,
                    "  {}  {} ({} → {})",
                    style.paint(label, color),
                    f.name,
                    state(&f.a),
                    state(&f.b)
                )?;
            }
        }
        for (title, list, side_b) in [
            ("Added", self.added, true),
            ("Removed", self.removed, false),
        ] {
            if list.is_empty() {
                continue;
            }
            writeln!(
                out,
                "\n{}",
                Style::Bold.paint(&format!("{title} ({})", list.len()), color)
            )?;
            for f in list.iter().take(LIST_LIMIT) {
                let side = if side_b { &f.b } else { &f.a };
                let detail = side.as_ref().map_or(String::new(), |s| {
                    format!(
                        "{}, {} calls, {} inherent",
                        s.state,
                        fmt_count(s.count),
                        s.inherent_ns.map_or("–".to_string(), |v| fmt_ns(v as f64))
                    )
                });
                writeln!(out, "  {}  ({detail})", f.name)?;
            }
            if list.len() > LIST_LIMIT {
                writeln!(
                    out,
                    "  … and {} more (--format json lists all)",
                    list.len() - LIST_LIMIT
                )?;
            }
        }
        if !self.changed.is_empty() {
            writeln!(
                out,
                "\n{}",
                Style::Bold.paint(&format!("Changed ({changed_total})"), color)
            )?;
            let mut t = Table::new(vec![
                Column::right("Count"),
                Column::right("Δ"),
                Column::right("Avg"),
                Column::right("Δ"),
                Column::right("Avg (I)"),
                Column::right("Δ"),
                Column::flex("Name"),
            ]);
            for f in self.changed {
                let mut row = Vec::new();
                for (m, time) in [
                    (Metric::Count, false),
                    (Metric::Avg, true),
                    (Metric::AvgInherent, true),
                ] {
                    // A metric a side has no field for is left blank, not shown as 0.
                    let Some((_, y, rel)) = f.change(m) else {
                        row.push(Cell::styled("–".to_string(), Style::Dim));
                        row.push(Cell::styled("–".to_string(), Style::Dim));
                        continue;
                    };
                    row.push(Cell::new(if time {
                        fmt_ns(y)
                    } else {
                        fmt_count(y as u64)
                    }));
                    let sig = f.significant(m, noise);
                    // For times, up is worse; for counts, neither.
                    let style = match (sig, time, rel > 0.0) {
                        (false, _, _) => Style::Dim,
                        (true, true, true) => Style::Red,
                        (true, true, false) => Style::Green,
                        (true, false, _) => Style::Yellow,
                    };
                    row.push(Cell::styled(fmt_pct(rel), style));
                }
                row.push(Cell::new(f.name.clone()));
                t.push(row);
            }
            write!(
                out,
                "{}",
                t.render(if args.wide { None } else { Some(table_width()) }, color)
            )?;
            if changed_total > self.changed.len() {
                writeln!(
                    out,
                    "… and {} more (--top)",
                    changed_total - self.changed.len()
                )?;
            }
            writeln!(
                out,
                "Count, Avg and Avg (I) are B's; Δ is the change from A."
            )?;
        }
        Ok(())
    }
}

fn side_line(h: &Header, path: &std::path::Path) -> String {
    format!(
        "{} · {} · {} · agent {}",
        path.display(),
        if h.executables.is_empty() {
            "(unknown executable)".to_string()
        } else {
            h.executables.join(", ")
        },
        plural(h.snapshots, "snapshot"),
        h.agent_versions
            .iter()
            .map(|v| if v.is_empty() { "unknown" } else { v.as_str() })
            .collect::<Vec<_>>()
            .join("+")
    )
}

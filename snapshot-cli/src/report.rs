//! `hotprobe report`: the hotspot table of one or more snapshots.

use crate::error::{CliError, Result};
use crate::load::load_light;
use crate::merge::{merge, Func, Merged, ProcessSummary};
use crate::output::{color_enabled, table_width, ColorChoice, Style};
use crate::table::{Cell, Column, Table};
use crate::units::{fmt_count, fmt_ns, fmt_ns_u};
use hotprobe_config::settings::Hotspot;
use hotprobe_config::snapshot::{module_file_name, ProbeState};
use hotprobe_config::{split_list, GlobList};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Rows: by default the functions that are hot, active, or disabled with calls;
--all adds rejected and zero-count ones; --state picks states explicitly.
Several snapshots are merged by function identity (module file name, symbol,
ordinal); several snapshots of one process image (same pid and start time)
count once: the latest. A `~` before a count marks a probe disabled mid-run
(its numbers stop there). The p99 of a function seen in several snapshots is
the largest p99 of the parts, an upper bound, and shown as `≤`.

Examples:
  hotprobe report hotprobe-redis-server-4242.json
  hotprobe report runs/ --top 20 --sort avg-inherent
  hotprobe report a.json b.json --include 'dict*' --exclude '*Log*'
  hotprobe report snaps/ --all --state rejected --wide
  hotprobe report snaps/ --format csv > hot.csv";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Calls.
    Count,
    /// Inclusive total.
    Total,
    /// Inherent (self) total.
    Inherent,
    /// Inclusive per call.
    Avg,
    /// Inherent per call.
    AvgInherent,
    P99,
    Max,
    /// Name, A to Z.
    Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    Hot,
    Active,
    Disabled,
    Rejected,
}

impl From<StateArg> for ProbeState {
    fn from(s: StateArg) -> ProbeState {
        match s {
            StateArg::Hot => ProbeState::Hot,
            StateArg::Active => ProbeState::Active,
            StateArg::Disabled => ProbeState::Disabled,
            StateArg::Rejected => ProbeState::Rejected,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    Markdown,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ReportArgs {
    /// Snapshot files, or directories holding *.json snapshots.
    #[arg(required = true, value_name = "SNAP")]
    pub snapshots: Vec<PathBuf>,
    /// Order of the rows (descending, except name).
    #[arg(long, short, value_enum, default_value_t = SortKey::Inherent)]
    pub sort: SortKey,
    /// Show only the first N rows.
    #[arg(long, short = 'n', value_name = "N")]
    pub top: Option<usize>,
    /// Only functions whose name matches one of these globs (repeatable, or comma-separated).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out functions whose name matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Only functions that ended in these states (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATE,…")]
    pub state: Vec<StateArg>,
    /// Also show rejected functions and functions without calls.
    #[arg(long, short)]
    pub all: bool,
    #[arg(long, short, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Do not truncate names; add State, Module and Source columns.
    #[arg(long, short)]
    pub wide: bool,
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// Which rows to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub include: Option<GlobList>,
    pub exclude: Option<GlobList>,
    pub states: Vec<ProbeState>,
    pub all: bool,
}

/// Compiles `--include`/`--exclude` values (each may be a comma list).
pub fn glob_list(values: &[String], flag: &str) -> Result<Option<GlobList>> {
    let patterns: Vec<String> = values.iter().flat_map(|v| split_list(v)).collect();
    if patterns.is_empty() {
        return Ok(None);
    }
    GlobList::new(&patterns)
        .map(Some)
        .map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

/// Whether a function's name (or `name#N`, or raw symbol) matches.
pub fn name_matches(globs: &GlobList, f: &Func) -> bool {
    globs.is_match(&f.name)
        || globs.is_match(&f.key.symbol)
        || (f.ambiguous && globs.is_match(&f.display_name()))
}

impl Filter {
    pub fn keep(&self, f: &Func) -> bool {
        let state_ok = if self.states.is_empty() {
            self.all
                || matches!(
                    f.state,
                    ProbeState::Hot | ProbeState::Active | ProbeState::Disabled
                )
        } else {
            self.states.contains(&f.state)
        };
        state_ok
            && (self.all || f.count > 0)
            && self.include.as_ref().map_or(true, |g| name_matches(g, f))
            && !self.exclude.as_ref().is_some_and(|g| name_matches(g, f))
    }
}

/// Orders functions by `key` (descending but for names; ties by name).
pub fn sort_funcs(funcs: &mut [&Func], key: SortKey) {
    let metric = |f: &Func| -> f64 {
        let v = match key {
            SortKey::Count => f.count as f64,
            SortKey::Total => f.inclusive_ns as f64,
            SortKey::Inherent => f.inherent_ns as f64,
            SortKey::Avg => f.avg_ns(),
            SortKey::AvgInherent => f.avg_inherent_ns(),
            SortKey::P99 => f.p99_inclusive_ns as f64,
            SortKey::Max => f.max_inclusive_ns as f64,
            SortKey::Name => 0.0,
        };
        if v.is_nan() {
            -1.0
        } else {
            v
        }
    };
    funcs.sort_by(|a, b| {
        let by_metric = metric(b).total_cmp(&metric(a));
        by_metric
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// The summary above the table.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub snapshots: usize,
    /// Earlier snapshots of the same images, not counted.
    pub superseded: usize,
    pub executables: Vec<String>,
    pub pids: Vec<u32>,
    pub duration_ns: u64,
    pub backends: BTreeSet<String>,
    pub agent_versions: BTreeSet<String>,
    pub hotspot: Hotspot,
    pub hotspot_varies: bool,
    /// Functions per final state.
    pub states: BTreeMap<String, usize>,
    pub unmetered: u64,
    pub lost_records: u64,
    /// No unmetered calls and no lost records.
    pub exact: bool,
    pub contexts_truncated: bool,
    pub problems: Vec<String>,
    pub functions: usize,
    pub shown: usize,
}

impl Header {
    pub fn of(m: &Merged, shown: usize) -> Header {
        let mut executables: Vec<String> = m
            .processes
            .iter()
            .map(|p: &ProcessSummary| module_file_name(&p.exe).to_string())
            .collect();
        executables.sort();
        executables.dedup();
        Header {
            snapshots: m.files.len(),
            superseded: m.superseded.len(),
            executables,
            pids: m.processes.iter().map(|p| p.pid).collect(),
            duration_ns: m.duration_ns,
            backends: m.backends.clone(),
            agent_versions: m.agent_versions.clone(),
            hotspot: m.hotspot.clone(),
            hotspot_varies: m.hotspot_varies,
            states: m
                .state_counts()
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect(),
            unmetered: m.unmetered,
            lost_records: m.lost_records,
            exact: m.exact(),
            contexts_truncated: m.contexts_truncated,
            problems: m.problems.clone(),
            functions: m.funcs.len(),
            shown,
        }
    }

    /// The header as text lines.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let exes = if self.executables.is_empty() {
            "(unknown executable)".to_string()
        } else {
            self.executables.join(", ")
        };
        let pids = match self.pids.len() {
            0 => String::new(),
            1 => format!("pid {}", self.pids[0]),
            n if n <= 6 => format!("pids {}", join(&self.pids)),
            n => format!("pids {}, … ({n} processes)", join(&self.pids[..5])),
        };
        let mut first = vec![exes];
        if !pids.is_empty() {
            first.push(pids);
        }
        first.push(format!("duration {}", fmt_ns_u(self.duration_ns)));
        first.push(format!("backend {}", set_or_unknown(&self.backends)));
        first.push(format!("agent {}", set_or_unknown(&self.agent_versions)));
        let snaps = plural(self.snapshots, "snapshot");
        first.push(if self.superseded > 0 {
            format!(
                "{snaps} (+{} earlier of the same images, not counted)",
                self.superseded
            )
        } else {
            snaps
        });
        lines.push(first.join(" · "));
        let h = &self.hotspot;
        lines.push(format!(
            "score card: inclusive ≥ {}, inherent ≥ {}, lower {}, upper {}, {}{}{}",
            fmt_ns(h.threshold_us * 1e3),
            fmt_ns(h.inherent_threshold_us * 1e3),
            h.lower,
            h.upper,
            if h.adaptive {
                "adaptive"
            } else {
                "not adaptive (every probe counts every call)"
            },
            if h.keep_share > 0.0 {
                format!(", kept ≥ {} %", (h.keep_share * 1e4).round() / 100.0)
            } else {
                String::new()
            },
            if self.hotspot_varies {
                " (of the first snapshot; they differ)"
            } else {
                ""
            }
        ));
        lines.push(judging_window(h));
        let states: Vec<String> = ["hot", "active", "disabled", "rejected"]
            .iter()
            .map(|s| {
                format!(
                    "{} {s}",
                    fmt_count(*self.states.get(*s).unwrap_or(&0) as u64)
                )
            })
            .collect();
        lines.push(format!(
            "probes: {} ({} functions)",
            states.join(", "),
            fmt_count(self.functions as u64)
        ));
        if !self.exact {
            lines.push(format!(
                "note: {} unmetered calls, {} lost records: counts are not exact",
                fmt_count(self.unmetered),
                fmt_count(self.lost_records)
            ));
        }
        if self.contexts_truncated {
            lines.push("note: the calling-context tree was truncated (meter.contexts_cap)".into());
        }
        for p in &self.problems {
            lines.push(format!("note: ran unprobed: {p}"));
        }
        lines
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

fn set_or_unknown(s: &BTreeSet<String>) -> String {
    let v: Vec<&str> = s
        .iter()
        .map(String::as_str)
        .filter(|x| !x.is_empty())
        .collect();
    if v.is_empty() {
        "unknown".into()
    } else {
        v.join("+")
    }
}

pub fn plural(n: usize, word: &str) -> String {
    format!(
        "{} {word}{}",
        fmt_count(n as u64),
        if n == 1 { "" } else { "s" }
    )
}

/// One row of the JSON and CSV forms (times in ns; `null` without calls).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub symbol: String,
    pub module: String,
    pub module_path: String,
    pub ordinal: u32,
    pub offset: u64,
    pub source: Option<String>,
    pub state: ProbeState,
    pub reason: Option<String>,
    pub count: u64,
    pub abandoned: u64,
    pub in_flight: u64,
    pub inclusive_ns: u64,
    pub inherent_ns: u64,
    pub avg_ns: Option<f64>,
    pub avg_inherent_ns: Option<f64>,
    pub p50_ns: u64,
    pub p99_ns: u64,
    /// p50/p99 are upper bounds (the function was merged from several snapshots).
    pub percentiles_upper_bound: bool,
    pub max_ns: u64,
    /// Disabled mid-run: the numbers stop there.
    pub partial: bool,
}

impl Row {
    pub fn of(f: &Func) -> Row {
        let finite = |v: f64| Some(v).filter(|v| v.is_finite());
        Row {
            name: f.display_name(),
            symbol: f.key.symbol.clone(),
            module: f.key.module.clone(),
            module_path: f.module_path.clone(),
            ordinal: f.key.ordinal,
            offset: f.offset,
            source: f.source.clone(),
            state: f.state,
            reason: f.reason.clone(),
            count: f.count,
            abandoned: f.abandoned,
            in_flight: f.in_flight,
            inclusive_ns: f.inclusive_ns,
            inherent_ns: f.inherent_ns,
            avg_ns: finite(f.avg_ns()),
            avg_inherent_ns: finite(f.avg_inherent_ns()),
            p50_ns: f.p50_inclusive_ns,
            p99_ns: f.p99_inclusive_ns,
            percentiles_upper_bound: f.percentiles_are_bounds(),
            max_ns: f.max_inclusive_ns,
            partial: f.partial,
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    header: &'a Header,
    functions: Vec<Row>,
}

pub fn run(args: &ReportArgs, out: &mut dyn Write) -> Result<i32> {
    let filter = Filter {
        include: glob_list(&args.include, "--include")?,
        exclude: glob_list(&args.exclude, "--exclude")?,
        states: args.state.iter().map(|&s| s.into()).collect(),
        all: args.all,
    };
    let merged = merge(load_light(&args.snapshots)?);
    let mut rows: Vec<&Func> = merged.funcs.iter().filter(|f| filter.keep(f)).collect();
    sort_funcs(&mut rows, args.sort);
    let matching = rows.len();
    if let Some(n) = args.top {
        rows.truncate(n);
    }
    let header = Header::of(&merged, rows.len());
    match args.format {
        ReportFormat::Json => {
            let doc = JsonReport {
                schema: "hotprobe.report/1",
                header: &header,
                functions: rows.iter().map(|f| Row::of(f)).collect(),
            };
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        ReportFormat::Csv => write_csv(out, &rows)?,
        ReportFormat::Table | ReportFormat::Markdown => {
            let markdown = args.format == ReportFormat::Markdown;
            let color = !markdown && color_enabled(args.color);
            let table = build_table(&rows, args.wide);
            for line in header.lines() {
                if markdown {
                    writeln!(out, "{line}  ")?;
                } else {
                    writeln!(
                        out,
                        "{}",
                        Style::Bold.paint(&line, color && line == header.lines()[0])
                    )?;
                }
            }
            writeln!(out)?;
            if rows.is_empty() {
                writeln!(
                    out,
                    "no functions to show{}",
                    if args.all {
                        ""
                    } else {
                        " (--all shows rejected and zero-count ones)"
                    }
                )?;
            } else if markdown {
                write!(out, "{}", table.render_markdown())?;
            } else {
                write!(
                    out,
                    "{}",
                    table.render(if args.wide { None } else { Some(table_width()) }, color)
                )?;
            }
            let notes = footnotes(&rows, matching, merged.funcs.len(), args);
            if !notes.is_empty() {
                writeln!(out)?;
                for n in notes {
                    writeln!(out, "{n}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(0)
}

fn footnotes(rows: &[&Func], matching: usize, total: usize, args: &ReportArgs) -> Vec<String> {
    let mut notes = Vec::new();
    if rows.iter().any(|f| f.partial) {
        notes.push(
            "~ partial: disabled mid-run by the score card; its numbers stop there".to_string(),
        );
    }
    if rows.iter().any(|f| f.percentiles_are_bounds()) {
        notes.push(
            "≤ p99 merged from several snapshots: the largest of their p99s, an upper bound"
                .to_string(),
        );
    }
    if rows.len() < total {
        let mut why = Vec::new();
        if rows.len() < matching {
            why.push("--top");
        }
        if matching < total {
            why.push(if args.all {
                "filters"
            } else {
                "filters; --all adds rejected and zero-count functions"
            });
        }
        notes.push(format!(
            "showing {} of {} functions ({})",
            fmt_count(rows.len() as u64),
            fmt_count(total as u64),
            why.join(", ")
        ));
    }
    notes
}

fn build_table(rows: &[&Func], wide: bool) -> Table {
    let mut cols = vec![
        Column::right("Count"),
        Column::right("Total"),
        Column::right("Total (I)"),
        Column::right("Avg"),
        Column::right("Avg (I)"),
        Column::right("p99"),
        Column::right("Max"),
    ];
    if wide {
        cols.push(Column::left("State"));
        cols.push(Column::left("Module"));
        cols.push(Column::left("Source"));
    }
    cols.push(Column::flex("Name"));
    let mut t = Table::new(cols);
    for f in rows {
        let style = match f.state {
            ProbeState::Hot => Style::Red,
            ProbeState::Active => Style::Plain,
            ProbeState::Disabled | ProbeState::Rejected => Style::Dim,
        };
        let count = if f.partial {
            format!("~{}", fmt_count(f.count))
        } else {
            fmt_count(f.count)
        };
        let p99 = if f.count == 0 {
            "-".to_string()
        } else if f.percentiles_are_bounds() {
            format!("≤{}", fmt_ns_u(f.p99_inclusive_ns))
        } else {
            fmt_ns_u(f.p99_inclusive_ns)
        };
        let mut row: Vec<Cell> = vec![
            count.into(),
            fmt_ns_u(f.inclusive_ns).into(),
            fmt_ns_u(f.inherent_ns).into(),
            fmt_ns(f.avg_ns()).into(),
            fmt_ns(f.avg_inherent_ns()).into(),
            p99.into(),
            fmt_ns_u(f.max_inclusive_ns).into(),
        ];
        if wide {
            row.push(Cell::styled(f.state.as_str(), style));
            row.push(f.module_path.as_str().into());
            row.push(f.source.clone().unwrap_or_default().into());
        }
        row.push(Cell::styled(f.display_name(), style));
        t.push(row);
    }
    t
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(out: &mut dyn Write, rows: &[&Func]) -> Result<()> {
    writeln!(
        out,
        "name,symbol,module,ordinal,state,count,inclusive_ns,inherent_ns,avg_ns,avg_inherent_ns,p99_ns,p99_upper_bound,max_ns,partial,source"
    )?;
    for f in rows {
        let r = Row::of(f);
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_default();
        let fields = [
            csv_field(&r.name),
            csv_field(&r.symbol),
            csv_field(&r.module),
            r.ordinal.to_string(),
            r.state.as_str().to_string(),
            r.count.to_string(),
            r.inclusive_ns.to_string(),
            r.inherent_ns.to_string(),
            opt(r.avg_ns),
            opt(r.avg_inherent_ns),
            r.p99_ns.to_string(),
            r.percentiles_upper_bound.to_string(),
            r.max_ns.to_string(),
            r.partial.to_string(),
            csv_field(r.source.as_deref().unwrap_or("")),
        ];
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

/// How long the score card waits before a verdict ("judged ≥ 200 ms …"),
/// how long removal can be held up, and the calls a removal needs. One
/// line of at most 100 characters.
fn judging_window(h: &Hotspot) -> String {
    if h.min_judging_ms <= 0.0 && h.min_removal_ms <= 0.0 {
        return "judged from the first call (Satoris' rule)".to_string();
    }
    let once = "once calls reach a threshold";
    let mut line = if h.min_judging_ms > 0.0 {
        format!("judged ≥ {} ms {once}", h.min_judging_ms)
    } else {
        "hot at once".to_string()
    };
    if h.min_removal_ms > h.min_judging_ms {
        let once = if h.min_judging_ms > 0.0 {
            String::new()
        } else {
            format!("{once} ")
        };
        line.push_str(&format!(
            "; removal held ≤ {} ms {once}(≤ 32 at once)",
            h.min_removal_ms
        ));
    }
    line.push_str(", ≥ 128 calls");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(judging: f64, removal: f64) -> String {
        judging_window(&Hotspot {
            min_judging_ms: judging,
            min_removal_ms: removal,
            ..Hotspot::default()
        })
    }

    #[test]
    fn the_judging_line_names_each_wait_in_force() {
        assert_eq!(
            window(0.0, 0.0),
            "judged from the first call (Satoris' rule)"
        );
        assert_eq!(
            window(200.0, 1000.0),
            "judged ≥ 200 ms once calls reach a threshold; removal held ≤ 1000 ms (≤ 32 at once), \
             ≥ 128 calls"
        );
        assert_eq!(
            window(200.0, 100.0),
            "judged ≥ 200 ms once calls reach a threshold, ≥ 128 calls"
        );
        assert_eq!(
            window(0.0, 1000.0),
            "hot at once; removal held ≤ 1000 ms once calls reach a threshold (≤ 32 at once), \
             ≥ 128 calls"
        );
        for (j, r) in [(9999.0, 99999.0), (0.0, 99999.0)] {
            assert!(window(j, r).chars().count() <= 100, "{}", window(j, r));
        }
    }
}

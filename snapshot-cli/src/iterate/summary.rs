//! What the loop leaves behind: each iteration's `iteration.toml` (phase
//! timings, throughput, how the server ended), and at the end the
//! convergence table, the final hotspot table and the per-iteration table on
//! stdout, `summary.md` with the same tables in markdown, and
//! `flamegraph.svg` of the last iteration.

use super::progress::Phase;
use crate::converge::{self, Convergence};
use crate::error::Result;
use crate::flamegraph::{self, FlamegraphArgs, Weight};
use crate::output::{color_enabled, table_width, ColorChoice, Style};
use crate::report::{self, ReportArgs, ReportFormat, SortKey};
use crate::table::{Column, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One completed (or failed) iteration.
#[derive(Debug, Clone, Serialize)]
pub struct IterRecord {
    pub iteration: usize,
    #[serde(skip)]
    pub dir: PathBuf,
    /// Entries of the probe set it ran with (none in the first iteration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_set: Option<usize>,
    pub snapshots: usize,
    /// Seconds per phase (`refine`, `run` or `start`/`ready`/`load`/`stop`).
    pub seconds: BTreeMap<&'static str, f64>,
    pub total_seconds: f64,
    /// The first capture group of each match of --throughput-regex.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throughput: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_exit: Option<String>,
    /// Why the iteration did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl IterRecord {
    pub fn timings(&mut self, done: &[(Phase, Duration)]) {
        for (p, d) in done {
            *self.seconds.entry(p.key()).or_default() += d.as_secs_f64();
        }
        self.total_seconds = self.seconds.values().sum();
        // Milliseconds are plenty for iteration.toml.
        let ms = |s: f64| (s * 1e3).round() / 1e3;
        self.seconds.values_mut().for_each(|s| *s = ms(*s));
        self.total_seconds = ms(self.total_seconds);
    }

    /// Writes `iteration.toml` into its directory.
    pub fn write(&self) -> Result<()> {
        let text = toml::to_string(self).unwrap_or_default();
        let path = self.dir.join("iteration.toml");
        std::fs::write(&path, text)
            .map_err(|e| crate::CliError::failure(format!("{}: cannot write: {e}", path.display())))
    }

    fn seconds_of(&self, key: &str) -> Option<f64> {
        self.seconds.get(key).copied()
    }
}

/// Every match's first capture group in the files, as numbers (thousands
/// separators `,` and `_` ignored); unparsable captures are skipped.
pub fn throughput(re: &regex::Regex, files: &[PathBuf]) -> Vec<f64> {
    let mut values = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        // redis-benchmark redraws its progress with \r: each redraw is a line.
        for line in text.split(['\n', '\r']) {
            for caps in re.captures_iter(line) {
                if let Some(v) = caps.get(1).and_then(|m| {
                    m.as_str()
                        .replace([',', '_'], "")
                        .trim()
                        .parse::<f64>()
                        .ok()
                }) {
                    values.push(v);
                }
            }
        }
    }
    values
}

fn fmt_throughput(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".to_string();
    }
    v.iter()
        .map(|x| {
            if x.fract() == 0.0 || x.abs() >= 1000.0 {
                crate::units::fmt_count(x.round() as u64)
            } else {
                format!("{x:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn fmt_s(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |s| format!("{s:.2}"))
}

/// The per-iteration table: probe set, snapshots, phase seconds, throughput.
pub fn iterations_table(records: &[IterRecord], with_throughput: bool) -> Table {
    let server = records
        .iter()
        .any(|r| r.seconds.contains_key("load") || r.seconds.contains_key("start"));
    let mut cols = vec![
        Column::right("#"),
        Column::right("Probe set"),
        Column::right("Snapshots"),
    ];
    let keys: &[(&str, &str)] = if server {
        &[
            ("refine", "Refine s"),
            ("start", "Start s"),
            ("ready", "Ready s"),
            ("load", "Load s"),
            ("stop", "Stop s"),
        ]
    } else {
        &[("refine", "Refine s"), ("run", "Run s")]
    };
    cols.extend(keys.iter().map(|(_, h)| Column::right(h)));
    cols.push(Column::right("Total s"));
    if with_throughput {
        cols.push(Column::right("Throughput"));
    }
    cols.push(Column::flex("Note"));
    let mut t = Table::new(cols);
    for r in records {
        let mut row = vec![
            r.iteration.to_string().into(),
            r.probe_set
                .map_or("all".to_string(), |n| n.to_string())
                .into(),
            r.snapshots.to_string().into(),
        ];
        row.extend(keys.iter().map(|(k, _)| fmt_s(r.seconds_of(k)).into()));
        row.push(format!("{:.2}", r.total_seconds).into());
        if with_throughput {
            row.push(fmt_throughput(&r.throughput).into());
        }
        row.push(r.failed.clone().unwrap_or_default().into());
        t.push(row);
    }
    t
}

/// The final report's arguments on one iteration directory.
fn report_args(dir: &Path, rows: usize, format: ReportFormat, color: ColorChoice) -> ReportArgs {
    ReportArgs {
        snapshots: vec![dir.to_path_buf()],
        sort: SortKey::Inherent,
        top: Some(rows),
        include: vec![],
        exclude: vec![],
        state: vec![],
        all: false,
        format,
        wide: false,
        color,
    }
}

/// What the end of the loop shows and writes.
pub struct Summary<'a> {
    pub out_dir: &'a Path,
    pub workload: &'a str,
    pub records: &'a [IterRecord],
    /// Over the completed iterations.
    pub convergence: Option<&'a Convergence>,
    pub rows: usize,
    pub with_throughput: bool,
    /// Why the loop stopped, when it did not complete.
    pub stopped: Option<&'a str>,
}

impl Summary<'_> {
    /// The convergence with directories shown relative to the results.
    fn relative(&self, c: &Convergence) -> Convergence {
        let mut c = c.clone();
        for it in &mut c.iterations {
            if let Ok(rel) = it.dir.strip_prefix(self.out_dir) {
                it.dir = rel.to_path_buf();
            }
        }
        c
    }

    fn last_complete(&self) -> Option<&IterRecord> {
        self.records
            .iter()
            .rev()
            .find(|r| r.failed.is_none() && r.snapshots > 0)
    }

    /// The tables on `out`.
    pub fn print(&self, out: &mut dyn Write) -> Result<()> {
        let color = color_enabled(ColorChoice::Auto);
        let heading = |t: &str| Style::Bold.paint(t, color);
        writeln!(out, "{}", heading("Iterations"))?;
        write!(
            out,
            "{}",
            iterations_table(self.records, self.with_throughput).render(Some(table_width()), color)
        )?;
        if let Some(c) = self.convergence {
            writeln!(out, "\n{}", heading("Convergence"))?;
            write!(
                out,
                "{}",
                converge::table(&self.relative(c)).render(Some(table_width()), color)
            )?;
            let style = if c.settled {
                Style::Green
            } else {
                Style::Yellow
            };
            writeln!(out, "{}", style.paint(&c.verdict, color))?;
        }
        if let Some(last) = self.last_complete() {
            writeln!(
                out,
                "\n{}",
                heading(&format!(
                    "Hotspots of iteration {} ({})",
                    last.iteration,
                    last.dir.display()
                ))
            )?;
            report::run(
                &report_args(&last.dir, self.rows, ReportFormat::Table, ColorChoice::Auto),
                out,
            )?;
        }
        if let Some(why) = self.stopped {
            writeln!(out, "\nstopped: {why}")?;
        }
        writeln!(out, "\nresults: {}", self.out_dir.display())?;
        Ok(())
    }

    /// `summary.md` in the results directory.
    pub fn write_markdown(&self) -> Result<PathBuf> {
        let mut md = Vec::new();
        writeln!(md, "# hotprobe iterate\n")?;
        writeln!(md, "Workload: `{}`  ", self.workload.replace('`', "'"))?;
        writeln!(md, "Results: `{}`\n", self.out_dir.display())?;
        if let Some(why) = self.stopped {
            writeln!(md, "**Stopped:** {why}\n")?;
        }
        writeln!(md, "## Iterations\n")?;
        write!(
            md,
            "{}",
            iterations_table(self.records, self.with_throughput).render_markdown()
        )?;
        if let Some(c) = self.convergence {
            writeln!(md, "\n## Convergence\n")?;
            write!(
                md,
                "{}",
                converge::table(&self.relative(c)).render_markdown()
            )?;
            writeln!(md, "\n{}", c.verdict)?;
        }
        if let Some(last) = self.last_complete() {
            writeln!(md, "\n## Hotspots of iteration {}\n", last.iteration)?;
            report::run(
                &report_args(
                    &last.dir,
                    self.rows,
                    ReportFormat::Markdown,
                    ColorChoice::Never,
                ),
                &mut md,
            )?;
            if self.out_dir.join("flamegraph.svg").is_file() {
                writeln!(md, "\nFlame graph: [flamegraph.svg](flamegraph.svg)")?;
            }
        }
        let path = self.out_dir.join("summary.md");
        std::fs::write(&path, md).map_err(|e| {
            crate::CliError::failure(format!("{}: cannot write: {e}", path.display()))
        })?;
        Ok(path)
    }

    /// `flamegraph.svg` of the last complete iteration; the reason when there is none.
    pub fn write_flamegraph(&self) -> std::result::Result<PathBuf, String> {
        let last = self
            .last_complete()
            .ok_or_else(|| "no iteration completed".to_string())?;
        let path = self.out_dir.join("flamegraph.svg");
        let args = FlamegraphArgs {
            snapshots: vec![last.dir.clone()],
            output: path.clone(),
            folded: false,
            weight: Weight::Inherent,
            title: Some(format!(
                "hotprobe iterate: iteration {} — inherent time",
                last.iteration
            )),
        };
        flamegraph::run(&args).map_err(|e| e.message)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_every_first_group() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("load.stdout");
        std::fs::write(
            &f,
            "SET: rps=0.0 (overall: nan) avg_msec=nan\rSET: 81234.57 requests per second, p50=0.1 msec\nGET: 1,234,567.00 requests per second\n",
        )
        .unwrap();
        let re = regex::Regex::new(r"([0-9.,]+) requests per second").unwrap();
        assert_eq!(
            throughput(&re, &[f, dir.path().join("missing")]),
            vec![81234.57, 1234567.0]
        );
        assert_eq!(fmt_throughput(&[81234.57, 12.5]), "81,235 / 12.50");
    }

    #[test]
    fn iteration_record_sums_phases() {
        let mut r = IterRecord {
            iteration: 2,
            dir: PathBuf::from("/x"),
            probe_set: Some(12),
            snapshots: 1,
            seconds: BTreeMap::new(),
            total_seconds: 0.0,
            throughput: vec![],
            server_exit: None,
            failed: None,
        };
        r.timings(&[
            (Phase::Refining, Duration::from_millis(100)),
            (Phase::Load, Duration::from_millis(1500)),
            (Phase::Load, Duration::from_millis(500)),
        ]);
        assert!((r.total_seconds - 2.1).abs() < 1e-9);
        assert_eq!(r.seconds["load"], 2.0);
        let text = toml::to_string(&r).unwrap();
        assert!(
            text.contains("probe_set = 12") && text.contains("load = 2.0"),
            "{text}"
        );
        let t = iterations_table(&[r], false).render(Some(200), false);
        assert!(t.contains("Load s") && t.contains("2.00"), "{t}");
    }
}

//! `--fail-if` expressions of `hotprobe diff`: `METRIC OP VALUE`, e.g.
//! `avg_inherent>+10%`, `avg>+500ns`, `count<-20%`, `hot_added>0`,
//! `jaccard<0.9`.

use crate::units::split_unit;
use std::fmt;

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    // Per function (common to both sides, with calls on both).
    Count,
    Avg,
    AvgInherent,
    Total,
    Inherent,
    P50,
    P99,
    Max,
    // Whole comparison.
    HotAdded,
    HotRemoved,
    Added,
    Removed,
    Changed,
    Jaccard,
    Spearman,
}

pub const PER_FUNCTION: &str = "count, avg, avg_inherent, total, inherent, p50, p99, max";
pub const GLOBAL: &str = "hot_added, hot_removed, added, removed, changed, jaccard, spearman";

impl Metric {
    fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "count" | "calls" => Metric::Count,
            "avg" => Metric::Avg,
            "avg_inherent" | "avg_i" => Metric::AvgInherent,
            "total" => Metric::Total,
            "inherent" | "total_inherent" => Metric::Inherent,
            "p50" | "median" => Metric::P50,
            "p99" => Metric::P99,
            "max" => Metric::Max,
            "hot_added" => Metric::HotAdded,
            "hot_removed" => Metric::HotRemoved,
            "added" => Metric::Added,
            "removed" => Metric::Removed,
            "changed" => Metric::Changed,
            "jaccard" => Metric::Jaccard,
            "spearman" => Metric::Spearman,
            _ => return None,
        })
    }

    pub fn per_function(self) -> bool {
        matches!(
            self,
            Metric::Count
                | Metric::Avg
                | Metric::AvgInherent
                | Metric::Total
                | Metric::Inherent
                | Metric::P50
                | Metric::P99
                | Metric::Max
        )
    }

    /// The probe fields the metric is computed from: where a side's
    /// snapshots lack one (an older agent), the metric cannot be compared.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Metric::Count => &["count"],
            Metric::Avg => &["count", "inclusive_ns"],
            Metric::AvgInherent => &["count", "inherent_ns"],
            Metric::Total => &["inclusive_ns"],
            Metric::Inherent | Metric::Spearman => &["inherent_ns"],
            Metric::P50 => &["p50_inclusive_ns"],
            Metric::P99 => &["p99_inclusive_ns"],
            Metric::Max => &["max_inclusive_ns"],
            // Probe states and which probes exist: every snapshot has them.
            Metric::HotAdded
            | Metric::HotRemoved
            | Metric::Added
            | Metric::Removed
            | Metric::Changed
            | Metric::Jaccard => &[],
        }
    }

    /// The name `--fail-if` knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Count => "count",
            Metric::Avg => "avg",
            Metric::AvgInherent => "avg_inherent",
            Metric::Total => "total",
            Metric::Inherent => "inherent",
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::Max => "max",
            Metric::HotAdded => "hot_added",
            Metric::HotRemoved => "hot_removed",
            Metric::Added => "added",
            Metric::Removed => "removed",
            Metric::Changed => "changed",
            Metric::Jaccard => "jaccard",
            Metric::Spearman => "spearman",
        }
    }

    /// Every metric, per-function ones first.
    pub const ALL: [Metric; 15] = [
        Metric::Count,
        Metric::Avg,
        Metric::AvgInherent,
        Metric::Total,
        Metric::Inherent,
        Metric::P50,
        Metric::P99,
        Metric::Max,
        Metric::HotAdded,
        Metric::HotRemoved,
        Metric::Added,
        Metric::Removed,
        Metric::Changed,
        Metric::Jaccard,
        Metric::Spearman,
    ];

    /// Whether the metric is a time (ns), so units and the noise floor apply.
    pub fn is_time(self) -> bool {
        self.per_function() && self != Metric::Count
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn holds(self, x: f64, v: f64) -> bool {
        match self {
            Op::Gt => x > v,
            Op::Ge => x >= v,
            Op::Lt => x < v,
            Op::Le => x <= v,
        }
    }
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    /// The threshold: a fraction when `relative` (10% → 0.10), else ns, calls or a plain number.
    pub value: f64,
    pub relative: bool,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses every `--fail-if` value (each may hold several, comma-separated).
pub fn parse_all(values: &[String]) -> Result<Vec<Condition>, String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

pub fn parse(text: &str) -> Result<Condition, String> {
    let bad = |why: String| format!("--fail-if `{text}`: {why}");
    let (pos, op, len) = ["<=", ">=", "<", ">"]
        .iter()
        .filter_map(|o| text.find(o).map(|p| (p, *o)))
        .min_by_key(|(p, o)| (*p, std::cmp::Reverse(o.len())))
        .map(|(p, o)| {
            let op = match o {
                "<=" => Op::Le,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                _ => Op::Gt,
            };
            (p, op, o.len())
        })
        .ok_or_else(|| {
            bad("no comparison; write METRIC>VALUE or METRIC<VALUE, e.g. avg_inherent>+10%".into())
        })?;
    let name = text[..pos].trim();
    let value = text[pos + len..].trim();
    let metric = Metric::parse(name).ok_or_else(|| {
        bad(format!(
            "unknown metric `{name}`; per function: {PER_FUNCTION}; overall: {GLOBAL}"
        ))
    })?;
    if value.is_empty() {
        return Err(bad("no value after the comparison".into()));
    }
    let (relative, number_text, scale) = if let Some(n) = value.strip_suffix('%') {
        (true, n.trim(), 0.01)
    } else if metric.is_time() {
        let (n, scale) =
            split_unit(value).ok_or_else(|| bad(format!("`{value}` is not a duration")))?;
        (false, n.trim(), scale)
    } else {
        (false, value, 1.0)
    };
    if relative && !metric.per_function() {
        return Err(bad(format!(
            "`{name}` is a plain number, not a change; drop the %"
        )));
    }
    let number: f64 = number_text
        .parse()
        .map_err(|_| bad(format!("`{value}` is not a number")))?;
    if !number.is_finite() {
        return Err(bad(format!("`{value}` is not a finite number")));
    }
    Ok(Condition {
        text: text.trim().to_string(),
        metric,
        op,
        value: number * scale,
        relative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions() {
        let c = parse("avg_inherent>+10%").unwrap();
        assert_eq!(
            (c.metric, c.op, c.relative),
            (Metric::AvgInherent, Op::Gt, true)
        );
        assert!((c.value - 0.10).abs() < 1e-12);
        let c = parse("count < -20%").unwrap();
        assert_eq!((c.metric, c.op), (Metric::Count, Op::Lt));
        assert!((c.value + 0.2).abs() < 1e-12);
        let c = parse("avg>=+2us").unwrap();
        assert_eq!((c.op, c.relative, c.value), (Op::Ge, false, 2000.0));
        let c = parse("jaccard<0.9").unwrap();
        assert_eq!((c.metric, c.value), (Metric::Jaccard, 0.9));
        assert_eq!(
            parse_all(&["hot_added>0,hot_removed>0".into(), "spearman<0.8".into()])
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "avg",
            "speed>1",
            "avg>",
            "avg>fast",
            "jaccard<90%",
            "count>1e999",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("speed>1")
            .unwrap_err()
            .contains("unknown metric `speed`"));
    }

    #[test]
    fn every_metric_parses_by_its_name_and_names_real_fields() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()), Some(m));
            for f in m.fields() {
                assert!(crate::probetable::MEASUREMENTS.contains(f), "{f}");
            }
        }
    }
}

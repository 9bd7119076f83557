//! Which measurements two sets of snapshots can be compared on. A snapshot
//! of another agent version may lack a field (an older agent wrote no
//! `p50_inclusive_ns`); the contract's readers give it its default, 0, which
//! is no measurement: compared with a real one it reads as a change of
//! −100 %. So a metric is compared only where both sides have every field it
//! is computed from.

use crate::failif::Metric;
use crate::merge::Merged;
use serde::Serialize;
use std::collections::BTreeSet;

/// The measurement fields each side lacks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparable {
    /// Fields some snapshot of A lacks, in `probetable::MEASUREMENTS` order.
    pub a: Vec<&'static str>,
    pub b: Vec<&'static str>,
    #[serde(skip)]
    versions_a: String,
    #[serde(skip)]
    versions_b: String,
}

impl Comparable {
    pub fn of(a: &Merged, b: &Merged) -> Comparable {
        Comparable {
            a: a.probe_fields.missing_measurements(),
            b: b.probe_fields.missing_measurements(),
            versions_a: agent_versions(&a.agent_versions),
            versions_b: agent_versions(&b.agent_versions),
        }
    }

    /// Whether both sides have every field `m` is computed from.
    pub fn metric(&self, m: Metric) -> bool {
        self.why_not(m).is_none()
    }

    /// Why `m` cannot be compared ("B (agent 0.0.9) has no p50_inclusive_ns"), if it cannot.
    pub fn why_not(&self, m: Metric) -> Option<String> {
        let lacking = |missing: &[&'static str]| -> Vec<&'static str> {
            m.fields()
                .iter()
                .copied()
                .filter(|f| missing.contains(f))
                .collect()
        };
        let sides: Vec<String> = [
            ("A", &self.a, &self.versions_a),
            ("B", &self.b, &self.versions_b),
        ]
        .into_iter()
        .filter_map(|(side, missing, versions)| {
            let fields = lacking(missing);
            (!fields.is_empty())
                .then(|| format!("{side} (agent {versions}) has no {}", fields.join(", ")))
        })
        .collect();
        (!sides.is_empty()).then(|| sides.join(" and "))
    }

    /// One note per side that lacks fields: what it lacks and what is therefore not compared.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (side, missing, versions) in [
            ("A", &self.a, &self.versions_a),
            ("B", &self.b, &self.versions_b),
        ] {
            if missing.is_empty() {
                continue;
            }
            let skipped: Vec<&str> = Metric::ALL
                .iter()
                .filter(|m| m.fields().iter().any(|f| missing.contains(f)))
                .map(|m| m.name())
                .collect();
            notes.push(format!(
                "{side}'s snapshots (agent {versions}) have no {}: {} not compared",
                missing.join(", "),
                skipped.join(", ")
            ));
        }
        notes
    }
}

fn agent_versions(s: &BTreeSet<String>) -> String {
    let v: Vec<&str> = s
        .iter()
        .map(|x| if x.is_empty() { "unknown" } else { x.as_str() })
        .collect();
    if v.is_empty() {
        "unknown".into()
    } else {
        v.join("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(missing: &[&'static str], version: &str) -> (Vec<&'static str>, String) {
        (missing.to_vec(), version.to_string())
    }

    #[test]
    fn a_metric_is_compared_where_both_sides_have_its_fields() {
        let (a, versions_a) = side(&[], "0.2.0");
        let (b, versions_b) = side(&["p50_inclusive_ns", "p99_inclusive_ns"], "0.1.0");
        let c = Comparable {
            a,
            b,
            versions_a,
            versions_b,
        };
        assert!(c.metric(Metric::Avg) && c.metric(Metric::Jaccard));
        assert!(!c.metric(Metric::P50) && !c.metric(Metric::P99));
        assert_eq!(
            c.why_not(Metric::P50).unwrap(),
            "B (agent 0.1.0) has no p50_inclusive_ns"
        );
        assert_eq!(
            c.notes(),
            vec![
                "B's snapshots (agent 0.1.0) have no p50_inclusive_ns, p99_inclusive_ns: \
                 p50, p99 not compared"
            ]
        );
    }
}

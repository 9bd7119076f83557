//! The probe set (`hotprobe.probeset/1`): the functions to probe on the
//! next run, written by `hotprobe refine` and read by the agent.

use crate::error::{line_of, ConfigError, Origin};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const PROBESET_SCHEMA: &str = "hotprobe.probeset/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSet {
    pub schema: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, rename = "probe")]
    pub probes: Vec<ProbeSetEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct ProbeSetEntry {
    /// File name of the object, or a glob over its path.
    pub module: String,
    pub symbol: String,
    /// For people; matching uses `symbol`, then `name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// File offset, only to tell apart same-symbol functions of one module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl ProbeSet {
    pub fn new(source: impl Into<String>, probes: Vec<ProbeSetEntry>) -> ProbeSet {
        ProbeSet {
            schema: PROBESET_SCHEMA.into(),
            source: source.into(),
            probes,
        }
    }

    /// Reads and checks a probe-set file; errors name the file, line and key.
    pub fn read(path: &Path) -> Result<ProbeSet, ConfigError> {
        let at = |line| Origin::File {
            path: path.to_path_buf(),
            line,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                at(None),
                "",
                format!("cannot read probe set: {e}"),
                "check HOTPROBE_PROBESET / target.probe_set",
            )
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ProbeSet, ConfigError> {
        let at = |line| Origin::File {
            path: path.to_path_buf(),
            line,
        };
        let de = toml::Deserializer::new(text);
        let set: ProbeSet = serde_path_to_error::deserialize(de).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            ConfigError::new(
                at(inner.span().map(|s| line_of(text, s.start))),
                if key == "." {
                    String::new()
                } else {
                    key.replace(".$__serde_spanned_private_value", "")
                },
                inner.message().to_string(),
                "regenerate it with `hotprobe refine`",
            )
        })?;
        if set.schema != PROBESET_SCHEMA {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("schema"))
                .map(|i| i + 1);
            return Err(ConfigError::new(
                at(line),
                "schema",
                format!(
                    "unknown probe-set schema `{}` (this hotprobe reads `{PROBESET_SCHEMA}`)",
                    set.schema
                ),
                "regenerate it with `hotprobe refine`",
            ));
        }
        Ok(set)
    }

    /// TOML text with a stable order: equal sets give identical bytes.
    pub fn to_toml(&self) -> String {
        let mut sorted = self.clone();
        sorted.probes.sort();
        sorted.probes.dedup();
        toml::to_string(&sorted).expect("a probe set always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_stable() {
        let set = ProbeSet::new(
            "snap.json",
            vec![
                ProbeSetEntry {
                    module: "b".into(),
                    symbol: "f".into(),
                    name: "f".into(),
                    offset: None,
                },
                ProbeSetEntry {
                    module: "a".into(),
                    symbol: "g".into(),
                    name: String::new(),
                    offset: Some(12),
                },
            ],
        );
        let text = set.to_toml();
        let back = ProbeSet::parse(&text, Path::new("p.toml")).unwrap();
        assert_eq!(back.probes[0].module, "a");
        assert_eq!(back.to_toml(), text);
    }

    #[test]
    fn wrong_schema_is_refused_with_line() {
        let e = ProbeSet::parse(
            "# x\nschema = \"hotprobe.probeset/9\"\n",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert_eq!(e.key, "schema");
        assert!(e.to_string().starts_with("p.toml:2:"), "{e}");
    }

    #[test]
    fn unknown_probe_key_is_refused() {
        let e = ProbeSet::parse("schema = \"hotprobe.probeset/1\"\n[[probe]]\nmodule = \"m\"\nsymbol = \"s\"\nweight = 3\n", Path::new("p.toml")).unwrap_err();
        assert!(e.key.starts_with("probe"), "{e}");
        assert!(e.to_string().contains(":5:"), "{e}");
    }
}

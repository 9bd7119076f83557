//! The snapshot (`hotprobe.snapshot/1`): what one process image measured.
//! Every field has a default so that snapshots of other agent versions are
//! read on their common fields (additive changes keep the schema name).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

pub const SNAPSHOT_SCHEMA: &str = "hotprobe.snapshot/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema: String,
    #[serde(default)]
    pub agent: AgentInfo,
    #[serde(default)]
    pub process: ProcessInfo,
    #[serde(default)]
    pub config: crate::Settings,
    #[serde(default)]
    pub overhead: Overhead,
    #[serde(default)]
    pub meter: MeterInfo,
    #[serde(default)]
    pub probes: Vec<ProbeRecord>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub contexts: Vec<ContextNode>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            schema: SNAPSHOT_SCHEMA.into(),
            agent: AgentInfo::default(),
            process: ProcessInfo::default(),
            config: crate::Settings::default(),
            overhead: Overhead::default(),
            meter: MeterInfo::default(),
            probes: Vec::new(),
            edges: Vec::new(),
            contexts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AgentInfo {
    pub version: String,
    pub backend: String,
    /// Why the agent ran unprobed (bad config, refused backend…), or null.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    #[default]
    Exit,
    Exec,
    Signal,
    Interval,
    Request,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Exit => "exit",
            Reason::Exec => "exec",
            Reason::Signal => "signal",
            Reason::Interval => "interval",
            Reason::Request => "request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Parent process id when the image started.
    pub ppid: u32,
    pub exe: String,
    pub argv: Vec<String>,
    pub build_id: Option<String>,
    pub started_unix_ns: u64,
    pub duration_ns: u64,
    pub reason: Reason,
    /// The signal that ended the process when `reason` is `signal`.
    pub signal: Option<i32>,
    /// When this snapshot was taken; with `sequence`, orders the snapshots of one image.
    pub taken_unix_ns: u64,
    /// 1 for the image's first snapshot, then 2, 3…
    pub sequence: u64,
    /// Set in a fork child: the pid it was forked from.
    pub forked_from: Option<u32>,
}

impl ProcessInfo {
    /// Identifies one process image: a pid reused or re-exec'd gets a new start time.
    pub fn image_key(&self) -> (u32, u64) {
        (self.pid, self.started_unix_ns)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Overhead {
    /// Calibrated cost of one probed call (entry + exit), in ns.
    pub probe_ns: f64,
    /// Part of that cost that falls inside the probed call's own window.
    pub inner_ns: f64,
    pub compensated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeterInfo {
    pub clock: String,
    pub tsc_hz: Option<f64>,
    pub memory_bytes: u64,
    pub unmetered: u64,
    /// Calls counted but not timed (no thread state yet or any more, e.g. a
    /// signal handler's call while a thread starts or ends).
    pub untimed: u64,
    pub lost_records: u64,
    pub contexts_truncated: bool,
    pub threads: u64,
}

impl Default for MeterInfo {
    fn default() -> Self {
        MeterInfo {
            clock: "monotonic".into(),
            tsc_hz: None,
            memory_bytes: 0,
            unmetered: 0,
            untimed: 0,
            lost_records: 0,
            contexts_truncated: false,
            threads: 0,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    Hot,
    #[default]
    Active,
    Disabled,
    Rejected,
}

impl ProbeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Hot => "hot",
            ProbeState::Active => "active",
            ProbeState::Disabled => "disabled",
            ProbeState::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ProbeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProbeRecord {
    pub id: u32,
    pub name: String,
    pub symbol: String,
    pub module: String,
    pub offset: u64,
    pub size: u64,
    pub source: Option<String>,
    pub state: ProbeState,
    pub reason: Option<String>,
    pub score: i64,
    pub disabled_at_ns: Option<u64>,
    pub count: u64,
    pub abandoned: u64,
    pub in_flight: u64,
    pub inclusive_ns: u64,
    pub inherent_ns: u64,
    pub max_inclusive_ns: u64,
    pub p50_inclusive_ns: u64,
    pub p99_inclusive_ns: u64,
}

impl ProbeRecord {
    /// The file name of the module: how modules are matched across runs.
    pub fn module_file_name(&self) -> &str {
        module_file_name(&self.module)
    }
}

pub fn module_file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Edge {
    pub caller: u32,
    pub callee: u32,
    pub count: u64,
    pub inclusive_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContextNode {
    pub id: u32,
    pub parent: Option<u32>,
    pub probe: u32,
    pub count: u64,
    pub inclusive_ns: u64,
    pub inherent_ns: u64,
}

/// Why a file could not be read as a snapshot.
#[derive(Debug)]
pub struct ReadError {
    pub path: PathBuf,
    /// The field at fault (`probes[3].count`), if known.
    pub field: Option<String>,
    pub problem: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ReadError {}

impl Snapshot {
    /// Reads a snapshot file and checks its schema.
    pub fn read(path: &Path) -> Result<Snapshot, ReadError> {
        let bytes = std::fs::read(path).map_err(|e| ReadError {
            path: path.into(),
            field: None,
            problem: format!("cannot read: {e}"),
        })?;
        Self::from_slice(&bytes, path)
    }

    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Snapshot, ReadError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            let problem = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => "not a hotprobe snapshot (the file is JSON but not an object)".to_string(),
                Err(e) => format!("not JSON ({e})"),
            };
            return Err(ReadError {
                path: path.into(),
                field: None,
                problem,
            });
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, Wire>(&mut de) {
            Ok(wire) if wire.schema == SNAPSHOT_SCHEMA => wire.into_snapshot(path),
            Ok(_) => Err(schema_problem(bytes, path)),
            Err(err) => {
                // A file of another schema fails on some field; say what it is instead.
                let schema_error = schema_problem(bytes, path);
                if schema_error.field.is_some() || err.inner().is_syntax() || err.inner().is_eof() {
                    if err.inner().is_syntax() || err.inner().is_eof() {
                        return Err(ReadError {
                            path: path.into(),
                            field: None,
                            problem: format!("not JSON ({})", err.inner()),
                        });
                    }
                    return Err(schema_error);
                }
                let field = err.path().to_string();
                Err(ReadError {
                    path: path.into(),
                    field: Some(field).filter(|f| f != "."),
                    problem: err.into_inner().to_string(),
                })
            }
        }
    }

    /// Serialized form, as the agent writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a snapshot always serializes")
    }
}

/// The members every snapshot has had since the first agent wrote one.
/// Without them a file is no snapshot (`{"schema": …}` alone would read as
/// pid 0 with no probes); every other member may be missing (an older or
/// newer agent) and takes its default.
pub const REQUIRED_MEMBERS: [&str; 3] = ["agent", "process", "probes"];

/// The error for a snapshot without one of [`REQUIRED_MEMBERS`].
pub fn missing_member(path: &Path, member: &str) -> ReadError {
    ReadError {
        path: path.into(),
        field: Some(member.into()),
        problem: "missing: every hotprobe snapshot has it (this file was not written by the agent, or was cut)"
            .into(),
    }
}

/// The snapshot as read: the required members as options, so a missing one
/// is told from an empty one (a derived `Snapshot` would default it).
#[derive(Deserialize)]
struct Wire {
    schema: String,
    agent: Option<AgentInfo>,
    process: Option<ProcessInfo>,
    #[serde(default)]
    config: crate::Settings,
    #[serde(default)]
    overhead: Overhead,
    #[serde(default)]
    meter: MeterInfo,
    probes: Option<Vec<ProbeRecord>>,
    #[serde(default)]
    edges: Vec<Edge>,
    #[serde(default)]
    contexts: Vec<ContextNode>,
}

impl Wire {
    fn into_snapshot(self, path: &Path) -> Result<Snapshot, ReadError> {
        let present = [
            self.agent.is_some(),
            self.process.is_some(),
            self.probes.is_some(),
        ];
        if let Some(first) = present.iter().position(|p| !p) {
            return Err(missing_member(path, REQUIRED_MEMBERS[first]));
        }
        Ok(Snapshot {
            schema: self.schema,
            agent: self.agent.unwrap_or_default(),
            process: self.process.unwrap_or_default(),
            config: self.config,
            overhead: self.overhead,
            meter: self.meter,
            probes: self.probes.unwrap_or_default(),
            edges: self.edges,
            contexts: self.contexts,
        })
    }
}

/// What is wrong with the schema of a JSON object; `field` is None when the schema is ours.
fn schema_problem(bytes: &[u8], path: &Path) -> ReadError {
    #[derive(Deserialize)]
    struct Head {
        schema: Option<serde_json::Value>,
    }
    let err = |field: Option<&str>, problem: String| ReadError {
        path: path.into(),
        field: field.map(String::from),
        problem,
    };
    let Ok(head) = serde_json::from_slice::<Head>(bytes) else {
        return err(None, "not a hotprobe snapshot".into());
    };
    match head.schema {
        None => err(Some("schema"), "missing: not a hotprobe snapshot".into()),
        Some(serde_json::Value::String(s)) if s == SNAPSHOT_SCHEMA => err(None, String::new()),
        Some(serde_json::Value::String(s)) if s.starts_with("hotprobe.snapshot/") => err(
            Some("schema"),
            format!("unknown snapshot schema `{s}`; this hotprobe reads `{SNAPSHOT_SCHEMA}`"),
        ),
        Some(other) => err(
            Some("schema"),
            format!("`{other}` is not a hotprobe snapshot schema"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_unknown_fields_are_read() {
        let s = Snapshot::from_slice(br#"{"schema":"hotprobe.snapshot/1","agent":{},"process":{"pid":4},"future":{"x":1},"probes":[{"id":3,"name":"f","newfield":2}]}"#, Path::new("s.json")).unwrap();
        assert_eq!(s.probes[0].id, 3);
        assert_eq!(s.probes[0].state, ProbeState::Active);
        assert_eq!((s.process.pid, s.meter.unmetered), (4, 0));
    }

    #[test]
    fn required_members_are_required() {
        let e = Snapshot::from_slice(br#"{"schema":"hotprobe.snapshot/1"}"#, Path::new("x.json"))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("agent"), "{e}");
        assert!(
            e.to_string().starts_with("x.json: field `agent`: missing"),
            "{e}"
        );
        let e = Snapshot::from_slice(
            br#"{"schema":"hotprobe.snapshot/1","agent":{},"probes":[]}"#,
            Path::new("y.json"),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("process"), "{e}");
        let e = Snapshot::from_slice(
            br#"{"schema":"hotprobe.snapshot/1","agent":{},"process":{}}"#,
            Path::new("z.json"),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("probes"), "{e}");
        // A wrong type is reported before a missing member.
        let e = Snapshot::from_slice(
            br#"{"schema":"hotprobe.snapshot/1","process":{"pid":"x"}}"#,
            Path::new("w.json"),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("process.pid"), "{e}");
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = Snapshot::from_slice(b"not json", Path::new("a.json")).unwrap_err();
        assert!(e.to_string().starts_with("a.json: not JSON"), "{e}");
        let e = Snapshot::from_slice(br#"{"hello":1}"#, Path::new("b.json")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("schema"));
        let e = Snapshot::from_slice(br#"{"schema":"hotprobe.snapshot/7"}"#, Path::new("c.json"))
            .unwrap_err();
        assert!(e.problem.contains("unknown snapshot schema"), "{e}");
        let e = Snapshot::from_slice(
            br#"{"schema":"hotprobe.snapshot/1","probes":[{"id":1},{"count":"many"}]}"#,
            Path::new("d.json"),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("probes[1].count"), "{e}");
        let e = Snapshot::from_slice(b"[1,2]", Path::new("e.json")).unwrap_err();
        assert!(e.problem.contains("not a hotprobe snapshot"), "{e}");
    }

    #[test]
    fn round_trip() {
        let mut s = Snapshot::default();
        s.probes.push(ProbeRecord {
            id: 1,
            name: "f".into(),
            state: ProbeState::Hot,
            count: 9,
            ..Default::default()
        });
        let back = Snapshot::from_slice(s.to_json().as_bytes(), Path::new("x")).unwrap();
        assert_eq!(back, s);
    }
}

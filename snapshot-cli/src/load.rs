//! Reading snapshots: expanding directories, reading files in parallel,
//! and keeping only the latest snapshot of each process image.
//!
//! Verbs that need only the probe table read a [`LightSnapshot`], which
//! skips `edges` and `contexts` (by far the largest part of a big snapshot)
//! without building them. A file that fails to read is re-read with the
//! contract's [`Snapshot::from_slice`] so the error names the file and the
//! field exactly as every hotprobe tool does.

use crate::error::{CliError, Result};
use crate::probetable::ProbeTable;
use hotprobe_config::snapshot::{AgentInfo, MeterInfo, Overhead, ProcessInfo, SNAPSHOT_SCHEMA};
use hotprobe_config::{Settings, Snapshot};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A snapshot without `edges` and `contexts`, its probe table compact.
#[derive(Debug, Clone, Default)]
pub struct LightSnapshot {
    pub schema: String,
    pub agent: AgentInfo,
    pub process: ProcessInfo,
    pub config: Settings,
    pub overhead: Overhead,
    pub meter: MeterInfo,
    pub probes: ProbeTable,
}

impl From<Snapshot> for LightSnapshot {
    fn from(s: Snapshot) -> LightSnapshot {
        LightSnapshot {
            schema: s.schema,
            agent: s.agent,
            process: s.process,
            config: s.config,
            overhead: s.overhead,
            meter: s.meter,
            probes: ProbeTable::from_records(&s.probes),
        }
    }
}

/// What both snapshot forms share for image bookkeeping.
pub trait HasProcess {
    fn process(&self) -> &ProcessInfo;
}

impl HasProcess for LightSnapshot {
    fn process(&self) -> &ProcessInfo {
        &self.process
    }
}

impl HasProcess for Snapshot {
    fn process(&self) -> &ProcessInfo {
        &self.process
    }
}

/// A snapshot and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub path: PathBuf,
    pub snap: S,
}

/// The snapshots that count and the ones superseded by a later snapshot of
/// the same process image.
#[derive(Debug, Clone)]
pub struct Inputs<S> {
    pub snapshots: Vec<Loaded<S>>,
    pub superseded: Vec<PathBuf>,
}

/// Files named on the command line, with each directory replaced by its
/// `*.json` files (sorted, not recursive). The same file named twice counts once.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input)
            .map_err(|e| CliError::failure(format!("{}: {}", input.display(), io_problem(&e))))?;
        if meta.is_dir() {
            let found = json_files_in(input)?;
            if found.is_empty() {
                return Err(CliError::failure(format!(
                    "{}: no snapshots (*.json files) in this directory",
                    input.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

/// The `*.json` files directly in `dir`, sorted by name.
pub fn json_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::failure(format!("{}: {}", dir.display(), io_problem(&e))))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| CliError::failure(format!("{}: {}", dir.display(), io_problem(&e))))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Reads one file as a light snapshot; errors name the file and the field.
pub fn read_light(path: &Path) -> Result<LightSnapshot> {
    thread_local! {
        // One buffer per reader thread, reused: big files need no fresh pages each time.
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        let mut bytes = buffer.borrow_mut();
        bytes.clear();
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(|e| {
                CliError::failure(format!(
                    "{}: cannot read: {}",
                    path.display(),
                    io_problem(&e)
                ))
            })?;
        let result = match parse_light(&bytes) {
            Some(s) if s.schema == SNAPSHOT_SCHEMA => Ok(s),
            _ => Err(contract_error(&bytes, path, "not a hotprobe snapshot")),
        };
        if bytes.capacity() > 256 << 20 {
            *bytes = Vec::new();
        }
        result
    })
}

/// The members a light snapshot needs, parsed; the others stepped over.
/// `None` on any problem (the caller then asks the contract's reader why).
pub fn parse_light(bytes: &[u8]) -> Option<LightSnapshot> {
    use crate::scan::Step;
    /// Parses the value at `start` into `slot`; returns where it ends.
    fn take<T: serde::de::DeserializeOwned>(
        bytes: &[u8],
        start: usize,
        slot: &mut T,
    ) -> Option<usize> {
        let mut values = serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<T>();
        *slot = values.next()?.ok()?;
        Some(start + values.byte_offset())
    }
    const NEEDED: [&[u8]; 7] = [
        b"schema",
        b"agent",
        b"process",
        b"config",
        b"overhead",
        b"meter",
        b"probes",
    ];
    let mut s = LightSnapshot::default();
    let mut probes = ProbeTable::default();
    let mut seen = [false; NEEDED.len()];
    crate::scan::walk_top_level(bytes, |key, start| {
        let Some(k) = NEEDED.iter().position(|n| *n == key) else {
            return Some(Step::Skip);
        };
        let end = match k {
            0 => take(bytes, start, &mut s.schema)?,
            1 => take(bytes, start, &mut s.agent)?,
            2 => take(bytes, start, &mut s.process)?,
            3 => take(bytes, start, &mut s.config)?,
            4 => take(bytes, start, &mut s.overhead)?,
            5 => take(bytes, start, &mut s.meter)?,
            _ => match crate::fastprobes::parse_probes(bytes, start) {
                Some((table, end)) => {
                    probes = table;
                    end
                }
                None => take(bytes, start, &mut probes)?,
            },
        };
        seen[k] = true;
        // The agent writes edges and contexts last: once everything a light
        // snapshot needs is read, they are not even scanned.
        Some(if seen.iter().all(|s| *s) {
            Step::ReadAndStop(end)
        } else {
            Step::Read(end)
        })
    })?;
    // Without a required member the file is no snapshot: `None`, and the
    // contract's reader names the member.
    let has = |member: &str| {
        NEEDED
            .iter()
            .position(|n| *n == member.as_bytes())
            .is_some_and(|k| seen[k])
    };
    if !hotprobe_config::snapshot::REQUIRED_MEMBERS
        .iter()
        .all(|m| has(m))
    {
        return None;
    }
    s.probes = probes;
    Some(s)
}

/// Reads one file as a full snapshot (with `edges` and `contexts`).
pub fn read_full(path: &Path) -> Result<Snapshot> {
    Snapshot::read(path).map_err(CliError::from)
}

/// The contract's own error for a file that failed to read.
fn contract_error(bytes: &[u8], path: &Path, fallback: &str) -> CliError {
    match Snapshot::from_slice(bytes, path) {
        Err(e) => e.into(),
        Ok(_) => CliError::failure(format!("{}: {fallback}", path.display())),
    }
}

/// Applies `f` to every path on all cores; results in input order, the first
/// error (in input order) wins.
pub fn par_map<T: Send, F>(paths: &[PathBuf], f: F) -> Result<Vec<T>>
where
    F: Fn(&Path) -> Result<T> + Sync,
{
    let n = paths.len();
    let workers = std::thread::available_parallelism()
        .map(|w| w.get())
        .unwrap_or(2)
        .min(n)
        .max(1);
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
    let mut panicked = false;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        done.push((i, f(&paths[i])));
                    }
                    done
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(done) => {
                    for (i, r) in done {
                        slots[i] = Some(r);
                    }
                }
                Err(_) => panicked = true,
            }
        }
    });
    if panicked {
        return Err(CliError::failure("internal error: a reader thread failed"));
    }
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(CliError::failure("internal error: a file was not read"))))
        .collect()
}

/// Reads light snapshots from files and directories; keeps the latest of each image.
pub fn load_light(inputs: &[PathBuf]) -> Result<Inputs<LightSnapshot>> {
    let files = expand_inputs(inputs)?;
    let snaps = par_map(&files, read_light)?;
    Ok(latest_per_image(
        files
            .into_iter()
            .zip(snaps)
            .map(|(path, snap)| Loaded { path, snap })
            .collect(),
    ))
}

/// Reads full snapshots from files and directories; keeps the latest of each image.
pub fn load_full(inputs: &[PathBuf]) -> Result<Inputs<Snapshot>> {
    let files = expand_inputs(inputs)?;
    let snaps = par_map(&files, read_full)?;
    Ok(latest_per_image(
        files
            .into_iter()
            .zip(snaps)
            .map(|(path, snap)| Loaded { path, snap })
            .collect(),
    ))
}

/// Of several snapshots of one process image (same `pid` and
/// `started_unix_ns`), only the latest counts: highest `sequence`, then
/// `taken_unix_ns`, then the later on the command line. A snapshot with
/// neither pid nor start time is its own image.
pub fn latest_per_image<S: HasProcess>(all: Vec<Loaded<S>>) -> Inputs<S> {
    let mut best: HashMap<(u32, u64), usize> = HashMap::new();
    for (i, l) in all.iter().enumerate() {
        let p = l.snap.process();
        if p.pid == 0 && p.started_unix_ns == 0 {
            continue;
        }
        let rank = |j: usize| {
            let q = all[j].snap.process();
            (q.sequence, q.taken_unix_ns, j)
        };
        best.entry(p.image_key())
            .and_modify(|b| {
                if rank(i) > rank(*b) {
                    *b = i;
                }
            })
            .or_insert(i);
    }
    let mut snapshots = Vec::new();
    let mut superseded = Vec::new();
    for (i, l) in all.into_iter().enumerate() {
        let p = l.snap.process();
        let keep = (p.pid == 0 && p.started_unix_ns == 0) || best.get(&p.image_key()) == Some(&i);
        if keep {
            snapshots.push(l);
        } else {
            superseded.push(l.path);
        }
    }
    Inputs {
        snapshots,
        superseded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pid: u32, started: u64, seq: u64, taken: u64) -> Loaded<LightSnapshot> {
        let mut s = LightSnapshot::default();
        s.process.pid = pid;
        s.process.started_unix_ns = started;
        s.process.sequence = seq;
        s.process.taken_unix_ns = taken;
        Loaded {
            path: PathBuf::from(format!("{pid}-{started}-{seq}-{taken}")),
            snap: s,
        }
    }

    #[test]
    fn latest_of_each_image_counts() {
        let r = latest_per_image(vec![
            snap(1, 10, 1, 100),
            snap(1, 10, 3, 50),
            snap(1, 10, 2, 200),
            snap(1, 20, 1, 5),
            snap(0, 0, 0, 0),
            snap(0, 0, 0, 0),
        ]);
        let kept: Vec<_> = r
            .snapshots
            .iter()
            .map(|l| l.path.to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, vec!["1-10-3-50", "1-20-1-5", "0-0-0-0", "0-0-0-0"]);
        assert_eq!(r.superseded.len(), 2);
    }

    #[test]
    fn equal_sequence_falls_back_to_time() {
        let r = latest_per_image(vec![snap(7, 1, 2, 900), snap(7, 1, 2, 100)]);
        assert_eq!(r.snapshots[0].path, PathBuf::from("7-1-2-900"));
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = expand_inputs(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(e.message.contains("no snapshots"), "{e}");
        let e = expand_inputs(&[dir.path().join("nope.json")]).unwrap_err();
        assert!(e.message.contains("no such file"), "{e}");
    }

    #[test]
    fn a_snapshot_cut_short_is_refused_even_where_light_reading_stops() {
        let dir = tempfile::tempdir().unwrap();
        let json = crate::fixture::server(1).to_json();
        let cut = json.find("\"contexts\"").unwrap() + 200;
        let p = dir.path().join("cut.json");
        std::fs::write(&p, &json[..cut]).unwrap();
        let e = read_light(&p).unwrap_err();
        assert!(e.message.contains("not JSON"), "{e}");
        std::fs::write(&p, &json).unwrap();
        let light = read_light(&p).unwrap();
        assert_eq!(light.probes.len(), crate::fixture::FUNCTIONS.len());
        assert_eq!(light.process.pid, 1);
    }

    #[test]
    fn light_read_errors_come_from_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        std::fs::write(
            &p,
            br#"{"schema":"hotprobe.snapshot/1","probes":[{"id":1},{"count":"many"}]}"#,
        )
        .unwrap();
        let e = read_light(&p).unwrap_err();
        assert!(e.message.contains("field `probes[1].count`"), "{e}");
        std::fs::write(
            &p,
            br#"{"schema":"hotprobe.snapshot/1","agent":{},"process":{},"probes":[],"contexts":[{"count":"many"}]}"#,
        )
        .unwrap();
        // The light reader does not look into contexts; the full reader does.
        assert!(read_light(&p).is_ok());
        assert!(read_full(&p)
            .unwrap_err()
            .message
            .contains("contexts[0].count"));
    }

    #[test]
    fn a_snapshot_without_a_required_member_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bare.json");
        std::fs::write(&p, br#"{"schema":"hotprobe.snapshot/1"}"#).unwrap();
        let e = read_light(&p).unwrap_err();
        assert!(
            e.message.contains("bare.json: field `agent`: missing"),
            "{e}"
        );
        std::fs::write(
            &p,
            br#"{"schema":"hotprobe.snapshot/1","agent":{},"probes":[]}"#,
        )
        .unwrap();
        let e = read_light(&p).unwrap_err();
        assert!(e.message.contains("field `process`: missing"), "{e}");
        // Optional members (here all of them but the required ones) take their defaults.
        std::fs::write(
            &p,
            br#"{"schema":"hotprobe.snapshot/1","agent":{},"process":{"pid":3},"probes":[]}"#,
        )
        .unwrap();
        assert_eq!(read_light(&p).unwrap().process.pid, 3);
    }
}

//! Merging the probe tables of several snapshots by the contract's function
//! identity: (module file name, symbol, ordinal among the same-symbol
//! functions of that module by offset).
//!
//! Sums: count, abandoned, in_flight, inclusive, inherent. Max: max of the
//! parts. p50 and p99: the max of the parts that had calls, which is an
//! upper bound of the merged percentile (if no part has more than 1 % of its
//! calls above its own p99, the union has no more than 1 % above the largest
//! of them). A count-weighted mean would be closer on average but is no bound
//! either way; a bound is what a user can rely on. State: the most live one
//! (hot > active > disabled > rejected).

use crate::load::{Inputs, LightSnapshot, Loaded};
use crate::probetable::{ProbeFields, ProbeRow, ProbeTable};
use hotprobe_config::settings::Hotspot;
use hotprobe_config::snapshot::ProbeState;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// The identity of a function across processes, runs and builds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FuncKey {
    /// File name of the module.
    pub module: String,
    pub symbol: String,
    /// 0 for the first same-symbol function of the module by offset, 1 for the next…
    pub ordinal: u32,
}

/// One function's merged measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Func {
    #[serde(flatten)]
    pub key: FuncKey,
    pub name: String,
    /// Whether the module has several functions with this symbol (the name
    /// then carries `#N`).
    pub ambiguous: bool,
    /// The module's path as the (first) snapshot gave it.
    pub module_path: String,
    pub offset: u64,
    pub source: Option<String>,
    pub state: ProbeState,
    pub reason: Option<String>,
    pub count: u64,
    pub abandoned: u64,
    pub in_flight: u64,
    pub inclusive_ns: u64,
    pub inherent_ns: u64,
    pub max_inclusive_ns: u64,
    pub p50_inclusive_ns: u64,
    pub p99_inclusive_ns: u64,
    /// Snapshots in which this function appears.
    pub parts: u32,
    /// Snapshots in which it had calls; above 1, p50/p99 are upper bounds.
    pub parts_with_calls: u32,
    /// Disabled mid-run in some process: its counts stop there.
    pub partial: bool,
}

impl Func {
    fn new(key: FuncKey, t: &ProbeTable, rec: &ProbeRow) -> Func {
        let name = t.str(rec.name);
        Func {
            name: if name.is_empty() {
                key.symbol.clone()
            } else {
                name.to_string()
            },
            key,
            ambiguous: rec.ambiguous,
            module_path: t.str(rec.module).to_string(),
            offset: rec.offset,
            source: None,
            state: rec.state,
            reason: None,
            count: 0,
            abandoned: 0,
            in_flight: 0,
            inclusive_ns: 0,
            inherent_ns: 0,
            max_inclusive_ns: 0,
            p50_inclusive_ns: 0,
            p99_inclusive_ns: 0,
            parts: 0,
            parts_with_calls: 0,
            partial: false,
        }
    }

    fn absorb(&mut self, t: &ProbeTable, rec: &ProbeRow, adaptive: bool) {
        self.count += rec.count;
        self.abandoned += rec.abandoned;
        self.in_flight += rec.in_flight;
        self.inclusive_ns += rec.inclusive_ns;
        self.inherent_ns += rec.inherent_ns;
        self.max_inclusive_ns = self.max_inclusive_ns.max(rec.max_inclusive_ns);
        if rec.count > 0 {
            self.p50_inclusive_ns = self.p50_inclusive_ns.max(rec.p50_inclusive_ns);
            self.p99_inclusive_ns = self.p99_inclusive_ns.max(rec.p99_inclusive_ns);
            self.parts_with_calls += 1;
        }
        self.parts += 1;
        self.state = self.state.min(rec.state);
        self.ambiguous |= rec.ambiguous;
        // With HOTPROBE_ADAPTIVE=0 a disabled probe keeps counting: not partial.
        self.partial |= rec.disabled_at_ns.is_some() && adaptive;
        if self.source.is_none() {
            self.source = rec.source.map(|s| t.str(s).to_string());
        }
        if self.reason.is_none() {
            self.reason = rec.reason.map(|s| t.str(s).to_string());
        }
    }

    /// Mean inclusive time per call (NaN without calls).
    pub fn avg_ns(&self) -> f64 {
        per_call(self.inclusive_ns, self.count)
    }

    /// Mean inherent time per call (NaN without calls).
    pub fn avg_inherent_ns(&self) -> f64 {
        per_call(self.inherent_ns, self.count)
    }

    /// Whether p50/p99 are upper bounds over several parts.
    pub fn percentiles_are_bounds(&self) -> bool {
        self.parts_with_calls > 1
    }

    /// The name for people: `name`, or `name#N` when the module has several
    /// functions with this symbol.
    pub fn display_name(&self) -> String {
        display_name(&self.name, self.ambiguous, self.key.ordinal)
    }
}

pub fn display_name(name: &str, ambiguous: bool, ordinal: u32) -> String {
    if ambiguous {
        format!("{name}#{}", ordinal + 1)
    } else {
        name.to_string()
    }
}

fn per_call(total: u64, count: u64) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        total as f64 / count as f64
    }
}

/// One process image that contributed.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSummary {
    pub pid: u32,
    pub exe: String,
    pub started_unix_ns: u64,
    pub duration_ns: u64,
    pub reason: String,
    pub agent_version: String,
    pub backend: String,
}

/// The merged view of a set of snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Merged {
    /// Sorted by identity.
    pub funcs: Vec<Func>,
    pub files: Vec<PathBuf>,
    pub superseded: Vec<PathBuf>,
    pub processes: Vec<ProcessSummary>,
    pub agent_versions: BTreeSet<String>,
    pub backends: BTreeSet<String>,
    /// The score card of the first snapshot.
    pub hotspot: Hotspot,
    /// The snapshots disagree on the score card.
    pub hotspot_varies: bool,
    pub unmetered: u64,
    pub lost_records: u64,
    pub contexts_truncated: bool,
    /// `agent.problem` of any snapshot: why it ran unprobed.
    pub problems: Vec<String>,
    /// Wall-clock span from the first start to the last end.
    pub duration_ns: u64,
    /// The probe fields every snapshot had (an older agent may lack some):
    /// comparisons skip the measurements outside it rather than read 0.
    #[serde(skip)]
    pub probe_fields: ProbeFields,
}

impl Merged {
    /// How many functions ended in each state.
    pub fn state_counts(&self) -> BTreeMap<ProbeState, usize> {
        let mut m = BTreeMap::new();
        for f in &self.funcs {
            *m.entry(f.state).or_insert(0) += 1;
        }
        m
    }

    pub fn get(&self, key: &FuncKey) -> Option<&Func> {
        self.funcs
            .binary_search_by(|f| f.key.cmp(key))
            .ok()
            .map(|i| &self.funcs[i])
    }

    /// Total inherent time of all functions.
    pub fn total_inherent_ns(&self) -> u64 {
        self.funcs.iter().map(|f| f.inherent_ns).sum()
    }

    /// Whether counts are exact (nothing unmetered or lost).
    pub fn exact(&self) -> bool {
        self.unmetered == 0 && self.lost_records == 0
    }
}

/// Merges the probe tables of snapshots (already reduced to the latest of each image).
pub fn merge(inputs: Inputs<LightSnapshot>) -> Merged {
    let mut m = Merged {
        superseded: inputs.superseded,
        ..Merged::default()
    };
    let snaps = inputs.snapshots;
    let mut first_start = u64::MAX;
    let mut last_end = 0u64;
    for (i, loaded) in snaps.iter().enumerate() {
        let s = &loaded.snap;
        m.files.push(loaded.path.clone());
        if i == 0 {
            m.hotspot = s.config.hotspot.clone();
        } else if s.config.hotspot != m.hotspot {
            m.hotspot_varies = true;
        }
        m.agent_versions.insert(s.agent.version.clone());
        m.backends.insert(s.agent.backend.clone());
        if let Some(p) = &s.agent.problem {
            m.problems.push(format!("pid {}: {p}", s.process.pid));
        }
        m.probe_fields = m.probe_fields.both(s.probes.present);
        m.unmetered += s.meter.unmetered;
        m.lost_records += s.meter.lost_records;
        m.contexts_truncated |= s.meter.contexts_truncated;
        let p = &s.process;
        if p.started_unix_ns > 0 {
            first_start = first_start.min(p.started_unix_ns);
            last_end = last_end.max(p.started_unix_ns + p.duration_ns);
        }
        m.duration_ns = m.duration_ns.max(p.duration_ns);
        m.processes.push(ProcessSummary {
            pid: p.pid,
            exe: p.exe.clone(),
            started_unix_ns: p.started_unix_ns,
            duration_ns: p.duration_ns,
            reason: p.reason.as_str().into(),
            agent_version: s.agent.version.clone(),
            backend: s.agent.backend.clone(),
        });
    }
    if first_start < last_end {
        m.duration_ns = m.duration_ns.max(last_end - first_start);
    }
    // Functions are split among threads by a hash of their symbol; each
    // thread merges its share of every snapshot, without copying keys.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let total: usize = snaps.iter().map(|l| l.snap.probes.len()).sum();
    let workers = if total < 50_000 { 1 } else { workers };
    let mut funcs: Vec<Func> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|k| {
                let snaps = &snaps;
                scope.spawn(move || merge_share(snaps, k, workers))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    funcs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    m.funcs = funcs;
    drop_in_parallel(snaps);
    m
}

/// The functions whose symbol hashes to `share` (of `shares`), merged over all snapshots.
fn merge_share(snaps: &[Loaded<LightSnapshot>], share: usize, shares: usize) -> Vec<Func> {
    let mut table: FxMap<(&str, &str), Vec<Option<Func>>> = FxMap::default();
    for loaded in snaps {
        let adaptive = loaded.snap.config.hotspot.adaptive;
        let t = &loaded.snap.probes;
        let mut module_cache = (None, "");
        for rec in &t.rows {
            let symbol = t.identity_symbol(rec);
            if shares > 1 && fx_hash(symbol.as_bytes()) as usize % shares != share {
                continue;
            }
            if module_cache.0 != Some(rec.module) {
                module_cache = (Some(rec.module), t.module_file_name(rec));
            }
            let module = module_cache.1;
            let slot = table.entry((module, symbol)).or_default();
            let ordinal = rec.ordinal as usize;
            if slot.len() <= ordinal {
                slot.resize_with(ordinal + 1, || None);
            }
            let f = slot[ordinal].get_or_insert_with(|| {
                let key = FuncKey {
                    module: module.to_string(),
                    symbol: symbol.to_string(),
                    ordinal: rec.ordinal,
                };
                Func::new(key, t, rec)
            });
            f.absorb(t, rec, adaptive);
        }
    }
    table.into_values().flatten().flatten().collect()
}

/// Frees big inputs on all cores (a million small strings take a while).
fn drop_in_parallel<T: Send>(mut items: Vec<T>) {
    if items.len() < 4 {
        return;
    }
    let half = items.split_off(items.len() / 2);
    std::thread::scope(|s| {
        s.spawn(move || drop(half));
        drop(items);
    });
}

/// FxHash: a fast non-cryptographic hash for keys read from local files.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

pub type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    use hotprobe_config::snapshot::ProbeRecord;

    fn rec(module: &str, symbol: &str, offset: u64, count: u64, inh: u64) -> ProbeRecord {
        ProbeRecord {
            name: symbol.into(),
            symbol: symbol.into(),
            module: module.into(),
            offset,
            count,
            inclusive_ns: inh * 2,
            inherent_ns: inh,
            max_inclusive_ns: inh,
            p99_inclusive_ns: inh / 2,
            ..Default::default()
        }
    }

    fn inputs(snaps: Vec<Vec<ProbeRecord>>) -> Inputs<LightSnapshot> {
        let snapshots = snaps
            .into_iter()
            .enumerate()
            .map(|(i, probes)| {
                let mut s = LightSnapshot {
                    probes: ProbeTable::from_records(&probes),
                    ..Default::default()
                };
                s.process.pid = i as u32 + 1;
                Loaded {
                    path: PathBuf::from(format!("s{i}.json")),
                    snap: s,
                }
            })
            .collect();
        Inputs {
            snapshots,
            superseded: vec![],
        }
    }

    #[test]
    fn merges_by_module_file_name_and_ordinal() {
        let m = merge(inputs(vec![
            vec![
                rec("/build1/prog", "f", 100, 10, 1000),
                rec("/build1/prog", "s", 10, 1, 5),
                rec("/build1/prog", "s", 20, 2, 7),
            ],
            vec![
                rec("/build2/prog", "f", 140, 5, 500),
                rec("/build2/prog", "s", 30, 3, 9),
                rec("/build2/prog", "s", 44, 4, 11),
            ],
        ]));
        assert_eq!(m.funcs.len(), 3);
        let f = m
            .get(&FuncKey {
                module: "prog".into(),
                symbol: "f".into(),
                ordinal: 0,
            })
            .unwrap();
        assert_eq!(
            (
                f.count,
                f.inherent_ns,
                f.max_inclusive_ns,
                f.p99_inclusive_ns
            ),
            (15, 1500, 1000, 500)
        );
        assert!(f.percentiles_are_bounds());
        let s2 = m
            .get(&FuncKey {
                module: "prog".into(),
                symbol: "s".into(),
                ordinal: 1,
            })
            .unwrap();
        assert_eq!((s2.count, s2.inherent_ns), (6, 18));
        assert_eq!(s2.display_name(), "s#2");
    }

    #[test]
    fn each_ordinal_keeps_its_own_offset() {
        let m = merge(inputs(vec![vec![
            rec("/a/m", "f", 300, 1, 1),
            rec("/a/m", "f", 100, 2, 2),
        ]]));
        let offsets: Vec<(u32, u64, u64)> = m
            .funcs
            .iter()
            .map(|f| (f.key.ordinal, f.offset, f.count))
            .collect();
        assert_eq!(offsets, vec![(0, 100, 2), (1, 300, 1)]);
    }

    #[test]
    fn state_is_the_most_live() {
        let mut a = rec("m", "f", 1, 1, 1);
        a.state = ProbeState::Disabled;
        let mut b = rec("m", "f", 1, 1, 1);
        b.state = ProbeState::Hot;
        let m = merge(inputs(vec![vec![a], vec![b]]));
        assert_eq!(m.funcs[0].state, ProbeState::Hot);
    }
}

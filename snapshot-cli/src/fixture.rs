//! Realistic snapshots built in code, shaped like the agent's: for tests,
//! benchmarks and examples (the agent itself is built elsewhere).

use hotprobe_config::snapshot::{
    AgentInfo, ContextNode, Edge, MeterInfo, Overhead, ProbeRecord, ProbeState, ProcessInfo, Reason,
};
use hotprobe_config::{Settings, Snapshot};
use std::path::{Path, PathBuf};

/// Executable of the fixture server.
pub const EXE: &str = "/usr/local/bin/redis-server";
/// A shared library of the fixture server.
pub const LIB: &str = "/usr/lib/x86_64-linux-gnu/libcache.so.1";

/// One function of the fixture program.
pub struct FnSpec {
    pub name: &'static str,
    pub symbol: &'static str,
    pub module: &'static str,
    pub offset: u64,
    pub state: ProbeState,
    pub source: Option<&'static str>,
}

const fn f(
    name: &'static str,
    symbol: &'static str,
    module: &'static str,
    offset: u64,
    state: ProbeState,
) -> FnSpec {
    FnSpec {
        name,
        symbol,
        module,
        offset,
        state,
        source: None,
    }
}

/// The fixture program's functions; probe ids are the indices.
pub const FUNCTIONS: &[FnSpec] = &[
    f("main", "main", EXE, 0x1200, ProbeState::Hot),
    f("aeMain", "aeMain", EXE, 0x2400, ProbeState::Hot),
    f("processCommand", "processCommand", EXE, 0x3100, ProbeState::Hot),
    f("call", "call", EXE, 0x3600, ProbeState::Hot),
    f("getCommand", "getCommand", EXE, 0x4100, ProbeState::Hot),
    f("lookupKey", "lookupKey", EXE, 0x4400, ProbeState::Active),
    f("dictFind", "dictFind", EXE, 0x5000, ProbeState::Active),
    f("setCommand", "setCommand", EXE, 0x4800, ProbeState::Hot),
    f("dictAdd", "dictAdd", EXE, 0x5200, ProbeState::Active),
    f("_addReplyToBuffer", "_addReplyToBuffer", EXE, 0x6000, ProbeState::Disabled),
    f("zmalloc", "zmalloc", EXE, 0x7000, ProbeState::Disabled),
    f("serverLog", "serverLog", EXE, 0x8000, ProbeState::Active),
    f("compare", "compare", EXE, 0x9400, ProbeState::Active),
    f("compare", "compare", EXE, 0x9100, ProbeState::Active),
    f("tiny", "tiny", EXE, 0xa000, ProbeState::Rejected),
    f(
        "ns::Cache<std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >, int>::get(std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&)",
        "_ZN2ns5CacheINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEiE3getERKS6_",
        LIB,
        0x1b40,
        ProbeState::Active,
    ),
];

/// The calling-context tree: (probe, parent node index, calls, inherent ns per call).
pub const CONTEXTS: &[(u32, Option<usize>, u64, u64)] = &[
    (0, None, 1, 50_000),       // 0 main
    (1, Some(0), 1, 2_000_000), // 1 main;aeMain
    (2, Some(1), 10_000, 800),  // 2 …;processCommand
    (3, Some(2), 10_000, 300),  // 3 …;processCommand;call
    (4, Some(3), 6_000, 200),   // 4 …;call;getCommand
    (5, Some(4), 6_000, 150),   // 5 …;getCommand;lookupKey
    (6, Some(5), 6_000, 400),   // 6 …;lookupKey;dictFind
    (7, Some(3), 4_000, 250),   // 7 …;call;setCommand
    (8, Some(7), 4_000, 900),   // 8 …;setCommand;dictAdd
    (6, Some(8), 4_000, 350),   // 9 …;dictAdd;dictFind
    (9, Some(4), 1_500, 60),    // 10 …;getCommand;_addReplyToBuffer (disabled later)
    (10, Some(8), 2_000, 40),   // 11 …;dictAdd;zmalloc (disabled later)
    (11, Some(1), 3, 4_000),    // 12 main;aeMain;serverLog
    (12, Some(6), 5_000, 30),   // 13 …;dictFind;compare#2
    (13, Some(6), 500, 35),     // 14 …;dictFind;compare#1
    (15, Some(5), 2_500, 500),  // 15 …;lookupKey;ns::Cache<…>::get
];

/// A snapshot of the fixture server, consistent throughout: probe totals
/// are the sums of their context nodes, inclusive = inherent + callees.
pub fn server(pid: u32) -> Snapshot {
    let n = CONTEXTS.len();
    let mut inclusive = vec![0u64; n];
    for i in (0..n).rev() {
        let (_, parent, calls, inh) = CONTEXTS[i];
        inclusive[i] += calls * inh;
        if let Some(p) = parent {
            inclusive[p] += inclusive[i];
        }
    }
    let mut probes: Vec<ProbeRecord> = FUNCTIONS
        .iter()
        .enumerate()
        .map(|(id, spec)| ProbeRecord {
            id: id as u32,
            name: spec.name.into(),
            symbol: spec.symbol.into(),
            module: spec.module.into(),
            offset: spec.offset,
            size: 64,
            source: spec.source.map(String::from).or_else(|| {
                (spec.module == EXE).then(|| format!("src/{}.c:{}", spec.symbol, 10 + id))
            }),
            state: spec.state,
            reason: match spec.state {
                ProbeState::Rejected => Some("too small: 4 bytes, a probe needs 5".into()),
                ProbeState::Disabled => Some("cold: score fell to 0".into()),
                _ => None,
            },
            score: match spec.state {
                ProbeState::Hot => 20_000,
                ProbeState::Active => 600,
                _ => 0,
            },
            disabled_at_ns: (spec.state == ProbeState::Disabled).then_some(1_500_000_000),
            ..Default::default()
        })
        .collect();
    let mut contexts = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    for (i, &(probe, parent, calls, inh)) in CONTEXTS.iter().enumerate() {
        let p = &mut probes[probe as usize];
        p.count += calls;
        p.inherent_ns += calls * inh;
        p.inclusive_ns += inclusive[i];
        let per_call = inclusive[i] / calls.max(1);
        p.max_inclusive_ns = p.max_inclusive_ns.max(per_call * 4);
        p.p50_inclusive_ns = p.p50_inclusive_ns.max(per_call);
        p.p99_inclusive_ns = p.p99_inclusive_ns.max(per_call * 2);
        contexts.push(ContextNode {
            id: i as u32,
            parent: parent.map(|x| x as u32),
            probe,
            count: calls,
            inclusive_ns: inclusive[i],
            inherent_ns: calls * inh,
        });
        if let Some(parent) = parent {
            edges.push(Edge {
                caller: CONTEXTS[parent].0,
                callee: probe,
                count: calls,
                inclusive_ns: inclusive[i],
            });
        }
    }
    Snapshot {
        agent: AgentInfo {
            version: "0.1.0".into(),
            backend: "inline".into(),
            problem: None,
        },
        process: ProcessInfo {
            pid,
            ppid: 1,
            exe: EXE.into(),
            argv: vec![EXE.into(), "--port".into(), "6379".into()],
            build_id: Some("4f2a9c0e1b7d".into()),
            started_unix_ns: 1_700_000_000_000_000_000 + pid as u64 * 1_000_000,
            duration_ns: inclusive[0] + 1_000_000,
            reason: Reason::Exit,
            signal: None,
            taken_unix_ns: 1_700_000_000_000_000_000
                + pid as u64 * 1_000_000
                + inclusive[0]
                + 1_000_000,
            sequence: 1,
            forked_from: None,
        },
        config: Settings::default(),
        overhead: Overhead {
            probe_ns: 14.0,
            inner_ns: 6.0,
            compensated: true,
        },
        meter: MeterInfo {
            clock: "tsc".into(),
            tsc_hz: Some(2.4e9),
            memory_bytes: 1 << 20,
            threads: 4,
            ..Default::default()
        },
        probes,
        edges,
        contexts,
        ..Snapshot::default()
    }
}

/// The probe of the fixture with this name (the first, for `compare`).
pub fn probe_mut<'a>(s: &'a mut Snapshot, name: &str) -> &'a mut ProbeRecord {
    s.probes
        .iter_mut()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("fixture has no probe {name}"))
}

/// Scales one function's times (its average and inherent time change; the
/// count stays): how a regression looks in a snapshot.
pub fn slow_down(s: &mut Snapshot, name: &str, factor: f64) {
    let p = probe_mut(s, name);
    let extra_inh = (p.inherent_ns as f64 * (factor - 1.0)) as i64;
    p.inherent_ns = (p.inherent_ns as f64 * factor) as u64;
    p.inclusive_ns = (p.inclusive_ns as i64 + extra_inh).max(0) as u64;
}

/// A large synthetic snapshot: `n` probes over two modules (2 % hot, 30 %
/// active, 50 % disabled, 18 % rejected), `n` context nodes and edges.
pub fn large(pid: u32, n: usize) -> Snapshot {
    let mut probes = Vec::with_capacity(n);
    let mut contexts = Vec::with_capacity(n);
    let mut edges = Vec::with_capacity(n);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ pid as u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let state = match i % 50 {
            0 => ProbeState::Hot,
            1..=15 => ProbeState::Active,
            16..=40 => ProbeState::Disabled,
            _ => ProbeState::Rejected,
        };
        let count = if state == ProbeState::Rejected {
            0
        } else {
            x % 100_000
        };
        let inh = count * (x % 500 + 10);
        let module = if i % 3 == 0 { LIB } else { EXE };
        probes.push(ProbeRecord {
            id: i as u32,
            name: format!(
                "ns::module_{}::function_number_{i}(int, char const*)",
                i % 97
            ),
            symbol: format!("_ZN2ns9module_{}17function_number_{i}Eic", i % 97),
            module: module.into(),
            offset: 0x1000 + i as u64 * 64,
            size: 48,
            source: Some(format!("src/module_{}.cc:{}", i % 97, i)),
            state,
            reason: (state == ProbeState::Rejected).then(|| "too small".to_string()),
            score: (x % 3000) as i64,
            disabled_at_ns: (state == ProbeState::Disabled).then_some(x % 1_000_000_000),
            count,
            inclusive_ns: inh * 2,
            inherent_ns: inh,
            max_inclusive_ns: x % 1_000_000,
            p50_inclusive_ns: x % 5_000,
            p99_inclusive_ns: x % 50_000,
            ..Default::default()
        });
        contexts.push(ContextNode {
            id: i as u32,
            parent: if i == 0 {
                None
            } else {
                Some((x % i as u64) as u32)
            },
            probe: i as u32,
            count,
            inclusive_ns: inh * 2,
            inherent_ns: inh,
        });
        edges.push(Edge {
            caller: (x % n as u64) as u32,
            callee: i as u32,
            count,
            inclusive_ns: inh,
        });
    }
    let mut s = server(pid);
    s.probes = probes;
    s.contexts = contexts;
    s.edges = edges;
    s
}

/// Writes a snapshot as the agent does (pretty JSON) and returns its path.
pub fn write(dir: &Path, file_name: &str, s: &Snapshot) -> PathBuf {
    let path = dir.join(file_name);
    std::fs::write(&path, s.to_json())
        .unwrap_or_else(|e| panic!("cannot write fixture {}: {e}", path.display()));
    path
}

/// The snapshot as JSON without these fields in any probe record: how a
/// snapshot of an agent version that did not write them looks.
pub fn without_probe_fields(s: &Snapshot, fields: &[&str]) -> String {
    let mut v = serde_json::to_value(s).expect("a snapshot always serializes");
    for probe in v["probes"].as_array_mut().into_iter().flatten() {
        if let Some(record) = probe.as_object_mut() {
            for f in fields {
                record.remove(*f);
            }
        }
    }
    serde_json::to_string_pretty(&v).expect("a value always serializes")
}

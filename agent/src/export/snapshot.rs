//! Builds this image's snapshot from the probes and the live threads, and
//! writes it. One writer at a time; threads keep running meanwhile (their
//! counters only grow, so two snapshots of one image never go backwards).

use crate::engine::probe::{self, Life};
use crate::meter::{clock, compensate, contexts, merge};
use crate::state::{self, lock, Agent};
use hotprobe_config::snapshot::{
    AgentInfo, ContextNode, Edge, MeterInfo, Overhead, ProbeRecord, ProbeState, ProcessInfo,
    Reason, Snapshot,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Serialises writers; true once the image's final snapshot is out.
static WRITING: Mutex<bool> = Mutex::new(false);

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Writes an interim snapshot (interval, request). Refused after the final one.
pub fn write(reason: Reason) -> Result<PathBuf, String> {
    write_inner(reason, None, false)
}

/// Writes the image's last snapshot (exit, exec, signal).
pub fn write_final(reason: Reason, signal: Option<i32>) -> Result<PathBuf, String> {
    write_inner(reason, signal, true)
}

/// After a failed exec the image goes on, and its later snapshots are welcome.
pub fn reopen() {
    *lock(&WRITING) = false;
}

fn write_inner(reason: Reason, signal: Option<i32>, last: bool) -> Result<PathBuf, String> {
    let agent = state::agent().ok_or("the agent is not initialised")?;
    let mut done = lock(&WRITING);
    if *done {
        return Err("the image's final snapshot is already written".into());
    }
    crate::kernel::drain_now(); // the kernel backend's records so far
    let snap = build(agent, reason, signal);
    let bytes = snap.to_json();
    let mut id = lock(&agent.identity);
    let wanted = PathBuf::from(crate::export::path::expand(
        &id.output_template.to_string_lossy(),
        &agent.exe_name,
        id.pid,
        id.started_unix_ns / 1_000_000_000,
    ));
    let written =
        super::writer::write_snapshot(&wanted, id.claimed_path.as_deref(), bytes.as_bytes())
            .map_err(|e| format!("cannot write snapshot {}: {e}", wanted.display()))?;
    id.claimed_path = Some(written.clone());
    *done = last;
    crate::debug!(
        "snapshot ({}) written to {}",
        reason.as_str(),
        written.display()
    );
    if last {
        drop(id);
        drop(done);
        crate::kernel::shut_down(); // the kernel removes the image's uprobes now, not link by link at exit
    }
    Ok(written)
}

pub fn exe_name(exe: &str) -> &str {
    exe.rsplit('/').next().unwrap_or(exe)
}

fn state_of(life: Life, score: i64, lower: i64) -> ProbeState {
    match life {
        Life::Hot => ProbeState::Hot,
        Life::Active if score >= lower => ProbeState::Hot,
        Life::Active | Life::Pending => ProbeState::Active,
        Life::Disabling | Life::Disabled => ProbeState::Disabled,
        Life::Rejected => ProbeState::Rejected,
    }
}

fn build(agent: &Agent, reason: Reason, signal: Option<i32>) -> Snapshot {
    let now_mono = crate::sys::monotonic_ns();
    let mut id = lock(&agent.identity);
    id.sequence += 1;
    let process = ProcessInfo {
        pid: id.pid,
        ppid: id.ppid,
        exe: agent.exe.clone(),
        argv: agent.argv.clone(),
        build_id: agent.build_id.clone(),
        started_unix_ns: id.started_unix_ns,
        duration_ns: now_mono.saturating_sub(id.started_mono_ns),
        reason,
        signal,
        taken_unix_ns: crate::sys::unix_ns(),
        sequence: id.sequence,
        forked_from: id.forked_from,
    };
    drop(id);

    let mut view = merge::view();
    crate::meter::reset::apply_baseline(&mut view);
    let per_ns = clock::ticks_per_ns();
    let ns = |ticks: u64| (ticks as f64 / per_ns).round() as u64;
    let lower = agent.settings.hotspot.lower;
    let sources = crate::export::sources::resolve_for(&view);

    let all = probe::all();
    let probes: Vec<ProbeRecord> = all
        .iter()
        .zip(view.probes.iter())
        .map(|(p, v)| {
            let score = p.score.load(core::sync::atomic::Ordering::Relaxed);
            let disabled_at = p.disabled_at_ns.load(core::sync::atomic::Ordering::Relaxed);
            let q = |x: f64| {
                v.hist
                    .as_ref()
                    .and_then(|h| h.quantile(x))
                    .map_or(0, |t| (t / per_ns).round() as u64)
            };
            ProbeRecord {
                id: p.id,
                name: p.name().to_string(),
                symbol: p.meta.symbol.clone(),
                module: p.meta.module.clone(),
                offset: p.meta.offset,
                size: p.meta.size,
                source: sources.get(&p.id).cloned().flatten(),
                state: state_of(p.life(), score, lower),
                reason: lock(&p.reason).clone(),
                score,
                disabled_at_ns: (disabled_at != 0).then_some(disabled_at),
                count: v.totals.count,
                abandoned: v.totals.abandoned,
                in_flight: v.in_flight,
                inclusive_ns: ns(v.totals.inclusive),
                inherent_ns: ns(v.totals.inherent),
                max_inclusive_ns: ns(v.totals.max_inclusive),
                p50_inclusive_ns: q(0.5),
                p99_inclusive_ns: q(0.99),
            }
        })
        .collect();

    let mut edges: HashMap<(u32, u32), (u64, u64)> = HashMap::new();
    for n in &view.contexts {
        if let Some(parent) = view
            .contexts
            .get(n.parent as usize)
            .filter(|_| n.parent != contexts::ROOT)
        {
            let e = edges.entry((parent.probe, n.probe)).or_default();
            e.0 += n.count;
            e.1 += n.inclusive;
        }
    }
    for f in &view.folded {
        if f.caller != contexts::ROOT {
            let e = edges.entry((f.caller, f.callee)).or_default();
            e.0 += f.count;
            e.1 += f.inclusive;
        }
    }
    let mut edges: Vec<Edge> = edges
        .into_iter()
        .map(|((caller, callee), (count, incl))| Edge {
            caller,
            callee,
            count,
            inclusive_ns: ns(incl),
        })
        .collect();
    edges.sort_by_key(|e| (e.caller, e.callee));

    let contexts_out: Vec<ContextNode> = view
        .contexts
        .iter()
        .enumerate()
        .map(|(i, n)| ContextNode {
            id: i as u32,
            parent: (n.parent != contexts::ROOT).then_some(n.parent),
            probe: n.probe,
            count: n.count,
            inclusive_ns: ns(n.inclusive),
            inherent_ns: ns(n.inherent),
        })
        .collect();

    let (inner, total) = compensate::costs();
    Snapshot {
        agent: AgentInfo {
            version: AGENT_VERSION.into(),
            backend: agent.settings.probes.backend.as_str().into(),
            problem: lock(&agent.problem).clone(),
        },
        process,
        config: {
            // The thresholds in force (the kernel backend raises them).
            let mut c = agent.settings.clone();
            (c.hotspot.threshold_us, c.hotspot.inherent_threshold_us) =
                crate::adaptive::score_card::thresholds_us();
            c
        },
        overhead: crate::kernel::overhead().unwrap_or(Overhead {
            probe_ns: total as f64 / per_ns,
            inner_ns: inner as f64 / per_ns,
            compensated: compensate::is_on(),
        }),
        meter: MeterInfo {
            clock: clock::name().into(),
            tsc_hz: clock::is_tsc().then_some(per_ns * 1e9),
            memory_bytes: view.memory_bytes,
            unmetered: view.unmetered,
            untimed: view.untimed,
            lost_records: crate::kernel::lost_records(),
            contexts_truncated: contexts::truncated(),
            threads: crate::engine::thread::THREADS_SEEN
                .load(core::sync::atomic::Ordering::Relaxed),
        },
        probes,
        edges,
        contexts: contexts_out,
        ..Snapshot::default()
    }
}

//! Builds this image's snapshot and writes it. One writer at a time; the
//! probes' counters are read while other threads keep running.

use crate::state::{self, lock, Agent};
use hotprobe_config::snapshot::{AgentInfo, MeterInfo, Overhead, ProcessInfo, Reason, Snapshot};
use std::path::PathBuf;
use std::sync::Mutex;

static WRITING: Mutex<()> = Mutex::new(());

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Writes a snapshot now. Returns the file written.
pub fn write(reason: Reason) -> Result<PathBuf, String> {
    let agent = state::agent().ok_or("the agent is not initialised")?;
    let _one_writer = lock(&WRITING);
    let snap = build(agent, reason);
    let bytes = snap.to_json();
    let mut id = lock(&agent.identity);
    let wanted = PathBuf::from(crate::export::path::expand(
        &id.output_template.to_string_lossy(),
        exe_name(&agent.exe),
        id.pid,
        id.started_unix_ns / 1_000_000_000,
    ));
    let written = super::writer::write_snapshot(&wanted, id.claimed_path.as_deref(), bytes.as_bytes())
        .map_err(|e| format!("cannot write snapshot {}: {e}", wanted.display()))?;
    id.claimed_path = Some(written.clone());
    Ok(written)
}

pub fn exe_name(exe: &str) -> &str {
    exe.rsplit('/').next().unwrap_or(exe)
}

fn build(agent: &Agent, reason: Reason) -> Snapshot {
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
        signal: None,
        taken_unix_ns: crate::sys::unix_ns(),
        sequence: id.sequence,
        forked_from: id.forked_from,
    };
    drop(id);
    Snapshot {
        agent: AgentInfo {
            version: AGENT_VERSION.into(),
            backend: agent.settings.probes.backend.as_str().into(),
            problem: lock(&agent.problem).clone(),
        },
        process,
        config: agent.settings.clone(),
        overhead: Overhead::default(),
        meter: MeterInfo::default(),
        ..Snapshot::default()
    }
}

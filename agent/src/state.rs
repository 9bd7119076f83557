//! The agent's process-wide state: settings, the identity of the current
//! process image, and whether the agent is active at all.

use hotprobe_config::Settings;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Who we are: changes in a fork child, which is a new process image.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub pid: u32,
    pub ppid: u32,
    pub started_unix_ns: u64,
    pub started_mono_ns: u64,
    pub forked_from: Option<u32>,
    /// Snapshots written by this image so far.
    pub sequence: u64,
    /// The snapshot file this image claimed with its first write.
    pub claimed_path: Option<std::path::PathBuf>,
    /// The output template expanded against the start directory.
    pub output_template: std::path::PathBuf,
}

pub struct Agent {
    pub settings: Settings,
    /// The probe set named by `target.probe_set`, already checked.
    pub probe_set: Option<hotprobe_config::ProbeSet>,
    pub exe: String,
    /// The executable's file name as started (`{exe}` in the output template).
    pub exe_name: String,
    pub argv: Vec<String>,
    pub build_id: Option<String>,
    pub identity: Mutex<Identity>,
    /// Why the agent runs unprobed (a refused backend…): goes into the snapshot.
    pub problem: Mutex<Option<String>>,
}

static AGENT: OnceLock<Agent> = OnceLock::new();
static ACTIVE: AtomicBool = AtomicBool::new(false);

pub fn install(agent: Agent) -> &'static Agent {
    let _ = AGENT.set(agent);
    AGENT.get().expect("just set")
}

pub fn agent() -> Option<&'static Agent> {
    AGENT.get()
}

/// Whether the agent meters and writes snapshots in this process image.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

pub fn activate() {
    ACTIVE.store(true, Ordering::Release);
}

pub fn deactivate() {
    ACTIVE.store(false, Ordering::Release);
}

/// Locks a mutex even if a panicking thread poisoned it: the agent's
/// state stays usable and a snapshot can still be written.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Agent {
    pub fn set_problem(&self, problem: String) {
        *lock(&self.problem) = Some(problem);
    }
}

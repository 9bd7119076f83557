//! The kernel backend (`HOTPROBE_BACKEND=kernel`): perf_event uprobes on
//! function entries and exit instructions, read back by an agent thread and
//! fed to the same metering as the inline engine (engine::external).

use crate::state::Agent;

/// Installs the kernel probes of the selected functions and starts the reader.
pub fn start(_agent: &'static Agent) -> Result<(), String> {
    Err("the kernel backend is not part of this build yet".into())
}

/// Records the kernel reported lost since the image started.
pub fn lost_records() -> u64 {
    0
}

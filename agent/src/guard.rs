//! No panic may cross into the host program: every entry point from C runs
//! its body through `fail_open`, which catches a panic, reports it once and
//! switches the agent off (probes stay where they are but stop metering).

use core::sync::atomic::{AtomicBool, Ordering};

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Runs `body`; on panic logs once, deactivates the agent and returns `fallback`.
pub fn fail_open<T>(what: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            crate::state::deactivate();
            if !PANICKED.swap(true, Ordering::Relaxed) {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                crate::error!("internal error in {what}: {msg}; the agent switched itself off, the program continues");
            }
            fallback
        }
    }
}

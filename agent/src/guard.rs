//! No panic may cross into the host program: every entry point from C runs
//! its body through `fail_open`, which catches a panic, reports it once and
//! switches the agent off (probes stay where they are but stop metering).
//!
//! The report is one `hotprobe:` line from the agent's panic hook. The hook
//! lives in the agent's own copy of std (the cdylib links std statically and
//! exports none of it), so a Rust host program keeps its own hook and its
//! own default panic message.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Set by the first panic reported: later ones stay quiet.
static PANICKED: AtomicBool = AtomicBool::new(false);
/// Whether our hook is installed (not in the rlib linked into test binaries,
/// where the test harness's own hook must stay).
static HOOKED: AtomicBool = AtomicBool::new(false);
/// The entry point named by `HOTPROBE_TEST_PANIC`, which panics on purpose
/// so the end-to-end tests can check that a caught panic fails open.
static INJECTED: OnceLock<Option<String>> = OnceLock::new();

/// The variable that makes one entry point panic (see [`read_injection`]).
pub const TEST_PANIC_VAR: &str = "HOTPROBE_TEST_PANIC";

thread_local! {
    /// The entry point whose guarded body this thread is running, for the
    /// hook's message. Const-initialized and without a destructor, so it can
    /// be read at any point of a thread's life, thread exit included.
    static GUARDING: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Installs the agent's panic hook, in place of std's multi-line message.
/// Called once from the constructor, before anything that may panic.
pub fn install_hook() {
    std::panic::set_hook(Box::new(report));
    HOOKED.store(true, Ordering::Relaxed);
}

/// Reads `HOTPROBE_TEST_PANIC` (an entry point's name, as in the messages:
/// `start-up`, `exit snapshot`, …). Called once from the constructor, while
/// the process is single-threaded, so no setenv can race the read.
pub fn read_injection() {
    let wanted = std::env::var(TEST_PANIC_VAR).ok().filter(|v| !v.is_empty());
    let _ = INJECTED.set(wanted);
}

fn injected(what: &str) -> bool {
    INJECTED.get().is_some_and(|w| w.as_deref() == Some(what))
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

/// The hook: one line for the first panic, none for later ones.
fn report(info: &std::panic::PanicHookInfo<'_>) {
    crate::state::deactivate();
    if PANICKED.swap(true, Ordering::Relaxed) {
        return;
    }
    let msg = payload_text(info.payload());
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    match GUARDING.try_with(Cell::get).ok().flatten() {
        Some(what) => crate::error!(
            "internal error in {what}: {msg} (at {file}:{line}); the agent switched itself off, the program continues"
        ),
        // Outside a guard (an agent thread's last moments): the thread ends,
        // the agent is off, the program goes on.
        None => crate::error!(
            "internal error: {msg} (at {file}:{line}); the agent switched itself off, the program continues"
        ),
    }
}

/// Runs `body`; on panic deactivates the agent and returns `fallback`. The
/// panic is reported once, by the hook (or here, where no hook is installed).
pub fn fail_open<T>(what: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    let outer = GUARDING.with(|g| g.replace(Some(what)));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if injected(what) {
            panic!("panic injected by {TEST_PANIC_VAR}");
        }
        body()
    }));
    GUARDING.with(|g| g.set(outer));
    match result {
        Ok(v) => v,
        Err(payload) => {
            crate::state::deactivate();
            if !HOOKED.load(Ordering::Relaxed) && !PANICKED.swap(true, Ordering::Relaxed) {
                let msg = payload_text(&*payload);
                crate::error!("internal error in {what}: {msg}; the agent switched itself off, the program continues");
            }
            fallback
        }
    }
}

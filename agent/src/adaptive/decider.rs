//! Takes disabled probes out of the running program. The hot path only
//! flags a probe (`Disabling`, calls already bypass it); the agent thread
//! restores the original bytes of every flagged probe in one batch, through
//! the same live-patching protocol as installation. Calls already inside a
//! disabled function still leave through the exit stub and its trampoline,
//! which are never freed.

use crate::engine::probe::{self, Life};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static PENDING: AtomicBool = AtomicBool::new(false);
/// Probes whose bytes went back.
pub static REMOVED: AtomicU64 = AtomicU64::new(0);

/// Called when a probe was flagged: the agent thread looks soon.
pub fn wake() {
    PENDING.store(true, Ordering::Release);
}

/// Removes every flagged probe. Runs on the agent thread.
pub fn run_pending() {
    if !PENDING.swap(false, Ordering::AcqRel) {
        return;
    }
    let flagged: Vec<_> = probe::all()
        .into_iter()
        .filter(|p| p.life() == Life::Disabling)
        .collect();
    let mut patches = Vec::with_capacity(flagged.len());
    for p in &flagged {
        if let Some(patch) = crate::state::lock(&p.patch).clone() {
            patches.push(patch);
        }
    }
    let removed = if crate::kernel::is_running() {
        crate::kernel::remove(&flagged) // switches their uprobe sites off
    } else {
        crate::arch::x86_64::patch::apply(&patches, crate::arch::x86_64::patch::Direction::Remove)
    };
    match removed {
        Ok(_) => {
            for p in &flagged {
                p.transition(Life::Disabling, Life::Disabled);
                *crate::state::lock(&p.reason) =
                    Some("score fell to 0: removed while the program ran".into());
            }
            REMOVED.fetch_add(flagged.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            // The probes stay bypassed (no metering, a few ns per call); say why once.
            crate::warn!("cannot remove {} disabled probes: {e}", flagged.len());
            for p in &flagged {
                p.transition(Life::Disabling, Life::Disabled);
                *crate::state::lock(&p.reason) =
                    Some(format!("score fell to 0; bytes not restored: {e}"));
            }
        }
    }
}

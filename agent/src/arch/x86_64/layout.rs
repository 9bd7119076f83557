//! Where the stubs' steady-state paths find things: byte offsets into the
//! agent's structures, taken from the Rust definitions so the assembly
//! follows any change of layout.

use crate::engine::probe::Probe;
use crate::engine::shadow::{Frame, Shadow, CAPACITY};
use crate::engine::thread::{ThreadState, HINTS, HINT_MUL};
use crate::meter::contexts::Node;
use crate::meter::stats::ThreadProbeStats;
use core::mem::{offset_of, size_of};

pub const T_SHADOW: usize = offset_of!(ThreadState, shadow);
pub const T_COUNT_ONLY: usize = offset_of!(ThreadState, count_only);
pub const T_HINTS: usize = offset_of!(ThreadState, hints);
pub const HINT_MASK: usize = HINTS - 1;
/// `HINT_MUL` as the signed immediate of a 32-bit `imul`.
pub const HINT_MUL_I32: i32 = HINT_MUL as i32;

pub const SH_TOP: usize = offset_of!(Shadow, top);
pub const SH_FRAMES: usize = offset_of!(Shadow, frames);
/// `top` (depth << 1, pending bit clear) from which the fast path declines.
pub const TOP_LIMIT: usize = (CAPACITY - 1) << 1;

pub const FRAME_SIZE: usize = size_of::<Frame>();
pub const F_SLOT: usize = offset_of!(Frame, slot);
pub const F_RET: usize = offset_of!(Frame, ret);
pub const F_PROBE: usize = offset_of!(Frame, probe);
pub const F_STATS: usize = offset_of!(Frame, stats);
pub const F_NODE: usize = offset_of!(Frame, node);
pub const F_START: usize = offset_of!(Frame, start);
pub const F_CHILD_TICKS: usize = offset_of!(Frame, child_ticks);
pub const F_PREV_TOP: usize = offset_of!(Frame, prev_top);
pub const F_DESC: usize = offset_of!(Frame, desc_calls);
pub const F_CTX: usize = offset_of!(Frame, ctx);
pub const F_CHILD_CALLS: usize = offset_of!(Frame, child_calls);
// The entry stub writes ctx and child_calls with one 8-byte store.
const _: () = assert!(F_CHILD_CALLS == F_CTX + 4);
pub const F_FLAGS: usize = offset_of!(Frame, flags);
pub const F_HOOK: usize = offset_of!(Frame, hook);
// The stubs find frame `depth` at frames + top * 48 (top = depth << 1).
const _: () = assert!(FRAME_SIZE == 96);

pub const N_KEY: usize = offset_of!(Node, parent);
pub const N_COUNT: usize = offset_of!(Node, count);
pub const N_INCLUSIVE: usize = offset_of!(Node, inclusive);
pub const N_INHERENT: usize = offset_of!(Node, inherent);
pub const N_STATS: usize = offset_of!(Node, stats);
pub const N_INDEX: usize = offset_of!(Node, index);

pub const S_ACTIVE: usize = offset_of!(ThreadProbeStats, active);
pub const S_SCORE_CALLS: usize = offset_of!(ThreadProbeStats, score_calls);
pub const S_SCORE_PENDING: usize = offset_of!(ThreadProbeStats, score_pending);
pub const S_HIST_BASE: usize = offset_of!(ThreadProbeStats, hist_base);
pub const S_COUNT: usize = offset_of!(ThreadProbeStats, count);
pub const S_INCLUSIVE: usize = offset_of!(ThreadProbeStats, inclusive);
pub const S_INHERENT: usize = offset_of!(ThreadProbeStats, inherent);
pub const S_MAX: usize = offset_of!(ThreadProbeStats, max_inclusive);
pub const S_HIST: usize = offset_of!(ThreadProbeStats, hist);

pub const P_ID: usize = offset_of!(Probe, id);
pub const P_SETTLED: usize = offset_of!(Probe, settled);
pub const P_SCORE: usize = offset_of!(Probe, score);
pub const P_HELD: usize = offset_of!(Probe, held);

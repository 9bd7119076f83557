//! The adaptive part: the score card decides which probes are hot and which
//! are disabled; the decider takes disabled probes out of the running program.

pub mod decider;
pub mod score_card;

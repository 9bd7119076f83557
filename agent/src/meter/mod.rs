//! Metering: the clock, per-thread statistics, histograms, calling
//! contexts, and compensation for the probes' own cost.

pub mod calibrate;
pub mod clock;
pub mod compensate;
pub mod contexts;
pub mod histogram;
pub mod merge;
pub mod reset;
pub mod stats;

//! The `hotprobe` command as a library: one module per verb, plus the
//! shared reading, merging and formatting code. `main.rs` only parses the
//! command line and calls each verb's `run` here, so every verb
//! can be tested without spawning the binary.

pub mod comparable;
pub mod contexts;
pub mod control;
pub mod converge;
pub mod diff;
pub mod error;
pub mod export;
pub mod failif;
pub mod fastprobes;
pub mod fixture;
pub mod flamegraph;
pub mod iterate;
pub mod list;
pub mod load;
pub mod merge;
pub mod output;
pub mod pprof;
pub mod probetable;
pub mod refine;
pub mod report;
pub mod run;
pub mod scan;
pub mod second_chance;
pub mod snapshot_cmd;
pub mod stats;
pub mod table;
pub mod units;

pub use error::{CliError, Result};

//! The outside contract of hotprobe, in code (see `CONTRACT.md`): the
//! settings with their precedence (defaults < TOML file < environment), the
//! probe-set and snapshot schemas, and the glob lists both sides match with.
//! The agent and the CLI share these types, so they can never disagree.

pub mod error;
pub mod lists;
pub mod probeset;
pub mod settings;
pub mod snapshot;

pub use error::{ConfigError, Origin};
pub use lists::{split_list, GlobList};
pub use probeset::{ProbeSet, ProbeSetEntry, PROBESET_SCHEMA};
pub use settings::{Backend, Follow, LogLevel, Settings};
pub use snapshot::{Snapshot, SNAPSHOT_SCHEMA};

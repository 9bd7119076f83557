//! Export: snapshot files, written atomically under the contract's naming rules.

pub mod path;
pub mod snapshot;
pub mod writer;

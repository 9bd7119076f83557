//! Export: snapshot files, written atomically under the contract's naming
//! rules, and the control channel that asks for them.

pub mod control;
pub mod path;
pub mod snapshot;
pub mod sources;
pub mod writer;

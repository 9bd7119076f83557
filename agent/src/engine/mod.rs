//! The probe engine: probes, per-thread state, and what happens on every
//! probed call (enter/exit).

pub mod arena;
pub mod enter_exit;
pub mod external;
pub mod fast;
pub mod probe;
pub mod recover;
pub mod shadow;
pub mod slab;
pub mod table;
pub mod thread;

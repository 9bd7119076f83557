//! Everything machine-specific. Porting means adding a folder here.

pub mod x86_64;
pub use x86_64::*;

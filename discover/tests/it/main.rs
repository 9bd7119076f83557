//! Integration tests over real programs compiled at test time (gcc, g++,
//! rustc, binutils). A test whose tool is missing says SKIPPED and passes.

mod common;

mod c_program;
mod cpp;
mod debug_files;
mod errors;
mod listing;
mod rust;
mod select;

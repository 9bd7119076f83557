//! x86-64 code analysis: see the crate description.

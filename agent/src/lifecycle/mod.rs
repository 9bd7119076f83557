//! How the process lives and ends: exit, fork, exec, threads, signals.

pub mod exit;

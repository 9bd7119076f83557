//! How the process lives and ends: exit, fork, exec, threads, signals,
//! unwinding, dynamic loading and user contexts. Each hook interposes a
//! libc/libgcc function (the agent is preloaded, so its definitions come
//! first) and calls the real one found with RTLD_NEXT.

pub mod context;
pub mod dlopen;
pub mod exec;
pub mod exit;
pub mod fork;
pub mod real;
pub mod signals;
pub mod threads;
pub mod unwind;

//! hotprobe's agent, preloaded with `LD_PRELOAD=libhotprobe.so`: it finds the
//! program's functions, probes them, meters each call, disables cold probes
//! while the program runs, and writes a snapshot when the image ends.
//!
//! Data flows one way: discover → select → patch → meter → decide → export
//! (`install` → `arch` → `engine` + `meter` → `adaptive` → `export`), with
//! `lifecycle` keeping it right across threads, fork, exec, signals,
//! unwinding and dlopen. It fails open: whatever goes wrong, the program
//! runs as without it.

pub mod adaptive;
pub mod arch;
pub mod build_id;
pub mod engine;
pub mod export;
pub mod fds;
pub mod guard;
pub mod init;
pub mod install;
pub mod kernel;
pub mod lifecycle;
pub mod log;
pub mod maps;
pub mod meter;
pub mod spin_lock;
pub mod state;
pub mod sys;
pub mod worker;

#[ctor::ctor]
fn hotprobe_start() {
    // Linked into a test binary through the rlib, the agent stays off and
    // leaves the test harness's panic hook alone.
    if !init::loaded_as_agent() {
        return;
    }
    guard::read_injection();
    guard::install_hook();
    guard::fail_open("start-up", (), init::start);
}

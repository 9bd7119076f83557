//! hotprobe's agent, preloaded with `LD_PRELOAD=libhotprobe.so`: it finds the
//! program's functions, probes them, meters each call, disables cold probes
//! while the program runs, and writes a snapshot when the image ends.
//!
//! Data flows one way: discover → select → patch → meter → decide → export.
//! It fails open: whatever goes wrong, the program runs as without it.

pub mod export;
pub mod guard;
pub mod init;
pub mod lifecycle;
pub mod log;
pub mod state;
pub mod sys;

#[ctor::ctor]
fn hotprobe_start() {
    guard::fail_open("start-up", (), init::start);
}

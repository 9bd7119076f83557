//! x86-64: the entry and exit stubs, per-probe trampolines, live patching.

pub mod cpu;
pub mod layout;
pub mod patch;
pub mod stubs;
pub mod trampoline;

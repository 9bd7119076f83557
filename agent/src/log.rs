//! Messages to stderr, prefixed `hotprobe:`, filtered by `HOTPROBE_LOG`.
//! Formatting goes into a stack buffer and out with one write(2), so a
//! message never allocates, never takes stderr's lock and is never torn.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};
use hotprobe_config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Warn as u8);

pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

struct LineBuffer {
    bytes: [u8; 1024],
    len: usize,
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - 1 - self.len; // keep one byte for '\n'
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Writes one `hotprobe: …` line to stderr if `level` is enabled.
pub fn emit(level: LogLevel, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut line = LineBuffer {
        bytes: [0; 1024],
        len: 0,
    };
    let _ = line.write_str("hotprobe: ");
    let _ = line.write_fmt(args);
    line.bytes[line.len] = b'\n';
    line.len += 1;
    crate::sys::write_all(2, &line.bytes[..line.len]);
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::emit(hotprobe_config::LogLevel::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::emit(hotprobe_config::LogLevel::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::emit(hotprobe_config::LogLevel::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::emit(hotprobe_config::LogLevel::Debug, format_args!($($t)*)) } }

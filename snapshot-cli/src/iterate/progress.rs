//! The progress display on stderr: iteration, phase and elapsed time. On a
//! terminal one status line is redrawn five times a second; otherwise each
//! phase change is one plain line.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an iteration is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing this iteration's probe set from the previous one.
    Refining,
    /// The single command runs.
    Running,
    StartingServer,
    WaitingReady,
    Load,
    Stopping,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Refining => "refining",
            Phase::Running => "running",
            Phase::StartingServer => "starting server",
            Phase::WaitingReady => "waiting ready",
            Phase::Load => "load",
            Phase::Stopping => "stopping",
        }
    }

    /// The key of its duration in `iteration.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Refining => "refine",
            Phase::Running => "run",
            Phase::StartingServer => "start",
            Phase::WaitingReady => "ready",
            Phase::Load => "load",
            Phase::Stopping => "stop",
        }
    }
}

struct State {
    iteration: usize,
    total: usize,
    phase: Option<Phase>,
    phase_start: Instant,
    iteration_start: Instant,
    /// A status line is on screen (terminal only).
    drawn: bool,
}

pub struct Progress {
    state: Arc<Mutex<State>>,
    tty: bool,
    started: Instant,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn status_line(s: &State, started: Instant) -> String {
    let now = Instant::now();
    format!(
        "hotprobe: iteration {}/{} · {} · {} (iteration {}, total {})",
        s.iteration,
        s.total,
        s.phase.map_or("…", Phase::label),
        secs(now - s.phase_start),
        secs(now - s.iteration_start),
        secs(now - started)
    )
}

fn redraw(s: &mut State, started: Instant) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{}", status_line(s, started));
    let _ = err.flush();
    s.drawn = true;
}

impl Progress {
    /// `total`: the most iterations the loop will run.
    pub fn new(total: usize) -> Progress {
        Self::with_terminal(total, std::io::stderr().is_terminal())
    }

    pub fn with_terminal(total: usize, tty: bool) -> Progress {
        let now = Instant::now();
        let state = Arc::new(Mutex::new(State {
            iteration: 0,
            total,
            phase: None,
            phase_start: now,
            iteration_start: now,
            drawn: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tty.then(|| {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    if s.phase.is_some() && !stop.load(Ordering::Relaxed) {
                        redraw(&mut s, now);
                    }
                }
            })
        });
        Progress {
            state,
            tty,
            started: now,
            stop,
            ticker,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds since the loop started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A new iteration begins.
    pub fn iteration(&self, n: usize) {
        let mut s = self.lock();
        s.iteration = n;
        s.iteration_start = Instant::now();
    }

    /// The current iteration enters `phase`.
    pub fn phase(&self, phase: Phase) {
        let mut s = self.lock();
        s.phase = Some(phase);
        s.phase_start = Instant::now();
        if self.tty {
            redraw(&mut s, self.started);
        } else {
            eprintln!(
                "hotprobe: iteration {}/{}: {} (+{})",
                s.iteration,
                s.total,
                phase.label(),
                secs(self.started.elapsed())
            );
        }
    }

    /// A whole line (an iteration's result, a warning), above the status line.
    pub fn note(&self, text: &str) {
        let mut s = self.lock();
        let mut err = std::io::stderr().lock();
        if s.drawn {
            let _ = write!(err, "\r\x1b[2K");
            s.drawn = false;
        }
        let _ = writeln!(err, "hotprobe: {text}");
        if self.tty && s.phase.is_some() {
            drop(err);
            redraw(&mut s, self.started);
        }
    }

    /// No phase: the status line goes away.
    pub fn idle(&self) {
        let mut s = self.lock();
        s.phase = None;
        if s.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            s.drawn = false;
        }
    }

    /// Stops the redrawing and clears the status line.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.idle();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_iteration_phase_and_time() {
        let now = Instant::now();
        let s = State {
            iteration: 2,
            total: 5,
            phase: Some(Phase::WaitingReady),
            phase_start: now,
            iteration_start: now,
            drawn: false,
        };
        let line = status_line(&s, now);
        assert!(
            line.starts_with("hotprobe: iteration 2/5 · waiting ready · 0.0 s"),
            "{line}"
        );
        assert!(line.contains("total 0.0 s"), "{line}");
    }
}

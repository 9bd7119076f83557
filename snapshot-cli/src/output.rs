//! Where output goes and how it looks: colour only on a terminal and never
//! with `NO_COLOR`, the width tables fit in, and output files (`-` is stdout).

use crate::error::{CliError, Result};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    /// Colour even into a pipe (NO_COLOR still wins).
    Always,
    Never,
}

/// Whether to colour standard output. `NO_COLOR` (set and not empty) always wins.
pub fn color_enabled(choice: ColorChoice) -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    match choice {
        ColorChoice::Never => false,
        ColorChoice::Always => true,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

/// The width tables are fitted to: `COLUMNS`, else the terminal's, else 100.
pub fn table_width() -> usize {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
    {
        return c.max(40);
    }
    terminal_columns().unwrap_or(100).max(40)
}

fn terminal_columns() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    // SAFETY: TIOCGWINSZ fills a winsize struct we own; fd 1 is open.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Text styles for table cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    #[default]
    Plain,
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
}

impl Style {
    /// Wraps `text` in this style's escape codes.
    pub fn paint(self, text: &str, color: bool) -> String {
        let code = match self {
            Style::Plain => return text.to_string(),
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "31",
            Style::Green => "32",
            Style::Yellow => "33",
        };
        if color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Opens an output file, or standard output for `-`.
pub fn create_output(path: &Path) -> Result<Box<dyn Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::BufWriter::new(std::io::stdout().lock())));
    }
    let file = std::fs::File::create(path)
        .map_err(|e| CliError::failure(format!("{}: cannot create: {e}", path.display())))?;
    Ok(Box::new(std::io::BufWriter::new(file)))
}

/// Writes a whole output file, or standard output for `-`.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = create_output(path)?;
    out.write_all(bytes).and_then(|_| out.flush()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::from(e)
        } else {
            CliError::failure(format!("{}: cannot write: {e}", path.display()))
        }
    })
}

//! The error every verb returns: a message for stderr (printed as
//! `hotprobe: error: …`) and the exit code that goes with it.

use std::fmt;

/// Exit code for a usage error (bad flag, malformed expression).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a failure (unreadable or invalid input, I/O error).
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    /// Empty for a quiet exit (a closed pipe): nothing is printed.
    pub message: String,
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub fn failure(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    pub fn with_code(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// Writing to a closed pipe (`hotprobe report … | head`) ends quietly.
    pub fn is_quiet(&self) -> bool {
        self.message.is_empty()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError {
                code: 0,
                message: String::new(),
            }
        } else {
            CliError::failure(format!("cannot write output: {e}"))
        }
    }
}

impl From<hotprobe_config::snapshot::ReadError> for CliError {
    fn from(e: hotprobe_config::snapshot::ReadError) -> CliError {
        CliError::failure(e.to_string())
    }
}

impl From<hotprobe_config::ConfigError> for CliError {
    fn from(e: hotprobe_config::ConfigError) -> CliError {
        CliError::failure(e.to_string())
    }
}

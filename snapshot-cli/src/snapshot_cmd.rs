//! `hotprobe snapshot PID`: asks a running agent for a snapshot now.

use crate::control::{Client, Reply, Request};
use crate::error::{CliError, Result};
use std::io::Write;
use std::time::Duration;

pub const AFTER_HELP: &str = "\
The agent writes the snapshot (reason `request`) where its output template
says, and this prints the file's path. It talks over the agent's control
socket: $XDG_RUNTIME_DIR/hotprobe/PID.sock, or /tmp/hotprobe-UID/PID.sock.

Examples:
  hotprobe snapshot 4242
  hotprobe report \"$(hotprobe snapshot --reset 4242)\"     measure an interval";

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SnapshotArgs {
    /// The process running under the agent.
    #[arg(value_name = "PID")]
    pub pid: u32,
    /// Zero the counters after the snapshot (the next one covers only what follows).
    #[arg(long, conflicts_with = "reset_only")]
    pub reset: bool,
    /// Only zero the counters; write no snapshot.
    #[arg(long)]
    pub reset_only: bool,
    /// Seconds to wait for the agent.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
}

pub fn run(args: &SnapshotArgs, out: &mut dyn Write) -> Result<i32> {
    if args.timeout.is_nan() || args.timeout <= 0.0 || !args.timeout.is_finite() {
        return Err(CliError::usage(
            "--timeout must be a number of seconds above 0",
        ));
    }
    let req = match (args.reset, args.reset_only) {
        (_, true) => Request::Reset,
        (true, false) => Request::SnapshotReset,
        (false, false) => Request::Snapshot,
    };
    let client = Client {
        timeout: Duration::from_secs_f64(args.timeout),
        ..Client::from_env()
    };
    match client.request(args.pid, req).map_err(CliError::failure)? {
        Reply::Written(path) => writeln!(out, "{}", path.display())?,
        Reply::Done if req == Request::Reset => writeln!(out, "reset")?,
        Reply::Done => {
            return Err(CliError::failure(format!(
                "the agent in process {} answered `ok` without a snapshot path",
                args.pid
            )))
        }
    }
    out.flush()?;
    Ok(0)
}

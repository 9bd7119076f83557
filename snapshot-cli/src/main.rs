//! The `hotprobe` command line: parsing only; the verbs live in the library.

use clap::{Parser, Subcommand};
use hotprobe_cli::{
    converge, diff, export, flamegraph, iterate, list, refine, report, run, snapshot_cmd, CliError,
};
use std::io::Write;

const EXAMPLES: &str = "\
Examples:
  hotprobe run -- ./server --port 6379        run under the agent (writes hotprobe-server-PID.json)
  hotprobe report hotprobe-server-*.json      the hotspot table
  hotprobe refine snaps/ -o probes.toml       the probe set for the next run
  hotprobe run --probes probes.toml -- ./server
  hotprobe diff before/ after/ --fail-if 'avg_inherent>+10%'
  hotprobe flamegraph snaps/ -o flame.svg
  hotprobe export --format pprof snaps/ -o profile.pb.gz
  hotprobe list ./server                      what the agent would probe, and why not
  hotprobe iterate -- ./bench --quick         the whole loop: run, refine, run again… until settled";

/// Probe a native program's functions and find its hotspots.
///
/// The agent (libhotprobe.so, preloaded by `hotprobe run`) meters every
/// probed function's calls, inclusive and inherent (self) time, takes cold
/// probes out while the program runs, and writes a JSON snapshot per process
/// image. These verbs turn snapshots into tables, probe sets, comparisons,
/// flame graphs and profiles.
#[derive(Debug, Parser)]
#[command(name = "hotprobe", version, after_help = EXAMPLES, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The functions the agent would probe in an object, and why others are not.
    List(list::ListArgs),
    /// Run a command under the agent.
    Run(run::RunArgs),
    /// The hotspot table: calls, inclusive and inherent time per function.
    Report(report::ReportArgs),
    /// Write the probe set of the hotspots for the next run.
    Refine(refine::RefineArgs),
    /// Compare two snapshots or sets of snapshots; gate CI with --fail-if.
    Diff(diff::DiffArgs),
    /// Per iteration: hot-set size, Jaccard and rank correlation; has it settled?
    Converge(converge::ConvergeArgs),
    /// Ask a running agent for a snapshot now.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Flame graph (SVG or folded stacks) of the calling-context tree.
    Flamegraph(flamegraph::FlamegraphArgs),
    /// Export snapshots for other tools (pprof).
    Export(export::ExportArgs),
    /// Run a workload, refine the probe set, run again… until the hot set settles.
    Iterate(Box<iterate::IterateArgs>),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_on_clap_error(e),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let result = match &cli.command {
        Command::List(a) => list::run(a, &mut out),
        Command::Run(a) => run::run(a),
        Command::Report(a) => report::run(a, &mut out),
        Command::Refine(a) => refine::run(a, &mut out, &mut err),
        Command::Diff(a) => diff::run(a, &mut out, &mut err),
        Command::Converge(a) => converge::run(a, &mut out),
        Command::Snapshot(a) => snapshot_cmd::run(a, &mut out),
        Command::Flamegraph(a) => flamegraph::run(a),
        Command::Export(a) => export::run(a),
        Command::Iterate(a) => iterate::run(a, &mut out),
    };
    let flushed = out.flush().map_err(CliError::from);
    match result.and_then(|code| flushed.map(|_| code)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if !e.is_quiet() {
                eprintln!("hotprobe: error: {}", e.message);
            }
            std::process::exit(e.code);
        }
    }
}

/// Help and version go to stdout with exit 0; usage errors get the
/// `hotprobe: error:` prefix and exit 2.
fn exit_on_clap_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("hotprobe: error: {text}");
            std::process::exit(2);
        }
    }
}

//! `hotprobe flamegraph`: an SVG flame graph (or folded stacks) of the
//! calling-context tree.

use crate::contexts::{collect, Stacks, DEEPER_FRAMES, MAX_DRAWN_DEPTH};
use crate::error::{CliError, Result};
use crate::load::load_full;
use crate::output::create_output;
use std::io::Write;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Frames are the probed functions of each calling context (names from the
probe table, `name#N` for same-symbol functions of one module). With
--weight inherent (the default) a frame's own width is its self time, so a
frame is as wide as its inclusive time; with --weight count, each frame's own
width is its number of calls in that context. Several snapshots are merged by
the path of names. A stack deeper than 1,000 frames (a deep recursion) is cut
there: what lies deeper is one `[deeper frames]` frame with all its weight.

Examples:
  hotprobe flamegraph hotprobe-server-4242.json -o flame.svg
  hotprobe flamegraph snaps/ --weight count -o calls.svg
  hotprobe flamegraph snaps/ --folded -o stacks.folded";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weight {
    /// Self time per context, in ns.
    Inherent,
    /// Calls per context.
    Count,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct FlamegraphArgs {
    /// Snapshot files, or directories holding *.json snapshots.
    #[arg(required = true, value_name = "SNAP")]
    pub snapshots: Vec<PathBuf>,
    /// Where to write (`-` for standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Write folded stacks (`a;b;c 123`) instead of an SVG.
    #[arg(long)]
    pub folded: bool,
    #[arg(long, value_enum, default_value_t = Weight::Inherent)]
    pub weight: Weight,
    /// Title of the SVG.
    #[arg(long)]
    pub title: Option<String>,
}

/// Folded stacks, one line per context with a non-zero weight, in the
/// stacks' order; a stack deeper than [`MAX_DRAWN_DEPTH`] ends in one
/// [`DEEPER_FRAMES`] frame.
pub fn folded_lines(st: &Stacks, weight: Weight) -> Vec<String> {
    let mut lines = Vec::new();
    st.for_each_within(MAX_DRAWN_DEPTH, |stack, w, deeper| {
        let v = match weight {
            Weight::Inherent => w.inherent_ns,
            Weight::Count => w.count,
        };
        if v > 0 {
            let mut names = st.names(stack);
            if deeper {
                names.push(DEEPER_FRAMES);
            }
            lines.push(format!("{} {v}", names.join(";")));
        }
    });
    lines
}

pub fn run(args: &FlamegraphArgs) -> Result<i32> {
    let st = collect(&load_full(&args.snapshots)?)?;
    let lines = folded_lines(&st, args.weight);
    if lines.is_empty() {
        return Err(CliError::failure(
            "every calling context has zero weight: nothing to draw",
        ));
    }
    let mut out = create_output(&args.output)?;
    if args.folded {
        for l in &lines {
            writeln!(out, "{l}")?;
        }
    } else {
        let mut opts = inferno::flamegraph::Options::default();
        let what = match args.weight {
            Weight::Inherent => "inherent time",
            Weight::Count => "calls",
        };
        opts.title = args
            .title
            .clone()
            .unwrap_or_else(|| format!("hotprobe: {} — {what}", st.executables.join(", ")));
        opts.count_name = match args.weight {
            Weight::Inherent => "ns".into(),
            Weight::Count => "calls".into(),
        };
        opts.name_type = "Function:".into();
        opts.hash = true;
        opts.deterministic = true;
        if st.truncated {
            opts.subtitle = Some("calling contexts were truncated (meter.contexts_cap): deep paths are folded into their parents".into());
        }
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)
            .map_err(|e| {
                CliError::failure(format!(
                    "{}: cannot draw the flame graph: {e}",
                    args.output.display()
                ))
            })?;
    }
    out.flush()
        .map_err(|e| CliError::failure(format!("{}: cannot write: {e}", args.output.display())))?;
    Ok(0)
}

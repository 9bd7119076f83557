//! `hotprobe export --format pprof`: a gzipped `perftools.profiles.Profile`
//! for `go tool pprof`, Pyroscope and speedscope.

use crate::contexts::{collect, Stacks, DEEPER_FRAMES, MAX_DRAWN_DEPTH};
use crate::error::{CliError, Result};
use crate::load::load_full;
use crate::output::write_output;
use crate::pprof::{Function, Line, Location, Mapping, Profile, Sample, ValueType};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
One sample per calling context (merged over the snapshots by the path of
functions), its stack leaf first, with two values: calls/count and
inherent/nanoseconds (self time, the default). pprof adds a sample's values
up its stack, so its cumulative column is inclusive time. One Function per
probed function: name (demangled, `#N` for same-symbol functions of one
module), system_name (the raw symbol) and filename (the source file when
known, else the module). A stack deeper than 1,000 frames is cut there, its
deeper frames one `[deeper frames]` function holding all their weight.

Examples:
  hotprobe export --format pprof hotprobe-server-4242.json -o profile.pb.gz
  go tool pprof -top profile.pb.gz
  go tool pprof -http=: profile.pb.gz";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// gzipped protobuf `perftools.profiles.Profile`.
    Pprof,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ExportArgs {
    /// Snapshot files, or directories holding *.json snapshots.
    #[arg(required = true, value_name = "SNAP")]
    pub snapshots: Vec<PathBuf>,
    #[arg(long, short, value_enum)]
    pub format: ExportFormat,
    /// Where to write (`-` for standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
}

/// Interns strings; index 0 is "".
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        Strings {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// `file.c:12` → (`file.c`, 12); a source without a line number → (source, 0).
fn split_source(source: &str) -> (&str, i64) {
    match source.rsplit_once(':') {
        Some((file, line))
            if !file.is_empty() && line.chars().all(|c| c.is_ascii_digit()) && !line.is_empty() =>
        {
            (file, line.parse().unwrap_or(0))
        }
        _ => (source, 0),
    }
}

/// Builds the profile from merged stacks.
pub fn profile(st: &Stacks) -> Profile {
    let mut s = Strings::new();
    let mut p = Profile {
        sample_type: vec![
            ValueType {
                r#type: s.id("calls"),
                unit: s.id("count"),
            },
            ValueType {
                r#type: s.id("inherent"),
                unit: s.id("nanoseconds"),
            },
        ],
        period_type: Some(ValueType {
            r#type: s.id("inherent"),
            unit: s.id("nanoseconds"),
        }),
        period: 1,
        time_nanos: st.started_unix_ns as i64,
        duration_nanos: st.duration_ns as i64,
        ..Profile::default()
    };
    p.default_sample_type = s.id("inherent");
    let pids: Vec<String> = st.pids.iter().take(20).map(u32::to_string).collect();
    p.comment.push(s.id(&format!(
        "hotprobe export of {} (pid {})",
        st.executables.join(", "),
        pids.join(", ")
    )));
    if st.truncated {
        p.comment.push(
            s.id("calling contexts were truncated: deep paths are folded into their parents"),
        );
    }
    let mut mapping_of: HashMap<&str, u64> = HashMap::new();
    for f in &st.frames {
        if !mapping_of.contains_key(f.module_path.as_str()) {
            let id = p.mapping.len() as u64 + 1;
            mapping_of.insert(&f.module_path, id);
            p.mapping.push(Mapping {
                id,
                filename: s.id(&f.module_path),
                build_id: st.build_ids.get(&f.module_path).map_or(0, |b| s.id(b)),
                has_functions: true,
                has_filenames: true,
                has_line_numbers: st
                    .frames
                    .iter()
                    .any(|g| g.module_path == f.module_path && g.source.is_some()),
                ..Mapping::default()
            });
        }
    }
    for (i, f) in st.frames.iter().enumerate() {
        let id = i as u64 + 1;
        let (file, line) = match &f.source {
            Some(src) => split_source(src),
            None => (f.module_path.as_str(), 0),
        };
        p.function.push(Function {
            id,
            name: s.id(&f.name),
            system_name: s.id(&f.symbol),
            filename: s.id(file),
            start_line: line,
        });
        p.location.push(Location {
            id,
            mapping_id: mapping_of.get(f.module_path.as_str()).copied().unwrap_or(0),
            address: f.offset,
            line: vec![Line {
                function_id: id,
                line,
                column: 0,
            }],
            is_folded: false,
        });
    }
    // A stack cut at MAX_DRAWN_DEPTH ends in one location that stands for
    // its deeper frames, made when first needed.
    let mut deeper_location = None;
    st.for_each_within(MAX_DRAWN_DEPTH, |stack, w, deeper| {
        let mut location_id = Vec::with_capacity(stack.len() + 1);
        if deeper {
            let id = *deeper_location.get_or_insert_with(|| {
                let id = p.location.len() as u64 + 1;
                let fid = p.function.len() as u64 + 1;
                p.function.push(Function {
                    id: fid,
                    name: s.id(DEEPER_FRAMES),
                    system_name: s.id(DEEPER_FRAMES),
                    ..Function::default()
                });
                p.location.push(Location {
                    id,
                    line: vec![Line {
                        function_id: fid,
                        line: 0,
                        column: 0,
                    }],
                    ..Location::default()
                });
                id
            });
            location_id.push(id);
        }
        location_id.extend(stack.iter().rev().map(|&i| i as u64 + 1));
        p.sample.push(Sample {
            location_id,
            value: vec![w.count as i64, w.inherent_ns as i64],
            label: Vec::new(),
        });
    });
    p.string_table = s.table;
    p
}

/// The gzipped bytes of a profile.
pub fn encode_gz(p: &Profile) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(p);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

pub fn run(args: &ExportArgs) -> Result<i32> {
    match args.format {
        ExportFormat::Pprof => {
            let st = collect(&load_full(&args.snapshots)?)?;
            let bytes = encode_gz(&profile(&st));
            if bytes.is_empty() {
                return Err(CliError::failure("cannot compress the profile"));
            }
            write_output(&args.output, &bytes)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sources_split_into_file_and_line() {
        assert_eq!(split_source("src/a.c:12"), ("src/a.c", 12));
        assert_eq!(split_source("a.c"), ("a.c", 0));
        assert_eq!(split_source("C:x"), ("C:x", 0));
    }

    /// A chain 1,200 deep under the fixture's tree: samples stop at
    /// MAX_DRAWN_DEPTH frames, one more location stands for the rest, and
    /// no weight is lost.
    #[test]
    fn deep_stacks_are_cut_into_one_deeper_location() {
        let mut snap = crate::fixture::server(5);
        let probe = snap.contexts[0].probe;
        let mut parent = snap.contexts[0].id;
        let first_id = snap.contexts.iter().map(|c| c.id).max().unwrap() + 1;
        for k in 0..1200 {
            let mut node = snap.contexts[0].clone();
            node.id = first_id + k;
            node.parent = Some(parent);
            node.probe = probe;
            node.count = 1;
            node.inherent_ns = 10;
            snap.contexts.push(node);
            parent = first_id + k;
        }
        let inputs = crate::load::Inputs {
            snapshots: vec![crate::load::Loaded {
                path: "s.json".into(),
                snap,
            }],
            superseded: vec![],
        };
        let st = collect(&inputs).unwrap();
        let p = profile(&st);
        let deeper: Vec<_> = p
            .function
            .iter()
            .filter(|f| p.string_table[f.name as usize] == DEEPER_FRAMES)
            .collect();
        assert_eq!(deeper.len(), 1, "one function for the deeper frames");
        let cut: Vec<_> = p
            .sample
            .iter()
            .filter(|s| s.location_id[0] == p.location.len() as u64)
            .collect();
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].location_id.len(), MAX_DRAWN_DEPTH + 1);
        // The 1,200 chain nodes below the root: the first 999 drawn, the
        // other 201 in the cut sample.
        assert_eq!(cut[0].value, vec![201, 201 * 10]);
        assert!(p
            .sample
            .iter()
            .all(|s| s.location_id.len() <= MAX_DRAWN_DEPTH + 1));
        let total: i64 = p.sample.iter().map(|s| s.value[1]).sum();
        let mut inherent = 0;
        st.for_each(|_, w| inherent += w.inherent_ns);
        assert_eq!(total as u64, inherent);
    }

    #[test]
    fn round_trips_through_prost() {
        let inputs = crate::load::Inputs {
            snapshots: vec![crate::load::Loaded {
                path: "s.json".into(),
                snap: crate::fixture::server(5),
            }],
            superseded: vec![],
        };
        let st = collect(&inputs).unwrap();
        let gz = encode_gz(&profile(&st));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let p: Profile = prost::Message::decode(&raw[..]).unwrap();
        let name = |id: u64| {
            let f = &p.function[id as usize - 1];
            p.string_table[f.name as usize].clone()
        };
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.sample.len(), crate::fixture::CONTEXTS.len());
        let deepest = p.sample.iter().find(|s| s.location_id.len() == 8).unwrap();
        let names: Vec<String> = deepest
            .location_id
            .iter()
            .map(|&l| name(p.location[l as usize - 1].line[0].function_id))
            .collect();
        assert_eq!(names[0], "compare#2");
        assert_eq!(names.last().unwrap(), "main");
        assert_eq!(deepest.value, vec![5_000, 5_000 * 30]);
        let total: i64 = p.sample.iter().map(|s| s.value[1]).sum();
        let mut inherent = 0;
        st.for_each(|_, w| inherent += w.inherent_ns);
        assert_eq!(total as u64, inherent);
    }
}

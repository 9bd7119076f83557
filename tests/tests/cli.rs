//! The `hotprobe` CLI on real programs and on the snapshots the agent really
//! writes: `list`, report formats, refine → run with the probe set, diff of
//! two builds and its CI gate, flame graph, pprof, `run`, and `snapshot PID`.

use hotprobe_config::snapshot::{ProbeState, Reason, Snapshot};
use hotprobe_config::ProbeSet;
use hotprobe_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the CLI and asserts it succeeded; returns stdout.
fn ok(args: &[&str], cwd: &Path) -> String {
    let out = cli(args, cwd);
    assert!(
        out.status.success(),
        "hotprobe {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// `list --format json` of `prog`.
fn list_json(prog: &Path, cwd: &Path) -> serde_json::Value {
    json(&ok(
        &["list", prog.to_str().unwrap(), "--format", "json"],
        cwd,
    ))
}

fn entry<'a>(list: &'a serde_json::Value, key: &str, name: &str) -> Option<&'a serde_json::Value> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
}

#[test]
fn list_shows_functions_with_sizes_and_sources() {
    let s = Scratch::new();
    let prog = s.build("counts.c", "counts", &["-O2"]);
    let table = ok(&["list", prog.to_str().unwrap()], s.path());
    assert!(table.contains("symbols      symtab"), "{table}");
    let line = table
        .lines()
        .find(|l| l.ends_with(" middle"))
        .unwrap_or_else(|| panic!("no `middle` row:\n{table}"));
    assert!(
        line.contains("counts.c:"),
        "source position missing: {line}"
    );
    let list = list_json(&prog, s.path());
    assert_eq!(list["schema"], "hotprobe.list/1");
    for name in ["leaf", "middle", "top", "main"] {
        let f = entry(&list, "functions", name)
            .unwrap_or_else(|| panic!("{name} not listed: {list:#}"));
        assert!(f["size"].as_u64().unwrap() > 0, "{name}: {f}");
        assert!(f["offset"].as_u64().unwrap() > 0, "{name}: {f}");
        assert!(
            f["source"].as_str().unwrap().starts_with("counts.c:"),
            "{name}: {f}"
        );
    }
    let start = entry(&list, "not_probed", "_start").expect("_start is never probed");
    assert_eq!(start["reason_code"], "toolchain-glue");
    // --include narrows the listing.
    let only = json(&ok(
        &[
            "list",
            prog.to_str().unwrap(),
            "--include",
            "m*",
            "--format",
            "json",
        ],
        s.path(),
    ));
    let names: BTreeSet<&str> = only["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["main", "many_args", "middle"]));
    assert!(only["filtered_out"].as_u64().unwrap() > 0);
}

#[test]
fn list_finds_dynsym_functions_of_a_stripped_rdynamic_binary() {
    let s = Scratch::new();
    let prog = s.build("counts.c", "counts-stripped", &["-O2", "-rdynamic"]);
    let st = Command::new("strip")
        .arg(&prog)
        .status()
        .expect("run strip");
    assert!(st.success());
    let list = list_json(&prog, s.path());
    assert_eq!(list["symbol_source"], "dynsym");
    for name in ["leaf", "middle", "top", "varargs_sum"] {
        let f = entry(&list, "functions", name)
            .unwrap_or_else(|| panic!("{name} not listed: {list:#}"));
        assert!(f["size"].as_u64().unwrap() > 0);
        assert!(
            f["source"].is_null(),
            "a stripped binary has no line tables: {f}"
        );
    }
    let table = ok(&["list", prog.to_str().unwrap()], s.path());
    assert!(
        table.contains("symbols      dynsym") && table.contains(" leaf\n"),
        "{table}"
    );
}

#[test]
fn list_shows_the_engine_rejections_the_agent_records() {
    let s = Scratch::new();
    let prog = s.build("small.c", "small", &["-O2"]);
    let list = list_json(&prog, s.path());
    let tiny =
        entry(&list, "not_probed", "tiny").unwrap_or_else(|| panic!("tiny not rejected: {list:#}"));
    assert_eq!(tiny["reason_code"], "inline-too-small");
    assert!(
        tiny["reason"].as_str().unwrap().starts_with("too small"),
        "{tiny}"
    );
    let loops = entry(&list, "not_probed", "loops_into_entry").expect("loops_into_entry rejected");
    assert_eq!(loops["reason_code"], "inline-branch-into-patch");
    assert!(entry(&list, "functions", "big_enough").is_some());
    assert!(
        entry(&list, "functions", "tiny").is_none()
            && entry(&list, "functions", "loops_into_entry").is_none()
    );
    let table = ok(&["list", prog.to_str().unwrap()], s.path());
    let row = table
        .lines()
        .find(|l| l.ends_with(" loops_into_entry"))
        .unwrap();
    assert!(
        row.contains("branch at +0x3 into the patched bytes"),
        "{row}"
    );

    // The agent records the same reasons in its snapshot.
    let ran = Run::new(&prog, s.path()).run();
    let snap = ran.snapshot();
    for name in ["tiny", "loops_into_entry"] {
        let p = probe(snap, name);
        assert_eq!(p.state, ProbeState::Rejected, "{name}");
        let listed = entry(&list, "not_probed", name).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            p.reason.as_deref(),
            Some(listed.as_str()),
            "{name}: list and agent disagree"
        );
    }
    assert_ne!(probe(snap, "big_enough").state, ProbeState::Rejected);
}

#[test]
fn list_refuses_missing_and_non_elf_files() {
    let s = Scratch::new();
    let missing = cli(&["list", "/no/such/binary"], s.path());
    assert_eq!(missing.status.code(), Some(1));
    let err = text(&missing.stderr);
    assert!(
        err.starts_with("hotprobe: error: /no/such/binary:") && err.contains("No such file"),
        "{err}"
    );
    assert!(missing.stdout.is_empty());
    let notes = s.write("notes.txt", "not a program\n");
    let out = cli(
        &["list", notes.to_str().unwrap(), "--format", "json"],
        s.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("notes.txt") && err.contains("not an ELF object"),
        "{err}"
    );
    let bad_glob = cli(
        &["list", "/bin/true", "--include", "a[", "--format", "json"],
        s.path(),
    );
    assert_ne!(bad_glob.status.code(), Some(0), "a bad glob is an error");
}

/// Runs `slower REPS` under the agent, every probe counting; its snapshot path.
fn slower_snapshot(s: &Scratch, prog: &Path, reps: &str, dir: &str) -> PathBuf {
    let out = s.join(dir);
    std::fs::create_dir_all(&out).unwrap();
    let ran = Run::new(prog, &out)
        .args(&[reps])
        .env("HOTPROBE_ADAPTIVE", "0")
        .run();
    assert_eq!(ran.stdout(), "done\n", "{}", ran.stderr());
    ran.snapshot();
    ran.snapshots[0].0.clone()
}

#[test]
fn report_json_and_csv_parse_back() {
    let s = Scratch::new();
    let prog = s.build("slower.c", "slower", &["-O2"]);
    let snap = slower_snapshot(&s, &prog, "1", "a");
    let p = snap.to_str().unwrap();
    let doc = json(&ok(&["report", p, "--format", "json"], s.path()));
    assert_eq!(doc["schema"], "hotprobe.report/1");
    let funcs = doc["functions"].as_array().unwrap();
    let steady = funcs
        .iter()
        .find(|f| f["name"] == "steady")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(steady["count"], 3000);
    assert!(steady["inherent_ns"].as_u64().unwrap() > 0);
    let csv = ok(&["report", p, "--format", "csv"], s.path());
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column: {header:?}"))
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let tunable = rows
        .iter()
        .find(|r| r[col("name")] == "tunable")
        .expect("tunable row");
    assert_eq!(tunable[col("count")], "3000");
    assert!(
        tunable[col("inclusive_ns")].parse::<u64>().unwrap()
            >= tunable[col("inherent_ns")].parse::<u64>().unwrap()
    );
    let md = ok(&["report", p, "--format", "markdown"], s.path());
    assert!(md.contains("| `tunable` |"), "{md}");
}

#[test]
fn refined_probe_set_is_exactly_what_the_next_run_installs() {
    let s = Scratch::new();
    let prog = s.build("slower.c", "slower", &["-O2"]);
    let first = Run::new(&prog, s.path()).args(&["2"]).run();
    let snap = first.snapshots[0].0.clone();
    let set = s.join("probes.toml");
    let out = cli(
        &[
            "refine",
            snap.to_str().unwrap(),
            "-o",
            set.to_str().unwrap(),
            "--keep",
            "main",
        ],
        s.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("wrote"), "{}", text(&out.stderr));
    let entries = ProbeSet::read(&set).unwrap().probes;
    let wanted: BTreeSet<(String, String)> = entries
        .iter()
        .map(|e| (e.module.clone(), e.symbol.clone()))
        .collect();
    assert!(
        wanted.contains(&("slower".to_string(), "main".to_string())),
        "{wanted:?}"
    );
    assert!(
        wanted.contains(&("slower".to_string(), "tunable".to_string())),
        "tunable (≈5 µs a call) is hot: {wanted:?}"
    );

    let second_dir = s.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = Run::new(&prog, &second_dir)
        .args(&["2"])
        .env("HOTPROBE_PROBESET", set.to_str().unwrap())
        .run();
    assert_eq!(second.stdout(), "done\n");
    let installed: BTreeSet<(String, String)> = second
        .snapshot()
        .probes
        .iter()
        .filter(|p| p.state != ProbeState::Rejected)
        .map(|p| {
            (
                Path::new(&p.module)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                p.symbol.clone(),
            )
        })
        .collect();
    assert_eq!(
        installed, wanted,
        "the run with HOTPROBE_PROBESET installs exactly the set"
    );
}

#[test]
fn diff_of_a_snapshot_with_itself_reports_no_change() {
    let s = Scratch::new();
    let prog = s.build("slower.c", "slower", &["-O2"]);
    let a = slower_snapshot(&s, &prog, "1", "a");
    let a = a.to_str().unwrap();
    let out = ok(&["diff", a, a], s.path());
    assert!(out.contains("no change beyond the noise floor"), "{out}");
    assert!(out.contains("Jaccard 1"), "{out}");
    let gate = cli(&["diff", a, a, "--fail-if", "avg_inherent>+10%"], s.path());
    assert_eq!(gate.status.code(), Some(0), "{}", text(&gate.stderr));
}

/// Builds `builds.c` as `<dir>/builds` and runs it under the agent, every
/// probe counting; returns the snapshot.
fn build_and_run(s: &Scratch, dir: &str, flags: &[&str]) -> PathBuf {
    std::fs::create_dir_all(s.join(dir)).unwrap();
    let prog = s.build("builds.c", &format!("{dir}/builds"), flags);
    let ran = Run::new(&prog, &s.join(dir))
        .env("HOTPROBE_ADAPTIVE", "0")
        .run();
    assert_eq!(ran.stdout(), "done\n", "{}", ran.stderr());
    ran.snapshot();
    ran.snapshots[0].0.clone()
}

fn names(list: &serde_json::Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn diff_of_two_builds_in_different_directories_names_what_changed() {
    let s = Scratch::new();
    let a = build_and_run(&s, "base", &["-O2"]);
    let b = build_and_run(&s, "new", &["-O2", "-DNEW_BUILD"]);
    let module = |snap: &Path| {
        let snap = Snapshot::read(snap).unwrap();
        probe(&snap, "steady").module.clone()
    };
    let (module_a, module_b) = (module(&a), module(&b));
    assert_ne!(
        module_a, module_b,
        "the builds live in different directories"
    );
    assert!(module_a.ends_with("/base/builds") && module_b.ends_with("/new/builds"));

    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let doc = json(&ok(&["diff", a, b, "--format", "json"], s.path()));
    // Matched by file name: only the functions of one build are added or removed.
    assert_eq!(names(&doc["added"]), BTreeSet::from(["introduced".into()]));
    assert_eq!(names(&doc["removed"]), BTreeSet::from(["retired".into()]));
    assert_eq!(doc["summary"]["added"], 1, "{doc:#}");
    assert_eq!(doc["summary"]["removed"], 1, "{doc:#}");
    let changed = names(&doc["changed"]);
    assert!(changed.contains("tunable"), "{doc:#}");
    assert!(doc["notes"].as_array().unwrap().is_empty(), "{doc:#}");
    let out = ok(&["diff", a, b], s.path());
    assert!(
        out.contains("Added (1)") && out.contains("introduced"),
        "{out}"
    );
    assert!(
        out.contains("Removed (1)") && out.contains("retired"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("tunable") && l.contains('+')),
        "tunable not named as slower:\n{out}"
    );

    // Wall-clock averages of a short run move when a preemption lands in
    // them; the median does not, so the gate on it names tunable alone.
    let median = cli(&["diff", a, b, "--fail-if", "p50>+10%"], s.path());
    assert_eq!(median.status.code(), Some(1), "{}", text(&median.stdout));
    let err = text(&median.stderr);
    assert!(
        err.contains("tunable"),
        "the gate names the function: {err}"
    );
    assert!(!err.contains("steady"), "steady did not change: {err}");
    for gate in ["added>0", "removed>=1"] {
        let out = cli(&["diff", a, b, "--fail-if", gate], s.path());
        assert_eq!(out.status.code(), Some(1), "{gate}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!("`{gate}` holds: the value is 1")),
            "{}",
            text(&out.stderr)
        );
    }
    let quiet = cli(
        &["diff", a, b, "--fail-if", "added>1,p50>+100000%"],
        s.path(),
    );
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet.stderr));
    let malformed = cli(&["diff", a, b, "--fail-if", "avg_inherent>>1"], s.path());
    assert_eq!(malformed.status.code(), Some(2));
}

/// The text inside each `<tag>` element of an XML document; panics where
/// the document is not well-formed.
fn xml_texts(xml: &str, tag: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut current: Option<String> = None;
    let mut texts = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.name().as_ref() == tag.as_bytes() => {
                current = Some(String::new())
            }
            Ok(Event::Text(t)) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.decode().expect("UTF-8 text"));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some(c) = current.as_mut() {
                    let name = r.decode().expect("UTF-8 entity");
                    match r.resolve_char_ref() {
                        Ok(Some(ch)) => c.push(ch),
                        _ => c.push_str(
                            quick_xml::escape::resolve_predefined_entity(&name)
                                .unwrap_or_else(|| panic!("unknown entity &{name};")),
                        ),
                    }
                }
            }
            Ok(Event::End(e)) if e.name().as_ref() == tag.as_bytes() => {
                texts.extend(current.take())
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "not well-formed XML at byte {}: {e}",
                reader.buffer_position()
            ),
        }
    }
    texts
}

/// A recursion 20,000 deep makes 20,000 calling contexts of up to 20,000
/// frames: flame graphs and profiles cut them at 1,000 frames, with what
/// lies deeper as one frame and no weight lost, and refine reads the whole
/// tree.
#[test]
fn deep_recursion_is_drawn_cut_and_refined_whole() {
    let s = Scratch::new();
    let prog = s.build("recursion.c", "recursion", &["-O2"]);
    let ran = Run::new(&prog, s.path())
        .args(&["20000"])
        .env("HOTPROBE_ADAPTIVE", "0")
        .run();
    let snap = ran.snapshot().clone();
    let path = ran.snapshots[0].0.clone();
    let p = path.to_str().unwrap();
    assert!(!snap.meter.contexts_truncated);
    assert!(
        snap.contexts.len() > 40_000,
        "{} contexts",
        snap.contexts.len()
    );
    let folded = s.join("deep.folded");
    ok(
        &[
            "flamegraph",
            p,
            "--weight",
            "count",
            "--folded",
            "-o",
            folded.to_str().unwrap(),
        ],
        s.path(),
    );
    let text = std::fs::read_to_string(&folded).unwrap();
    let mut total = 0u64;
    let mut cut = 0;
    for line in text.lines() {
        let (stack, weight) = line.rsplit_once(' ').unwrap();
        let frames: Vec<&str> = stack.split(';').collect();
        assert!(frames.len() <= 1001, "{} frames", frames.len());
        if frames.last() == Some(&"[deeper frames]") {
            cut += 1;
            assert_eq!(frames.len(), 1001);
        }
        total += weight.parse::<u64>().unwrap();
    }
    // `direct` and the even/odd pair each run past 1,000 frames.
    assert_eq!(cut, 2, "{text:.300}");
    assert_eq!(total, snap.contexts.iter().map(|c| c.count).sum::<u64>());
    let pb = s.join("deep.pb.gz");
    ok(
        &["export", "--format", "pprof", p, "-o", pb.to_str().unwrap()],
        s.path(),
    );
    let set = s.join("probes.toml");
    ok(&["refine", p, "-o", set.to_str().unwrap()], s.path());
    ProbeSet::read(&set).unwrap();
}

#[test]
fn flamegraph_svg_holds_the_function_names() {
    let s = Scratch::new();
    let prog = s.build("slower.c", "slower", &["-O2"]);
    let snap = slower_snapshot(&s, &prog, "3", "a");
    let svg = s.join("flame.svg");
    ok(
        &[
            "flamegraph",
            snap.to_str().unwrap(),
            "-o",
            svg.to_str().unwrap(),
        ],
        s.path(),
    );
    let body = std::fs::read_to_string(&svg).unwrap();
    assert!(body.starts_with("<?xml"), "not an XML document");
    assert_eq!(xml_texts(&body, "svg").len(), 1, "one <svg> element");
    // Each frame is a <g> with a <title> ("name (… ns, …%)") and a <text>
    // label; frames as wide as these hold the whole name.
    let labels = xml_texts(&body, "text");
    let titles = xml_texts(&body, "title");
    for name in ["main", "steady", "tunable"] {
        assert!(
            labels.iter().any(|l| l == name),
            "no <text> label `{name}`: {labels:?}"
        );
        assert!(
            titles.iter().any(|t| t.starts_with(&format!("{name} ("))),
            "no <title> for `{name}`: {titles:?}"
        );
    }
    let folded = ok(
        &["flamegraph", snap.to_str().unwrap(), "--folded", "-o", "-"],
        s.path(),
    );
    assert!(
        folded.lines().any(|l| l.starts_with("main;tunable ")),
        "{folded}"
    );
}

/// A protobuf message's fields: (number, wire type, bytes of a length-delimited value).
fn protobuf_fields(mut b: &[u8]) -> Result<Vec<(u64, u8, Vec<u8>)>, String> {
    fn varint(b: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or("truncated varint")?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut fields = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        let value = match wire {
            0 => varint(&mut b).map(|_| Vec::new())?,
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if b.len() < n {
                    return Err("truncated fixed field".into());
                }
                b = &b[n..];
                Vec::new()
            }
            2 => {
                let n = varint(&mut b)? as usize;
                if b.len() < n {
                    return Err("truncated length-delimited field".into());
                }
                let v = b[..n].to_vec();
                b = &b[n..];
                v
            }
            w => return Err(format!("wire type {w}")),
        };
        if number == 0 {
            return Err("field number 0".into());
        }
        fields.push((number, wire, value));
    }
    Ok(fields)
}

#[test]
fn pprof_export_decodes() {
    let s = Scratch::new();
    let prog = s.build("slower.c", "slower", &["-O2"]);
    let snap = slower_snapshot(&s, &prog, "2", "a");
    let pb = s.join("profile.pb.gz");
    ok(
        &[
            "export",
            "--format",
            "pprof",
            snap.to_str().unwrap(),
            "-o",
            pb.to_str().unwrap(),
        ],
        s.path(),
    );
    let gz = Command::new("gzip")
        .arg("-dc")
        .arg(&pb)
        .output()
        .expect("run gzip");
    assert!(gz.status.success(), "not gzip: {}", text(&gz.stderr));
    let fields = protobuf_fields(&gz.stdout).expect("a protobuf message");
    let strings: Vec<String> = fields
        .iter()
        .filter(|f| f.0 == 6)
        .map(|f| text(&f.2))
        .collect();
    assert_eq!(
        strings.first().map(String::as_str),
        Some(""),
        "string_table[0] is empty"
    );
    for needed in ["tunable", "steady", "main", "nanoseconds", "calls"] {
        assert!(
            strings.iter().any(|s| s == needed),
            "{needed} not in the string table: {strings:?}"
        );
    }
    let samples: Vec<&Vec<u8>> = fields.iter().filter(|f| f.0 == 2).map(|f| &f.2).collect();
    assert!(!samples.is_empty(), "no samples");
    for sample in samples {
        let inner = protobuf_fields(sample).expect("a Sample message");
        assert!(inner.iter().any(|f| f.0 == 1), "a sample without locations");
    }
    assert_eq!(
        fields.iter().filter(|f| f.0 == 1).count(),
        2,
        "two sample types (calls, inherent)"
    );
    assert!(fields.iter().any(|f| f.0 == 5), "no functions");
}

#[test]
fn run_finds_the_agent_next_to_hotprobe_and_writes_a_snapshot() {
    let s = Scratch::new();
    let prog = s.build("slower.c", "slower", &["-O2"]);
    let out = cli(&["run", "--", prog.to_str().unwrap(), "1"], s.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
    let snaps = snapshot_files(s.path());
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let name = snaps[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("hotprobe-slower-") && name.ends_with(".json"),
        "{name}"
    );
    let snap = Snapshot::read(&snaps[0]).unwrap();
    assert_eq!(snap.process.reason, Reason::Exit);
    assert_eq!(probe(&snap, "tunable").count, 3000);
    // The command's exit status passes through.
    let failing = cli(&["run", "--", "sh", "-c", "exit 7"], s.path());
    assert_eq!(failing.status.code(), Some(7));
}

#[test]
fn snapshot_pid_asks_a_running_program() {
    let s = Scratch::new();
    let prog = s.build("waiter.c", "waiter", &["-O2"]);
    let stop = s.join("stop");
    let mut cmd = Run::new(&prog, s.path())
        .args(&[stop.to_str().unwrap()])
        .env(
            "HOTPROBE_OUTPUT",
            &format!("{}/{{exe}}-{{pid}}.json", s.path().display()),
        )
        .command();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // The control socket opens once the agent is up: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer: Output = loop {
        let out = cli(&["snapshot", &pid, "--timeout", "5"], s.path());
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Read the requested snapshot while the program still runs (its exit
    // snapshot later replaces the file).
    let requested = answer.status.success().then(|| {
        let path = PathBuf::from(text(&answer.stdout).trim());
        (path.clone(), Snapshot::read(&path))
    });
    std::fs::write(&stop, "").unwrap();
    let status = child.wait().unwrap();
    assert!(
        answer.status.success(),
        "hotprobe snapshot failed: {}",
        text(&answer.stderr)
    );
    let (path, snap) = requested.unwrap();
    assert!(path.is_absolute() && path.starts_with(s.path()), "{path:?}");
    let snap = snap.unwrap_or_else(|e| panic!("the printed path is not a snapshot: {e}"));
    assert_eq!(snap.process.reason, Reason::Request);
    assert_eq!(snap.process.pid.to_string(), pid);
    assert!(probe(&snap, "tick").count > 0);
    assert!(status.success());
    assert_eq!(
        Snapshot::read(&path).unwrap().process.reason,
        Reason::Exit,
        "the exit snapshot replaces it"
    );
    let bad = cli(&["snapshot", "999999999"], s.path());
    assert_eq!(bad.status.code(), Some(1), "no agent at that pid");
}

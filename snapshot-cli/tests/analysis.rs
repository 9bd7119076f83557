//! refine, diff and converge through the binary.

mod common;
use common::*;
use hotprobe_cli::fixture;
use hotprobe_config::ProbeSet;
use std::path::Path;

fn refine(args: &[&str]) -> (ProbeSet, String) {
    let r = run(&[&["refine", "-o", "-"], args].concat());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    (
        ProbeSet::parse(&r.stdout, Path::new("stdout")).expect("refine writes a valid probe set"),
        r.stderr,
    )
}

fn symbols(set: &ProbeSet) -> Vec<&str> {
    set.probes.iter().map(|e| e.symbol.as_str()).collect()
}

#[test]
fn refine_is_byte_identical_for_equal_data() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    for out in [&a, &b] {
        let r = run(&["refine", p(&f), "-o", p(out)]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(
            r.stderr.starts_with("hotprobe: wrote 11 probes to"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // Reordering the probe table changes nothing either.
    let mut shuffled = fixture::server(1);
    shuffled.probes.reverse();
    let g = write(dir.path(), "t.json", &shuffled);
    let c = dir.path().join("c.toml");
    run(&["refine", p(&g), "-o", p(&c)]);
    let strip = |t: String| {
        t.lines()
            .filter(|l| !l.starts_with("source"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(std::fs::read_to_string(&a).unwrap()),
        strip(std::fs::read_to_string(&c).unwrap())
    );
    assert!(ProbeSet::read(&a).is_ok());
}

#[test]
fn refine_policy() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let (set, _) = refine(&[p(&f)]);
    let syms = symbols(&set);
    // Hot ones, and active ones at ≥ 250 ns/call or ≥ 1 % of inherent time.
    for s in [
        "main",
        "aeMain",
        "processCommand",
        "call",
        "getCommand",
        "setCommand",
        "dictFind",
        "dictAdd",
        "lookupKey",
    ] {
        assert!(syms.contains(&s), "{s} missing from {syms:?}");
    }
    // Cold, disabled, rejected and tiny ones are out.
    for s in ["zmalloc", "_addReplyToBuffer", "tiny", "compare"] {
        assert!(!syms.contains(&s), "{s} should be dropped: {syms:?}");
    }
    assert!(syms.contains(&"serverLog"), "4 µs per call is above 250 ns");
    let e = set
        .probes
        .iter()
        .find(|e| e.symbol == "processCommand")
        .unwrap();
    assert_eq!((e.module.as_str(), e.offset), ("redis-server", None));

    let (set, _) = refine(&["--top", "3", p(&f)]);
    assert_eq!(symbols(&set), vec!["dictAdd", "dictFind", "processCommand"]);
    let (set, _) = refine(&["--min-inherent-us", "1000000", "--min-share", "100", p(&f)]);
    assert_eq!(set.probes.len(), 6, "only the hot ones");
    let (set, _) = refine(&["--drop", "dict*", "--keep", "compare", p(&f)]);
    let syms = symbols(&set);
    assert!(!syms.iter().any(|s| s.starts_with("dict")));
    // `compare` has two functions in one module: both kept, told apart by offset.
    let compares: Vec<_> = set
        .probes
        .iter()
        .filter(|e| e.symbol == "compare")
        .collect();
    assert_eq!(compares.len(), 2);
    assert!(compares.iter().all(|e| e.offset.is_some()));
    let (set, stderr) = refine(&["--keep", "tiny", p(&f)]);
    assert!(
        !symbols(&set).contains(&"tiny"),
        "rejected functions cannot be kept"
    );
    assert!(stderr.contains("0 kept by --keep"), "{stderr}");
}

fn diff_json(a: &Path, b: &Path, extra: &[&str]) -> (serde_json::Value, Run) {
    let r = run(&[&["diff", "--format", "json", p(a), p(b)], extra].concat());
    let v = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", r.stdout, r.stderr));
    (v, r)
}

#[test]
fn diff_of_a_snapshot_with_itself_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let r = run(&[
        "diff",
        p(&f),
        p(&f),
        "--fail-if",
        "avg_inherent>+10%,hot_removed>0,jaccard<0.9,spearman<0.8",
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("no change beyond the noise floor"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Jaccard 1 · Spearman 1"), "{}", r.stdout);
    let (v, _) = diff_json(&f, &f, &[]);
    assert_eq!(v["summary"]["changed"], 0);
    assert_eq!(v["summary"]["added"], 0);
    assert_eq!(v["changed"].as_array().unwrap().len(), 0);
}

#[test]
fn diff_names_the_changed_probes_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &fixture::server(1));
    let mut s = fixture::server(2);
    fixture::slow_down(&mut s, "processCommand", 1.5);
    fixture::slow_down(&mut s, "dictFind", 1.02); // below the 5 % noise floor
    fixture::probe_mut(&mut s, "serverLog").state = hotprobe_config::snapshot::ProbeState::Hot;
    s.probes.retain(|p| p.name != "zmalloc");
    let b = write(dir.path(), "b.json", &s);

    let r = run(&["diff", p(&a), p(&b)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("processCommand"), "{}", r.stdout);
    assert!(r.stdout.contains("+50.0%"), "{}", r.stdout);
    assert!(
        r.stdout.contains("gone hot") && r.stdout.contains("serverLog (active → hot)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Removed (1)") && r.stdout.contains("zmalloc"),
        "{}",
        r.stdout
    );
    let changed_section = r.stdout.split("Changed").nth(1).unwrap_or("");
    assert!(
        !changed_section.contains("dictFind"),
        "2 % is noise: {}",
        r.stdout
    );

    let (v, _) = diff_json(&a, &b, &[]);
    let changed: Vec<&str> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(changed, vec!["processCommand"]);
    assert_eq!(v["summary"]["hot_added"], 1);
    assert_eq!(v["summary"]["removed"], 1);
    // Hot sets {6} vs {6 + serverLog}: 6/7.
    assert!((v["summary"]["jaccard"].as_f64().unwrap() - 6.0 / 7.0).abs() < 1e-9);

    let r = run(&["diff", p(&a), p(&b), "--fail-if", "avg_inherent>+10%"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("fail-if `avg_inherent>+10%` holds for 1 function: processCommand (+50.0%)"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "diff",
        p(&a),
        p(&b),
        "--fail-if",
        "avg_inherent>+60%",
        "--fail-if",
        "count<-20%",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&["diff", p(&a), p(&b), "--fail-if", "hot_added>0"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("`hot_added>0` holds: the value is 1"),
        "{}",
        r.stderr
    );
    let r = run(&["diff", p(&a), p(&b), "--fail-if", "avg_inherent>>3"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.starts_with("hotprobe: error: --fail-if"),
        "{}",
        r.stderr
    );
}

#[test]
fn diff_matches_modules_by_file_name_and_notes_versions() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &fixture::server(1));
    let mut s = fixture::server(2);
    for p in &mut s.probes {
        p.module = p.module.replace("/usr/local/bin/", "/home/me/build/");
        p.offset += 0x40;
    }
    s.agent.version = "0.2.0".into();
    let b = write(dir.path(), "b.json", &s);
    let (v, _) = diff_json(&a, &b, &[]);
    assert_eq!(v["summary"]["added"], 0);
    assert_eq!(v["summary"]["changed"], 0);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("agent 0.1.0 and B by agent 0.2.0"),
        "{v}"
    );
}

#[test]
fn diff_across_agent_versions_compares_only_common_fields() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &fixture::server(1));
    // B: an older agent that wrote no p50, with processCommand 50 % slower.
    let mut old = fixture::server(2);
    old.agent.version = "0.0.9".into();
    fixture::slow_down(&mut old, "processCommand", 1.5);
    let b = dir.path().join("b.json");
    std::fs::write(
        &b,
        fixture::without_probe_fields(&old, &["p50_inclusive_ns"]),
    )
    .unwrap();

    let r = run(&["diff", p(&a), p(&b)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "note: B's snapshots (agent 0.0.9) have no p50_inclusive_ns: p50 not compared"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("+50.0%"), "{}", r.stdout);

    // A gate on p50 cannot be checked: it fails and says so, instead of
    // reading B's missing p50 as 0 (−100 % for every function).
    let r = run(&["diff", p(&a), p(&b), "--fail-if", "p50<-10%"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "fail-if `p50<-10%` cannot be checked: B (agent 0.0.9) has no p50_inclusive_ns"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("-100"), "{}", r.stderr);
    // Gates on common fields work as before.
    let r = run(&[
        "diff",
        p(&a),
        p(&b),
        "--fail-if",
        "avg_inherent>+60%,p99>+10%",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&["diff", p(&a), p(&b), "--fail-if", "avg_inherent>+10%"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("processCommand (+50.0%)"), "{}", r.stderr);

    let (v, _) = diff_json(&a, &b, &[]);
    assert_eq!(v["missing_fields"]["a"], serde_json::json!([]));
    assert_eq!(
        v["missing_fields"]["b"],
        serde_json::json!(["p50_inclusive_ns"])
    );
    let pc = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "processCommand")
        .expect("processCommand changed");
    assert!(
        pc["a"]["p50_ns"].is_u64() && pc["b"]["p50_ns"].is_null(),
        "{pc}"
    );
    assert!(pc["b"]["p99_ns"].is_u64(), "{pc}");

    // The other way round, and without inherent times: the note names A,
    // Avg (I) is blank in the table, Spearman is not computed.
    let c = dir.path().join("c.json");
    std::fs::write(
        &c,
        fixture::without_probe_fields(&old, &["inherent_ns", "p50_inclusive_ns"]),
    )
    .unwrap();
    let r = run(&["diff", p(&c), p(&a), "--fail-if", "spearman<0.5"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "A's snapshots (agent 0.0.9) have no inherent_ns, p50_inclusive_ns: \
             avg_inherent, inherent, p50, spearman not compared"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Spearman –"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("`spearman<0.5` cannot be checked: A (agent 0.0.9) has no inherent_ns"),
        "{}",
        r.stderr
    );
    let (v, _) = diff_json(&c, &a, &[]);
    assert!(v["summary"]["spearman"].is_null(), "{v}");
}

#[test]
fn spearman_and_jaccard_on_known_data() {
    use hotprobe_config::snapshot::{ProbeRecord, ProbeState};
    let rec = |name: &str, inh: u64, state| ProbeRecord {
        name: name.into(),
        symbol: name.into(),
        module: "/m".into(),
        count: 1,
        inherent_ns: inh,
        inclusive_ns: inh,
        state,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let a = hotprobe_config::Snapshot {
        probes: vec![
            rec("a", 10, ProbeState::Hot),
            rec("b", 20, ProbeState::Hot),
            rec("c", 30, ProbeState::Active),
            rec("d", 40, ProbeState::Active),
            rec("e", 50, ProbeState::Active),
        ],
        ..Default::default()
    };
    let mut b = a.clone();
    b.probes[2].inherent_ns = 40; // c, d swap ranks (c 40, d 30)
    b.probes[3].inherent_ns = 30;
    b.probes[2].state = ProbeState::Hot; // hot {a,b} vs {a,b,c}: 2/3
    let (fa, fb) = (
        write(dir.path(), "a.json", &a),
        write(dir.path(), "b.json", &b),
    );
    let (v, _) = diff_json(&fa, &fb, &[]);
    assert!(
        (v["summary"]["spearman"].as_f64().unwrap() - 0.9).abs() < 1e-9,
        "{v}"
    );
    assert!(
        (v["summary"]["jaccard"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{v}"
    );
}

fn iteration(
    root: &Path,
    name: &str,
    snap: &hotprobe_config::Snapshot,
    with_set: bool,
) -> std::path::PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    write(&d, "s.json", snap);
    if with_set {
        let r = run(&[
            "refine",
            p(&d.join("s.json")),
            "-o",
            p(&d.join("probes.toml")),
        ]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    d
}

#[test]
fn converge_settles_or_not() {
    let root = tempfile::tempdir().unwrap();
    let base = fixture::server(1);
    let mut moved = fixture::server(2);
    for name in ["lookupKey", "dictFind", "dictAdd", "serverLog"] {
        fixture::probe_mut(&mut moved, name).state = hotprobe_config::snapshot::ProbeState::Hot;
    }
    for name in ["main", "aeMain"] {
        fixture::probe_mut(&mut moved, name).state = hotprobe_config::snapshot::ProbeState::Active;
    }
    let i1 = iteration(root.path(), "i1", &moved, false);
    let i2 = iteration(root.path(), "i2", &base, true);
    let i3 = iteration(root.path(), "i3", &fixture::server(3), true);

    let r = run(&["converge", p(&i1), p(&i2), p(&i3), "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["settled"], true);
    assert_eq!(v["iterations"][0]["hot"], 8);
    assert_eq!(v["iterations"][1]["hot"], 6);
    assert_eq!(v["iterations"][1]["probe_set"], 11);
    assert_eq!(v["iterations"][2]["jaccard"], 1.0);
    assert!(v["iterations"][1]["jaccard"].as_f64().unwrap() < 0.9);
    assert_eq!(v["settled_since"], 1);

    let r = run(&["converge", p(&i2), p(&i1), "--check"]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.contains("not settled"), "{}", r.stdout);
    let r = run(&[
        "converge",
        p(&i2),
        p(&i1),
        "--min-jaccard",
        "0.1",
        "--min-spearman",
        "0",
    ]);
    assert_eq!(r.code, Some(0));
    assert!(
        r.stdout.contains("settled: the last two iterations agree"),
        "{}",
        r.stdout
    );
    let r = run(&["converge", p(&i1)]);
    assert!(
        r.stdout.contains("needs at least two iterations"),
        "{}",
        r.stdout
    );
}

#[test]
fn converge_library_entry_point() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (1..=2)
        .map(|i| iteration(root.path(), &format!("i{i}"), &fixture::server(i), false))
        .collect();
    let c =
        hotprobe_cli::converge::converge_dirs(&dirs, hotprobe_cli::converge::Thresholds::default())
            .unwrap();
    assert!(c.settled);
    assert_eq!(c.iterations.len(), 2);
}

#[test]
fn refine_keeps_the_offsets_of_the_probe_set_the_run_had() {
    // A run with a probe set sees only the probed one of several same-symbol
    // functions; the set's offset says the symbol is ambiguous.
    let dir = tempfile::tempdir().unwrap();
    let mut snap = fixture::server(1);
    let offset = snap
        .probes
        .iter()
        .find(|p| p.symbol == "processCommand")
        .unwrap()
        .offset;
    let earlier = ProbeSet::new(
        "earlier.json",
        vec![hotprobe_config::ProbeSetEntry {
            module: "redis-server".into(),
            symbol: "processCommand".into(),
            name: "processCommand".into(),
            offset: Some(offset),
        }],
    );
    let set_path = dir.path().join("probes.toml");
    std::fs::write(&set_path, earlier.to_toml()).unwrap();
    snap.config.target.probe_set = set_path.display().to_string();
    let f = write(dir.path(), "s.json", &snap);
    let (set, _) = refine(&[p(&f)]);
    let e = set
        .probes
        .iter()
        .find(|e| e.symbol == "processCommand")
        .unwrap();
    assert_eq!(e.offset, Some(offset));
    let others = set
        .probes
        .iter()
        .filter(|e| e.symbol != "processCommand" && e.symbol != "compare");
    assert!(others.into_iter().all(|e| e.offset.is_none()));
    // Gone probe set: refine does without it.
    std::fs::remove_file(&set_path).unwrap();
    let (set, _) = refine(&[p(&f)]);
    assert!(set
        .probes
        .iter()
        .any(|e| e.symbol == "processCommand" && e.offset.is_none()));
}

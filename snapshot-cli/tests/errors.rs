//! Bad inputs: each refused with the file, the field and a non-zero exit.

mod common;
use common::*;

fn refused(content: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    // converge takes directories: the bad file is the only one in its iteration.
    let bad_dir = dir.path().join("iter-2");
    std::fs::create_dir(&bad_dir).unwrap();
    let f = bad_dir.join("bad.json");
    std::fs::write(&f, content).unwrap();
    let good_dir = dir.path().join("iter-1");
    std::fs::create_dir(&good_dir).unwrap();
    let good = write(&good_dir, "good.json", &hotprobe_cli::fixture::server(1));
    let (f, good, bad_dir, good_dir) = (p(&f), p(&good), p(&bad_dir), p(&good_dir));
    for args in [
        &["report", f][..],
        &["refine", f],
        &["flamegraph", "-o", "-", f],
        &["export", "--format", "pprof", "-o", "-", f],
        &["diff", f, good],
        &["diff", good, f],
        &["converge", good_dir, bad_dir],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(1), "{args:?} {content}: {}", r.stderr);
        assert!(r.stderr.starts_with("hotprobe: error: "), "{}", r.stderr);
        assert!(r.stderr.contains("bad.json"), "{}", r.stderr);
        for e in expect {
            assert!(
                r.stderr.contains(e),
                "{args:?}: expected `{e}` in {}",
                r.stderr
            );
        }
    }
}

#[test]
fn not_json() {
    refused("this is not json", &["not JSON"]);
    refused("", &["not JSON"]);
    refused(
        r#"{"schema":"hotprobe.snapshot/1","probes":[{"id":1}"#,
        &["not JSON"],
    );
}

#[test]
fn not_a_snapshot() {
    refused("[1, 2]", &["not a hotprobe snapshot"]);
    refused(
        r#"{"hello": 1}"#,
        &["field `schema`", "not a hotprobe snapshot"],
    );
    refused(r#"{"schema": "hotprobe.probeset/1"}"#, &["field `schema`"]);
}

#[test]
fn unknown_schema() {
    refused(
        r#"{"schema": "hotprobe.snapshot/2", "probes": []}"#,
        &[
            "field `schema`",
            "unknown snapshot schema `hotprobe.snapshot/2`",
        ],
    );
}

#[test]
fn wrong_field_type() {
    refused(
        r#"{"schema":"hotprobe.snapshot/1","probes":[{"id":1},{"count":"many"}]}"#,
        &["field `probes[1].count`"],
    );
    refused(
        r#"{"schema":"hotprobe.snapshot/1","process":{"pid":"x"}}"#,
        &["field `process.pid`"],
    );
    refused(
        r#"{"schema":"hotprobe.snapshot/1","probes":[{"state":"warm"}]}"#,
        &["field `probes[0].state`"],
    );
}

#[test]
fn a_required_member_missing() {
    refused(
        r#"{"schema":"hotprobe.snapshot/1"}"#,
        &["field `agent`", "missing"],
    );
    refused(
        r#"{"schema":"hotprobe.snapshot/1","agent":{"version":"0.1.0"},"probes":[]}"#,
        &["field `process`", "missing"],
    );
    refused(
        r#"{"schema":"hotprobe.snapshot/1","agent":{},"process":{"pid":7}}"#,
        &["field `probes`", "missing"],
    );
}

#[test]
fn optional_members_may_be_missing() {
    // An older agent's snapshot: only the members every agent wrote.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("old.json");
    std::fs::write(
        &f,
        r#"{"schema":"hotprobe.snapshot/1","agent":{"version":"0.0.1"},"process":{"pid":7},
            "probes":[{"id":0,"name":"f","module":"/m","count":3,"inherent_ns":30}]}"#,
    )
    .unwrap();
    let r = run(&["report", p(&f), "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("\"count\": 3"), "{}", r.stdout);
}

#[test]
fn wrong_type_in_contexts_matters_only_where_contexts_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ctx.json");
    std::fs::write(
        &f,
        r#"{"schema":"hotprobe.snapshot/1","agent":{},"process":{},"probes":[],"contexts":[{"count":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(run(&["report", p(&f)]).code, Some(0));
    let r = run(&["flamegraph", p(&f), "-o", "-"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("field `contexts[0].count`"),
        "{}",
        r.stderr
    );
}

#[test]
fn empty_and_missing_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["report", p(dir.path())]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("no snapshots (*.json files) in this directory"),
        "{}",
        r.stderr
    );
    for args in [
        &["diff", p(dir.path()), p(dir.path())][..],
        &["converge", p(dir.path())],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(1), "{args:?}");
        assert!(r.stderr.contains("no snapshots"), "{}", r.stderr);
    }
    let r = run(&["report", "/no/such/file.json"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("/no/such/file.json: no such file or directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["report"][..],
        &["report", "--sort", "speed", "x.json"],
        &["report", "--state", "warm", "x.json"],
        &["frobnicate"],
        &["report", "--include", "[x", "x.json"],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("hotprobe: error: "), "{}", r.stderr);
    }
    let r = run(&["--help"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    let r = run(&["report", "--help"]);
    assert!(
        r.stdout.contains("Examples:") && r.stdout.contains("--sort"),
        "{}",
        r.stdout
    );
}

#[test]
fn bad_probe_set_for_run() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("libhotprobe.so");
    std::fs::write(&agent, b"").unwrap();
    let set = dir.path().join("probes.toml");
    std::fs::write(
        &set,
        "schema = \"hotprobe.probeset/1\"\n[[probe]]\nmodule = \"m\"\nsymbol = \"s\"\nweight = 3\n",
    )
    .unwrap();
    let r = run(&[
        "run",
        "--agent",
        p(&agent),
        "--probes",
        p(&set),
        "--",
        "true",
    ]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(
        r.stderr.contains("probes.toml:5") && r.stderr.contains("weight"),
        "{}",
        r.stderr
    );
}

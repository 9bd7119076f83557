//! `hotprobe report` through the binary: formats, merge rules, filters.

mod common;
use common::*;
use hotprobe_cli::fixture;
use serde_json::Value;

fn json_report(args: &[&str]) -> Value {
    let r = run(&[&["report", "--format", "json"], args].concat());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    serde_json::from_str(&r.stdout).expect("report JSON parses")
}

fn row<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

#[test]
fn table_has_header_columns_and_footnotes() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(4242));
    let r = run(&["report", p(&f)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = &r.stdout;
    assert!(
        out.starts_with("redis-server · pid 4242 · duration"),
        "{out}"
    );
    assert!(
        out.contains("backend inline")
            && out.contains("score card: inclusive ≥ 180 ns, inherent ≥ 60 ns"),
        "{out}"
    );
    assert!(
        out.contains("probes: 6 hot, 7 active, 2 disabled, 1 rejected"),
        "{out}"
    );
    for col in [
        "Count",
        "Total",
        "Total (I)",
        "Avg",
        "Avg (I)",
        "p99",
        "Max",
        "Name",
    ] {
        assert!(out.contains(col), "missing {col}: {out}");
    }
    // Sorted by inherent total: processCommand (8 ms) first.
    let first_row = out
        .lines()
        .skip_while(|l| !l.contains("Count"))
        .nth(1)
        .unwrap();
    assert!(first_row.ends_with("processCommand"), "{out}");
    // Partial rows (disabled mid-run) are marked, and rejected ones hidden by default.
    assert!(out.contains("~1,500") && out.contains("~ partial"), "{out}");
    assert!(!out.contains(" tiny"), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");
    assert!(
        out.contains("ns::Cache<std::__cxx11::basic_strin…"),
        "long names are cut: {out}"
    );
    assert!(!out.contains('\x1b'), "no colour with NO_COLOR");
}

#[test]
fn json_and_csv_parse_back() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let v = json_report(&[p(&f)]);
    assert_eq!(v["schema"], "hotprobe.report/1");
    assert_eq!(v["header"]["states"]["hot"], 6);
    let pc = row(&v, "processCommand");
    assert_eq!(pc["count"], 10_000);
    assert_eq!(pc["inherent_ns"], 8_000_000);
    assert_eq!(pc["avg_inherent_ns"], 800.0);
    assert_eq!(pc["state"], "hot");
    assert_eq!(row(&v, "zmalloc")["partial"], true);
    assert_eq!(row(&v, "compare#1")["ordinal"], 0);

    let r = run(&["report", "--format", "csv", "--all", p(&f)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let rows = parse_csv(&r.stdout);
    assert_eq!(rows[0][0], "name");
    assert_eq!(rows.len(), 1 + fixture::FUNCTIONS.len());
    let cache = rows
        .iter()
        .find(|r| r[0].starts_with("ns::Cache<"))
        .unwrap();
    assert_eq!(
        cache[0],
        fixture::FUNCTIONS[15].name,
        "quoted name with commas survives"
    );
    assert_eq!(cache[5], "2500");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));

    let r = run(&["report", "--format", "markdown", p(&f)]);
    assert!(
        r.stdout.contains("| Count | Total |") && r.stdout.contains("| ---: |"),
        "{}",
        r.stdout
    );
}

#[test]
fn two_images_sum_and_one_image_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &fixture::server(10));
    write(dir.path(), "b.json", &fixture::server(11));
    let v = json_report(&[p(dir.path())]);
    assert_eq!(row(&v, "processCommand")["count"], 20_000);
    assert_eq!(v["header"]["pids"], serde_json::json!([10, 11]));
    assert_eq!(row(&v, "processCommand")["percentiles_upper_bound"], true);

    // Interval snapshots of one image: only the latest counts, never the sum.
    let one = tempfile::tempdir().unwrap();
    let mut early = fixture::server(20);
    early.process.sequence = 1;
    fixture::probe_mut(&mut early, "processCommand").count = 4_000;
    let mut late = fixture::server(20);
    late.process.sequence = 2;
    late.process.taken_unix_ns += 1_000;
    write(one.path(), "z-early.json", &early);
    write(one.path(), "a-late.json", &late);
    let v = json_report(&[p(one.path())]);
    assert_eq!(row(&v, "processCommand")["count"], 10_000);
    assert_eq!(v["header"]["superseded"], 1);
    assert_eq!(row(&v, "processCommand")["percentiles_upper_bound"], false);
}

#[test]
fn filters_sort_and_top() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let names = |args: &[&str]| -> Vec<String> {
        let v = json_report(&[args, &[p(&f)]].concat());
        v["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["--top", "2"]), vec!["processCommand", "dictFind"]);
    assert_eq!(names(&["--include", "dict*"]), vec!["dictFind", "dictAdd"]);
    assert!(!names(&["--exclude", "dict*,call"])
        .iter()
        .any(|n| n.starts_with("dict") || n == "call"));
    assert_eq!(
        names(&["--state", "disabled"]),
        vec!["_addReplyToBuffer", "zmalloc"]
    );
    assert_eq!(names(&["--state", "rejected", "--all"]), vec!["tiny"]);
    assert_eq!(
        names(&["--sort", "name", "--top", "3"]),
        vec!["_addReplyToBuffer", "aeMain", "call"]
    );
    assert_eq!(
        names(&[
            "--sort",
            "count",
            "--top",
            "1",
            "--include",
            "call,dictFind"
        ]),
        vec!["call"]
    );
    assert_eq!(
        names(&["--sort", "avg-inherent", "--top", "1"]),
        vec!["aeMain"]
    );
    assert_eq!(names(&[]).len(), 15);
    assert_eq!(names(&["--all"]).len(), 16);
}

#[test]
fn inexact_counts_are_mentioned() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = fixture::server(1);
    s.meter.unmetered = 12;
    s.meter.lost_records = 3;
    let f = write(dir.path(), "s.json", &s);
    let r = run(&["report", p(&f)]);
    assert!(
        r.stdout
            .contains("12 unmetered calls, 3 lost records: counts are not exact"),
        "{}",
        r.stdout
    );
}

#[test]
fn large_inputs_merge_in_parallel_without_losing_anything() {
    // Over 50,000 probes in all: the merge is split among threads.
    let dir = tempfile::tempdir().unwrap();
    let mut expected_count = 0u64;
    let mut expected_inherent = 0u64;
    for pid in 1..=6 {
        let s = fixture::large(pid, 9_000);
        expected_count += s.probes.iter().map(|p| p.count).sum::<u64>();
        expected_inherent += s.probes.iter().map(|p| p.inherent_ns).sum::<u64>();
        write(dir.path(), &format!("big-{pid}.json"), &s);
    }
    let v = json_report(&["--all", p(dir.path())]);
    let rows = v["functions"].as_array().unwrap();
    assert_eq!(rows.len(), 9_000);
    assert_eq!(
        rows.iter()
            .map(|r| r["count"].as_u64().unwrap())
            .sum::<u64>(),
        expected_count
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["inherent_ns"].as_u64().unwrap())
            .sum::<u64>(),
        expected_inherent
    );
    assert_eq!(v["header"]["pids"].as_array().unwrap().len(), 6);
}

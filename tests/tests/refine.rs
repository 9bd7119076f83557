//! `hotprobe refine`'s second chance, on snapshots the agent really wrote:
//! a function judged cold while its probed callee took its time comes back
//! once that callee leaves the probe set — from the snapshot it was judged
//! in, or from an earlier iteration found through the chain of probe sets
//! (on by default; with `--no-second-chance` none of these comes back),
//! and a removal its means disagree with comes back once either way.

use hotprobe_config::snapshot::{ProbeRecord, ProbeState};
use hotprobe_config::ProbeSet;
use hotprobe_tests::*;
use std::collections::BTreeSet;
use std::path::Path;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `hotprobe refine SNAP -o SET EXTRA…`: the set's symbols and stderr.
fn refine(snap: &Path, set: &Path, extra: &[&str], cwd: &Path) -> (BTreeSet<String>, String) {
    // Second chances are refine's default.
    let mut args = vec![
        "refine",
        snap.to_str().unwrap(),
        "-o",
        set.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = cli(&args, cwd);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "refine {extra:?}: {stderr}");
    let symbols = ProbeSet::read(set)
        .unwrap()
        .probes
        .into_iter()
        .map(|e| e.symbol)
        .collect();
    (symbols, stderr)
}

/// Runs `dispatch` in `dir`, with a probe set when given. Adaptive off, so
/// the score card judges dispatch on all its calls (refine does not trust a
/// judgement of fewer than 1,000: that is warm-up) yet classifies it the same;
/// from the first call on (the run is shorter than the judging window).
fn run_dispatch(prog: &Path, dir: &Path, set: Option<&Path>) -> Ran {
    run_dispatch_with(prog, dir, set, &["20000"])
}

/// `run_dispatch` with `dispatch`'s arguments (calls, fast calls, every).
fn run_dispatch_with(prog: &Path, dir: &Path, set: Option<&Path>, args: &[&str]) -> Ran {
    std::fs::create_dir_all(dir).unwrap();
    let card = dir.join("card.toml");
    std::fs::write(&card, "[hotspot]\nmin_judging_ms = 0\nmin_removal_ms = 0\n").unwrap();
    let mut run = Run::new(prog, dir)
        .args(args)
        .env("HOTPROBE_ADAPTIVE", "0")
        .env("HOTPROBE_CONFIG", card.to_str().unwrap());
    if let Some(set) = set {
        run = run.env("HOTPROBE_PROBESET", set.to_str().unwrap());
    }
    let ran = run.run();
    assert_eq!(ran.stdout(), "done 20000\n");
    ran
}

#[test]
fn a_dispatcher_judged_under_its_probed_callee_comes_back_when_the_callee_leaves() {
    let s = Scratch::new();
    let prog = s.build("dispatch.c", "dispatch", &["-O2"]);
    let first = run_dispatch(&prog, &s.join("iter-1"), None);
    let snap = first.snapshots[0].0.clone();
    let work = probe(first.snapshot(), "work");
    let dispatch = probe(first.snapshot(), "dispatch");
    assert_eq!(work.state, ProbeState::Hot, "work spins 2 µs a call");
    assert_eq!(
        dispatch.state,
        ProbeState::Disabled,
        "dispatch keeps a few ns of its own while work is probed"
    );
    assert_eq!(dispatch.count, 20000, "adaptive off: every call counted");

    // With work kept, dispatch's verdict stands: nothing comes back.
    let set1 = s.join("iter-2-probes.toml");
    let (kept, log) = refine(&snap, &set1, &[], s.path());
    assert!(
        kept.contains("work") && !kept.contains("dispatch"),
        "{kept:?}"
    );
    assert!(log.contains("0 back for another try"), "{log}");

    // Without work, its time is dispatch's own: dispatch comes back.
    let (kept, log) = refine(
        &snap,
        &s.join("dropped.toml"),
        &["--drop", "work"],
        s.path(),
    );
    assert!(
        kept.contains("dispatch") && !kept.contains("work"),
        "{kept:?}"
    );
    assert!(
        log.contains("back for another try: dispatch"),
        "refine says why: {log}"
    );

    // Iteration 2 never probes dispatch; refining it without work still
    // finds dispatch's judgement in iteration 1 through the probe set's source.
    let second = run_dispatch(&prog, &s.join("iter-2"), Some(&set1));
    assert!(find_probe(second.snapshot(), "dispatch").is_none());
    let set2 = s.join("iter-3-probes.toml");
    let (kept, log) = refine(&second.snapshots[0].0, &set2, &["--drop", "work"], s.path());
    assert!(
        kept.contains("dispatch"),
        "from iteration 1: {kept:?}\n{log}"
    );

    // And run with it, dispatch owns the 2 µs and ends hot.
    let third = run_dispatch(&prog, &s.join("iter-3"), Some(&set2));
    let dispatch = probe(third.snapshot(), "dispatch");
    assert_eq!(dispatch.state, ProbeState::Hot, "{dispatch:?}");
    assert_eq!(dispatch.count, 20000);
    assert!(find_probe(third.snapshot(), "work").is_none());

    // Its newest judgement is now iteration 3's, where it owned the time:
    // nothing more to bring back, so a loop can stop there.
    let (_, log) = refine(
        &third.snapshots[0].0,
        &s.join("iter-4-probes.toml"),
        &["--drop", "work"],
        s.path(),
    );
    assert!(log.contains("0 back for another try"), "{log}");
}

#[test]
fn a_hot_function_taken_out_during_warm_up_comes_back_once() {
    let s = Scratch::new();
    let prog = s.build("dispatch.c", "dispatch", &["-O2"]);
    let run = |dir: &str, set: Option<&Path>, fast: &str| {
        let dir = s.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut run = Run::new(&prog, &dir).args(&["20000", fast]);
        if let Some(set) = set {
            run = run.env("HOTPROBE_PROBESET", set.to_str().unwrap());
        }
        let ran = run.run();
        assert_eq!(ran.stdout(), "done 20000\n");
        ran
    };
    // Iteration 1: work spins 2 µs from the first call and ends hot.
    let first = run("iter-1", None, "0");
    assert_eq!(probe(first.snapshot(), "work").state, ProbeState::Hot);
    let set2 = s.join("set-2.toml");
    let (kept, _) = refine(&first.snapshots[0].0, &set2, &[], s.path());
    assert!(kept.contains("work"), "{kept:?}");

    // Iteration 2: its first 500 calls return at once; the score card
    // takes it out within them (adaptive on).
    let second = run("iter-2", Some(&set2), "500");
    let work = probe(second.snapshot(), "work");
    assert_eq!(work.state, ProbeState::Disabled, "{work:?}");
    assert!(work.count < 1000, "taken out during warm-up: {work:?}");
    let set3 = s.join("set-3.toml");
    let (kept, log) = refine(&second.snapshots[0].0, &set3, &[], s.path());
    assert!(
        kept.contains("work"),
        "back for another try: {kept:?}\n{log}"
    );
    assert!(
        log.contains("back for another try: work (taken out after"),
        "{log}"
    );

    // Iteration 3 warms up the same way: a warm-up verdict after a warm-up
    // verdict stands, so work stays out from then on.
    let third = run("iter-3", Some(&set3), "500");
    assert_eq!(probe(third.snapshot(), "work").state, ProbeState::Disabled);
    let (kept, log) = refine(&third.snapshots[0].0, &s.join("set-4.toml"), &[], s.path());
    assert!(!kept.contains("work"), "{kept:?}\n{log}");
}

#[test]
fn a_removal_the_means_disagree_with_comes_back_once_even_without_second_chances() {
    let s = Scratch::new();
    let prog = s.build("dispatch.c", "dispatch", &["-O2"]);
    // With --no-second-chance: this rule is not step 7's (which would bring
    // `dispatch` back as work leaves).
    let refine_default = |snap: &Path, set: &Path, extra: &[&str]| {
        let mut args = vec!["--no-second-chance"];
        args.extend_from_slice(extra);
        refine(snap, set, &args, s.path())
    };
    // Adaptive on, judged and kept for 20 ms: work is taken out only after
    // tens of thousands of calls. Without keep_share, which would keep it
    // in the running program (it is most of the run).
    let card = s.write(
        "card.toml",
        "[hotspot]\nmin_judging_ms = 20\nmin_removal_ms = 20\nkeep_share = 0\n",
    );
    let run = |dir: &str, set: Option<&Path>, args: &[&str]| {
        let dir = s.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut run = Run::new(&prog, &dir)
            .args(args)
            .env("HOTPROBE_CONFIG", card.to_str().unwrap());
        if let Some(set) = set {
            run = run.env("HOTPROBE_PROBESET", set.to_str().unwrap());
        }
        let ran = run.run();
        assert_eq!(ran.stdout(), format!("done {}\n", args[0]));
        ran
    };
    // Iteration 1: every call of work spins 2 µs: hot.
    let first = run("iter-1", None, &["100000", "0", "1"]);
    let work = probe(first.snapshot(), "work");
    assert_eq!(work.state, ProbeState::Hot, "{work:?}");
    let set2 = s.join("set-2.toml");
    let (kept, _) = refine_default(&first.snapshots[0].0, &set2, &[]);
    assert!(kept.contains("work"), "{kept:?}");

    // Iteration 2: one call in 4 spins: 500 ns a call on average, yet the
    // score card takes it out (three calls in four earn a debit on both
    // thresholds). The two verdicts disagree and the means side with the
    // first: work comes back.
    let second = run("iter-2", Some(&set2), &["100000", "0", "4"]);
    let work = probe(second.snapshot(), "work");
    assert_eq!(work.state, ProbeState::Disabled, "{work:?}");
    assert!(
        work.count >= 1000 && work.inherent_ns / work.count >= 400,
        "{work:?}"
    );
    let set3 = s.join("set-3.toml");
    let (kept, log) = refine_default(&second.snapshots[0].0, &set3, &[]);
    assert!(
        kept.contains("work"),
        "back for another try: {kept:?}\n{log}"
    );
    assert!(
        log.contains("back for another try: work (taken out over")
            && log.contains(", hot over 100000 the iteration before)"),
        "{log}"
    );

    // Where the means side with the removal, it stands: its own time per
    // call against a bar twice as high (the bars are set from what was
    // measured: preemptions on a loaded machine lengthen calls)...
    let us_per_call = |p: &ProbeRecord| p.inherent_ns as f64 / p.count as f64 / 1000.0;
    let bar = format!("{}", 2.0 * us_per_call(&work));
    let (kept, log) = refine_default(
        &second.snapshots[0].0,
        &s.join("set-3-high.toml"),
        &["--min-inherent-us", &bar],
    );
    assert!(!kept.contains("work"), "{kept:?}\n{log}");
    // ... or one call in 50 spinning, some 40 ns a call: past a bar at
    // half its own time, but under an inclusive threshold of 2 µs.
    let cold_card = s.write(
        "cold.toml",
        "[hotspot]\nthreshold_us = 2.0\nmin_judging_ms = 20\nmin_removal_ms = 20\n",
    );
    let cold_dir = s.join("iter-2-cold");
    std::fs::create_dir_all(&cold_dir).unwrap();
    let cold = Run::new(&prog, &cold_dir)
        .args(&["1000000", "0", "50"])
        .env("HOTPROBE_CONFIG", cold_card.to_str().unwrap())
        .env("HOTPROBE_PROBESET", set2.to_str().unwrap())
        .run();
    assert_eq!(cold.stdout(), "done 1000000\n");
    let work = probe(cold.snapshot(), "work");
    assert_eq!(work.state, ProbeState::Disabled, "{work:?}");
    assert!(
        work.count >= 1000 && work.inclusive_ns / work.count < 2000,
        "{work:?}"
    );
    let bar = format!("{}", 0.5 * us_per_call(&work));
    let (kept, log) = refine_default(
        &cold.snapshots[0].0,
        &s.join("set-3-cold.toml"),
        &["--min-inherent-us", &bar],
    );
    assert!(!kept.contains("work"), "{kept:?}\n{log}");
    // ... and with adaptive off nothing was taken out: `disabled` is a
    // classification of the whole run's calls, not a reversed verdict.
    let classified = run_dispatch_with(
        &prog,
        &s.join("iter-2-off"),
        Some(&set2),
        &["20000", "0", "4"],
    );
    assert_eq!(
        probe(classified.snapshot(), "work").state,
        ProbeState::Disabled
    );
    let (kept, log) = refine_default(&classified.snapshots[0].0, &s.join("set-3-off.toml"), &[]);
    assert!(!kept.contains("work"), "{kept:?}\n{log}");

    // Iteration 3 takes it out again: so did the iteration before, and
    // the removal stands.
    let third = run("iter-3", Some(&set3), &["100000", "0", "4"]);
    assert_eq!(probe(third.snapshot(), "work").state, ProbeState::Disabled);
    let (kept, log) = refine_default(&third.snapshots[0].0, &s.join("set-4.toml"), &[]);
    assert!(!kept.contains("work"), "{kept:?}\n{log}");
    assert!(log.contains("0 back for another try"), "{log}");

    // A first iteration has no verdict before it to disagree with: a
    // removal there stands (the demo's memtable_put, a few slow calls among
    // many fast ones, came back in iteration 2 and was dropped in 3, which
    // changed its callers' own time after the demo's hot set must settle).
    let alone = run("alone-1", None, &["100000", "0", "4"]);
    assert_eq!(probe(alone.snapshot(), "work").state, ProbeState::Disabled);
    let (kept, log) = refine_default(&alone.snapshots[0].0, &s.join("alone-2.toml"), &[]);
    assert!(!kept.contains("work"), "{kept:?}\n{log}");
}

#[test]
fn with_no_second_chance_none_comes_back() {
    let s = Scratch::new();
    let prog = s.build("dispatch.c", "dispatch", &["-O2"]);
    let first = run_dispatch(&prog, &s.join("iter-1"), None);
    let set = s.join("set.toml");
    let out = cli(
        &[
            "refine",
            "--no-second-chance",
            first.snapshots[0].0.to_str().unwrap(),
            "-o",
            set.to_str().unwrap(),
            "--drop",
            "work",
        ],
        s.path(),
    );
    assert!(out.status.success());
    let kept: BTreeSet<String> = ProbeSet::read(&set)
        .unwrap()
        .probes
        .into_iter()
        .map(|e| e.symbol)
        .collect();
    assert!(!kept.contains("dispatch"), "{kept:?}");
}

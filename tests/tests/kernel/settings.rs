//! The kernel backend's settings from the configuration: the backend from
//! a TOML file, the score-card thresholds (raised when default, kept when
//! set), a ring too small to keep up (lost records), and a low descriptor
//! limit.

use super::*;
use std::path::PathBuf;

/// A TOML file in the scratch directory, for HOTPROBE_CONFIG.
fn config(s: &Scratch, text: &str) -> PathBuf {
    s.write("hotprobe.toml", text)
}

/// The agent's lines about raising the score card's thresholds.
fn raise_lines(ran: &Ran) -> Vec<String> {
    ran.stderr()
        .lines()
        .filter(|l| l.contains("thresholds raised"))
        .map(str::to_string)
        .collect()
}

/// counts.c 1000 under the config file `text` only (no HOTPROBE_BACKEND),
/// checked against a bare run; the run and the file.
fn counts_with_config(s: &Scratch, text: &str) -> (Ran, PathBuf) {
    let prog = s.build("counts.c", "counts", &["-O2"]);
    let file = config(s, text);
    let bare = Run::new(&prog, s.path()).args(&["1000"]).bare().run();
    let ran = Run::new(&prog, s.path())
        .args(&["1000"])
        .env("HOTPROBE_CONFIG", file.to_str().unwrap())
        .run();
    ran.assert_same_as(&bare);
    (ran, file)
}

#[test]
fn backend_kernel_from_a_toml_file() {
    need_kernel!();
    let s = Scratch::new();
    // The file alone chooses the backend.
    let (ran, file) = counts_with_config(
        &s,
        "[probes]\nbackend = \"kernel\"\n[hotspot]\nadaptive = false\n",
    );
    let snap = ran.snapshot();
    assert_eq!(snap.config.file.as_deref(), Some(file.as_path()));
    assert_clean(snap);
    assert_eq!(count(snap, "middle"), 1000);
    assert_eq!(count(snap, "leaf"), 3000);
}

#[test]
fn default_thresholds_are_raised_with_one_warning_and_set_ones_kept() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("counts.c", "counts", &["-O2"]);
    let run = |toml: Option<&str>| {
        let mut r = kernel(Run::new(&prog, s.path()).args(&["100"]));
        if let Some(text) = toml {
            r = r.env("HOTPROBE_CONFIG", config(&s, text).to_str().unwrap());
        }
        let ran = r.run();
        let snap = ran.snapshot().clone();
        std::fs::remove_file(&ran.snapshots[0].0).unwrap();
        assert_clean(&snap);
        (ran, snap)
    };

    // Defaults: raised to the calibrated cost of a call and a quarter of it.
    let (ran, snap) = run(None);
    let h = &snap.config.hotspot;
    assert!(
        h.threshold_us > 1.0,
        "a kernel-probed call costs µs: inclusive threshold {}",
        h.threshold_us
    );
    assert!(
        (h.inherent_threshold_us * 4.0 - h.threshold_us).abs() < 1e-6,
        "inherent is a quarter of inclusive: {h:?}"
    );
    let lines = raise_lines(&ran);
    assert_eq!(lines.len(), 1, "one warning: {}", ran.stderr());
    let line = &lines[0];
    assert!(line.starts_with("hotprobe: "), "{line}");
    assert!(
        line.contains("from 0.18/0.06 µs")
            && line.contains("kernel-probed call")
            && line.contains("[hotspot] threshold_us")
            && line.contains("[hotspot] inherent_threshold_us"),
        "says what was raised, why, and how to keep one's own: {line}"
    );

    // Both set in the file: kept as set, nothing to warn about.
    let (ran, snap) = run(Some(
        "[hotspot]\nthreshold_us = 0.5\ninherent_threshold_us = 0.2\n",
    ));
    let h = &snap.config.hotspot;
    assert_eq!((h.threshold_us, h.inherent_threshold_us), (0.5, 0.2));
    assert!(raise_lines(&ran).is_empty(), "{}", ran.stderr());

    // One set: that one kept, the default one raised (and named).
    let (ran, snap) = run(Some("[hotspot]\nthreshold_us = 0.5\n"));
    let h = &snap.config.hotspot;
    assert_eq!(h.threshold_us, 0.5);
    assert!(h.inherent_threshold_us > 0.1, "{h:?}");
    let lines = raise_lines(&ran);
    assert_eq!(lines.len(), 1, "{}", ran.stderr());
    assert!(
        lines[0].contains("[hotspot] inherent_threshold_us")
            && !lines[0].contains("[hotspot] threshold_us"),
        "names only the raised key: {}",
        lines[0]
    );
}

#[test]
fn a_ring_too_small_loses_records_and_the_report_says_counts_are_not_exact() {
    need_kernel!();
    let s = Scratch::new();
    // One page per CPU, read every 5 s: ~4,000 calls (8,000 records of
    // 40 bytes) in well under a second cannot fit.
    let (ran, _) = counts_with_config(
        &s,
        "[probes]\nbackend = \"kernel\"\n[hotspot]\nadaptive = false\n[kernel]\nring_pages = 1\ndrain_ms = 5000\n",
    );
    let snap = ran.snapshot();
    assert_eq!(snap.agent.backend, "kernel");
    assert_eq!(snap.config.kernel.ring_pages, 1);
    assert!(
        snap.meter.lost_records > 0,
        "the kernel dropped nothing from a {}-page ring: leaf counted {}",
        snap.config.kernel.ring_pages,
        probe(snap, "leaf").count
    );
    assert!(
        probe(snap, "leaf").count < 3000,
        "records were lost, yet all 3000 leaf calls were counted"
    );
    let path = ran.snapshots[0].0.to_str().unwrap().to_string();
    let out = cli(&["report", &path], s.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("lost records: counts are not exact"),
        "the report must not claim exact counts:\n{text}"
    );
}

/// Runs `run` with RLIMIT_NOFILE set to `soft`/`hard` before exec.
fn run_with_nofile(run: Run, cwd: &Path, soft: u64, hard: u64) -> Ran {
    run_hooked(run, cwd, move || {
        let r = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a valid struct, in the child before exec.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })
}

#[test]
fn a_low_descriptor_limit_is_raised_with_a_warning_and_low_numbers_stay_free() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("fds.c", "fds", &["-O2"]);
    // Many distributions' soft limit, under a roomy hard one: the backend's
    // floor is then the soft limit, which must be raised before its first
    // descriptor, or that one lands low.
    let bare = run_with_nofile(
        Run::new(&prog, s.path()).args(&["100"]).bare(),
        s.path(),
        1024,
        8192,
    );
    let ran = run_with_nofile(
        kernel(Run::new(&prog, s.path()).args(&["100"])),
        s.path(),
        1024,
        8192,
    );
    ran.assert_same_as(&bare);
    assert!(ran.stdout().contains("main: 3 4 5"), "{}", ran.stdout());
    let stderr = ran.stderr();
    let raised: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("RLIMIT_NOFILE"))
        .collect();
    assert!(
        !raised.is_empty() && raised[0].contains("from 1024 to"),
        "the change is logged at the default level: {stderr}"
    );
    let snap = ran.snapshot();
    assert_eq!(count(snap, "open_null"), 6);
    assert_clean(snap);
}

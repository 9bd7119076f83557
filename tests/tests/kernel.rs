//! The kernel backend (`HOTPROBE_BACKEND=kernel`: BPF uprobe_multi links,
//! real kernel uprobes) on the same programs as the inline engine's tests:
//! each runs bare and probed with HOTPROBE_ADAPTIVE=0; output and exit
//! status must not change, counts must be exact (the kernel reports no lost
//! records), known durations must come out within 10% of the truth, and a
//! process without the capabilities must run unprobed with one line that
//! says what is missing.
//!
//! Every probed call costs a few µs in the kernel (two traps), so the
//! programs run with small arguments: the whole file stays well under a
//! minute.
//!
//! These tests need CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON, in the test
//! process itself (root has them), BPF and Linux 6.6+; without them each
//! test passes with a `SKIPPED` line written past the harness's capture,
//! so it shows in `cargo test`'s output. `HOTPROBE_TESTS_NEED_KERNEL=1`
//! turns a skip into a failure (for machines that must run them). Nothing
//! else skips, but for the timing test's means on a machine that preempts
//! every run (it then says PARTLY SKIPPED the same way).
//!
//! `kernel/triggers.rs` holds the snapshot triggers (signal, request,
//! interval); `kernel/settings.rs` what comes from the configuration
//! (backend, thresholds, ring size, descriptor limit).

use hotprobe_config::snapshot::{ProbeState, Reason, Snapshot};
use hotprobe_tests::*;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Says, where `cargo test` shows it, that the running test skipped and
/// why; with HOTPROBE_TESTS_NEED_KERNEL=1 fails it instead.
fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a kernel test")
        .to_string();
    if std::env::var("HOTPROBE_TESTS_NEED_KERNEL").is_ok_and(|v| v == "1") {
        panic!("{test}: {why} (HOTPROBE_TESTS_NEED_KERNEL=1 makes this a failure)");
    }
    // Straight to the descriptor: the harness captures only eprintln!.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Whether this test process may attach uprobes: CAP_SYS_ADMIN, or both
/// CAP_BPF and CAP_PERFMON, in its effective set.
fn kernel_ready() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    let Some(eff) = eff else {
        skip("cannot read CapEff from /proc/self/status");
        return false;
    };
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        skip(&format!("the kernel backend needs CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON (CapEff {eff:016x}); run the tests as root"));
        return false;
    }
    // The machine itself must offer what the backend is built on: BPF
    // (not filtered out by a container's seccomp) and uprobe_multi links
    // (Linux 6.6+). Checked here without the agent.
    if let Some(why) = kernel_lacks_bpf_uprobes() {
        skip(&format!(
            "this machine cannot run the kernel backend: {why}"
        ));
        return false;
    }
    true
}

fn kernel_lacks_bpf_uprobes() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (6, 6) {
        return Some(format!(
            "Linux {} has no uprobe_multi links (6.6+)",
            release.trim()
        ));
    }
    // BPF_MAP_CREATE of a one-entry array: union bpf_attr's first four u32s.
    let mut attr = [0u8; 128];
    for (i, v) in [2u32, 4, 8, 1].iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    // SAFETY: a 128-byte bpf_attr on our stack; the returned descriptor is closed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Some(format!(
            "the bpf system call fails: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd as i32) };
    None
}

/// Tests share the machine: the timing test runs alone (write lock), the
/// others beside each other (read lock). A failed test poisons nothing.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Skips the test (returns) when the kernel backend cannot be used here;
/// otherwise holds a shared hold on the machine until the test ends.
macro_rules! need_kernel {
    () => {
        if !kernel_ready() {
            return;
        }
        let _shared = MACHINE.read().unwrap_or_else(|e| e.into_inner());
    };
    (alone) => {
        if !kernel_ready() {
            return;
        }
        let _alone = MACHINE.write().unwrap_or_else(|e| e.into_inner());
    };
}

/// A run under the kernel backend, every probe kept installed.
fn kernel(run: Run) -> Run {
    run.env("HOTPROBE_BACKEND", "kernel")
        .env("HOTPROBE_ADAPTIVE", "0")
}

/// Runs `prog` bare and under the kernel backend (adaptive off); asserts
/// same stdout and status; returns the probed run.
fn run_both(s: &Scratch, prog: &Path, args: &[&str]) -> Ran {
    let bare = Run::new(prog, s.path()).args(args).bare().run();
    let ran = kernel(Run::new(prog, s.path()).args(args)).run();
    ran.assert_same_as(&bare);
    ran
}

fn count(snap: &Snapshot, name: &str) -> u64 {
    let p = probe(snap, name);
    assert!(
        matches!(
            p.state,
            ProbeState::Active | ProbeState::Hot | ProbeState::Disabled
        ),
        "{name} is {:?}: {:?}",
        p.state,
        p.reason
    );
    p.count
}

/// The snapshot is the kernel backend's, nothing went unmetered and the
/// kernel dropped no record (so the counts are exact).
fn assert_clean(snap: &Snapshot) {
    assert_eq!(
        snap.agent.backend, "kernel",
        "snapshot of pid {}",
        snap.process.pid
    );
    assert_eq!(snap.agent.problem, None, "the backend reported a problem");
    assert_eq!(snap.meter.unmetered, 0, "calls went unmetered");
    assert_eq!(
        snap.meter.lost_records, 0,
        "the kernel dropped records: counts are not exact"
    );
}

const BUILDS: &[(&str, &[&str])] = &[
    ("O0", &["-O0"]),
    ("O2", &["-O2"]),
    ("O2-cet", &["-O2", "-fcf-protection=full"]),
    ("O2-nopie", &["-O2", "-no-pie", "-fno-pie"]),
];

#[test]
fn exact_counts_and_unchanged_results_in_every_build() {
    need_kernel!();
    let s = Scratch::new();
    for (label, flags) in BUILDS {
        let prog = s.build("counts.c", &format!("counts-{label}"), flags);
        let ran = run_both(&s, &prog, &["1000"]);
        let snap = ran.snapshot();
        assert_eq!(count(snap, "top"), 1, "{label}");
        assert_eq!(count(snap, "middle"), 1000, "{label}");
        assert_eq!(count(snap, "leaf"), 3000, "{label}");
        for f in [
            "with_doubles",
            "many_args",
            "ld_value",
            "two_values",
            "varargs_sum",
            "main",
        ] {
            assert_eq!(count(snap, f), 1, "{label} {f}");
        }
        assert_eq!(probe(snap, "leaf").abandoned, 0, "{label}");
        assert_eq!(probe(snap, "middle").abandoned, 0, "{label}");
        assert_clean(snap);
    }
}

#[test]
fn cxx_exceptions_thrown_caught_and_rethrown_through_probed_frames() {
    need_kernel!();
    let s = Scratch::new();
    for (label, flags) in [("O0", &["-O0"][..]), ("O2", &["-O2"][..])] {
        let prog = s.build("exceptions.cc", &format!("exceptions-{label}"), flags);
        let ran = run_both(&s, &prog, &[]);
        let snap = ran.snapshot();
        assert_eq!(count(snap, "catcher(int)"), 100, "{label}");
        assert_eq!(count(snap, "pass_through(int)"), 100, "{label}");
        assert_eq!(count(snap, "catch_and_rethrow(int)"), 100, "{label}");
        // 100 × (5 + 1) throwing frames, plus 3 × (3 + 1) in catch_inside.
        assert_eq!(count(snap, "thrower(int)"), 600 + 12, "{label}");
        assert_eq!(
            probe(snap, "thrower(int)").abandoned,
            612,
            "{label}: every thrower frame is left by the exception"
        );
        assert_eq!(
            probe(snap, "catch_and_rethrow(int)").abandoned,
            100,
            "{label}"
        );
        assert_eq!(probe(snap, "pass_through(int)").abandoned, 100, "{label}");
        assert_eq!(probe(snap, "catcher(int)").abandoned, 0, "{label}");
        assert_eq!(count(snap, "normal_work(int)"), 1, "{label}");
        assert_eq!(
            probe(snap, "main").in_flight + probe(snap, "main").count,
            1,
            "{label}"
        );
        assert_clean(snap);
    }
}

#[test]
fn longjmp_and_siglongjmp_over_probed_frames() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("longjmp.c", "longjmp", &["-O2"]);
    let snap = run_both(&s, &prog, &[]).snapshot().clone();
    assert_eq!(count(&snap, "jumper"), 1000);
    assert_eq!(count(&snap, "deep_jump"), 11_000);
    assert_eq!(probe(&snap, "deep_jump").abandoned, 11_000);
    assert_eq!(count(&snap, "sigjumper"), 1000);
    assert_eq!(count(&snap, "deep_sigjump"), 11_000);
    assert_eq!(probe(&snap, "jumper").abandoned, 0);
    assert_eq!(count(&snap, "after"), 100);
    assert_clean(&snap);
}

#[test]
fn deep_direct_and_mutual_recursion() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("recursion.c", "recursion", &["-O2"]);
    let snap = run_both(&s, &prog, &["20000"]).snapshot().clone();
    assert_eq!(count(&snap, "direct"), 20_001);
    assert_eq!(count(&snap, "even") + count(&snap, "odd"), 20_001);
    let d = probe(&snap, "direct");
    assert_eq!(d.abandoned, 0);
    // Outermost activation only: inclusive time is not counted 20,000 times over.
    assert!(
        d.inclusive_ns <= d.max_inclusive_ns + d.max_inclusive_ns / 5,
        "inclusive {} max {}",
        d.inclusive_ns,
        d.max_inclusive_ns
    );
    assert_clean(&snap);
}

#[test]
fn tail_calls_count_as_calls() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("tailcall.c", "tailcall", &["-O2"]);
    let snap = run_both(&s, &prog, &[]).snapshot().clone();
    for f in ["tail_a", "tail_b", "tail_c"] {
        assert_eq!(count(&snap, f), 500, "{f}");
        assert_eq!(probe(&snap, f).abandoned, 0, "{f}");
    }
    assert_clean(&snap);
}

#[test]
fn backtrace_sees_the_same_frames_as_bare() {
    need_kernel!();
    let s = Scratch::new();
    for (label, flags) in [
        ("O0", &["-O0", "-rdynamic"][..]),
        ("O2", &["-O2", "-fno-omit-frame-pointer"][..]),
    ] {
        let prog = s.build("backtrace.c", &format!("backtrace-{label}"), flags);
        let snap = run_both(&s, &prog, &[]).snapshot().clone();
        assert_eq!(count(&snap, "innermost"), 1, "{label}");
        assert_clean(&snap);
    }
}

#[test]
fn many_short_lived_threads() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("threads.c", "threads", &["-O2"]);
    let snap = run_both(&s, &prog, &["50"]).snapshot().clone();
    assert_eq!(count(&snap, "thread_body"), 400);
    assert_eq!(count(&snap, "thread_leaf"), 400 * 100 + 1);
    assert_eq!(count(&snap, "exits_early"), 1);
    assert_eq!(
        probe(&snap, "exits_early").abandoned,
        1,
        "pthread_exit leaves the frame"
    );
    assert_clean(&snap);
}

#[test]
fn fork_vfork_and_exec_each_image_has_its_own_snapshot() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("forks.c", "forks", &["-O2"]);
    let bare = Run::new(&prog, s.path()).bare().run();
    // Children named `forks` are followed; /bin/true, exec'd by the vfork child, is not.
    let ran = kernel(Run::new(&prog, s.path()))
        .env("HOTPROBE_FOLLOW", "forks")
        .run();
    ran.assert_same_as(&bare);
    assert_eq!(
        ran.snapshots.len(),
        3,
        "parent, fork child, exec'd image: {:?}\nstderr: {}",
        ran.snapshots.iter().map(|s| &s.0).collect::<Vec<_>>(),
        ran.stderr()
    );
    let mut by_count: Vec<u64> = ran
        .snapshots
        .iter()
        .map(|(_, s)| count(s, "counted"))
        .collect();
    by_count.sort();
    assert_eq!(
        by_count,
        vec![5, 5, 7],
        "parent 3+2 (vfork child not metered), fork child 5, exec'd image 7"
    );
    let parent = ran
        .snapshots
        .iter()
        .map(|x| &x.1)
        .find(|s| s.process.reason == Reason::Exec)
        .expect("exec snapshot");
    let exec_image = ran
        .snapshots
        .iter()
        .map(|x| &x.1)
        .find(|s| s.process.argv.len() == 2)
        .expect("exec'd image");
    assert_eq!(parent.process.pid, exec_image.process.pid);
    let child = ran
        .snapshots
        .iter()
        .map(|x| &x.1)
        .find(|s| s.process.forked_from.is_some())
        .expect("fork child");
    assert_eq!(child.process.forked_from, Some(parent.process.pid));
    assert_eq!(count(child, "counted"), 5, "the fork child's own calls");
    for (_, snap) in &ran.snapshots {
        assert_clean(snap);
    }
}

#[test]
fn profiling_signal_handler_calls_probed_functions_exactly() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("sigprof.c", "sigprof", &["-O2"]);
    // The argument is rounds of worker(1000): 50 rounds are 50,000 probed
    // worker_leaf calls, about half a second of uprobe hits. The timer
    // counts CPU time, the kernel's included, so it fires often enough.
    let ran = run_both(&s, &prog, &["50"]);
    let snap = ran.snapshot();
    let handled: u64 = ran
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("handled: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("handled count");
    assert!(
        handled > 5,
        "the timer should have fired often, fired {handled}"
    );
    assert_eq!(count(snap, "in_handler"), handled);
    assert_eq!(count(snap, "worker"), 50);
    assert_eq!(count(snap, "worker_leaf"), 50_000);
    assert_eq!(probe(snap, "worker").abandoned, 0);
    assert_clean(snap);
}

#[test]
fn rust_panics_caught_with_catch_unwind() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("panic.rs", "panic", &["-O"]);
    let bare = Run::new(&prog, s.path()).bare().run();
    let ran = kernel(Run::new(&prog, s.path()))
        .env("HOTPROBE_INCLUDE", "panic::*")
        .run();
    ran.assert_same_as(&bare);
    let snap = ran.snapshot();
    assert_eq!(count(snap, "panic::guarded"), 50);
    assert_eq!(count(snap, "panic::deep"), 300);
    assert_eq!(probe(snap, "panic::deep").abandoned, 300);
    assert_eq!(count(snap, "panic::plain"), 100);
    assert_clean(snap);
}

fn within(actual: f64, truth: f64, tolerance: f64) -> bool {
    (actual - truth).abs() <= truth * tolerance
}

/// The program's own timing of its calls, from its stderr.
fn truth_of(ran: &Ran) -> (f64, f64) {
    let v: Vec<f64> = ran
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("truth outer "))
        .map(|l| {
            l.split(" inner ")
                .map(|v| v.trim().parse::<f64>().unwrap())
                .collect()
        })
        .unwrap_or_else(|| panic!("no truth line in {:?}", ran.stderr()));
    (v[0], v[1])
}

/// How one bare + probed pair of spin.c runs compared with the truth.
enum Attempt {
    /// Every time within 10%.
    Within,
    /// Off by more than 10% with neither run preempted for long: a miss.
    Off(String),
    /// Off by more than 10%, but a run spent over 2% of its timed loop off
    /// the CPU, so the bare truth and the probed run saw different machines.
    Disturbed(String),
}

/// One bare + probed pair of spin.c runs, against the truth of the bare run.
fn spin_attempt(s: &Scratch, prog: &Path, args: &[&str]) -> (Attempt, Ran) {
    // The truth comes from a bare run: the probed run's own clock reads
    // around each call include the uprobes' cost, which the agent removes.
    let bare = Run::new(prog, s.path()).args(args).bare().run();
    let ran = kernel(Run::new(prog, s.path()).args(args)).run();
    ran.assert_same_as(&bare);
    let snap = ran.snapshot();
    let outer = probe(snap, "outer");
    let inner = probe(snap, "inner");
    assert_eq!((outer.count, inner.count), (200, 400));
    let (outer_total, inner_total) = truth_of(&bare);
    let (outer_truth, inner_truth) = (outer_total / 200.0, inner_total / 400.0);
    let outer_own_truth = outer_truth - 2.0 * inner_truth;
    let per = |total: u64, n: u64| total as f64 / n as f64;
    let (bare_off, probed_off) = (bare.off_cpu_ns("outer"), ran.off_cpu_ns("outer"));
    let report = format!(
        "outer incl {:.0} inh {:.0}, inner incl {:.0} inh {:.0}, p50 {} max {}; truth outer {outer_truth:.0} (own {outer_own_truth:.0}) inner {inner_truth:.0}; probe cost {} ns; off the CPU: bare {bare_off:.0} ns, probed {probed_off:.0} ns",
        per(outer.inclusive_ns, 200),
        per(outer.inherent_ns, 200),
        per(inner.inclusive_ns, 400),
        per(inner.inherent_ns, 400),
        inner.p50_inclusive_ns,
        inner.max_inclusive_ns,
        snap.overhead.probe_ns
    );
    // The median ignores the few calls a preemption lands in: it must hold
    // whatever the machine does.
    assert!(
        within(inner.p50_inclusive_ns as f64, 50_000.0, 0.10),
        "median off by more than 10%: {report}"
    );
    let ok = within(per(outer.inclusive_ns, 200), outer_truth, 0.10)
        && within(per(outer.inherent_ns, 200), outer_own_truth, 0.10)
        && within(per(inner.inclusive_ns, 400), inner_truth, 0.10)
        && within(per(inner.inherent_ns, 400), inner_truth, 0.10);
    let disturbed = bare_off > outer_total * 0.02 || probed_off > per(outer.inclusive_ns, 1) * 0.02;
    let attempt = match (ok, disturbed) {
        (true, _) => Attempt::Within,
        (false, false) => Attempt::Off(report),
        (false, true) => Attempt::Disturbed(report),
    };
    (attempt, ran)
}

#[test]
fn known_durations_within_ten_percent_and_exact_contexts() {
    need_kernel!(alone);
    let s = Scratch::new();
    let prog = s.build("spin.c", "spin", &["-O2"]);
    let args = ["200", "10000"];
    // The truth and the probed run are two runs: a preemption in one and
    // not the other (a loaded machine) moves a mean by more than 10%. So
    // the means get three undisturbed pairs of runs (a wrong compensation
    // fails all); pairs a preemption disturbed are retried, up to eight in
    // all, and when every pair was disturbed only the medians (checked in
    // each attempt) could be held to the truth.
    let (mut misses, mut disturbed) = (vec![], vec![]);
    let ran = loop {
        let (attempt, ran) = spin_attempt(&s, &prog, &args);
        match attempt {
            Attempt::Within => break ran,
            Attempt::Off(report) => misses.push(report),
            Attempt::Disturbed(report) => disturbed.push(report),
        }
        assert!(
            misses.len() < 3,
            "times off by more than 10% in three undisturbed runs:\n{}",
            misses.join("\n")
        );
        if misses.len() + disturbed.len() >= 8 {
            // A weaker check than asked for: shown like a skip.
            let _ = writeln!(
                std::io::stderr(),
                "PARTLY SKIPPED known_durations_within_ten_percent_and_exact_contexts: the machine preempted every pair; the means went unchecked:\n{}",
                disturbed.join("\n")
            );
            break ran;
        }
        eprintln!("spin: off by more than 10%, trying again");
    };
    let snap = ran.snapshot();
    assert_clean(snap);
    let outer = probe(snap, "outer");
    let inner = probe(snap, "inner");
    assert_eq!(count(snap, "tiny"), 10_000);
    assert!(
        inner.p99_inclusive_ns >= inner.p50_inclusive_ns,
        "p50 {} p99 {}",
        inner.p50_inclusive_ns,
        inner.p99_inclusive_ns
    );
    assert!(
        snap.overhead.compensated && snap.overhead.probe_ns > 0.0,
        "{:?}",
        snap.overhead
    );
    // Calling contexts and edges are exact counts.
    let edge = snap
        .edges
        .iter()
        .find(|e| e.caller == outer.id && e.callee == inner.id)
        .expect("outer→inner edge");
    assert_eq!(edge.count, 400);
    let outer_ctx = snap
        .contexts
        .iter()
        .find(|c| c.probe == outer.id)
        .expect("outer context");
    let inner_ctx = snap
        .contexts
        .iter()
        .find(|c| c.probe == inner.id)
        .expect("inner context");
    assert_eq!(inner_ctx.parent, Some(outer_ctx.id));
    assert_eq!((outer_ctx.count, inner_ctx.count), (200, 400));
    assert!(!snap.meter.contexts_truncated);
}

#[test]
fn adaptive_engine_closes_cold_probes_while_the_program_runs() {
    // The score card decides on times: alone, like the timing test.
    need_kernel!(alone);
    let s = Scratch::new();
    let prog = s.build("many.c", "many", &["-O2"]);
    // The argument is rounds: each of 4 threads calls f0..f1999 once per
    // round, so each f is called 4 × 50 = 200 times. With the default score
    // card (initial 200, debit 2 + 2 per cold call) a cold probe is out
    // after about 50 calls; its count then stops well short of 200.
    let rounds: u64 = 50;
    let arg = rounds.to_string();
    let bare = Run::new(&prog, s.path()).args(&[&arg]).bare().run();
    let ran = Run::new(&prog, s.path())
        .args(&[&arg])
        .env("HOTPROBE_BACKEND", "kernel")
        .env("HOTPROBE_ADAPTIVE", "1")
        .run();
    ran.assert_same_as(&bare);
    let snap = ran.snapshot();
    assert_eq!(snap.agent.backend, "kernel");
    assert_eq!(snap.agent.problem, None);
    let fs: Vec<_> = snap
        .probes
        .iter()
        .filter(|p| p.name.starts_with('f') && p.name[1..].parse::<u32>().is_ok())
        .collect();
    assert_eq!(fs.len(), 2000);
    let disabled: Vec<_> = fs
        .iter()
        .filter(|p| p.state == ProbeState::Disabled)
        .collect();
    let counts = {
        let mut c: Vec<u64> = fs.iter().map(|p| p.count).collect();
        c.sort();
        format!(
            "counts min {} median {} max {}",
            c[0],
            c[c.len() / 2],
            c[c.len() - 1]
        )
    };
    eprintln!(
        "adaptive: {} of {} disabled, {counts}, run {:.2} s",
        disabled.len(),
        fs.len(),
        snap.process.duration_ns as f64 / 1e9
    );
    assert!(
        disabled.len() * 100 >= fs.len() * 90,
        "only {} of {} disabled ({counts}; run took {:.1} s)",
        disabled.len(),
        fs.len(),
        snap.process.duration_ns as f64 / 1e9
    );
    for p in &disabled {
        assert!(
            p.disabled_at_ns.is_some() && p.score <= 0,
            "{}: disabled_at {:?} score {}",
            p.name,
            p.disabled_at_ns,
            p.score
        );
    }
    // Closing other probes' links must not lose calls of those still on.
    assert_eq!(snap.meter.lost_records, 0);
    let short: Vec<_> = fs
        .iter()
        .filter(|p| p.state != ProbeState::Disabled && p.count != 4 * rounds)
        .map(|p| (&p.name, p.count))
        .collect();
    assert!(
        short.is_empty(),
        "{} probes still enabled at exit missed calls (each was called {} times): {:?}",
        short.len(),
        4 * rounds,
        &short[..short.len().min(10)]
    );
    // Closed links stop counting: most disabled probes saw far fewer calls
    // than the program made (a few may be closed only near the end).
    let stopped = disabled.iter().filter(|p| p.count < 4 * rounds).count();
    assert!(
        stopped * 100 >= disabled.len() * 90,
        "only {stopped} of {} disabled probes stopped counting ({counts})",
        disabled.len()
    );
}

/// Runs `run` with `hook` called in the child between fork and exec (it
/// must stay async-signal-safe: system calls only).
fn run_hooked<F>(run: Run, cwd: &Path, hook: F) -> Ran
where
    F: FnMut() -> std::io::Result<()> + Send + Sync + 'static,
{
    let before = snapshot_files(cwd);
    let mut cmd = run.command();
    cmd.stdin(Stdio::null());
    // SAFETY: callers' hooks make system calls only (async-signal-safe).
    unsafe {
        cmd.pre_exec(hook);
    }
    let output = cmd.output().expect("run with a pre-exec hook");
    let snapshots = snapshot_files(cwd)
        .into_iter()
        .filter(|p| !before.contains(p))
        .map(|p| {
            let s = Snapshot::read(&p)
                .unwrap_or_else(|e| panic!("agent wrote an unreadable snapshot: {e}"));
            (p, s)
        })
        .collect();
    Ran { output, snapshots }
}

/// Runs `run` with the capabilities `caps` dropped from the bounding set
/// before exec: as root, the exec'd program then lacks them in its permitted
/// and effective sets.
fn run_without_capabilities(run: Run, cwd: &Path, caps: &'static [u32]) -> Ran {
    run_hooked(run, cwd, move || {
        for &cap in caps {
            // SAFETY: prctl with plain integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
}

const DROPPED: &[u32] = &[CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF];

#[test]
fn without_the_capabilities_the_program_runs_unprobed_and_one_line_says_why() {
    need_kernel!();
    let s = Scratch::new();
    // The drop works: a child's effective set lacks all three.
    let status = run_without_capabilities(
        Run::new(Path::new("/bin/cat"), s.path())
            .args(&["/proc/self/status"])
            .bare(),
        s.path(),
        DROPPED,
    );
    let eff = status
        .stdout()
        .lines()
        .find_map(|l| {
            l.strip_prefix("CapEff:")
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        })
        .expect("CapEff");
    for cap in DROPPED {
        assert_eq!(
            eff & (1u64 << *cap),
            0,
            "capability {cap} still effective after the drop: {eff:x}"
        );
    }

    let prog = s.build("counts.c", "counts", &["-O2"]);
    let bare = Run::new(&prog, s.path()).args(&["100"]).bare().run();
    let ran = run_without_capabilities(
        kernel(Run::new(&prog, s.path()).args(&["100"])),
        s.path(),
        DROPPED,
    );
    ran.assert_same_as(&bare);
    let stderr = ran.stderr();
    assert_eq!(stderr.lines().count(), 1, "one line, got:\n{stderr}");
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    assert!(
        stderr.contains("CAP_PERFMON")
            && stderr.contains("CAP_BPF")
            && stderr.contains("CAP_SYS_ADMIN"),
        "names what is missing: {stderr}"
    );
    assert!(
        stderr.starts_with("hotprobe:"),
        "the agent's prefix: {stderr}"
    );
    assert!(
        stderr.contains("lacks") || stderr.contains("missing") || stderr.contains("not permitted"),
        "says it is missing: {stderr}"
    );
    assert!(
        stderr.contains("ambient") || stderr.contains("setpriv") || stderr.contains("as root"),
        "says how to grant it: {stderr}"
    );
    assert!(
        stderr.contains("HOTPROBE_BACKEND=inline"),
        "names the other backend as a choice, not a fallback: {stderr}"
    );
    // No silent switch to the inline backend: nothing counted.
    for (path, snap) in &ran.snapshots {
        let problem = snap.agent.problem.as_deref().unwrap_or("");
        assert!(
            problem.contains("CAP_PERFMON"),
            "{}: agent.problem is {:?}",
            path.display(),
            snap.agent.problem
        );
        assert_eq!(snap.agent.backend, "kernel", "{}", path.display());
        assert!(
            snap.probes.iter().all(|p| p.count == 0),
            "{}: probes counted without the backend: {:?}",
            path.display(),
            snap.probes
                .iter()
                .filter(|p| p.count > 0)
                .map(|p| (&p.name, p.count))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_agents_descriptors_stay_out_of_the_programs_low_numbers() {
    need_kernel!();
    let s = Scratch::new();
    let prog = s.build("fds.c", "fds", &["-O2"]);
    let ran = run_both(&s, &prog, &["100"]);
    assert!(ran.stdout().contains("main: 3 4 5"), "{}", ran.stdout());
    let snap = ran.snapshot();
    assert_eq!(count(snap, "open_null"), 6);
    assert_eq!(count(snap, "lowest_dup"), 1);
    assert_eq!(count(snap, "work"), 100 + 6 + 1);
    assert_eq!(count(snap, "in_thread"), 1);
    assert_clean(snap);
}

// After the helpers and macros above, which they use.
#[path = "kernel/settings.rs"]
mod settings;
#[path = "kernel/triggers.rs"]
mod triggers;

//! The agent's foundation: settings precedence as the snapshot reports it,
//! and fail-open on every kind of bad input.

use hotprobe_tests::*;

fn hello(s: &Scratch) -> std::path::PathBuf {
    s.build("hello.c", "hello", &["-O1"])
}

#[test]
fn snapshot_reports_the_process_and_effective_settings() {
    let s = Scratch::new();
    let prog = hello(&s);
    s.write(
        "hotprobe.toml",
        "[hotspot]\nthreshold_us = 7.5\ninitial = 40\n[target]\nexclude = [\"from_file*\"]\n",
    );
    let ran = Run::new(&prog, s.path())
        .args(&["a", "b"])
        .env("HOTPROBE_EXCLUDE", "from_env*")
        .env("EXIT_CODE", "4")
        .run();
    let bare = Run::new(&prog, s.path())
        .args(&["a", "b"])
        .env("EXIT_CODE", "4")
        .bare()
        .run();
    ran.assert_same_as(&bare);
    assert_eq!(ran.output.status.code(), Some(4));
    let snap = ran.snapshot();
    assert_eq!(snap.schema, "hotprobe.snapshot/1");
    assert_eq!(
        snap.process.exe,
        prog.canonicalize().unwrap().to_string_lossy()
    );
    assert_eq!(
        snap.process.argv,
        vec![prog.to_string_lossy().to_string(), "a".into(), "b".into()]
    );
    assert_eq!(snap.process.reason, hotprobe_config::snapshot::Reason::Exit);
    assert_eq!(snap.config.hotspot.threshold_us, 7.5, "file beats default");
    assert_eq!(snap.config.hotspot.initial, 40);
    assert_eq!(snap.config.hotspot.debit, 2, "default stays");
    assert_eq!(
        snap.config.target.exclude,
        vec!["from_env*"],
        "environment beats file"
    );
    assert_eq!(snap.agent.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        snap.process.build_id,
        Some(readelf_build_id(&prog).expect("gcc links a build ID by default")),
        "process.build_id is the executable's .note.gnu.build-id"
    );
    let name = ran.snapshots[0]
        .0
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(name, format!("hotprobe-hello-{}.json", snap.process.pid));
}

/// The build ID `readelf -n` shows for a file, if it has one.
fn readelf_build_id(file: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("readelf")
        .arg("-n")
        .arg(file)
        .output()
        .expect("run readelf (binutils)");
    assert!(out.status.success(), "readelf -n {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
}

#[test]
fn a_copy_of_the_agent_under_another_name_still_runs() {
    let s = Scratch::new();
    let prog = hello(&s);
    let copy = s.path().join("agent-side-by-side.so");
    std::fs::copy(agent_path(), &copy).unwrap();
    let ran = Run::new(&prog, s.path())
        .env("LD_PRELOAD", copy.to_str().unwrap())
        .run();
    ran.assert_same_as(&Run::new(&prog, s.path()).bare().run());
    assert!(ran
        .snapshot()
        .probes
        .iter()
        .any(|p| p.name == "main" && p.count == 1));
}

#[test]
fn build_id_is_null_for_a_program_linked_without_one() {
    let s = Scratch::new();
    let prog = s.build("hello.c", "hello-no-id", &["-O1", "-Wl,--build-id=none"]);
    assert_eq!(readelf_build_id(&prog), None, "the linker left a build ID");
    let ran = Run::new(&prog, s.path()).run();
    assert!(ran.output.status.success(), "{}", ran.stderr());
    assert_eq!(ran.snapshot().process.build_id, None);
}

#[test]
fn snapshot_file_is_private_and_follows_the_template() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let prog = hello(&s);
    std::fs::create_dir(s.join("out")).unwrap();
    let ran = Run::new(&prog, s.path())
        .env("HOTPROBE_OUTPUT", "out/{exe}.json")
        .run();
    assert!(ran.output.status.success());
    let path = s.join("out/hello.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second image never overwrites the first one's file.
    Run::new(&prog, s.path())
        .env("HOTPROBE_OUTPUT", "out/{exe}.json")
        .run();
    assert!(s.join("out/hello.1.json").exists());
    let first = hotprobe_config::Snapshot::read(&path).unwrap();
    let second = hotprobe_config::Snapshot::read(&s.join("out/hello.1.json")).unwrap();
    assert_ne!(first.process.pid, second.process.pid);
}

/// Runs `hello` with a bad setting: same output and exit code as bare, no
/// snapshot, and exactly one `hotprobe:` line on stderr that contains `needle`.
fn assert_fails_open(s: &Scratch, env: &[(&str, &str)], needles: &[&str]) {
    let prog = hello(s);
    let mut run = Run::new(&prog, s.path()).env("EXIT_CODE", "3");
    for (k, v) in env {
        run = run.env(k, v);
    }
    let ran = run.run();
    let bare = Run::new(&prog, s.path()).env("EXIT_CODE", "3").bare().run();
    ran.assert_same_as(&bare);
    assert!(
        ran.snapshots.is_empty(),
        "a snapshot was written despite the bad setting"
    );
    let stderr = ran.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "want exactly one stderr line, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("hotprobe: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing from: {stderr}");
    }
}

#[test]
fn broken_toml_fails_open() {
    let s = Scratch::new();
    let cfg = s.write("broken.toml", "[hotspot\nthreshold_us = 1\n");
    assert_fails_open(
        &s,
        &[("HOTPROBE_CONFIG", cfg.to_str().unwrap())],
        &["broken.toml:1"],
    );
}

#[test]
fn unknown_key_fails_open() {
    let s = Scratch::new();
    s.write(
        "hotprobe.toml",
        "[target]\nmodules = [\"main\"]\n\n[hotspot]\nthreshhold_us = 3\n",
    );
    assert_fails_open(&s, &[], &["hotprobe.toml:5", "hotspot.threshhold_us"]);
}

#[test]
fn wrong_type_fails_open() {
    let s = Scratch::new();
    s.write("hotprobe.toml", "[snapshot]\ninterval_s = \"often\"\n");
    assert_fails_open(&s, &[], &["hotprobe.toml:2", "snapshot.interval_s"]);
}

#[test]
fn negative_threshold_fails_open() {
    let s = Scratch::new();
    s.write("hotprobe.toml", "[hotspot]\nthreshold_us = -3\n");
    assert_fails_open(&s, &[], &["hotprobe.toml:2", "hotspot.threshold_us"]);
}

#[test]
fn negative_judging_window_fails_open() {
    let s = Scratch::new();
    s.write(
        "hotprobe.toml",
        "[hotspot]\nadaptive = true\nmin_judging_ms = -5\n",
    );
    assert_fails_open(
        &s,
        &[],
        &[
            "hotprobe.toml:3",
            "hotspot.min_judging_ms",
            "not a duration",
        ],
    );
}

#[test]
fn cross_field_error_names_the_key_the_file_set() {
    // lower above the default upper: the file's line and key are at fault,
    // not the built-in upper.
    let s = Scratch::new();
    s.write("hotprobe.toml", "[hotspot]\ncredit = 1\nlower = 30000\n");
    assert_fails_open(&s, &[], &["hotprobe.toml:3", "key `hotspot.lower`"]);
    let s = Scratch::new();
    s.write("hotprobe.toml", "[hotspot]\ninitial = 30000\n");
    assert_fails_open(&s, &[], &["hotprobe.toml:2", "key `hotspot.initial`"]);
}

#[test]
fn bad_environment_value_fails_open() {
    let s = Scratch::new();
    assert_fails_open(
        &s,
        &[("HOTPROBE_BACKEND", "ebpf")],
        &["HOTPROBE_BACKEND", "probes.backend"],
    );
}

#[test]
fn missing_config_file_fails_open() {
    let s = Scratch::new();
    assert_fails_open(
        &s,
        &[("HOTPROBE_CONFIG", "/nonexistent/hp.toml")],
        &["HOTPROBE_CONFIG", "/nonexistent/hp.toml"],
    );
}

#[test]
fn probe_set_of_wrong_schema_fails_open() {
    let s = Scratch::new();
    let set = s.write("probes.toml", "schema = \"hotprobe.probeset/2\"\n");
    assert_fails_open(
        &s,
        &[("HOTPROBE_PROBESET", set.to_str().unwrap())],
        &["probes.toml:1", "schema"],
    );
}

#[test]
fn missing_probe_set_fails_open() {
    let s = Scratch::new();
    assert_fails_open(&s, &[("HOTPROBE_PROBESET", "nope.toml")], &["nope.toml"]);
}

#[test]
fn unwritable_output_directory_fails_open() {
    let s = Scratch::new();
    assert_fails_open(
        &s,
        &[("HOTPROBE_OUTPUT", "/proc/hotprobe/{pid}.json")],
        &["/proc/hotprobe", "HOTPROBE_OUTPUT"],
    );
}

#[test]
fn follow_globs_choose_the_children_not_the_process_started() {
    let s = Scratch::new();
    let prog = hello(&s);
    // The started process is probed whatever the globs say...
    let ran = Run::new(&prog, s.path())
        .env("HOTPROBE_FOLLOW", "redis-*")
        .run();
    assert_eq!(ran.snapshots.len(), 1);
    // ...and a child that matches no glob stays bare (sh forks `hello`).
    let script = format!("{}; true", prog.display());
    let ran = Run::new(std::path::Path::new("/bin/sh"), s.path())
        .args(&["-c", &script])
        .env("HOTPROBE_FOLLOW", "redis-*")
        .run();
    let exes: Vec<String> = ran
        .snapshots
        .iter()
        .map(|(_, s)| s.process.exe.clone())
        .collect();
    assert_eq!(ran.snapshots.len(), 1, "{exes:?}");
    assert!(!exes[0].ends_with("/hello"), "{exes:?}");
    let ran = Run::new(std::path::Path::new("/bin/sh"), s.path())
        .args(&["-c", &script])
        .env("HOTPROBE_FOLLOW", "hel*")
        .run();
    assert_eq!(ran.snapshots.len(), 2, "sh and the followed child");
}

#[test]
fn a_caught_panic_gives_one_line_and_the_program_runs_on() {
    // HOTPROBE_TEST_PANIC makes the named guarded entry point panic.
    let s = Scratch::new();
    assert_fails_open(
        &s,
        &[("HOTPROBE_TEST_PANIC", "start-up")],
        &["internal error in start-up", "HOTPROBE_TEST_PANIC"],
    );
}

/// stderr without the agent's lines, and with the thread ids Rust's panic
/// message carries (`thread 'main' (1234) panicked`) taken out.
fn host_stderr(ran: &Ran) -> Vec<String> {
    ran.stderr()
        .lines()
        .filter(|l| !l.starts_with("hotprobe: "))
        .map(|l| match (l.find("' ("), l.find(") panicked")) {
            (Some(a), Some(b)) if l.starts_with("thread '") && a < b => {
                format!("{}{}", &l[..a + 1], &l[b + 1..])
            }
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn a_rust_host_keeps_its_own_panic_hook_and_default_message() {
    let s = Scratch::new();
    let prog = s.build("host_hook.rs", "host_hook", &["-O"]);
    let run = || {
        Run::new(&prog, s.path())
            .env("RUST_BACKTRACE", "0")
            .env("HOTPROBE_LOG", "error")
    };
    let bare = run().bare().run();
    let theirs = host_stderr(&bare);
    assert!(
        theirs.iter().any(|l| l.contains("panicked at"))
            && theirs.contains(&"host panic one".to_string())
            && theirs.contains(&"host hook saw: host panic two".to_string()),
        "{theirs:?}"
    );
    // The agent on, probing the host: the host's hooks print as without it.
    let ran = run().run();
    ran.assert_same_as(&bare);
    assert_eq!(host_stderr(&ran), theirs);
    assert_eq!(
        ran.stderr().lines().count(),
        theirs.len(),
        "{}",
        ran.stderr()
    );
    assert_eq!(ran.snapshots.len(), 1);
    // A panic caught inside the agent at exit: one line of ours, the host's untouched.
    let ran = run().env("HOTPROBE_TEST_PANIC", "exit snapshot").run();
    ran.assert_same_as(&bare);
    assert_eq!(host_stderr(&ran), theirs);
    // std's own message for our panic would show up in host_stderr above.
    let stderr = ran.stderr();
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hotprobe: "))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(
        ours[0].contains("internal error in exit snapshot")
            && ours[0].contains("the program continues"),
        "{ours:?}"
    );
    assert!(ran.snapshots.is_empty(), "the agent switched itself off");
}

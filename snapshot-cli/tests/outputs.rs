//! flamegraph, export, run and snapshot through the binary.

mod common;
use common::*;
use hotprobe_cli::fixture;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;

#[test]
fn flamegraph_svg_is_xml_with_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let svg = dir.path().join("f.svg");
    let r = run(&["flamegraph", p(&f), "-o", p(&svg)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = std::fs::read_to_string(&svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => elements += 1,
            Ok(_) => {}
            Err(e) => panic!("the SVG is not well-formed XML: {e}"),
        }
    }
    assert!(elements > 10);
    for name in ["processCommand", "dictFind", "compare#2", "getCommand"] {
        assert!(text.contains(name), "{name} not in the SVG");
    }
}

#[test]
fn folded_stacks_weigh_inherent_or_count() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "a.json", &fixture::server(1));
    write(dir.path(), "b.json", &fixture::server(2));
    let r = run(&["flamegraph", p(&f), "--folded", "-o", "-"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "main;aeMain;processCommand 8000000"),
        "{}",
        r.stdout
    );
    // Two snapshots merge by name path; count weights.
    let r = run(&[
        "flamegraph",
        p(dir.path()),
        "--folded",
        "--weight",
        "count",
        "-o",
        "-",
    ]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "main;aeMain;processCommand 20000"),
        "{}",
        r.stdout
    );
    // Frame widths add up: the sum of self times is the root's inclusive time.
    let r = run(&["flamegraph", p(&f), "--folded", "-o", "-"]);
    let total: u64 = r
        .stdout
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let s = fixture::server(1);
    assert_eq!(total, s.contexts[0].inclusive_ns);
}

#[test]
fn pprof_decodes_back() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let out = dir.path().join("p.pb.gz");
    let r = run(&["export", "--format", "pprof", p(&f), "-o", p(&out)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let prof: hotprobe_cli::pprof::Profile = prost::Message::decode(&raw[..]).unwrap();
    let st = |i: i64| prof.string_table[i as usize].as_str();
    let types: Vec<(&str, &str)> = prof
        .sample_type
        .iter()
        .map(|t| (st(t.r#type), st(t.unit)))
        .collect();
    assert_eq!(types, vec![("calls", "count"), ("inherent", "nanoseconds")]);
    assert_eq!(st(prof.default_sample_type), "inherent");
    let func = |loc: u64| {
        let l = &prof.location[loc as usize - 1];
        &prof.function[l.line[0].function_id as usize - 1]
    };
    let pc = prof
        .sample
        .iter()
        .find(|s| s.location_id.len() == 3 && st(func(s.location_id[0]).name) == "processCommand")
        .expect("a sample main;aeMain;processCommand");
    assert_eq!(pc.value, vec![10_000, 8_000_000]);
    assert_eq!(st(func(pc.location_id[2]).name), "main");
    let f = func(pc.location_id[0]);
    assert_eq!(
        (st(f.system_name), st(f.filename), f.start_line),
        ("processCommand", "src/processCommand.c", 12)
    );
    let cache = prof
        .function
        .iter()
        .find(|f| st(f.name).starts_with("ns::Cache"))
        .unwrap();
    assert_eq!(st(cache.filename), fixture::LIB, "no source: the module");
}

#[test]
fn run_passes_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("libhotprobe.so");
    std::fs::write(&agent, b"").unwrap();
    let out = hotprobe()
        .args([
            "run",
            "--agent",
            p(&agent),
            "--include",
            "dict*",
            "--exclude",
            "zmalloc",
            "--modules",
            "main",
            "--output",
            "o-{pid}.json",
            "--backend",
            "kernel",
            "--adaptive",
            "0",
            "--log",
            "info",
            "--",
            "/usr/bin/env",
        ])
        .env("LD_PRELOAD", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8_lossy(&out.stdout);
    let agent_abs = std::fs::canonicalize(&agent).unwrap();
    for line in [
        format!("LD_PRELOAD={}", agent_abs.display()),
        "HOTPROBE_INCLUDE=dict*".into(),
        "HOTPROBE_EXCLUDE=zmalloc".into(),
        "HOTPROBE_MODULES=main".into(),
        "HOTPROBE_OUTPUT=o-{pid}.json".into(),
        "HOTPROBE_BACKEND=kernel".into(),
        "HOTPROBE_ADAPTIVE=0".into(),
        "HOTPROBE_LOG=info".into(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
}

#[test]
fn run_propagates_exit_codes_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("libhotprobe.so");
    std::fs::write(&agent, b"").unwrap();
    let status = |cmd: &str| {
        hotprobe()
            .args(["run", "--agent", p(&agent), "--", "sh", "-c", cmd])
            .env_remove("LD_PRELOAD")
            .status()
            .unwrap()
    };
    assert_eq!(status("exit 7").code(), Some(7));
    assert_eq!(status("exit 0").code(), Some(0));
    let s = status("kill -TERM $$");
    assert_eq!((s.code(), s.signal()), (None, Some(libc::SIGTERM)));
    let s = status("kill -INT $$");
    assert_eq!(s.signal(), Some(libc::SIGINT));
    let r = run(&["run", "--agent", p(&agent), "--", "/no/such/program"]);
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    let r = run(&["run", "--agent", "/no/agent.so", "--", "true"]);
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr.contains("--agent /no/agent.so: no such file"),
        "{}",
        r.stderr
    );
}

#[test]
fn run_forwards_sigterm_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("libhotprobe.so");
    std::fs::write(&agent, b"").unwrap();
    let mut child = hotprobe()
        .args(["run", "--agent", p(&agent), "--", "sleep", "30"])
        .env_remove("LD_PRELOAD")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let s = child.wait().unwrap();
    assert!(started.elapsed().as_secs() < 10, "sleep was not ended");
    assert_eq!(s.signal(), Some(libc::SIGTERM));
}

#[test]
fn snapshot_asks_a_fake_agent() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    let xdg = tempfile::tempdir().unwrap();
    let sock_dir = xdg.path().join("hotprobe");
    std::fs::create_dir(&sock_dir).unwrap();
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pid = std::process::id();
    let listener =
        std::os::unix::net::UnixListener::bind(sock_dir.join(format!("{pid}.sock"))).unwrap();
    let agent = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            (&stream)
                .write_all(b"ok /tmp/hotprobe-test-1.json\n")
                .unwrap();
            lines.push(line);
        }
        lines
    });
    for args in [vec!["snapshot", "--reset"], vec!["snapshot"]] {
        let pid_s = pid.to_string();
        let out = hotprobe()
            .args(args.iter().copied().chain([pid_s.as_str()]))
            .env("XDG_RUNTIME_DIR", xdg.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/tmp/hotprobe-test-1.json\n"
        );
    }
    assert_eq!(
        agent.join().unwrap(),
        vec!["snapshot+reset\n", "snapshot\n"]
    );
    // No agent: a clear error.
    let out = hotprobe()
        .args(["snapshot", "1"])
        .env("XDG_RUNTIME_DIR", xdg.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("is not running hotprobe") || e.contains("permission denied"),
        "{e}"
    );
}

/// When Go is installed, the real `go tool pprof` must read the profile.
#[test]
fn go_tool_pprof_reads_the_profile_when_available() {
    let Ok(v) = std::process::Command::new("go").arg("version").output() else {
        eprintln!("go is not installed: decoding with prost (pprof_decodes_back) is the check");
        return;
    };
    if !v.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.json", &fixture::server(1));
    let out = dir.path().join("p.pb.gz");
    assert_eq!(
        run(&["export", "--format", "pprof", p(&f), "-o", p(&out)]).code,
        Some(0)
    );
    let top = std::process::Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=inherent", p(&out)])
        .env("HOME", dir.path())
        .env("GOCACHE", dir.path().join("gocache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(
        text.contains("Type: inherent") && text.contains("processCommand"),
        "{text}"
    );
}

//! Discovery + selection time, median of N runs (std::time, no harness):
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-discover cargo bench -p hotprobe-discover --bench discover
//! ```
//!
//! Objects: a generated C program with 5,000 functions (4,000 global, 1,000
//! static) compiled with `gcc -O2 -g`, the system's `libpython3.11.so`
//! (Debian: stripped, `.dynsym` only), pyenv's `libpython3.11.so` (with
//! `.symtab`, ~5,300 functions) and `libstdc++.so.6` (C++ names, the
//! demangling worst case). Each figure is one `discover` + `Selector::select`
//! of a fresh mapping, as the agent does at start; `lean` is
//! `DiscoverOptions::lean()` (no demangling up front, no PLT names).
//! Extra arguments are more objects to measure.

use hotprobe_config::Settings;
use hotprobe_discover::{discover_with, listing, DiscoverOptions, ObjectFunctions, Selector};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 31;
const BUDGET: Duration = Duration::from_millis(50);

fn generate(dir: &Path) -> Option<PathBuf> {
    let mut src = String::from("#include <stdio.h>\n");
    for i in 0..4000 {
        let _ = writeln!(
            src,
            "int app_module_fn_{i}(int x) {{ return x * {} + (x >> {}); }}",
            i + 3,
            i % 7 + 1
        );
    }
    for i in 0..1000 {
        let _ = writeln!(
            src,
            "static int app_static_fn_{i}(int x) {{ return (x ^ {}) - {}; }}",
            i + 11,
            i % 5
        );
    }
    src.push_str("static int (*const table[])(int) = {\n");
    for i in 0..1000 {
        let _ = writeln!(src, "  app_static_fn_{i},");
    }
    src.push_str("};\nint main(int argc, char **argv) {\n  (void)argv; int s = 0;\n");
    src.push_str(
        "  for (unsigned i = 0; i < sizeof table / sizeof *table; i++) s += table[i](argc);\n",
    );
    src.push_str("  printf(\"%d %d\\n\", s, app_module_fn_1(argc));\n  return 0;\n}\n");
    let c = dir.join("gen5000.c");
    std::fs::write(&c, src).ok()?;
    let out = dir.join("gen5000");
    let status = Command::new("gcc")
        .args(["-O2", "-g"])
        .arg(&c)
        .arg("-o")
        .arg(&out)
        .status()
        .ok()?;
    status.success().then_some(out)
}

struct Stats {
    median: Duration,
    min: Duration,
    candidates: usize,
    selected: usize,
}

fn measure(
    path: &Path,
    options: &DiscoverOptions,
    selector: &Selector,
    is_main: bool,
) -> Option<Stats> {
    let mut times = Vec::with_capacity(RUNS);
    let mut kept: Vec<ObjectFunctions> = Vec::with_capacity(RUNS);
    let mut selected = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let obj = match discover_with(path, options) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipping: {e}");
                return None;
            }
        };
        selected = selector.select(&obj, is_main).len();
        times.push(start.elapsed());
        kept.push(obj); // dropped after timing, as the agent keeps them
    }
    times.sort();
    Some(Stats {
        median: times[RUNS / 2],
        min: times[0],
        candidates: kept[0].candidates.len(),
        selected,
    })
}

fn row(label: &str, s: &Stats) {
    let verdict = if s.median <= BUDGET {
        "ok"
    } else {
        "OVER 50 ms"
    };
    println!(
        "| {label:<58} | {:>6} | {:>6} | {:>9.2} | {:>9.2} | {verdict} |",
        s.candidates,
        s.selected,
        s.median.as_secs_f64() * 1e3,
        s.min.as_secs_f64() * 1e3
    );
}

fn selector(modules: &[&str], include: &[&str], exclude: &[&str]) -> Selector {
    let mut settings = Settings::default();
    settings.target.modules = modules.iter().map(|s| s.to_string()).collect();
    settings.target.include = include.iter().map(|s| s.to_string()).collect();
    settings.target.exclude = exclude.iter().map(|s| s.to_string()).collect();
    Selector::new(&settings, None).expect("valid globs")
}

fn main() {
    // `cargo bench` passes `--bench`; anything else that is a file is measured too.
    let extra: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    let dir = std::env::temp_dir().join(format!("hotprobe-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let full = DiscoverOptions::default();
    let lean = DiscoverOptions::lean();

    println!("discover + select, {RUNS} runs each (ms)\n");
    println!(
        "| {:<58} | {:>6} | {:>6} | {:>9} | {:>9} | budget |",
        "object", "cands", "picked", "median", "min"
    );
    println!(
        "|{}|--------|--------|-----------|-----------|--------|",
        "-".repeat(60)
    );

    match generate(&dir) {
        Some(prog) => {
            let all = selector(&["main"], &["*"], &[]);
            let globs = selector(&["main"], &["app_*"], &["*_7*", "*static_fn_9??"]);
            if let Some(s) = measure(&prog, &full, &all, true) {
                row("generated C, 5,000 functions (gcc -O2 -g)", &s);
            }
            if let Some(s) = measure(&prog, &full, &globs, true) {
                row("  same, include/exclude globs", &s);
            }
            if let Some(s) = measure(&prog, &lean, &all, true) {
                row("  same, lean", &s);
            }
            let start = Instant::now();
            match listing::list(&prog, &[], &[]) {
                Ok(l) => {
                    let with_source = l.functions.iter().filter(|f| f.source.is_some()).count();
                    println!(
                        "\n`hotprobe list` of it with file:line for {with_source} functions (one run): {:.1} ms\n",
                        start.elapsed().as_secs_f64() * 1e3
                    );
                }
                Err(e) => eprintln!("list failed: {e}"),
            }
        }
        None => eprintln!("gcc not available: generated program skipped"),
    }

    let libs = selector(&["*"], &["*"], &[]);
    let mut objects: Vec<(String, PathBuf)> = vec![
        (
            "Debian libpython3.11.so.1.0 (.dynsym)".into(),
            "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0".into(),
        ),
        (
            "pyenv 3.11.7 libpython3.11.so.1.0 (.symtab)".into(),
            "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0".into(),
        ),
        (
            "libstdc++.so.6 (C++ names)".into(),
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6".into(),
        ),
    ];
    objects.extend(extra.into_iter().map(|p| (p.display().to_string(), p)));
    for (label, path) in objects {
        if !path.is_file() {
            eprintln!("not found, skipped: {}", path.display());
            continue;
        }
        if let Some(s) = measure(&path, &full, &libs, false) {
            row(&label, &s);
        }
        if let Some(s) = measure(&path, &lean, &libs, false) {
            row("  same, lean", &s);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! Writes fixture snapshots for trying the CLI and measuring it:
//! `cargo run --release -p hotprobe-cli --example fixtures -- DIR [SNAPSHOTS [PROBES]]`.
//! Without counts it writes the small server fixture; with them, SNAPSHOTS
//! large snapshots of PROBES probes each (distinct processes).

use hotprobe_cli::fixture;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fixtures DIR [SNAPSHOTS [PROBES]]");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).expect("create the directory");
    let snapshots: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let probes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    match snapshots {
        None => {
            fixture::write(
                &dir,
                "hotprobe-redis-server-4242.json",
                &fixture::server(4242),
            );
        }
        Some(n) => {
            for i in 0..n {
                let pid = 1000 + i as u32;
                fixture::write(
                    &dir,
                    &format!("hotprobe-big-{pid}.json"),
                    &fixture::large(pid, probes),
                );
            }
        }
    }
}

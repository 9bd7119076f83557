//! Quick timing of discovery alone:
//! `cargo run --release -p hotprobe-discover --example time -- [--lean] FILE...`
use hotprobe_discover::{discover_with, DiscoverOptions};
use std::time::{Duration, Instant};

fn main() {
    let mut options = DiscoverOptions::default();
    for a in std::env::args().skip(1) {
        if a == "--lean" {
            options = DiscoverOptions::lean();
            continue;
        }
        let p = std::path::Path::new(&a);
        let mut times: Vec<Duration> = Vec::new();
        let mut kept = Vec::new();
        let mut n = 0;
        for _ in 0..31 {
            let t = Instant::now();
            let o = discover_with(p, &options).expect("discover");
            times.push(t.elapsed());
            n = o.candidates.len();
            kept.push(o);
        }
        times.sort();
        println!(
            "{a}: {n} candidates, median {:?}, min {:?}",
            times[times.len() / 2],
            times[0]
        );
    }
}

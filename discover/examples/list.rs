//! `hotprobe list` without the CLI: `cargo run -p hotprobe-discover --example list -- FILE [--json] [--include G]… [--exclude G]…`
use std::io::Write;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut file, mut json, mut include, mut exclude) = (None, false, Vec::new(), Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--include" => include.extend(args.next()),
            "--exclude" => exclude.extend(args.next()),
            _ => file = Some(PathBuf::from(a)),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: list FILE [--json] [--include G]... [--exclude G]...");
        std::process::exit(2);
    };
    match hotprobe_discover::listing::list(&file, &include, &exclude) {
        // Errors writing (a closed pipe) end the listing quietly.
        Ok(l) if json => {
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&l.to_json()).unwrap_or_default()
            );
        }
        Ok(l) => {
            let _ = write!(std::io::stdout(), "{}", l.to_table());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

// A Rust host program with panics of its own, caught: the first goes
// through std's default hook (its message on stderr), the second through
// the host's own hook. The agent's hook must change neither.
use std::panic;

#[inline(never)]
fn work(n: u64) -> u64 {
    (0..n).map(|i| std::hint::black_box(i * 3)).sum()
}

fn main() {
    let first = panic::catch_unwind(|| {
        if work(10) > 0 {
            panic!("host panic one");
        }
    });
    println!("first caught: {}", first.is_err());
    panic::set_hook(Box::new(|info| {
        let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("?");
        eprintln!("host hook saw: {msg}");
    }));
    let second = panic::catch_unwind(|| {
        if work(20) > 0 {
            panic!("host panic two");
        }
    });
    println!("second caught: {}, work {}", second.is_err(), work(100));
}

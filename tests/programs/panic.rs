// Rust panics caught with catch_unwind, through probed frames.
use std::panic;

#[inline(never)]
fn deep(n: u32) -> u32 {
    if n == 0 {
        panic!("boom");
    }
    deep(n - 1) + std::hint::black_box(1)
}

#[inline(never)]
fn guarded(n: u32) -> Result<u32, ()> {
    panic::catch_unwind(|| deep(n)).map_err(|_| ())
}

#[inline(never)]
fn plain(x: u32) -> u32 {
    std::hint::black_box(x * 2)
}

fn main() {
    panic::set_hook(Box::new(|_| {}));
    let mut caught = 0;
    for _ in 0..50 {
        if guarded(5).is_err() {
            caught += 1;
        }
    }
    let mut s = 0;
    for i in 0..100 {
        s += plain(i);
    }
    println!("caught {caught} panics, sum {s}");
}

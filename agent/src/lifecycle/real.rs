//! Finding the real function behind one of our interposers: the next
//! definition after ours in the global lookup order (RTLD_NEXT), cached.

use core::sync::atomic::{AtomicUsize, Ordering};

pub struct Real {
    name: &'static [u8],
    addr: AtomicUsize,
}

impl Real {
    /// `name` must end with a NUL byte.
    pub const fn new(name: &'static [u8]) -> Real {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The real function's address, or 0 when no other object defines it.
    pub fn get(&self) -> usize {
        let a = self.addr.load(Ordering::Relaxed);
        if a != 0 {
            return a;
        }
        // SAFETY: name is NUL-terminated; RTLD_NEXT looks after our own object.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) } as usize;
        self.addr.store(found, Ordering::Relaxed);
        found
    }
}

/// Declares a cached real function: `real!(NAME, "symbol")`.
#[macro_export]
macro_rules! real {
    ($id:ident, $sym:literal) => {
        static $id: $crate::lifecycle::real::Real =
            $crate::lifecycle::real::Real::new(concat!($sym, "\0").as_bytes());
    };
}

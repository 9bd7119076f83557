//! Demangling for display and matching.
//!
//! * Rust (legacy `_ZN…17h<hash>E` and v0 `_R…`): `rustc-demangle` in its
//!   alternate form, i.e. **without** the trailing hash
//!   (`app::parse::number`, `<app::Point as core::fmt::Debug>::fmt`).
//! * C++ (`_Z…`): `cpp_demangle` with parameter types and without return
//!   types (`ns::f(int)`, `ns::max<int>(int, int)`), so `ns::*` globs match
//!   templates too. GCC clone suffixes stay visible
//!   (`f(int) [clone .constprop.0]`).
//! * Anything else is returned as is.
//!
//! Rust is tried first: a legacy Rust symbol is also valid C++ mangling, but
//! a C++ function symbol always has parameter types after its `E`, which
//! `rustc-demangle` refuses.

use cpp_demangle::{DemangleOptions, ParseOptions};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Demangled name of `symbol`, or `None` when it is not a Rust or C++
/// mangled name (or cannot be demangled).
pub fn demangle(symbol: &str) -> Option<String> {
    if symbol.starts_with("_R") || symbol.starts_with("_ZN") {
        if let Ok(d) = rustc_demangle::try_demangle(symbol) {
            // `{:#}` drops the hash. Written through `fmt::Write` so a
            // formatting error (rustc-demangle's size limit) is a `None`,
            // not the panic `format!` would make of it.
            let mut name = String::new();
            return write!(name, "{d:#}").is_ok().then_some(name);
        }
    }
    if symbol.starts_with("_Z") {
        return demangle_cpp(symbol);
    }
    None
}

/// `demangle(symbol)`, or the symbol itself.
pub fn display_name(symbol: &str) -> String {
    demangle(symbol).unwrap_or_else(|| symbol.to_string())
}

fn demangle_cpp(symbol: &str) -> Option<String> {
    // cpp_demangle has recursion limits against hostile input; the
    // catch_unwind is a second line of defence: a name is never worth a
    // panic in somebody else's process.
    catch_unwind(AssertUnwindSafe(|| {
        let parse = ParseOptions::default().recursion_limit(256);
        let sym = cpp_demangle::Symbol::new_with_options(symbol.as_bytes(), &parse).ok()?;
        let options = DemangleOptions::new().no_return_type().recursion_limit(256);
        let text = sym.demangle(&options).ok()?;
        (!text.is_empty()).then_some(text)
    }))
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpp() {
        assert_eq!(demangle("_Z1fi").as_deref(), Some("f(int)"));
        assert_eq!(demangle("_Z1fd").as_deref(), Some("f(double)"));
        assert_eq!(demangle("_ZN2ns3barEv").as_deref(), Some("ns::bar()"));
        assert_eq!(
            demangle("_ZN2ns4maxxIiEET_S1_S1_").as_deref(),
            Some("ns::maxx<int>(int, int)")
        );
        let clone = demangle("_Z1fi.constprop.0").unwrap();
        assert!(clone.starts_with("f(int)"), "{clone}");
    }

    #[test]
    fn rust_without_hash() {
        assert_eq!(
            demangle("_ZN4test4main17h0123456789abcdefE").as_deref(),
            Some("test::main")
        );
        assert_eq!(
            demangle("_RNvCs1234_7mycrate3foo").as_deref(),
            Some("mycrate::foo")
        );
    }

    #[test]
    fn plain_and_garbage() {
        assert_eq!(demangle("main"), None);
        assert_eq!(demangle("_Z"), None);
        assert_eq!(demangle("_ZZZZZZZZZZZZ"), None);
        assert_eq!(display_name("helper"), "helper");
        let deep = format!("_Z{}", "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP".repeat(200));
        let _ = demangle(&deep);
        let deep = format!("_ZN{}E", "1a".repeat(5000));
        let _ = demangle(&deep);
    }
}

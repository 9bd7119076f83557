//! Human units for times (ns, µs, ms, s) and counts, and their parsing
//! (`500ns`, `2us`, `2µs`, `1.5ms`, `3s`).

/// A duration in nanoseconds with three significant digits: `850 ns`,
/// `12.3 µs`, `1.05 ms`, `2.41 s`.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "-".into();
    }
    let neg = ns < 0.0;
    let a = ns.abs();
    let body = if a < 1e3 {
        if a == a.trunc() {
            format!("{a:.0} ns")
        } else {
            format!("{} ns", sig3(a))
        }
    } else if a < 1e6 {
        format!("{} µs", sig3(a / 1e3))
    } else if a < 1e9 {
        format!("{} ms", sig3(a / 1e6))
    } else if a < 1e12 {
        format!("{} s", sig3(a / 1e9))
    } else {
        format!("{:.0} s", a / 1e9)
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

pub fn fmt_ns_u(ns: u64) -> String {
    fmt_ns(ns as f64)
}

/// Three significant digits, trailing zeros kept for alignment (`1.50`).
fn sig3(v: f64) -> String {
    // Rounding may carry into the next unit's range (999.6 → "1000"); fine for display.
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed relative change: `+12.3%`, `-4.0%`, `+∞` when from zero.
pub fn fmt_pct(rel: f64) -> String {
    if rel.is_infinite() {
        return if rel > 0.0 {
            "+∞".into()
        } else {
            "-∞".into()
        };
    }
    if rel.is_nan() {
        return "-".into();
    }
    let p = rel * 100.0;
    if p.abs() >= 999.5 {
        format!("{p:+.0}%")
    } else {
        format!("{p:+.1}%")
    }
}

/// Parses a duration with a unit into nanoseconds: `500ns`, `2us`, `2µs`,
/// `1.5ms`, `3s`. A bare number is nanoseconds.
pub fn parse_duration_ns(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = split_unit(t)?;
    let v: f64 = num.trim().parse().ok()?;
    v.is_finite().then_some(v * scale)
}

/// Splits a number from its time unit; returns the scale to nanoseconds.
pub fn split_unit(t: &str) -> Option<(&str, f64)> {
    for (suffix, scale) in [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ] {
        if let Some(num) = t.strip_suffix(suffix) {
            return Some((num, scale));
        }
    }
    Some((t, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(fmt_ns(0.0), "0 ns");
        assert_eq!(fmt_ns(850.0), "850 ns");
        assert_eq!(fmt_ns(12.5), "12.5 ns");
        assert_eq!(fmt_ns(12_345.0), "12.3 µs");
        assert_eq!(fmt_ns(1_050_000.0), "1.05 ms");
        assert_eq!(fmt_ns(2_410_000_000.0), "2.41 s");
        assert_eq!(fmt_ns(-1500.0), "-1.50 µs");
        assert_eq!(fmt_ns(f64::NAN), "-");
    }

    #[test]
    fn formats_counts_and_pcts() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_pct(0.123), "+12.3%");
        assert_eq!(fmt_pct(-0.04), "-4.0%");
        assert_eq!(fmt_pct(f64::INFINITY), "+∞");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ns("500ns"), Some(500.0));
        assert_eq!(parse_duration_ns("2us"), Some(2000.0));
        assert_eq!(parse_duration_ns("2µs"), Some(2000.0));
        assert_eq!(parse_duration_ns("1.5ms"), Some(1.5e6));
        assert_eq!(parse_duration_ns("3s"), Some(3e9));
        assert_eq!(parse_duration_ns("42"), Some(42.0));
        assert_eq!(parse_duration_ns("x"), None);
    }
}

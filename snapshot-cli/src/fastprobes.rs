//! The fast path for the probe array: a strict parser for exactly the JSON
//! the agent writes (plain numbers, strings without escapes, known fields
//! once each). Anything else — an escape, a float, a duplicate field, a type
//! it does not expect — makes it give up (`None`), and the caller parses the
//! array with serde instead, which reads it or says what is wrong. So it can
//! only be faster, never different.

use crate::probetable::{ProbeFields, ProbeRow, ProbeTable, Span};
use crate::scan::value_end;
use hotprobe_config::snapshot::ProbeState;

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

// Each method works on a local copy of the index: the loops stay in
// registers instead of updating the cursor in memory per byte.
impl<'a> Cursor<'a> {
    #[inline]
    fn ws(&mut self) {
        self.i += crate::scan::skip_whitespace(&self.b[self.i.min(self.b.len())..]);
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The raw bytes of a string without escapes; `None` on an escape or a control character.
    #[inline]
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.b[self.i..];
        let n = crate::scan::string_special(rest)?;
        if rest[n] != b'"' {
            return None;
        }
        self.i += n + 1;
        Some(&rest[..n])
    }

    fn string_into(&mut self, text: &mut String) -> Option<Span> {
        let raw = self.plain_string()?;
        let s = std::str::from_utf8(raw).ok()?;
        let start = u32::try_from(text.len()).ok()?;
        text.push_str(s);
        Some(Span::new(start, s.len() as u32))
    }

    fn opt_string_into(&mut self, text: &mut String) -> Option<Option<Span>> {
        if self.null() {
            Some(None)
        } else {
            self.string_into(text).map(Some)
        }
    }

    #[inline]
    fn null(&mut self) -> bool {
        self.ws();
        if self.b.get(self.i..).is_some_and(|r| r.starts_with(b"null")) {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// A non-negative integer as JSON writes it (no leading zeros, no fraction or exponent).
    #[inline]
    fn u64(&mut self) -> Option<u64> {
        self.ws();
        let rest = &self.b[self.i..];
        let digits = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0
            || digits > 20
            || (digits > 1 && rest[0] == b'0')
            || matches!(rest.get(digits), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let mut v: u64 = 0;
        if digits < 20 {
            // Up to 19 digits cannot overflow a u64.
            for &d in &rest[..digits] {
                v = v * 10 + (d - b'0') as u64;
            }
        } else {
            for &d in &rest[..digits] {
                v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
            }
        }
        self.i += digits;
        Some(v)
    }

    fn i64(&mut self) -> Option<i64> {
        self.ws();
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
            let v = self.u64()?;
            return (v <= i64::MAX as u64).then(|| -(v as i64));
        }
        i64::try_from(self.u64()?).ok()
    }

    fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.null() {
            Some(None)
        } else {
            self.u64().map(Some)
        }
    }
}

/// Parses the probe array starting at `start`; returns the table and where the array ends.
pub fn parse_probes(bytes: &[u8], start: usize) -> Option<(ProbeTable, usize)> {
    let mut c = Cursor { b: bytes, i: start };
    let mut t = ProbeTable::default();
    let mut last_module = Span::default();
    c.eat(b'[')?;
    if c.peek()? == b']' {
        c.i += 1;
        return Some((t, c.i));
    }
    loop {
        let (row, fields) = record(&mut c, &mut t.text, &mut last_module)?;
        t.rows.push(row);
        t.present = t.present.both(fields);
        match c.peek()? {
            b',' => c.i += 1,
            b']' => {
                c.i += 1;
                break;
            }
            _ => return None,
        }
    }
    t.number_ordinals();
    Some((t, c.i))
}

/// Field names in the order the agent writes them: the next key is checked
/// against the expected one first.
const FIELDS: [&str; 19] = crate::probetable::FIELD_NAMES;

fn field_index(key: &[u8], expected: usize) -> usize {
    // Keys are short: an inline byte comparison beats a call to memcmp.
    let same = |f: &[u8]| f.len() == key.len() && f.iter().zip(key).all(|(a, b)| a == b);
    if FIELDS.get(expected).is_some_and(|f| same(f.as_bytes())) {
        return expected;
    }
    FIELDS
        .iter()
        .position(|f| f.as_bytes() == key)
        .unwrap_or(usize::MAX)
}

/// One probe object and the fields it had. `last_module` is the previous
/// probe's module: probes come grouped by module, so one copy of each module
/// path is kept.
fn record(
    c: &mut Cursor,
    text: &mut String,
    last_module: &mut Span,
) -> Option<(ProbeRow, ProbeFields)> {
    let mut p = ProbeRow::default();
    let mut seen: u32 = 0;
    let mut expected = 0;
    c.eat(b'{')?;
    if c.peek()? == b'}' {
        c.i += 1;
        return Some((p, ProbeFields::NONE));
    }
    loop {
        let key = c.plain_string()?;
        c.eat(b':')?;
        let index = field_index(key, expected);
        match index {
            0 => p.id = u32::try_from(c.u64()?).ok()?,
            1 => p.name = c.string_into(text)?,
            2 => p.symbol = c.string_into(text)?,
            3 => {
                let raw = c.plain_string()?;
                let prev = last_module.start() as usize;
                p.module = if !last_module.is_empty()
                    && text.as_bytes().get(prev..prev + last_module.len()) == Some(raw)
                {
                    *last_module
                } else {
                    let s = std::str::from_utf8(raw).ok()?;
                    let start = u32::try_from(text.len()).ok()?;
                    text.push_str(s);
                    *last_module = Span::new(start, s.len() as u32);
                    *last_module
                };
            }
            4 => p.offset = c.u64()?,
            5 => p.size = c.u64()?,
            6 => p.source = c.opt_string_into(text)?,
            7 => {
                p.state = match c.plain_string()? {
                    b"hot" => ProbeState::Hot,
                    b"active" => ProbeState::Active,
                    b"disabled" => ProbeState::Disabled,
                    b"rejected" => ProbeState::Rejected,
                    _ => return None,
                }
            }
            8 => p.reason = c.opt_string_into(text)?,
            9 => p.score = c.i64()?,
            10 => p.disabled_at_ns = c.opt_u64()?,
            11 => p.count = c.u64()?,
            12 => p.abandoned = c.u64()?,
            13 => p.in_flight = c.u64()?,
            14 => p.inclusive_ns = c.u64()?,
            15 => p.inherent_ns = c.u64()?,
            16 => p.max_inclusive_ns = c.u64()?,
            17 => p.p50_inclusive_ns = c.u64()?,
            18 => p.p99_inclusive_ns = c.u64()?,
            _ => {
                c.ws();
                c.i = value_end(c.b, c.i)?;
            }
        }
        let bit = if index < FIELDS.len() {
            expected = index + 1;
            index
        } else {
            31
        };
        if bit != 31 {
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
        }
        match c.peek()? {
            b',' => c.i += 1,
            b'}' => {
                c.i += 1;
                return Some((p, ProbeFields::from_bits(seen)));
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Records = (
        Vec<(hotprobe_config::snapshot::ProbeRecord, u32, bool)>,
        ProbeFields,
    );

    fn both(json: &str) -> (Option<Records>, Option<Records>) {
        let fast = parse_probes(json.as_bytes(), 0).map(|(t, end)| {
            assert_eq!(end, json.len());
            (t.to_records(), t.present)
        });
        (
            fast,
            serde_json::from_str::<ProbeTable>(json)
                .ok()
                .map(|t| (t.to_records(), t.present)),
        )
    }

    #[test]
    fn both_parsers_tell_which_fields_every_record_had() {
        let (fast, slow) = both(
            r#"[{"id": 1, "count": 3, "p50_inclusive_ns": 5, "future": 1}, {"id": 2, "count": 4}]"#,
        );
        assert_eq!(fast, slow);
        let present = fast.unwrap().1;
        assert!(present.has("id") && present.has("count"));
        assert!(!present.has("p50_inclusive_ns") && !present.has("name"));
        assert!(!present.has("future"), "unknown fields are not counted");
        let (fast, _) = both("[]");
        assert_eq!(fast.unwrap().1, ProbeFields::ALL);
        let s = crate::fixture::server(1);
        let (fast, slow) = both(&serde_json::to_string(&s.probes).unwrap());
        assert_eq!(fast.unwrap().1, ProbeFields::ALL);
        assert_eq!(slow.unwrap().1, ProbeFields::ALL);
    }

    #[test]
    fn agrees_with_serde_on_agent_output() {
        for s in [crate::fixture::server(3), crate::fixture::large(4, 500)] {
            for json in [
                serde_json::to_string(&s.probes).unwrap(),
                serde_json::to_string_pretty(&s.probes).unwrap(),
            ] {
                let (fast, slow) = both(&json);
                assert!(fast.is_some());
                assert_eq!(fast, slow);
            }
        }
        let (fast, slow) =
            both(r#"[{"count": 18446744073709551615, "offset": 9999999999999999999}]"#);
        assert!(fast.is_some());
        assert_eq!(fast, slow);
        let (fast, slow) = both("[]");
        assert_eq!(fast, slow);
        let (fast, slow) = both(
            r#"[{}, {"id": 1, "future": {"a": [1, "x"]}, "score": -5, "source": null, "disabled_at_ns": 7}]"#,
        );
        assert!(fast.is_some());
        assert_eq!(fast, slow);
    }

    #[test]
    fn gives_up_on_what_it_does_not_expect() {
        for json in [
            r#"[{"name": "a\"b"}]"#,
            r#"[{"count": 1.0}]"#,
            r#"[{"count": 1e3}]"#,
            r#"[{"count": 01}]"#,
            r#"[{"count": -1}]"#,
            r#"[{"count": 1, "count": 2}]"#,
            r#"[{"state": "warm"}]"#,
            r#"[{"name": null}]"#,
            r#"[{"id": 4294967296}]"#,
            r#"[{"count": 99999999999999999999}]"#,
            r#"[{"count": 18446744073709551616}]"#,
            r#"[{"id": 1}"#,
            r#"[{"id": 1},]"#,
        ] {
            assert!(parse_probes(json.as_bytes(), 0).is_none(), "{json}");
        }
        // Of those, serde reads the escaped string; the rest are errors.
        assert!(serde_json::from_str::<ProbeTable>(r#"[{"name": "a\"b"}]"#).is_ok());
    }
}

//! A fast structural scan of a JSON object's top level: where each member's
//! value starts and ends, without parsing it. `load` uses it to hand the
//! members a verb needs to serde and to step over the calling-context tree
//! and the edges (most of a big snapshot) at memory speed. The scan checks
//! only the structure (strings, brackets); a file it cannot scan is read the
//! slow, exact way, which names what is wrong.

use std::ops::Range;

/// The members of the top-level object: raw key bytes (escapes not
/// decoded) and the byte range of each value. `None` if `bytes` is not one
/// well-bracketed JSON object.
pub fn top_level_members(bytes: &[u8]) -> Option<Vec<(&[u8], Range<usize>)>> {
    let mut members = Vec::new();
    walk_top_level(bytes, |key, start| {
        let end = value_end(bytes, start)?;
        members.push((key, start..end));
        Some(Step::Read(end))
    })?;
    Some(members)
}

/// What the visitor of [`walk_top_level`] did with a member's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read it; it ends at this index.
    Read(usize),
    /// Step over it.
    Skip,
    /// Read it (ending at this index) and need nothing more: the rest of the
    /// object is only checked to end with `}`.
    ReadAndStop(usize),
}

/// Walks the members of the top-level object. `visit(key, start)` gets the
/// raw key and where its value starts and says what it did ([`Step`]);
/// `None` stops the walk, which then returns `None`.
pub fn walk_top_level<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(&'a [u8], usize) -> Option<Step>,
) -> Option<()> {
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    if bytes.get(i) == Some(&b'}') {
        return (skip_ws(bytes, i + 1) == bytes.len()).then_some(());
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(bytes, i + 1)?;
        let key = &bytes[i + 1..key_end - 1];
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(bytes, i + 1);
        let end = match visit(key, start)? {
            Step::Read(end) => end,
            Step::Skip => value_end(bytes, start)?,
            Step::ReadAndStop(end) => {
                let last = bytes
                    .iter()
                    .rposition(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))?;
                return (bytes[last] == b'}' && last >= end).then_some(());
            }
        };
        i = skip_ws(bytes, end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_ws(bytes, i + 1) == bytes.len()).then_some(())
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Eight bytes as a word (little-endian: byte 0 is the low byte).
#[inline]
fn word(s: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    u64::from_le_bytes(a)
}

/// High bit set in each byte of `v` equal to `c`. The lowest set bit is
/// exact (higher ones may be false after a match): only use the first.
#[inline]
fn eq_mask(v: u64, c: u8) -> u64 {
    let x = v ^ (LO * c as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// High bit set in exactly the bytes of `v` equal to `c` (no false positives).
#[inline]
fn eq_mask_exact(v: u64, c: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = v ^ (LO * c as u64);
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Index of the first byte of `s` that is not JSON whitespace (or `s.len()`).
#[inline]
pub fn skip_whitespace(s: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= s.len() {
        let v = word(&s[i..]);
        let ws = eq_mask_exact(v, b' ')
            | eq_mask_exact(v, b'\n')
            | eq_mask_exact(v, b'\r')
            | eq_mask_exact(v, b'\t');
        let other = !ws & HI;
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + s[i..]
        .iter()
        .position(|&c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        .unwrap_or(s.len() - i)
}

/// Index of the first `"`, `\` or control character in `s`: where a JSON
/// string's plain run ends. Eight bytes at a time.
#[inline]
pub fn string_special(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        let v = word(&s[i..]);
        let m = eq_mask(v, b'"') | eq_mask(v, b'\\') | (v.wrapping_sub(LO * 0x20) & !v & HI);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// Index of the first byte in `s` that matters to the bracket scan.
#[inline]
fn structural(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        let v = word(&s[i..]);
        let m = eq_mask(v, b'"')
            | eq_mask(v, b'{')
            | eq_mask(v, b'}')
            | eq_mask(v, b'[')
            | eq_mask(v, b']');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| SPECIAL[c as usize])
        .map(|p| i + p)
}

/// Bytes that matter to the bracket scan.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// `i` is just past an opening quote; returns the index just past the closing one.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += string_special(b.get(i..)?)?;
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1, // a raw control character: not JSON, but the exact reader says so
        }
    }
}

/// The index just past the value starting at `i`.
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i + 1),
        b'{' | b'[' => {
            let mut stack: Vec<u8> = Vec::new();
            let mut j = i;
            while j < b.len() {
                j += structural(&b[j..])?;
                match b[j] {
                    b'"' => {
                        j = string_end(b, j + 1)?;
                        continue;
                    }
                    c @ (b'{' | b'[') => stack.push(c),
                    c @ (b'}' | b']') => {
                        let open = stack.pop()?;
                        if (c == b'}') != (open == b'{') {
                            return None;
                        }
                        if stack.is_empty() {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Option<Vec<(String, String)>> {
        top_level_members(text.as_bytes()).map(|m| {
            m.into_iter()
                .map(|(k, r)| (String::from_utf8_lossy(k).into_owned(), text[r].to_string()))
                .collect()
        })
    }

    #[test]
    fn finds_members() {
        let m = keys(r#" { "a" : 1, "b":"x\"}", "c": {"d":[1,{"e":"]"}],"f":null}, "g":[[],{}] , "h": -2.5e3 } "#).unwrap();
        let want = [
            ("a", "1"),
            ("b", r#""x\"}""#),
            ("c", r#"{"d":[1,{"e":"]"}],"f":null}"#),
            ("g", "[[],{}]"),
            ("h", "-2.5e3"),
        ];
        assert_eq!(
            m,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(keys("{}").unwrap(), vec![]);
    }

    #[test]
    fn whitespace_skips_exactly() {
        assert_eq!(skip_whitespace(b"   \n\t  \r  x  "), 10);
        assert_eq!(skip_whitespace(b"x"), 0);
        assert_eq!(skip_whitespace(b"         "), 9);
        assert_eq!(skip_whitespace(b""), 0);
        assert_eq!(skip_whitespace(b"\n      \"id\""), 7);
        assert_eq!(skip_whitespace(&[b' ', 0xa0, b' ']), 1);
    }

    #[test]
    fn word_searches_find_the_first_match() {
        assert_eq!(string_special(b"abcdefghij\"k"), Some(10));
        assert_eq!(string_special(b"ab\\cdefghij\"k"), Some(2));
        assert_eq!(string_special(b"abcdefgh\x01"), Some(8));
        assert_eq!(string_special("é\"".as_bytes()), Some(2));
        assert_eq!(string_special(b"abcdefghijklmnop"), None);
        assert_eq!(structural(b"0123456789, ]"), Some(12));
        assert_eq!(structural(b"{"), Some(0));
        assert_eq!(structural(b"12345678"), None);
    }

    #[test]
    fn refuses_broken_structure() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a":1"#,
            r#"{"a":[1,2}"#,
            r#"{"a":{"b":1]}"#,
            r#"{"a":"x}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
        ] {
            assert!(keys(bad).is_none(), "{bad}");
        }
    }
}

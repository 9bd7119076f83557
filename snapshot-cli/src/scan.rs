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
        Some(Some(end))
    })?;
    Some(members)
}

/// Walks the members of the top-level object. `visit(key, start)` gets the
/// raw key and where its value starts; it returns `Some(Some(end))` when it
/// has read the value itself (ending at `end`), `Some(None)` to have it
/// stepped over, and `None` to stop the walk, which then returns `None`.
pub fn walk_top_level<'a>(bytes: &'a [u8], mut visit: impl FnMut(&'a [u8], usize) -> Option<Option<usize>>) -> Option<()> {
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
            Some(end) => end,
            None => value_end(bytes, start)?,
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
    // Keys and names are short: a plain loop beats a vectorised search here.
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// The index just past the value starting at `i`.
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i + 1),
        b'{' | b'[' => {
            let mut stack: Vec<u8> = Vec::new();
            let mut j = i;
            while j < b.len() {
                if !SPECIAL[b[j] as usize] {
                    j += 1;
                    continue;
                }
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
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
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
            m.into_iter().map(|(k, r)| (String::from_utf8_lossy(k).into_owned(), text[r].to_string())).collect()
        })
    }

    #[test]
    fn finds_members() {
        let m = keys(r#" { "a" : 1, "b":"x\"}", "c": {"d":[1,{"e":"]"}],"f":null}, "g":[[],{}] , "h": -2.5e3 } "#).unwrap();
        let want = [("a", "1"), ("b", r#""x\"}""#), ("c", r#"{"d":[1,{"e":"]"}],"f":null}"#), ("g", "[[],{}]"), ("h", "-2.5e3")];
        assert_eq!(m, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>());
        assert_eq!(keys("{}").unwrap(), vec![]);
    }

    #[test]
    fn refuses_broken_structure() {
        for bad in ["", "[]", "{", r#"{"a":1"#, r#"{"a":[1,2}"#, r#"{"a":{"b":1]}"#, r#"{"a":"x}"#, r#"{"a":1} x"#, r#"{"a" 1}"#, r#"{"a":}"#] {
            assert!(keys(bad).is_none(), "{bad}");
        }
    }
}

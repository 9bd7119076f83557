//! Comma-separated lists of globs as the contract defines them: a comma
//! inside `<…>` or `(…)` does not split (C++ names), and `\` escapes
//! `, * ? [ ] \`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Splits an environment-variable list. Escaped commas become plain commas;
/// escaped glob characters stay escaped so the glob matches them literally.
pub fn split_list(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth: i32 = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => current.push(','),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push_str("\\\\"),
            },
            '<' | '(' => {
                depth += 1;
                current.push(c);
            }
            '>' | ')' => {
                depth = (depth - 1).max(0);
                current.push(c);
            }
            ',' if depth == 0 => {
                push_trimmed(&mut items, &current);
                current.clear();
            }
            _ => current.push(c),
        }
    }
    push_trimmed(&mut items, &current);
    items
}

fn push_trimmed(items: &mut Vec<String>, item: &str) {
    let trimmed = item.trim();
    if !trimmed.is_empty() {
        items.push(trimmed.to_string());
    }
}

/// A compiled list of globs. `*` matches any characters, `/` included.
#[derive(Debug, Clone)]
pub struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl GlobList {
    pub fn new(patterns: &[String]) -> Result<GlobList, String> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("bad glob `{p}`: {}", e.kind()))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(GlobList {
            patterns: patterns.to_vec(),
            set,
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.set.is_match(text)
    }

    /// Index of every pattern that matches.
    pub fn matches(&self, text: &str) -> Vec<usize> {
        self.set.matches(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_top_level_commas_only() {
        assert_eq!(split_list("a, b ,c"), vec!["a", "b", "c"]);
        assert_eq!(
            split_list("foo(int, char),std::map<int, int>::at,x"),
            vec!["foo(int, char)", "std::map<int, int>::at", "x"]
        );
        assert_eq!(split_list(""), Vec::<String>::new());
        assert_eq!(split_list(" , ,"), Vec::<String>::new());
    }

    #[test]
    fn escapes() {
        assert_eq!(split_list(r"a\,b,c"), vec!["a,b", "c"]);
        assert_eq!(split_list(r"op\*"), vec![r"op\*"]);
        let g = GlobList::new(&split_list(r"operator\*")).unwrap();
        assert!(g.is_match("operator*"));
        assert!(!g.is_match("operator+"));
    }

    #[test]
    fn star_crosses_slashes_and_colons() {
        let g = GlobList::new(&["*libfoo*".to_string(), "ns::*".to_string()]).unwrap();
        assert!(g.is_match("/usr/lib/libfoo.so.1"));
        assert!(g.is_match("ns::a::b(int)"));
        assert!(!g.is_match("other"));
    }

    #[test]
    fn bad_glob_is_an_error() {
        assert!(GlobList::new(&["[abc".to_string()]).is_err());
    }
}

//! The snapshot path template: `{exe}`, `{pid}`, `{ts}` expand; a relative
//! path is resolved against the working directory at agent start.

use std::path::{Path, PathBuf};

pub fn expand(template: &str, exe_name: &str, pid: u32, unix_s: u64) -> String {
    template
        .replace("{exe}", exe_name)
        .replace("{pid}", &pid.to_string())
        .replace("{ts}", &unix_s.to_string())
}

/// Makes a relative template absolute against `cwd` (placeholders stay).
pub fn anchor(template: &str, cwd: &Path) -> PathBuf {
    let p = Path::new(template);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// `name.json` → `name.N.json` (or `name.N` without a .json suffix).
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let s = path.to_string_lossy();
    match s.strip_suffix(".json") {
        Some(stem) => PathBuf::from(format!("{stem}.{n}.json")),
        None => PathBuf::from(format!("{s}.{n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_numbers() {
        assert_eq!(
            expand("out/hp-{exe}-{pid}-{ts}.json", "redis", 42, 7),
            "out/hp-redis-42-7.json"
        );
        assert_eq!(
            numbered(Path::new("/a/b.json"), 2),
            PathBuf::from("/a/b.2.json")
        );
        assert_eq!(numbered(Path::new("/a/b"), 1), PathBuf::from("/a/b.1"));
        assert_eq!(
            anchor("x.json", Path::new("/w")),
            PathBuf::from("/w/x.json")
        );
        assert_eq!(anchor("/x.json", Path::new("/w")), PathBuf::from("/x.json"));
    }
}

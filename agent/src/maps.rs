//! /proc/self/maps: the process's mappings, to place trampolines near code.

#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub perms: String,
    pub offset: u64,
    pub path: String,
}

pub fn read() -> Vec<Mapping> {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut parts = line.splitn(6, ' ');
    let range = parts.next()?;
    let perms = parts.next()?.to_string();
    let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
    let _dev = parts.next()?;
    let _inode = parts.next()?;
    let path = parts.next().unwrap_or("").trim().to_string();
    let (lo, hi) = range.split_once('-')?;
    Some(Mapping {
        start: usize::from_str_radix(lo, 16).ok()?,
        end: usize::from_str_radix(hi, 16).ok()?,
        perms,
        offset,
        path,
    })
}

/// A free, page-aligned range of `len` bytes such that every address in
/// [lo, hi) is within `reach` of every address in it, nearest first.
pub fn free_range_near(lo: usize, hi: usize, len: usize, reach: usize) -> Option<usize> {
    let maps = read();
    let page = 4096;
    let min_start = hi.saturating_sub(reach).max(0x10000);
    let max_end = lo.saturating_add(reach);
    let mut best: Option<(usize, usize)> = None; // (distance, start)
    let mut consider = |gap_lo: usize, gap_hi: usize| {
        let gap_lo = gap_lo.max(min_start);
        let gap_hi = gap_hi.min(max_end);
        if gap_hi <= gap_lo || gap_hi - gap_lo < len + 2 * page {
            return;
        }
        // Leave a guard page on each side; prefer the end nearest the code.
        let below = (gap_hi - page - len) & !(page - 1);
        let above = (gap_lo + page + page - 1) & !(page - 1);
        for start in [below, above] {
            if start < gap_lo || start + len > gap_hi {
                continue;
            }
            let dist = if start >= hi {
                start + len - lo
            } else {
                hi - start
            };
            if best.is_none_or(|(d, _)| dist < d) {
                best = Some((dist, start));
            }
        }
    };
    let mut prev_end = 0x10000usize;
    for m in &maps {
        if m.start > prev_end {
            consider(prev_end, m.start);
        }
        prev_end = prev_end.max(m.end);
    }
    consider(prev_end, 0x7fff_ffff_f000);
    best.map(|(_, s)| s)
}

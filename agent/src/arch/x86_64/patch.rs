//! Live patching of function entries while other threads may run them.
//!
//! * One thread alive: plain writes.
//! * The 5 new bytes lie in one aligned 8-byte word: one atomic store of
//!   the whole word, so a thread fetches either the old or the new bytes.
//! * Otherwise the breakpoint-first protocol: `int3` on byte 0, sync, the
//!   other bytes, sync, byte 0. A thread that hits the `int3` meanwhile is
//!   sent to the probe's relocated prologue by our SIGTRAP handler (which
//!   passes other traps on to the program's own handler).
//!
//! "Sync" is `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)`, which makes every
//! core running this process serialise its instruction stream. Pages keep
//! PROT_EXEC throughout (a running thread would fault otherwise); where
//! write+exec is refused, writes go through /proc/self/mem. Patches are
//! batched so many probes cost a few syncs and mprotects.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub const JMP_LEN: usize = 5;

/// One entry patch: where, and the bytes before and after.
#[derive(Debug, Clone)]
pub struct Patch {
    pub site: usize,
    pub original: [u8; JMP_LEN],
    pub jump: [u8; JMP_LEN],
    /// Where a thread that hits our `int3` at `site` continues.
    pub resume: usize,
}

impl Patch {
    pub fn new(site: usize, trampoline: usize, resume: usize) -> Patch {
        let mut original = [0u8; JMP_LEN];
        // SAFETY: the site is mapped executable code of at least JMP_LEN bytes (checked by analysis).
        unsafe {
            core::ptr::copy_nonoverlapping(site as *const u8, original.as_mut_ptr(), JMP_LEN)
        };
        let rel = (trampoline as i64 - (site as i64 + JMP_LEN as i64)) as i32;
        let mut jump = [0xE9, 0, 0, 0, 0];
        jump[1..].copy_from_slice(&rel.to_le_bytes());
        Patch {
            site,
            original,
            jump,
            resume,
        }
    }

    fn fits_one_word(&self) -> bool {
        self.site % 8 + JMP_LEN <= 8
    }
}

/// Which way a batch goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Install,
    Remove,
}

static MEMBARRIER_READY: AtomicUsize = AtomicUsize::new(0); // 0 unknown, 1 yes, 2 no
static PATCH_LOCK: Mutex<()> = Mutex::new(());

/// Sites whose bytes are in transition, for the SIGTRAP handler: (site, resume).
const TRAPS: usize = 8192;
static TRAP_SITES: [AtomicUsize; TRAPS] = [const { AtomicUsize::new(0) }; TRAPS];
static TRAP_RESUME: [AtomicUsize; TRAPS] = [const { AtomicUsize::new(0) }; TRAPS];
static TRAPS_LIVE: AtomicUsize = AtomicUsize::new(0);
/// Calls that hit a breakpoint and were sent on: for the snapshot's curiosity.
pub static TRAPS_TAKEN: AtomicU64 = AtomicU64::new(0);

fn threads_alive() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(2)
}

/// Makes every core running this process serialise (after code changes).
pub fn sync_cores() {
    const CMD_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 1 << 5;
    const CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 1 << 6;
    if MEMBARRIER_READY.load(Ordering::Relaxed) == 0 {
        // SAFETY: membarrier with a command and flags 0 has no memory arguments.
        let ok = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
                0,
            )
        } == 0;
        MEMBARRIER_READY.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    }
    if MEMBARRIER_READY.load(Ordering::Relaxed) == 1 {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0) };
    } else {
        // An mprotect that changes a page's rights interrupts every core running this
        // process (TLB shootdown); returning from the interrupt serialises them.
        fallback_sync();
    }
}

fn fallback_sync() {
    let page = crate::engine::arena::map(4096, false);
    if page.is_null() {
        return;
    }
    // SAFETY: our own page.
    unsafe {
        libc::mprotect(page.cast(), 4096, libc::PROT_READ);
        libc::mprotect(page.cast(), 4096, libc::PROT_READ | libc::PROT_WRITE);
    }
    crate::engine::arena::unmap(page, 4096);
}

/// How bytes get into code pages.
enum Writer {
    /// The pages were made writable (and stay executable).
    Direct { pages: Vec<(usize, usize, i32)> },
    /// /proc/self/mem, when write+exec mappings are refused.
    ProcMem(std::fs::File),
}

impl Writer {
    fn open(sites: &[usize]) -> Result<Writer, String> {
        let mut ranges: Vec<(usize, usize)> = sites
            .iter()
            .map(|&s| (s & !4095, (s + JMP_LEN + 4095) & !4095))
            .collect();
        ranges.sort();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let maps = crate::maps::read();
        let mut pages = Vec::new();
        for (lo, hi) in merged {
            let prot = protection_of(&maps, lo);
            // SAFETY: the range covers mapped code pages; PROT_EXEC is kept.
            let rc = unsafe {
                libc::mprotect(
                    lo as *mut libc::c_void,
                    hi - lo,
                    prot | libc::PROT_WRITE | libc::PROT_EXEC,
                )
            };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                Self::restore(&pages);
                let refused = |e2: String| {
                    format!(
                        "code pages cannot be made writable ({err}) and /proc/self/mem cannot be written ({e2}): \
                         the system refuses live patching; use HOTPROBE_BACKEND=kernel"
                    )
                };
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/proc/self/mem")
                    .map_err(|e| refused(e.to_string()))?;
                // Rewrite a site's current bytes: proves writes go through before any patch starts.
                let first = sites.first().copied().unwrap_or(0);
                let mut current = [0u8; JMP_LEN];
                // SAFETY: the site is mapped, readable code.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        first as *const u8,
                        current.as_mut_ptr(),
                        JMP_LEN,
                    )
                };
                use std::os::unix::fs::FileExt;
                file.write_all_at(&current, first as u64)
                    .map_err(|e| refused(e.to_string()))?;
                return Ok(Writer::ProcMem(file));
            }
            pages.push((lo, hi, prot));
        }
        Ok(Writer::Direct { pages })
    }

    fn restore(pages: &[(usize, usize, i32)]) {
        for &(lo, hi, prot) in pages {
            // SAFETY: restores the rights these pages had.
            unsafe { libc::mprotect(lo as *mut libc::c_void, hi - lo, prot) };
        }
    }

    fn close(self) {
        if let Writer::Direct { pages } = self {
            Self::restore(&pages);
        }
    }

    /// Writes bytes at `addr`; an aligned 8-byte write is one atomic store when direct.
    fn write(&mut self, addr: usize, bytes: &[u8]) -> bool {
        match self {
            Writer::Direct { .. } => {
                if bytes.len() == 8 && addr % 8 == 0 {
                    let word = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
                    // SAFETY: addr is an aligned word of a page we made writable.
                    unsafe { (*(addr as *const AtomicU64)).store(word, Ordering::SeqCst) };
                } else {
                    for (i, &b) in bytes.iter().enumerate() {
                        // SAFETY: inside a page we made writable; single bytes are atomic.
                        unsafe { core::ptr::write_volatile((addr + i) as *mut u8, b) };
                    }
                }
                true
            }
            Writer::ProcMem(f) => {
                use std::os::unix::fs::FileExt;
                f.write_all_at(bytes, addr as u64).is_ok()
            }
        }
    }

    fn atomic_words(&self) -> bool {
        matches!(self, Writer::Direct { .. })
    }
}

fn protection_of(maps: &[crate::maps::Mapping], addr: usize) -> i32 {
    maps.iter()
        .find(|m| m.start <= addr && addr < m.end)
        .map(|m| {
            let b = m.perms.as_bytes();
            (if b.first() == Some(&b'r') {
                libc::PROT_READ
            } else {
                0
            }) | (if b.get(1) == Some(&b'w') {
                libc::PROT_WRITE
            } else {
                0
            }) | (if b.get(2) == Some(&b'x') {
                libc::PROT_EXEC
            } else {
                0
            })
        })
        .unwrap_or(libc::PROT_READ | libc::PROT_EXEC)
}

/// Applies (or takes back) a batch of patches. Returns the sites done.
/// A write that fails midway stops the batch with an error (the breakpoint
/// protocol first undoes its own `int3`s).
pub fn apply(patches: &[Patch], direction: Direction) -> Result<usize, String> {
    if patches.is_empty() {
        return Ok(0);
    }
    let _one_at_a_time = crate::state::lock(&PATCH_LOCK);
    let sites: Vec<usize> = patches.iter().map(|p| p.site).collect();
    let mut writer = Writer::open(&sites)?;
    let new = |p: &Patch| {
        if direction == Direction::Install {
            p.jump
        } else {
            p.original
        }
    };
    let failed = |writer: Writer| {
        writer.close();
        Err("a write to code failed midway; the remaining probes stay as they were".to_string())
    };
    if threads_alive() <= 1 {
        for p in patches {
            if !writer.write(p.site, &new(p)) {
                return failed(writer);
            }
        }
        writer.close();
        return Ok(patches.len());
    }
    let (atomic, rest): (Vec<&Patch>, Vec<&Patch>) = patches
        .iter()
        .partition(|p| p.fits_one_word() && writer.atomic_words());
    for p in &atomic {
        let word_addr = p.site & !7;
        let mut word = [0u8; 8];
        // SAFETY: an aligned readable word of code.
        unsafe { core::ptr::copy_nonoverlapping(word_addr as *const u8, word.as_mut_ptr(), 8) };
        let at = p.site - word_addr;
        word[at..at + JMP_LEN].copy_from_slice(&new(p));
        if !writer.write(word_addr, &word) {
            return failed(writer);
        }
    }
    for chunk in rest.chunks(TRAPS) {
        if !breakpoint_first(&mut writer, chunk, &new) {
            return failed(writer);
        }
    }
    crate::debug!(
        "{} {} patches with threads running: {} atomic stores, {} breakpoint-first",
        if direction == Direction::Install {
            "applied"
        } else {
            "removed"
        },
        patches.len(),
        atomic.len(),
        rest.len()
    );
    writer.close();
    sync_cores();
    Ok(patches.len())
}

fn breakpoint_first(
    writer: &mut Writer,
    patches: &[&Patch],
    new: &dyn Fn(&Patch) -> [u8; JMP_LEN],
) -> bool {
    super::cpu::install_trap_handler();
    for (i, p) in patches.iter().enumerate() {
        TRAP_RESUME[i].store(p.resume, Ordering::Relaxed);
        TRAP_SITES[i].store(p.site, Ordering::Release);
    }
    TRAPS_LIVE.store(patches.len(), Ordering::Release);
    let mut ok = true;
    let mut trapped = 0;
    for p in patches {
        if !writer.write(p.site, &[0xCC]) {
            ok = false;
            break;
        }
        trapped += 1;
    }
    sync_cores();
    if ok {
        for p in patches {
            ok &= writer.write(p.site + 1, &new(p)[1..]);
        }
        sync_cores();
    }
    // Byte 0 last: the new first byte, or (after a failure) the old one back.
    for p in &patches[..trapped] {
        let first = if ok {
            new(p)[0]
        } else {
            current_first_byte(p, new)
        };
        writer.write(p.site, &[first]);
    }
    sync_cores();
    TRAPS_LIVE.store(0, Ordering::Release);
    for s in TRAP_SITES.iter().take(patches.len()) {
        s.store(0, Ordering::Relaxed);
    }
    ok
}

/// The first byte a site had before this batch (the other of jump/original).
fn current_first_byte(p: &Patch, new: &dyn Fn(&Patch) -> [u8; JMP_LEN]) -> u8 {
    if new(p) == p.jump {
        p.original[0]
    } else {
        p.jump[0]
    }
}

/// Where a thread that trapped at `site` continues, if the trap is ours.
pub fn trap_resume(site: usize) -> Option<usize> {
    let live = TRAPS_LIVE.load(Ordering::Acquire);
    (0..live.min(TRAPS))
        .find(|&i| TRAP_SITES[i].load(Ordering::Relaxed) == site)
        .map(|i| TRAP_RESUME[i].load(Ordering::Relaxed))
}

//! The reader: drains the ring and replays each thread's calls into an
//! `External` (the same shadow stacks, statistics, contexts and score card
//! as inline).
//!
//! Ordering: all CPUs write into one ring in reservation order, and a
//! thread reserves its next record only after its previous one, so each
//! thread's records come out in the order it made them, whatever CPUs it
//! ran on. The reader stops at a record still being written and goes on
//! from there next time.
//!
//! Threads: a thread's `External` is created with its first record and
//! retired once the thread no longer exists (checked before each drain, so
//! all its records are in by then: its open calls close as abandoned, as
//! after `pthread_exit`). Thread ids reused before the check are taken for
//! the same thread.
//!
//! Compensation: every hit costs its thread time the program would not
//! have spent (~1 µs when the kernel emulates the instruction, ~4.6 µs when
//! it single-steps it, here). The reader keeps, per thread, the sum of the
//! costs of the hits so far and feeds `External` a virtual clock with that
//! sum taken out, so inclusive and inherent times come out as without
//! probes — nested calls included — and the score card sees the calls'
//! own times (see `calibrate`).

use super::exits::{self, Exit};
use super::flags::{self, FIRST_SITE};
use super::prog::{self, Objects, WIDE_BIT};
use super::ring::Ring;
use super::sys;
use crate::engine::external::External;
use crate::engine::probe::{Life, Probe};
use core::sync::atomic::Ordering;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::sync::Arc;

/// What a probe site is.
#[derive(Debug, Clone)]
pub enum Role {
    Entry,
    Exit(Exit),
}

/// One probe site (an entry or an exit instruction); its cookie is its index.
pub struct Site {
    pub probe: &'static Probe,
    pub role: Role,
    /// The object and the site's file offset, to attach again in a fork child.
    pub path: Arc<CString>,
    pub file_offset: u64,
    /// Nanoseconds a hit here costs its thread.
    pub cost: u64,
    /// Nanoseconds of that cost the virtual clock places before the
    /// record's timestamp (may be negative; see `calibrate`).
    pub shift: i64,
    /// Runtime ranges of the function (body and cold part), for indirect jumps.
    pub inside: Arc<[(u64, u64)]>,
}

impl Site {
    /// Whether its records carry every register (indirect jumps).
    pub fn wide(&self) -> bool {
        matches!(self.role, Role::Exit(Exit::Indirect(_)))
    }
}

/// One uprobe_multi link: sites of one object file.
pub struct Link {
    pub path: Arc<CString>,
    pub fd: i32,
}

struct Track {
    ext: External,
    /// Sum of the costs of this thread's hits so far (ns).
    overhead: u64,
    /// The last record's (site, generation, sp): a hit at a site that two
    /// links cover while one replaces the other can be recorded twice.
    last: (u32, u32, u64),
}

pub struct State {
    pub pid: u32,
    pub objects: Objects,
    pub ring: Ring,
    /// Site `FIRST_SITE + i` is `sites[i]`.
    pub sites: Vec<Site>,
    /// Each probe's sites (entry first): a range of site indices.
    pub probe_sites: HashMap<u32, core::ops::Range<u32>>,
    pub links: Vec<Link>,
    /// Disabled probes whose exit sites stay on until no call of theirs is open.
    pub closing: Vec<u32>,
    /// Sites were switched off since the links were made: they are
    /// replaced by links without them (the kernel then removes the breakpoints).
    pub dirty: bool,
    pub last_relink: u64,
    pub next_generation: u32,
    pub budget: super::open::Budget,
    pub costs: super::calibrate::Costs,
    threads: HashMap<i32, Track>,
    last_sweep: u64,
    last_rejected_check: u64,
}

impl State {
    pub fn new(pid: u32, objects: Objects, ring: Ring, budget: super::open::Budget) -> State {
        State {
            pid,
            objects,
            ring,
            sites: Vec::new(),
            probe_sites: HashMap::new(),
            links: Vec::new(),
            closing: Vec::new(),
            dirty: false,
            last_relink: 0,
            next_generation: 1, // 0 is the calibration's
            budget,
            costs: super::calibrate::Costs::none(),
            threads: HashMap::new(),
            last_sweep: 0,
            last_rejected_check: 0,
        }
    }

    /// A generation for new links.
    pub fn generation(&mut self) -> u32 {
        let g = self.next_generation;
        self.next_generation = (g + 1) % flags::GENERATIONS;
        g
    }

    /// The site at `index`.
    pub fn site(&self, index: u32) -> Option<&Site> {
        index
            .checked_sub(FIRST_SITE)
            .and_then(|i| self.sites.get(i as usize))
    }

    /// The reader's periodic round. Returns whether the links should be
    /// replaced (sites were switched off).
    pub fn round(&mut self) -> bool {
        let now = crate::sys::monotonic_ns();
        let dead = if now.saturating_sub(self.last_sweep) >= 100_000_000 {
            self.last_sweep = now;
            self.dead_threads()
        } else {
            Vec::new()
        };
        self.consume();
        self.retire(&dead);
        self.housekeeping(now)
    }

    /// Everything recorded so far, for a snapshot.
    pub fn drain_now(&mut self) -> bool {
        let dead = self.dead_threads();
        self.consume();
        self.retire(&dead);
        // Threads first seen in this drain may have ended already (a thread
        // that lived between two rounds): once the ring is empty all their
        // records are in, so they can be retired too.
        if self.ring.pending() == 0 {
            let dead = self.dead_threads();
            self.retire(&dead);
        }
        self.housekeeping(crate::sys::monotonic_ns())
    }

    /// Whether the ring is more than half full (the reader then goes on at once).
    pub fn backlogged(&self) -> bool {
        self.ring.pending() as usize > self.ring.size() / 2
    }

    fn dead_threads(&self) -> Vec<i32> {
        self.threads
            .keys()
            .copied()
            .filter(|&tid| !sys::thread_alive(tid))
            .collect()
    }

    fn retire(&mut self, tids: &[i32]) {
        for tid in tids {
            if let Some(t) = self.threads.remove(tid) {
                t.ext.retire();
            }
        }
    }

    fn consume(&mut self) {
        let State {
            ring,
            sites,
            threads,
            pid,
            ..
        } = self;
        let pid = *pid;
        let t0 = crate::sys::monotonic_ns();
        let n = ring.drain(|rec| apply(rec, pid, sites, threads));
        STAT_RECORDS.fetch_add(n as u64, Ordering::Relaxed);
        STAT_NS.fetch_add(crate::sys::monotonic_ns() - t0, Ordering::Relaxed);
    }

    /// Switches off the sites no longer needed; returns whether the links
    /// should be replaced now.
    fn housekeeping(&mut self, now: u64) -> bool {
        if !self.closing.is_empty() {
            let open = open_probes();
            let mut keep = Vec::new();
            for id in core::mem::take(&mut self.closing) {
                if open.contains(&id) {
                    keep.push(id);
                } else if let Some(range) = self.probe_sites.get(&id) {
                    range.clone().for_each(|i| self.objects.flags.off(i));
                    self.dirty = true;
                }
            }
            self.closing = keep;
        }
        if now.saturating_sub(self.last_rejected_check) >= 1_000_000_000 {
            self.last_rejected_check = now;
            // Probes of unloaded modules (dlclose) are rejected: their sites go.
            let all = crate::engine::probe::all();
            for (&id, range) in &self.probe_sites {
                if all
                    .get(id as usize)
                    .is_some_and(|p| p.life() == Life::Rejected)
                    && range.clone().any(|i| self.objects.flags.is_on(i))
                {
                    range.clone().for_each(|i| self.objects.flags.off(i));
                    self.dirty = true;
                }
            }
        }
        // Replacing links costs the kernel a grace period per old link, so
        // switched-off sites are gathered for a while first.
        self.dirty && now.saturating_sub(self.last_relink) >= RELINK_EVERY_NS
    }

    /// Every link descriptor, taken out (the image ends).
    pub fn take_links(&mut self) -> Vec<i32> {
        self.closing.clear();
        self.budget.give_back(self.links.len() as u64);
        self.links.drain(..).map(|l| l.fd).collect()
    }

    /// In a fork child: the parent's descriptors (copies here, cheap to
    /// close) and threads (their states were freed by the engine's fork
    /// handler) are forgotten. Returns the descriptors to close.
    pub fn forget_parent(&mut self) -> Vec<i32> {
        let mut fds = self.take_links();
        fds.extend([
            self.objects.ring,
            self.objects.lost,
            self.objects.prog,
            self.objects.flags.fd,
        ]);
        for (_, t) in self.threads.drain() {
            core::mem::forget(t.ext);
        }
        fds
    }
}

/// Probes with a call open on some thread.
fn open_probes() -> HashSet<u32> {
    let mut open = HashSet::new();
    crate::engine::thread::for_each(|t| {
        for sh in t.shadows() {
            for f in sh.live_frames() {
                // SAFETY: live frames of a registered thread point at leaked probes.
                open.insert(unsafe { (*(*f).probe).id });
            }
        }
    });
    open
}

pub static STAT_RECORDS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
pub static STAT_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How often links are replaced at most.
const RELINK_EVERY_NS: u64 = 200_000_000;

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Replays one record.
fn apply(rec: &[u8], pid: u32, sites: &[Site], threads: &mut HashMap<i32, Track>) {
    if rec.len() < prog::NARROW {
        return;
    }
    let cookie = u64_at(rec, 0);
    let pid_tgid = u64_at(rec, 8);
    if (pid_tgid >> 32) as u32 != pid {
        return;
    }
    let (index, generation) = flags::split(cookie);
    let Some(site) = index
        .checked_sub(FIRST_SITE)
        .and_then(|i| sites.get(i as usize))
    else {
        return;
    };
    let tid = pid_tgid as u32 as i32;
    let time = u64_at(rec, 16);
    let sp = u64_at(rec, 24);
    let track = match threads.entry(tid) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => match External::new(tid) {
            Some(ext) => v.insert(Track {
                ext,
                overhead: 0,
                last: (0, 0, 0),
            }),
            None => return,
        },
    };
    let last = core::mem::replace(&mut track.last, (index, generation, sp));
    if last.0 == index && last.2 == sp && last.1 != generation {
        return; // the same hit, recorded by the old and the new link
    }
    let closes = match &site.role {
        Role::Entry => None,
        Role::Exit(Exit::Always) => Some(true),
        Role::Exit(Exit::When(c)) => Some(exits::taken(*c, u64_at(rec, 32), u64_at(rec, 40))),
        Role::Exit(Exit::Indirect(op)) => {
            if rec.len() < prog::WIDE || cookie & WIDE_BIT == 0 {
                return;
            }
            let mut regs = [0u64; 16];
            for (i, r) in regs.iter_mut().enumerate() {
                *r = u64_at(rec, 40 + 8 * i);
            }
            let target = exits::indirect_target(op, &regs, sys::GPR_MASK);
            Some(target.is_some_and(|t| !site.inside.iter().any(|&(lo, hi)| lo <= t && t < hi)))
        }
    };
    let virtual_time = (time as i64 - track.overhead as i64 - site.shift).max(0) as u64;
    track.overhead += site.cost;
    match closes {
        None => {
            if site.probe.bypass.load(Ordering::Acquire) == 0 {
                track.ext.enter(site.probe, sp as usize, virtual_time);
            }
        }
        Some(true) => {
            track.ext.exit(sp as usize, virtual_time);
        }
        Some(false) => {}
    }
}

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
    pub fn cookie(&self, index: u32) -> u64 {
        let wide = matches!(self.role, Role::Exit(Exit::Indirect(_)));
        index as u64 | if wide { WIDE_BIT } else { 0 }
    }
}

/// The links of one probe.
#[derive(Default, Debug)]
pub struct ProbeLinks {
    pub entry: Option<i32>,
    pub exits: Option<i32>,
}

struct Track {
    ext: External,
    /// Sum of the costs of this thread's hits so far (ns).
    overhead: u64,
}

pub struct State {
    pub pid: u32,
    pub objects: Objects,
    pub ring: Ring,
    pub sites: Vec<Site>,
    pub links: HashMap<u32, ProbeLinks>,
    /// Disabled probes whose exit link stays until no call of theirs is open.
    pub closing: Vec<u32>,
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
            links: HashMap::new(),
            closing: Vec::new(),
            budget,
            costs: super::calibrate::Costs::none(),
            threads: HashMap::new(),
            last_sweep: 0,
            last_rejected_check: 0,
        }
    }

    /// The reader's periodic round. Returns descriptors to close (off the lock).
    pub fn round(&mut self) -> Vec<i32> {
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
    pub fn drain_now(&mut self) -> Vec<i32> {
        let dead = self.dead_threads();
        self.consume();
        self.retire(&dead);
        self.housekeeping(crate::sys::monotonic_ns())
    }

    /// Whether the ring is more than half full (the reader then goes on at once).
    pub fn backlogged(&self) -> bool {
        self.ring.pending() as usize > self.ring.size() / 2
    }

    fn dead_threads(&self) -> Vec<i32> {
        self.threads.keys().copied().filter(|&tid| !sys::thread_alive(tid)).collect()
    }

    fn retire(&mut self, tids: &[i32]) {
        for tid in tids {
            if let Some(t) = self.threads.remove(tid) {
                t.ext.retire();
            }
        }
    }

    fn consume(&mut self) {
        let State { ring, sites, threads, pid, .. } = self;
        let pid = *pid;
        ring.drain(|rec| apply(rec, pid, sites, threads));
    }

    /// Closes what is no longer needed; returns descriptors to close.
    fn housekeeping(&mut self, now: u64) -> Vec<i32> {
        let mut to_close = Vec::new();
        if !self.closing.is_empty() {
            let open = open_probes();
            let mut keep = Vec::new();
            for id in core::mem::take(&mut self.closing) {
                if open.contains(&id) {
                    keep.push(id);
                } else if let Some(fd) = self.links.get_mut(&id).and_then(|l| l.exits.take()) {
                    to_close.push(fd);
                }
            }
            self.closing = keep;
        }
        if now.saturating_sub(self.last_rejected_check) >= 1_000_000_000 {
            self.last_rejected_check = now;
            // Probes of unloaded modules (dlclose) are rejected: their links go.
            let all = crate::engine::probe::all();
            for (&id, l) in self.links.iter_mut() {
                if all.get(id as usize).is_some_and(|p| p.life() == Life::Rejected) {
                    to_close.extend(l.entry.take());
                    to_close.extend(l.exits.take());
                }
            }
        }
        self.budget.give_back(to_close.len() as u64);
        to_close
    }

    /// Every link descriptor, taken out (the image ends).
    pub fn take_links(&mut self) -> Vec<i32> {
        let mut fds = Vec::new();
        for (_, l) in self.links.drain() {
            fds.extend(l.entry);
            fds.extend(l.exits);
        }
        self.closing.clear();
        fds
    }

    /// In a fork child: the parent's descriptors (copies here, cheap to
    /// close) and threads (their states were freed by the engine's fork
    /// handler) are forgotten. Returns the descriptors to close.
    pub fn forget_parent(&mut self) -> Vec<i32> {
        let mut fds = self.take_links();
        fds.extend([self.objects.ring, self.objects.lost, self.objects.prog]);
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

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
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
    let Some(site) = sites.get((cookie & 0xffff_ffff) as usize) else { return };
    let tid = pid_tgid as u32 as i32;
    let time = u64_at(rec, 16);
    let sp = u64_at(rec, 24);
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
    let track = match threads.entry(tid) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => match External::new(tid) {
            Some(ext) => v.insert(Track { ext, overhead: 0 }),
            None => return,
        },
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

//! Attaching sites with uprobe_multi links, and replacing links once sites
//! were switched off.
//!
//! Sites are attached in groups: one link per object file and generation
//! (when the kernel refuses a group, it is halved until the probe it
//! refuses is found and rejected with the reason). A disabled probe's
//! sites are switched off at once (`flags`); every 200 ms at most, the
//! closer thread replaces the links that cover switched-off sites with
//! links of a new generation over the sites still on, moves those sites to
//! the new generation, and closes the old links: the kernel then removes
//! the breakpoints of the disabled probes.

use super::flags;
use super::reader::{Link, Site, State};
use super::sys;
use crate::engine::probe::Probe;
use std::ffi::CString;
use std::sync::Arc;

/// A probe's sites: site indices, entry first.
pub struct Group {
    pub probe: &'static Probe,
    pub sites: core::ops::Range<u32>,
}

/// Offsets and cookies of `groups`' sites: exits first, so that a call
/// entered while the link is being made finds its exits armed.
fn offsets_and_cookies(sites: &[Site], groups: &[Group], generation: u32) -> (Vec<u64>, Vec<u64>) {
    let mut exits = (Vec::new(), Vec::new());
    let mut entries = (Vec::new(), Vec::new());
    for g in groups {
        for (n, i) in g.sites.clone().enumerate() {
            let Some(site) = sites.get((i - flags::FIRST_SITE) as usize) else {
                continue;
            };
            let to = if n == 0 { &mut entries } else { &mut exits };
            to.0.push(site.file_offset);
            to.1.push(flags::cookie(i, generation, site.wide()));
        }
    }
    exits.0.extend(entries.0);
    exits.1.extend(entries.1);
    exits
}

/// Attaches `groups` (sites of the object `path`) in as few links as the
/// kernel accepts, with cookies of `generation`. Returns the links made and
/// the probes refused, with why.
pub fn attach(
    st: &mut State,
    path: &Arc<CString>,
    groups: &[Group],
    generation: u32,
) -> (Vec<Link>, Vec<(&'static Probe, String)>) {
    let mut links = Vec::new();
    let mut refused = Vec::new();
    attach_halving(st, path, groups, generation, &mut links, &mut refused);
    (links, refused)
}

fn attach_halving(
    st: &mut State,
    path: &Arc<CString>,
    groups: &[Group],
    generation: u32,
    links: &mut Vec<Link>,
    refused: &mut Vec<(&'static Probe, String)>,
) {
    if groups.is_empty() {
        return;
    }
    if !st.budget.take(1) {
        let (_, hard) = super::open::nofile();
        for g in groups {
            refused.push((g.probe, format!("not probed: RLIMIT_NOFILE (hard limit {hard}) leaves no descriptor for another uprobe link")));
        }
        return;
    }
    let (offsets, cookies) = offsets_and_cookies(&st.sites, groups, generation);
    match sys::uprobe_multi(st.objects.prog, path, &offsets, &cookies, st.pid) {
        Ok(fd) => links.push(Link {
            path: path.clone(),
            fd: super::open::move_fd(fd, st.budget.floor),
        }),
        Err(e) => {
            st.budget.give_back(1);
            if groups.len() == 1
                || matches!(
                    e,
                    libc::EMFILE | libc::ENFILE | libc::EPERM | libc::EACCES | libc::ENOMEM
                )
            {
                for g in groups {
                    refused.push((g.probe, sys::describe_attach_error(e)));
                }
                return;
            }
            let (a, b) = groups.split_at(groups.len() / 2);
            attach_halving(st, path, a, generation, links, refused);
            attach_halving(st, path, b, generation, links, refused);
        }
    }
}

/// Replaces the links (on the closer thread): see the module comment.
pub fn relink() {
    let t0 = crate::sys::monotonic_ns();
    let Some((generation, plan, old)) = prepare() else {
        return;
    };
    let sites: usize = plan.iter().map(|p| p.1.len()).sum();
    // The sites' new links, per object file, made without the lock (the
    // reader goes on draining): their hits are not recorded until the
    // sites move to the new generation below.
    let mut made: Vec<(Arc<CString>, Option<i32>, Vec<u32>)> = Vec::new();
    for (path, indices, offsets, cookies) in plan {
        let pid = crate::sys::getpid();
        let prog = match super::STATE.lock().as_ref() {
            Some(st) => st.objects.prog,
            None => return,
        };
        let fd = if offsets.is_empty() {
            None
        } else {
            sys::uprobe_multi(prog, &path, &offsets, &cookies, pid).ok()
        };
        made.push((path, fd, indices));
    }
    let mut to_close = Vec::new();
    {
        let mut g = super::STATE.lock();
        let Some(st) = g.as_mut() else {
            drop(g);
            super::closer::close_now(made.iter().filter_map(|m| m.1).collect());
            return;
        };
        let floor = st.budget.floor;
        for (path, fd, indices) in made {
            let empty = indices.is_empty();
            if fd.is_none() && !empty {
                st.dirty = true; // the kernel refused: keep the old links, try again later
                continue;
            }
            for &i in &indices {
                st.objects.flags.move_to(i, generation);
            }
            // The old links of this object go.
            let (gone, kept): (Vec<Link>, Vec<Link>) = core::mem::take(&mut st.links)
                .into_iter()
                .partition(|l| l.path == path && old.contains(&l.fd));
            st.links = kept;
            to_close.extend(gone.into_iter().map(|l| l.fd));
            if let Some(fd) = fd {
                st.links.push(Link {
                    path,
                    fd: super::open::move_fd(fd, floor),
                });
                st.budget.held += 1;
            }
        }
        st.budget.give_back(to_close.len() as u64);
    }
    let t1 = crate::sys::monotonic_ns();
    let closed = to_close.len();
    super::closer::close_now(to_close);
    crate::debug!(
        "kernel backend: {sites} sites on in {} new links ({:.1} ms); {closed} old links closed ({:.1} ms)",
        plan_links(generation),
        (t1 - t0) as f64 / 1e6,
        (crate::sys::monotonic_ns() - t1) as f64 / 1e6
    );
}

fn plan_links(_generation: u32) -> usize {
    super::STATE.lock().as_ref().map_or(0, |st| st.links.len())
}

type Plan = Vec<(Arc<CString>, Vec<u32>, Vec<u64>, Vec<u64>)>;

/// Under the lock: the new generation, per object file the sites still on
/// (indices, offsets, cookies), and the links to replace.
fn prepare() -> Option<(u32, Plan, Vec<i32>)> {
    let mut g = super::STATE.lock();
    let st = g.as_mut()?;
    if !st.dirty {
        return None;
    }
    st.dirty = false;
    st.last_relink = crate::sys::monotonic_ns();
    let generation = st.generation();
    let old: Vec<i32> = st.links.iter().map(|l| l.fd).collect();
    let mut plan: Plan = Vec::new();
    for l in &st.links {
        if !plan.iter().any(|p| p.0 == l.path) {
            plan.push((l.path.clone(), Vec::new(), Vec::new(), Vec::new()));
        }
    }
    for (n, site) in st.sites.iter().enumerate() {
        let index = flags::FIRST_SITE + n as u32;
        if !st.objects.flags.is_on(index) {
            continue;
        }
        if let Some(p) = plan.iter_mut().find(|p| p.0 == site.path) {
            p.1.push(index);
            p.2.push(site.file_offset);
            p.3.push(flags::cookie(index, generation, site.wide()));
        }
    }
    Some((generation, plan, old))
}

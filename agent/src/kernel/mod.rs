//! The kernel backend (`HOTPROBE_BACKEND=kernel`): uprobes on function
//! entries and exit instructions, read back by an agent thread and fed to
//! the same metering as the inline engine (engine::external).
//!
//! Mechanism: a BPF program attached with `uprobe_multi` links (Linux 6.6+)
//! writes one record per hit into a BPF ring buffer. Per-event perf uprobes
//! were measured first and dropped (bench/kernel/README.md): the kernel
//! spends ~90 ms tearing down each perf uprobe event, one at a time under a
//! global mutex, and inherited events are torn down again at every thread
//! exit (a thread with 10 inherited events took 0.8 s to join). A
//! uprobe_multi link filters by process (every thread, those created later
//! included, fork children not), needs one descriptor for any number of
//! sites, and concurrent link closes share the kernel's grace period.
//!
//! * `sys`: the bpf system call and capabilities; `prog`: the BPF program
//!   and its maps; `flags`: the per-site switches; `links`: attaching and
//!   replacing links; `ring`: reading the ring; `open`: descriptors;
//!   `exits`: where functions end; `calibrate`: what a hit costs;
//!   `closer`: closing links off the hot threads; `reader`: replaying calls.
//! * Sites (each probe's entry and exits) are attached in one link per
//!   object file and generation. Disabling a probe switches its entry off
//!   at once and its exits once no call of it is open; the links are then
//!   replaced by links without those sites (the kernel removes the
//!   breakpoints), at most every 200 ms.
//! * Fork: the child is a new image. Its atfork handler drops the parent's
//!   descriptors (copies, cheap to close), creates its own ring, program,
//!   switches and links for the sites still on, and starts its own reader. Calls
//!   the child makes inside `fork()` before that are not seen.
//! * Exec and exit: the image's last snapshot closes its links; a failed
//!   exec leaves the image unprobed from there on.
//! * Without CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) the program runs
//!   unprobed, one line says what is missing, and the snapshot's
//!   `agent.problem` says why.

pub mod calibrate;
pub mod closer;
pub mod exits;
pub mod flags;
pub mod links;
pub mod open;
pub mod prog;
pub mod reader;
pub mod ring;
pub mod sys;

use crate::engine::probe::{Life, Probe};
use crate::install::Loaded;
use crate::spin_lock::SpinLock;
use crate::state::Agent;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use hotprobe_discover::{ExcludeReason, ObjectFunctions};
use reader::{Role, Site, State};
use std::ffi::CString;
use std::sync::Arc;

static STATE: SpinLock<Option<State>> = SpinLock::new(None);
static RUNNING: AtomicBool = AtomicBool::new(false);
static GENERATION: AtomicI32 = AtomicI32::new(0);
static READER_TID: AtomicI32 = AtomicI32::new(0);
static FORK_LOCKED: AtomicBool = AtomicBool::new(false);
static ATFORK: std::sync::Once = std::sync::Once::new();
static DRAIN_MS: AtomicU64 = AtomicU64::new(10);
static RING_BYTES: AtomicU64 = AtomicU64::new(1 << 20);
/// Drops counted before this image's ring was replaced (never: kept for clarity of `lost_records`).
static LOST_BEFORE: AtomicU64 = AtomicU64::new(0);

/// Whether the kernel backend probes this image.
pub fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Spawns an agent thread: all signals blocked, not wrapped by the
/// program-thread hook, not probed.
pub fn agent_thread<F: FnOnce() + Send + 'static>(
    name: &str,
    f: F,
) -> Option<std::thread::JoinHandle<()>> {
    // SAFETY: plain signal-mask calls on sets we own.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        crate::worker::SPAWNING.store(true, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 << 10)
            .spawn(f);
        crate::worker::SPAWNING.store(false, Ordering::Relaxed);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        spawned.ok()
    }
}

/// Installs the kernel probes of the selected functions and starts the reader.
pub fn start(agent: &'static Agent) -> Result<(), String> {
    let t0 = crate::sys::monotonic_ns();
    if let Some(missing) = sys::missing_capabilities() {
        return Err(sys::refusal(&missing));
    }
    DRAIN_MS.store(agent.settings.kernel.drain_ms.max(1), Ordering::Relaxed);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    RING_BYTES.store(
        agent.settings.kernel.ring_pages.max(1) * 4096 * cpus,
        Ordering::Relaxed,
    );
    closer::start();
    let mut state = open_state()?;
    match calibrate::run(&state.objects, &mut state.ring) {
        Ok(costs) => state.costs = costs,
        Err(calibrate::Failure::Refused(why)) => {
            state.objects.close();
            return Err(why);
        }
        Err(calibrate::Failure::Unmeasured(why)) => {
            crate::warn!("{why}; kernel-probe times are not compensated")
        }
    }
    raise_thresholds(&state.costs, &agent.settings);
    let ring_kib = state.ring.size() / 1024;
    *STATE.lock() = Some(state);
    RUNNING.store(true, Ordering::Release);
    ATFORK.call_once(|| {
        // SAFETY: the handlers are plain extern "C" fns.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    });
    let (installed, rejected) = crate::install::probe_new_objects(agent);
    crate::install::warn_unmatched_probe_set();
    if rejected > 0 {
        crate::warn!("{rejected} functions not probed; their reasons are in the snapshot and `hotprobe list`");
    }
    let ms = (crate::sys::monotonic_ns() - t0) as f64 / 1e6;
    crate::info!("{installed} probes installed in {ms:.1} ms (kernel backend: BPF uprobe_multi, ring of {ring_kib} KiB)");
    spawn_reader();
    Ok(())
}

/// A kernel-probed call costs its thread µs (two traps), and how much varies
/// with load by a good fraction of that: a call shorter than its probe's
/// cost cannot be told from a cold one. So the default score-card
/// thresholds are raised to at least the calibrated cost of a call
/// (inclusive) and a quarter of it (inherent). A threshold the user set in
/// the file or environment is theirs and is kept, low or not. The raise is
/// a warning, not info: the score card then decides on other numbers than
/// the settings say. The snapshot's `config.hotspot` shows those in force.
fn raise_thresholds(costs: &calibrate::Costs, settings: &hotprobe_config::Settings) {
    let per_call_us = (costs.emulated.max(costs.stepped) + costs.ret) as f64 / 1000.0;
    let per_call_us = if costs.measured { per_call_us } else { 8.0 };
    let explicit = |key: &str| {
        settings
            .origins
            .get(key)
            .is_some_and(|o| *o != hotprobe_config::Origin::Default)
    };
    let (inclusive_set, inherent_set) = (explicit(INCLUSIVE_KEY), explicit(INHERENT_KEY));
    if inclusive_set || inherent_set {
        crate::info!(
            "kernel backend: the score-card thresholds set in the configuration are kept, though a kernel-probed call costs {per_call_us:.2} µs"
        );
    }
    let (inclusive, inherent) = raise_targets(per_call_us, inclusive_set, inherent_set);
    if let Some((before, after)) = crate::adaptive::score_card::raise_to(inclusive, inherent) {
        let (what, keys) = describe_raise(before, after);
        crate::warn!(
            "kernel backend: {what} (inclusive/inherent), the calibrated cost of a kernel-probed call ({per_call_us:.2} µs): shorter calls cannot be told from cold ones; to keep your own, set {keys} in the TOML file (HOTPROBE_CONFIG)"
        );
    }
}

const INCLUSIVE_KEY: &str = "hotspot.threshold_us";
const INHERENT_KEY: &str = "hotspot.inherent_threshold_us";

/// The floors `score_card::raise_to` gets: the call's cost and a quarter of
/// it, or 0 (no raise) for a threshold the user set.
fn raise_targets(per_call_us: f64, inclusive_set: bool, inherent_set: bool) -> (f64, f64) {
    (
        if inclusive_set { 0.0 } else { per_call_us },
        if inherent_set { 0.0 } else { per_call_us / 4.0 },
    )
}

/// What was raised (`before` → `after`, µs) and the keys that would keep it.
fn describe_raise(before: (f64, f64), after: (f64, f64)) -> (String, String) {
    let what = format!(
        "score-card thresholds raised from {:.2}/{:.2} µs to {:.2}/{:.2} µs",
        before.0, before.1, after.0, after.1
    );
    let keys: Vec<String> = [
        (before.0 != after.0, INCLUSIVE_KEY),
        (before.1 != after.1, INHERENT_KEY),
    ]
    .iter()
    .filter(|(raised, _)| *raised)
    .map(|(_, key)| {
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        format!("[{section}] {name}")
    })
    .collect();
    (what, keys.join(" and "))
}

/// The ring, program and drop counter of this image.
fn open_state() -> Result<State, String> {
    let mut budget = open::Budget::new();
    // Room first (ring, drop counter, site switches, program): a floor at
    // or above the soft limit takes no descriptor until the limit is raised.
    budget.take(4);
    let objects = prog::create(RING_BYTES.load(Ordering::Relaxed) as usize, budget.floor)
        .map_err(|(_, why)| why)?;
    let ring = match ring::Ring::map(objects.ring, objects.ring_size) {
        Ok(r) => r,
        Err(e) => {
            objects.close();
            return Err(e);
        }
    };
    Ok(State::new(crate::sys::getpid(), objects, ring, budget))
}

/// A planned probe: its sites, entry first: (role, file offset, emulated).
struct Plan {
    probe: &'static Probe,
    sites: Vec<(Role, u64, bool)>,
    inside: Arc<[(u64, u64)]>,
}

/// The `.cold` parts of `symbol` in `found`.
fn cold_parts<'a>(
    found: &'a ObjectFunctions,
    symbol: &str,
) -> impl Iterator<Item = &'a hotprobe_discover::Function> + 'a {
    let prefix = format!("{symbol}.cold");
    found
        .excluded
        .iter()
        .filter(move |e| {
            e.reason == ExcludeReason::ColdPart && e.function.symbol.starts_with(&prefix)
        })
        .map(|e| &e.function)
}

fn plan(
    probe: &'static Probe,
    code: &[u8],
    obj: &Loaded,
    found: &ObjectFunctions,
) -> Result<Plan, String> {
    if probe.meta.size == 0 {
        return Err("size unknown: its exit instructions cannot be found".into());
    }
    let mut parts = vec![exits::Part {
        code,
        address: probe.meta.address as u64,
        file_offset: probe.meta.offset,
    }];
    for cold in cold_parts(found, &probe.meta.symbol) {
        let address = obj.bias + cold.address as usize;
        let end = address + cold.size as usize;
        if cold.size > 0 && obj.code.iter().any(|&(lo, hi)| lo <= address && end <= hi) {
            // SAFETY: [address, end) lies in an executable, readable segment of the object (checked above).
            let code =
                unsafe { core::slice::from_raw_parts(address as *const u8, cold.size as usize) };
            parts.push(exits::Part {
                code,
                address: address as u64,
                file_offset: cold.offset,
            });
        }
    }
    let specs = exits::plan(&parts)?;
    let inside: Arc<[(u64, u64)]> = parts
        .iter()
        .map(|p| (p.address, p.address + p.code.len() as u64))
        .collect();
    let mut sites = vec![(
        Role::Entry,
        probe.meta.offset,
        exits::entry_is_emulated(code, probe.meta.address as u64),
    )];
    sites.extend(
        specs
            .into_iter()
            .map(|s| (Role::Exit(s.exit), s.file_offset, s.emulated)),
    );
    Ok(Plan {
        probe,
        sites,
        inside,
    })
}

/// Probes `ready` (from `install::install_object`) with uprobe links;
/// rejects what cannot be probed. Returns how many were installed.
pub fn install(ready: &[(&'static Probe, &[u8])], obj: &Loaded, found: &ObjectFunctions) -> usize {
    let path = CString::new(obj.path.to_string_lossy().as_bytes())
        .ok()
        .map(Arc::new);
    let (Some(path), true) = (path, is_running()) else {
        for (p, _) in ready {
            p.reject("the kernel backend is not running".into());
        }
        return 0;
    };
    let plans: Vec<Plan> = ready
        .iter()
        .filter_map(|&(p, code)| match plan(p, code, obj, found) {
            Ok(pl) => Some(pl),
            Err(e) => {
                p.reject(e);
                None
            }
        })
        .collect();
    let mut g = STATE.lock();
    let Some(st) = g.as_mut() else { return 0 };
    let groups = register(st, &path, plans, None);
    let generation = st.generation();
    for grp in &groups {
        grp.sites
            .clone()
            .for_each(|i| st.objects.flags.accept(i, generation));
    }
    let (made, refused) = links::attach(st, &path, &groups, generation);
    st.links.extend(made);
    drop(g);
    let mut installed = groups.len();
    for (p, why) in refused {
        switch_off(p);
        p.reject(why);
        installed -= 1;
    }
    for grp in &groups {
        if grp.probe.transition(Life::Pending, Life::Active) {
            grp.probe.bypass.store(0, Ordering::Release);
        }
    }
    installed
}

/// Adds the plans' sites to the image (switched off); returns their groups.
/// `costs` carries costs over (fork child); else they come from the calibration.
fn register(
    st: &mut State,
    path: &Arc<CString>,
    plans: Vec<Plan>,
    costs: Option<&[(u64, i64)]>,
) -> Vec<links::Group> {
    let mut groups = Vec::new();
    let mut carried = costs.map(|c| c.iter());
    for pl in plans {
        let p = pl.probe;
        let start = flags::FIRST_SITE + st.sites.len() as u32;
        if start as usize + pl.sites.len() > flags::CAPACITY as usize {
            p.reject(format!(
                "not probed: the kernel backend's {} probe sites are taken",
                flags::CAPACITY - flags::FIRST_SITE
            ));
            continue;
        }
        let c = st.costs;
        for (role, offset, emulated) in pl.sites {
            let (cost, shift) = match (carried.as_mut().and_then(|it| it.next()), &role) {
                (Some(&kept), _) => kept,
                (None, Role::Entry) => (c.entry(emulated), 0),
                (None, Role::Exit(exit)) => (
                    c.exit(*exit == exits::Exit::Always && !emulated, emulated),
                    c.shift,
                ),
            };
            st.sites.push(Site {
                probe: p,
                role,
                path: path.clone(),
                file_offset: offset,
                cost,
                shift,
                inside: pl.inside.clone(),
            });
        }
        let end = flags::FIRST_SITE + st.sites.len() as u32;
        st.probe_sites.insert(p.id, start..end);
        groups.push(links::Group {
            probe: p,
            sites: start..end,
        });
    }
    groups
}

/// Switches every site of `p` off.
fn switch_off(p: &Probe) {
    if let Some(st) = STATE.lock().as_mut() {
        if let Some(range) = st.probe_sites.get(&p.id) {
            range.clone().for_each(|i| st.objects.flags.off(i));
        }
    }
}

/// Takes disabled probes out (from `adaptive::decider::run_pending`):
/// their entries stop recording now, their exits once no call of theirs
/// is open, and their breakpoints go with the next replacement of links.
pub fn remove(flagged: &[&'static Probe]) -> Result<usize, String> {
    let mut g = STATE.lock();
    let Some(st) = g.as_mut() else { return Ok(0) };
    for p in flagged {
        let Some(range) = st.probe_sites.get(&p.id).cloned() else {
            continue;
        };
        st.objects.flags.off(range.start);
        if range.len() > 1 && !st.closing.contains(&p.id) {
            st.closing.push(p.id);
        }
        st.dirty = true;
    }
    Ok(flagged.len())
}

/// Replays everything the kernel recorded so far (before a snapshot).
pub fn drain_now() {
    if !is_running() {
        return;
    }
    let relink = STATE.lock().as_mut().is_some_and(|st| st.drain_now());
    if relink {
        closer::request_relink();
    }
}

/// The image's last snapshot is written: every link goes now, in parallel
/// (closing them one by one at exit would take a grace period each).
pub fn shut_down() {
    if !RUNNING.swap(false, Ordering::AcqRel) {
        return;
    }
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::debug!(
        "reader: {} records in {} ms",
        reader::STAT_RECORDS.load(Ordering::Relaxed),
        reader::STAT_NS.load(Ordering::Relaxed) / 1_000_000
    );
    let fds = match STATE.lock().as_mut() {
        Some(st) => {
            LOST_BEFORE.store(st.objects.lost(), Ordering::Relaxed);
            st.take_links()
        }
        None => return,
    };
    closer::close_now(fds);
}

/// Records the kernel dropped (ring full) since the image started.
pub fn lost_records() -> u64 {
    if !is_running() {
        return LOST_BEFORE.load(Ordering::Relaxed);
    }
    STATE.lock().as_ref().map_or(0, |s| s.objects.lost())
}

/// The snapshot's `overhead` under this backend: calibrated per-hit costs,
/// compensated through the reader's virtual clock.
pub fn overhead() -> Option<hotprobe_config::snapshot::Overhead> {
    let agent = crate::state::agent()?;
    if agent.settings.probes.backend != hotprobe_config::Backend::Kernel {
        return None;
    }
    let costs = STATE.lock().as_ref().map(|s| s.costs).unwrap_or_default();
    Some(hotprobe_config::snapshot::Overhead {
        probe_ns: (costs.stepped + costs.ret) as f64,
        inner_ns: costs.inner as f64,
        compensated: costs.measured,
    })
}

fn spawn_reader() {
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    if agent_thread("hotprobe-kernel", move || read_loop(generation)).is_none() {
        crate::warn!(
            "cannot start the kernel backend's reader thread; records are read only at snapshots"
        );
    }
}

fn read_loop(generation: i32) {
    READER_TID.store(crate::sys::gettid(), Ordering::Relaxed);
    let drain = std::time::Duration::from_millis(DRAIN_MS.load(Ordering::Relaxed));
    while GENERATION.load(Ordering::Relaxed) == generation && is_running() {
        let mut backlogged = false;
        if crate::state::is_active() {
            crate::guard::fail_open("kernel reader", (), || {
                let relink = match STATE.lock().as_mut() {
                    Some(st) => {
                        let relink = st.round();
                        backlogged = st.backlogged();
                        relink
                    }
                    None => false,
                };
                if relink {
                    closer::request_relink();
                }
            });
        }
        if !backlogged {
            std::thread::sleep(drain);
        }
    }
}

extern "C" fn fork_prepare() {
    if is_running() {
        STATE.lock_raw();
        closer::lock_for_fork();
        FORK_LOCKED.store(true, Ordering::Relaxed);
    }
}

extern "C" fn fork_parent() {
    if FORK_LOCKED.swap(false, Ordering::Relaxed) {
        closer::unlock_after_fork();
        STATE.unlock_raw();
    }
}

/// The fork child is a new image: its own ring, program, links and reader.
extern "C" fn fork_child() {
    if !FORK_LOCKED.swap(false, Ordering::Relaxed) {
        return;
    }
    // Only this thread exists in the child: the locks can be taken anew.
    closer::unlock_after_fork();
    STATE.unlock_raw();
    crate::guard::fail_open("kernel backend in a fork child", (), || {
        READER_TID.store(0, Ordering::Relaxed);
        closer::reset_in_child();
        let old = STATE.lock().take();
        let Some(mut old) = old else { return };
        old.forget_parent().into_iter().for_each(sys::close);
        if !crate::state::is_active() {
            RUNNING.store(false, Ordering::Release);
            return;
        }
        let mut fresh = match open_state() {
            Ok(s) => s,
            Err(e) => {
                RUNNING.store(false, Ordering::Release);
                crate::error!("{e}; this fork child runs unprobed");
                if let Some(agent) = crate::state::agent() {
                    agent.set_problem(e);
                }
                return;
            }
        };
        fresh.costs = old.costs;
        // The sites keep their indices; those on in the parent are on here.
        let on: Vec<bool> = (0..old.sites.len() as u32)
            .map(|n| old.objects.flags.is_on(flags::FIRST_SITE + n))
            .collect();
        fresh.sites = core::mem::take(&mut old.sites);
        fresh.probe_sites = core::mem::take(&mut old.probe_sites);
        fresh.closing = core::mem::take(&mut old.closing);
        drop(old);
        attach_again(&mut fresh, &on);
        *STATE.lock() = Some(fresh);
        spawn_reader();
    });
}

/// Attaches again, for this process, the sites that were on in the parent.
fn attach_again(st: &mut State, on: &[bool]) {
    let generation = st.generation();
    let mut paths: Vec<Arc<CString>> = Vec::new();
    for s in &st.sites {
        if !paths.contains(&s.path) {
            paths.push(s.path.clone());
        }
    }
    for path in paths {
        let groups: Vec<links::Group> = st
            .probe_sites
            .iter()
            .filter(|(_, r)| st.site(r.start).is_some_and(|s| s.path == path))
            .filter_map(|(_, r)| {
                let live: Vec<u32> = r
                    .clone()
                    .filter(|&i| on.get((i - flags::FIRST_SITE) as usize) == Some(&true))
                    .collect();
                let probe = st.site(r.start)?.probe;
                live.iter()
                    .for_each(|&i| st.objects.flags.accept(i, generation));
                (!live.is_empty()).then(|| links::Group {
                    probe,
                    sites: r.clone(),
                })
            })
            .collect();
        // Off sites inside a group stay off: the BPF program skips them.
        let (made, refused) = links::attach(st, &path, &groups, generation);
        st.links.extend(made);
        for (p, why) in refused {
            if let Some(range) = st.probe_sites.get(&p.id) {
                range.clone().for_each(|i| st.objects.flags.off(i));
            }
            crate::warn!("fork child: {} is not probed here: {why}", p.meta.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_raised_and_set_thresholds_kept() {
        assert_eq!(raise_targets(10.0, false, false), (10.0, 2.5));
        assert_eq!(raise_targets(10.0, true, false), (0.0, 2.5));
        assert_eq!(raise_targets(10.0, false, true), (10.0, 0.0));
        assert_eq!(raise_targets(10.0, true, true), (0.0, 0.0));
    }

    #[test]
    fn the_warning_names_only_the_raised_keys() {
        let (what, keys) = describe_raise((0.3, 0.1), (9.9, 2.5));
        assert_eq!(
            what,
            "score-card thresholds raised from 0.30/0.10 µs to 9.90/2.50 µs"
        );
        assert_eq!(
            keys,
            "[hotspot] threshold_us and [hotspot] inherent_threshold_us"
        );
        let (_, keys) = describe_raise((20.0, 0.1), (20.0, 2.5));
        assert_eq!(keys, "[hotspot] inherent_threshold_us");
    }
}

//! discover → select → patch: finds the objects loaded in the process,
//! discovers and selects their functions, and installs a probe on each —
//! or records why not (state `rejected`, with the reason).

use crate::arch::x86_64::patch::{self, Direction, Patch};
use crate::arch::x86_64::trampoline::Batch;
use crate::engine::probe::{self, Life, Meta, Probe};
use crate::state::{lock, Agent};
use hotprobe_discover::{ObjectFunctions, Selector};
use std::collections::HashSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An object loaded in the process, as the dynamic loader reports it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub bias: usize,
    pub is_main: bool,
    /// Runtime ranges of its executable segments.
    pub code: Vec<(usize, usize)>,
}

/// Set once live patching was refused (said once, on stderr and in the snapshot).
static PATCH_REFUSED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether the system refused live patching (then said so once).
pub fn patching_refused() -> bool {
    PATCH_REFUSED.load(core::sync::atomic::Ordering::Relaxed)
}

/// Objects already offered to the selector, by (path, bias).
static SEEN: Mutex<Option<HashSet<(PathBuf, usize)>>> = Mutex::new(None);
/// The selector built from the settings, kept for later dlopens.
static SELECTOR: Mutex<Option<Selector>> = Mutex::new(None);

pub fn loaded_objects() -> Vec<Loaded> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> i32 {
        // SAFETY: the loader passes a valid info; data is our Vec.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Loaded>)) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated name owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let mut code = Vec::new();
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: i < phnum.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
                code.push((lo, lo + ph.p_memsz as usize));
            }
        }
        let is_main = out.is_empty() && name.is_empty();
        if code.is_empty() || (name.is_empty() && !is_main) || name.starts_with("linux-vdso") {
            return 0;
        }
        let path = if is_main {
            std::fs::read_link("/proc/self/exe").unwrap_or_default()
        } else {
            PathBuf::from(&name)
        };
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        out.push(Loaded {
            path,
            bias: info.dlpi_addr as usize,
            is_main,
            code,
        });
        0
    }
    let mut out: Vec<Loaded> = Vec::new();
    // SAFETY: the callback matches dl_iterate_phdr's contract; data outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut Vec<Loaded>).cast()) };
    out
}

/// Builds the selector (once) from the settings.
pub fn init_selector(agent: &Agent) -> Result<(), String> {
    let selector = Selector::new(&agent.settings, agent.probe_set.as_ref())?;
    *lock(&SELECTOR) = Some(selector);
    Ok(())
}

/// Offers every object not seen before to the selector and probes what it
/// selects. Returns (installed, rejected).
pub fn probe_new_objects(agent: &Agent) -> (usize, usize) {
    let objects = loaded_objects();
    let fresh: Vec<Loaded> = {
        let mut seen = lock(&SEEN);
        let seen = seen.get_or_insert_with(HashSet::new);
        objects
            .into_iter()
            .filter(|o| seen.insert((o.path.clone(), o.bias)))
            .collect()
    };
    let mut totals = (0, 0);
    for obj in fresh {
        if hotprobe_discover::module_exclusion(&obj.path).is_some() {
            continue;
        }
        let wanted = lock(&SELECTOR)
            .as_ref()
            .is_some_and(|s| s.wants_module(&obj.path, obj.is_main));
        if !wanted {
            continue;
        }
        match hotprobe_discover::discover_with(
            &obj.path,
            &hotprobe_discover::DiscoverOptions::lean(),
        ) {
            Ok(found) => {
                let (i, r) = install_object(agent, &obj, &found);
                totals.0 += i;
                totals.1 += r;
            }
            Err(e) => crate::warn!("{e}; its functions are not probed"),
        }
    }
    totals
}

/// Probe-set entries that matched nothing, once every object was offered.
pub fn warn_unmatched_probe_set() {
    let unmatched = lock(&SELECTOR)
        .as_ref()
        .map(|s| s.unmatched_probe_set_entries())
        .unwrap_or_default();
    if !unmatched.is_empty() {
        let names: Vec<String> = unmatched
            .iter()
            .take(5)
            .map(|e| format!("{}:{}", e.module, e.symbol))
            .collect();
        let more = if unmatched.len() > 5 {
            format!(" and {} more", unmatched.len() - 5)
        } else {
            String::new()
        };
        crate::warn!(
            "{} probe-set entries matched no function: {}{more}",
            unmatched.len(),
            names.join(", ")
        );
    }
}

fn within(code: &[(usize, usize)], lo: usize, hi: usize) -> bool {
    code.iter().any(|&(a, b)| a <= lo && hi <= b)
}

/// Creates, checks and installs the probes of one object's selected functions.
fn install_object(agent: &Agent, obj: &Loaded, found: &ObjectFunctions) -> (usize, usize) {
    let selected = lock(&SELECTOR)
        .as_ref()
        .map(|s| s.select(found, obj.is_main))
        .unwrap_or_default();
    let initial = agent.settings.hotspot.initial;
    let module = obj.path.to_string_lossy().into_owned();
    let mut ready: Vec<(&'static Probe, &[u8])> = Vec::new();
    let mut rejected = 0;
    let kernel = agent.settings.probes.backend == hotprobe_config::Backend::Kernel;
    for f in selected {
        let address = obj.bias + f.address as usize;
        let meta = Meta {
            name: f.name.clone(),
            symbol: f.symbol.clone(),
            module: module.clone(),
            offset: f.offset,
            size: f.size,
            address,
            link_address: f.address,
        };
        let p = probe::register(|id| Probe::new(id, meta, initial));
        if !within(&obj.code, address, address + f.size as usize) {
            p.reject("not inside an executable segment of its object".into());
            rejected += 1;
            continue;
        }
        // SAFETY: [address, address + size) lies in an executable, readable segment (checked above).
        let code = unsafe { std::slice::from_raw_parts(address as *const u8, f.size as usize) };
        if kernel {
            ready.push((p, code)); // checked by the kernel backend's own rules
            continue;
        }
        match hotprobe_x86::analyze_entry(code, address as u64) {
            Ok(_) => ready.push((p, code)),
            Err(r) => {
                p.reject(r.to_string());
                rejected += 1;
            }
        }
    }
    let installed = if kernel {
        crate::kernel::install(&ready, obj, found)
    } else {
        install(&ready, obj)
    };
    (installed, rejected + ready.len() - installed)
}

/// Builds trampolines for `ready` probes near `obj` and patches them in.
pub fn install(ready: &[(&'static Probe, &[u8])], obj: &Loaded) -> usize {
    if ready.is_empty() {
        return 0;
    }
    let lo = obj.code.iter().map(|c| c.0).min().unwrap_or(0);
    let hi = obj.code.iter().map(|c| c.1).max().unwrap_or(0);
    let mut batch = match Batch::near(lo, hi, ready.len()) {
        Ok(b) => b,
        Err(e) => {
            reject_all(ready.iter().map(|r| r.0), &e);
            return 0;
        }
    };
    let mut patches = Vec::with_capacity(ready.len());
    let mut placed = Vec::with_capacity(ready.len());
    for &(p, code) in ready {
        match batch.add(p as *const Probe as usize, p.meta.address, code) {
            Ok((tramp, resume)) => {
                p.resume
                    .store(resume, core::sync::atomic::Ordering::Relaxed);
                let patch = Patch::new(p.meta.address, tramp, resume);
                *lock(&p.patch) = Some(patch.clone());
                patches.push(patch);
                placed.push(p);
            }
            Err(r) => p.reject(r.to_string()),
        }
    }
    if let Err(e) = batch.seal() {
        reject_all(placed.into_iter(), &e);
        return 0;
    }
    for p in &placed {
        p.set_life(Life::Active);
        p.bypass.store(0, core::sync::atomic::Ordering::Release);
    }
    match patch::apply(&patches, Direction::Install) {
        Ok(n) => n,
        Err(e) => {
            if !PATCH_REFUSED.swap(true, core::sync::atomic::Ordering::Relaxed) {
                crate::error!("{e}; the program runs unprobed");
                if let Some(agent) = crate::state::agent() {
                    agent.set_problem(e.clone());
                }
            }
            reject_all(placed.into_iter(), &e);
            0
        }
    }
}

fn reject_all<'a>(probes: impl Iterator<Item = &'a Probe>, why: &str) {
    for p in probes {
        p.bypass.store(1, core::sync::atomic::Ordering::Release);
        p.reject(why.to_string());
    }
}

/// After a dlclose: probes of objects no longer loaded are marked as such.
pub fn forget_unloaded() {
    let loaded: HashSet<(PathBuf, usize)> = loaded_objects()
        .into_iter()
        .map(|o| (o.path, o.bias))
        .collect();
    let mut seen = lock(&SEEN);
    let Some(seen) = seen.as_mut() else { return };
    let gone: Vec<(PathBuf, usize)> = seen
        .iter()
        .filter(|k| !loaded.contains(*k))
        .cloned()
        .collect();
    for (path, _) in &gone {
        seen.retain(|k| &k.0 != path || loaded.contains(k));
        let module = path.to_string_lossy();
        for p in probe::all()
            .into_iter()
            .filter(|p| p.meta.module == module && p.life() != Life::Rejected)
        {
            p.bypass.store(1, core::sync::atomic::Ordering::Release);
            p.settled.store(true, core::sync::atomic::Ordering::Relaxed);
            crate::adaptive::score_card::release(p);
            p.reject("module unloaded (dlclose)".into());
        }
    }
}

pub fn module_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

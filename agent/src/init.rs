//! Start-up: read the settings, decide whether to run, and set the agent up.
//! Every problem here leaves the program running exactly as without us.

use crate::state::{self, Agent, Identity};
use hotprobe_config::Settings;
use std::sync::Mutex;

/// Whether this code runs from the preloaded shared object (and not linked
/// into a test binary through the rlib, an executable). Any file name with
/// `.so` in it will do: a copy of the agent under another name (kept side
/// by side with another build, say) once stayed off without a word. Never
/// panics: the constructor calls it before the panic hook and the guard
/// are in place.
pub fn loaded_as_agent() -> bool {
    // SAFETY: Dl_info is plain data, for which all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(loaded_as_agent as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by ld.so.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    let file = name.rsplit('/').next().unwrap_or(&name);
    file.contains(".so")
}

pub fn read_exe_and_argv() -> (String, Vec<String>) {
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    (exe, argv)
}

/// The file name the program was started as (AT_EXECFN): for a symlink
/// such as redis-server → redis-check-rdb, the name the user typed.
pub fn started_as() -> Option<String> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let p = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if p.is_null() {
        return None;
    }
    // SAFETY: AT_EXECFN points at a NUL-terminated string on the initial stack.
    let path = unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned();
    Some(path.rsplit('/').next().unwrap_or(&path).to_string()).filter(|n| !n.is_empty())
}

/// The environment variable that marks the process the user started: every
/// image below it is a child, which `HOTPROBE_FOLLOW` may leave out.
pub const ROOT_VAR: &str = "HOTPROBE_ROOT";

/// Whether this image is the process the user started (or an exec of it),
/// marking it so for its descendants when it is.
fn is_root_image() -> bool {
    let pid = crate::sys::getpid().to_string();
    match std::env::var(ROOT_VAR) {
        Ok(root) => root == pid,
        Err(_) => {
            // Still single-threaded in the constructor: setenv is safe here.
            std::env::set_var(ROOT_VAR, &pid);
            true
        }
    }
}

pub fn start() {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let settings = match Settings::load(&|k| std::env::var(k).ok(), &cwd) {
        Ok(s) => s,
        Err(e) => {
            crate::error!("{e} (the agent is off for this run)");
            return;
        }
    };
    crate::log::set_level(settings.agent.log);
    let (exe, argv) = read_exe_and_argv();
    let exe_name =
        started_as().unwrap_or_else(|| crate::export::snapshot::exe_name(&exe).to_string());
    if !is_root_image() && !settings.target.follow.allows(&exe_name) {
        crate::info!("{exe_name} is not followed (target.follow); the agent stays off");
        return;
    }
    let probe_set = match settings.probe_set_path() {
        None => None,
        Some(path) => match hotprobe_config::ProbeSet::read(&cwd.join(path)) {
            Ok(set) => Some(set),
            Err(e) => {
                crate::error!("{e} (the agent is off for this run)");
                return;
            }
        },
    };
    let output_template = crate::export::path::anchor(&settings.snapshot.path, &cwd);
    if let Some(problem) = output_dir_problem(&output_template) {
        crate::error!("{problem} (snapshot.path / HOTPROBE_OUTPUT); fix the path — the agent is off for this run");
        return;
    }
    let identity = Identity {
        pid: crate::sys::getpid(),
        ppid: crate::sys::getppid(),
        started_unix_ns: crate::sys::unix_ns(),
        started_mono_ns: crate::sys::monotonic_ns(),
        output_template,
        ..Identity::default()
    };
    let agent = state::install(Agent {
        settings,
        probe_set,
        exe_name,
        exe,
        argv,
        build_id: crate::build_id::main_executable(),
        identity: Mutex::new(identity),
        problem: Mutex::new(None),
    });
    state::activate();
    crate::lifecycle::exit::register();
    crate::lifecycle::fork::register();
    crate::lifecycle::signals::install();
    start_engine(agent);
    crate::worker::start();
}

/// Clock, compensation, and the probes of the selected functions.
fn start_engine(agent: &'static Agent) {
    let t0 = crate::sys::monotonic_ns();
    crate::meter::clock::init(agent.settings.probes.backend == hotprobe_config::Backend::Kernel);
    crate::adaptive::score_card::configure(&agent.settings.hotspot);
    crate::meter::contexts::set_cap(agent.settings.meter.contexts_cap);
    crate::engine::thread::init();
    match agent.settings.probes.backend {
        hotprobe_config::Backend::Inline => {
            if let Some(why) = crate::arch::x86_64::cpu::inline_refusal() {
                crate::error!("{why}; the program runs unprobed");
                agent.set_problem(why);
                return;
            }
            let main_code = crate::install::loaded_objects()
                .into_iter()
                .find(|o| o.is_main)
                .map(|o| {
                    (
                        o.code.iter().map(|c| c.0).min().unwrap_or(0),
                        o.code.iter().map(|c| c.1).max().unwrap_or(0),
                    )
                });
            let calibration_start = crate::sys::monotonic_ns();
            match main_code.and_then(crate::meter::calibrate::run) {
                Some((inner, total)) => crate::debug!(
                    "probe cost {total:.1} ns per call, {inner:.1} ns inside the call's window"
                ),
                None if crate::install::patching_refused() => return,
                None => {
                    crate::warn!("could not calibrate the probe's cost; times are not compensated")
                }
            }
            if let Err(e) = crate::install::init_selector(agent) {
                crate::error!("{e}; the program runs unprobed");
                agent.set_problem(e);
                return;
            }
            let calibration_ms = (crate::sys::monotonic_ns() - calibration_start) as f64 / 1e6;
            let install_start = crate::sys::monotonic_ns();
            let (installed, rejected) = crate::install::probe_new_objects(agent);
            let install_ms = (crate::sys::monotonic_ns() - install_start) as f64 / 1e6;
            crate::install::warn_unmatched_probe_set();
            if rejected > 0 && !crate::install::patching_refused() {
                crate::warn!("{rejected} functions not probed; their reasons are in the snapshot and `hotprobe list`");
            }
            let ms = (crate::sys::monotonic_ns() - t0) as f64 / 1e6;
            crate::info!(
                "{installed} probes installed in {install_ms:.1} ms (discovery, selection and patching; {rejected} rejected); start-up {ms:.1} ms in all, calibration {calibration_ms:.1} ms"
            );
        }
        hotprobe_config::Backend::Kernel => {
            if let Err(why) =
                crate::install::init_selector(agent).and_then(|_| crate::kernel::start(agent))
            {
                crate::error!("{why}; the program runs unprobed");
                agent.set_problem(why);
            }
        }
    }
}

/// Why snapshots could not be written where the template points, if so.
fn output_dir_problem(template: &std::path::Path) -> Option<String> {
    let dir = template.parent()?;
    if dir.to_string_lossy().contains('{') {
        return None; // a placeholder in a directory name: checked at write time
    }
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())).ok()?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let err = std::io::Error::last_os_error();
        return Some(format!(
            "snapshot directory {} is not writable: {err}",
            dir.display()
        ));
    }
    None
}

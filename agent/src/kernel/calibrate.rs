//! What a kernel probe hit costs the probed thread, measured at start on
//! two tiny leaves of the agent's own: one whose first instruction the
//! kernel emulates (`push`), one it single-steps out of line (`lea`). Each
//! leaf is timed bare, with an entry uprobe, and with entry + `ret`
//! uprobes (lower quartile of per-call times, since noise only adds).
//!
//! The model the reader applies (see `reader`): a hit at a site costs its
//! thread `C` ns (by class: emulated, single-stepped, `ret`), and the
//! virtual clock puts the whole cost of an entry hit after its timestamp
//! and `shift` ns of an exit hit before it, where `shift` = (measured
//! entry→exit window of a leaf) − (entry cost): then a leaf's window comes
//! out as its body, and a caller's as its own time plus its callees'.
//! This first call also checks that uprobe events may be opened at all.

use super::flags::{self, CALIBRATION_ENTRY, CALIBRATION_EXIT};
use super::prog::Objects;
use super::ring::Ring;
use super::sys;

/// Per-hit costs in ns; all zero when not measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Costs {
    pub emulated: u64,
    pub stepped: u64,
    pub ret: u64,
    pub shift: i64,
    /// The part of a probed call's cost inside its window (for the snapshot).
    pub inner: u64,
    pub measured: bool,
}

impl Costs {
    pub const fn none() -> Costs {
        Costs {
            emulated: 0,
            stepped: 0,
            ret: 0,
            shift: 0,
            inner: 0,
            measured: false,
        }
    }

    pub fn entry(&self, emulated: bool) -> u64 {
        if emulated {
            self.emulated
        } else {
            self.stepped
        }
    }

    pub fn exit(&self, is_ret: bool, emulated: bool) -> u64 {
        if is_ret {
            self.ret
        } else {
            self.entry(emulated)
        }
    }
}

/// `push rbx; lea rax, [rdi + 1]; pop rbx; ret`: entry emulated.
#[unsafe(naked)]
unsafe extern "C" fn leaf_push(_x: u64) -> u64 {
    core::arch::naked_asm!("push rbx", "lea rax, [rdi + 1]", "pop rbx", "ret")
}

/// `lea rax, [rdi + 1]; ret`: entry single-stepped.
#[unsafe(naked)]
unsafe extern "C" fn leaf_step(_x: u64) -> u64 {
    core::arch::naked_asm!("lea rax, [rdi + 1]", "ret")
}

type Leaf = unsafe extern "C" fn(u64) -> u64;

const CALLS: usize = 300;

/// The object file holding `addr` and the file offset of `addr` in it.
fn locate(addr: usize) -> Option<(std::ffi::CString, u64)> {
    struct Find {
        addr: usize,
        found: Option<(String, u64)>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> i32 {
        // SAFETY: the loader passes a valid info; data is our Find.
        let (info, find) = unsafe { (&*info, &mut *(data as *mut Find)) };
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: i < phnum.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
            if ph.p_type == libc::PT_LOAD && lo <= find.addr && find.addr < lo + ph.p_memsz as usize
            {
                let name = if info.dlpi_name.is_null() {
                    String::new()
                } else {
                    // SAFETY: a NUL-terminated name owned by the loader.
                    unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
                        .to_string_lossy()
                        .into_owned()
                };
                find.found = Some((name, (find.addr - lo) as u64 + ph.p_offset));
                return 1;
            }
        }
        0
    }
    let mut find = Find { addr, found: None };
    // SAFETY: the callback matches dl_iterate_phdr's contract; `find` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut find as *mut Find).cast()) };
    let (name, offset) = find.found?;
    let path = if name.is_empty() {
        "/proc/self/exe".into()
    } else {
        name
    };
    let real = std::fs::canonicalize(&path).ok()?;
    Some((
        std::ffi::CString::new(real.to_string_lossy().as_bytes()).ok()?,
        offset,
    ))
}

fn lower_quartile(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 4]
}

/// Per-call times of `CALLS` calls of `leaf` (lower quartile).
fn time_calls(leaf: Leaf) -> u64 {
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let t0 = crate::sys::monotonic_ns();
        // SAFETY: the leaves follow the C ABI and only compute.
        std::hint::black_box(unsafe { std::hint::black_box(leaf)(i as u64) });
        times.push(crate::sys::monotonic_ns() - t0);
    }
    lower_quartile(&mut times)
}

/// Why the calibration stopped: the backend may not run at all, or only
/// the measurement failed.
pub enum Failure {
    Refused(String),
    Unmeasured(String),
}

/// Attaches the program to `offset` of `path` for this process, as the
/// calibration site `index` (generation 0).
fn attach(
    objects: &Objects,
    path: &std::ffi::CStr,
    offset: u64,
    index: u32,
) -> Result<i32, Failure> {
    objects.flags.accept(index, 0);
    // The image's floor: one computed now, from a soft limit the backend
    // raised, would sit at that limit and take no descriptor.
    let floor = objects.floor;
    sys::uprobe_multi(
        objects.prog,
        path,
        &[offset],
        &[flags::cookie(index, 0, false)],
        crate::sys::getpid(),
    )
    .map(|fd| super::open::move_fd(fd, floor))
    .map_err(|e| match e {
        libc::EACCES | libc::EPERM => Failure::Refused(sys::refusal(&format!(
            "attaching a uprobe: {}",
            sys::strerror(e)
        ))),
        _ => Failure::Unmeasured(format!(
            "cannot attach a uprobe to the calibration leaf: {}",
            sys::describe_attach_error(e)
        )),
    })
}

/// Timestamps of calibration records in the ring: (time, is_entry), in ring order.
fn drain_times(ring: &mut Ring) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    let tid = crate::sys::gettid() as u32 as u64;
    ring.drain(|rec| {
        let word = |at: usize| {
            rec.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        if rec.len() >= 24 && word(8) & 0xffff_ffff == tid {
            match flags::split(word(0)).0 {
                CALIBRATION_ENTRY => out.push((word(16), true)),
                CALIBRATION_EXIT => out.push((word(16), false)),
                _ => {}
            }
        }
    });
    out
}

/// One leaf: (entry cost, ret cost, entry→exit window), ns.
fn measure_leaf(
    objects: &Objects,
    ring: &mut Ring,
    leaf: Leaf,
) -> Result<(u64, u64, u64), Failure> {
    let addr = leaf as usize;
    let (path, offset) = locate(addr)
        .ok_or_else(|| Failure::Unmeasured("cannot find the agent's own file".into()))?;
    // SAFETY: the leaf's first 16 bytes are code of ours (the leaves are shorter; what follows is code or padding).
    let code = unsafe { core::slice::from_raw_parts(addr as *const u8, 16) };
    // The first `ret` (what follows the leaf is not part of it).
    let ret_offset =
        iced_x86::Decoder::with_ip(64, code, addr as u64, iced_x86::DecoderOptions::NONE)
            .into_iter()
            .take_while(|i| !i.is_invalid())
            .find(|i| i.flow_control() == iced_x86::FlowControl::Return)
            .map(|i| i.ip() - addr as u64)
            .ok_or_else(|| Failure::Unmeasured("cannot find the calibration leaf's ret".into()))?;
    let bare = time_calls(leaf);
    let entry = attach(objects, &path, offset, CALIBRATION_ENTRY)?;
    let with_entry = time_calls(leaf);
    drain_times(ring);
    let exit = match attach(objects, &path, offset + ret_offset, CALIBRATION_EXIT) {
        Ok(x) => x,
        Err(e) => {
            super::closer::submit(vec![entry]);
            return Err(e);
        }
    };
    let with_both = time_calls(leaf);
    let records = drain_times(ring);
    super::closer::submit(vec![entry, exit]);
    let mut windows: Vec<u64> = records
        .windows(2)
        .filter(|w| w[0].1 && !w[1].1)
        .map(|w| w[1].0.saturating_sub(w[0].0))
        .collect();
    if windows.len() < CALLS / 2 {
        return Err(Failure::Unmeasured(format!(
            "only {} of {CALLS} calibration calls were recorded",
            windows.len()
        )));
    }
    let window = lower_quartile(&mut windows);
    Ok((
        with_entry.saturating_sub(bare),
        with_both.saturating_sub(with_entry),
        window,
    ))
}

/// Measures the costs on this thread (nothing else runs probed code yet).
pub fn run(objects: &Objects, ring: &mut Ring) -> Result<Costs, Failure> {
    let measured = measure_leaf(objects, ring, leaf_push)
        .and_then(|push| Ok((push, measure_leaf(objects, ring, leaf_step)?)));
    objects.flags.off(CALIBRATION_ENTRY);
    objects.flags.off(CALIBRATION_EXIT);
    let ((push_entry, push_ret, push_window), (step_entry, step_ret, step_window)) = measured?;
    let ret = (push_ret + step_ret) / 2;
    let shift =
        ((push_window as i64 - push_entry as i64) + (step_window as i64 - step_entry as i64)) / 2;
    let costs = Costs {
        emulated: push_entry,
        stepped: step_entry,
        ret,
        shift,
        inner: step_window,
        measured: true,
    };
    let sane = |v: u64| (1..1_000_000).contains(&v);
    if !(sane(costs.emulated) && sane(costs.stepped) && sane(costs.ret)) {
        return Err(Failure::Unmeasured(format!(
            "implausible calibration: {costs:?}"
        )));
    }
    crate::debug!(
        "kernel probe costs: entry {} ns (emulated) / {} ns (single-stepped), ret {} ns, exit shift {} ns; windows {push_window}/{step_window} ns",
        costs.emulated,
        costs.stepped,
        costs.ret,
        costs.shift
    );
    Ok(costs)
}

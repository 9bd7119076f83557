//! The kernel interfaces the backend uses: the `bpf` system call (maps,
//! program, uprobe_multi links), capabilities, and a few process queries.

/// x86-64 register numbers in perf's order (`enum perf_event_x86_regs`),
/// which is also the order of the general-purpose registers in a wide record.
pub mod reg {
    pub const AX: u32 = 0;
    pub const BX: u32 = 1;
    pub const CX: u32 = 2;
    pub const DX: u32 = 3;
    pub const SI: u32 = 4;
    pub const DI: u32 = 5;
    pub const BP: u32 = 6;
    pub const SP: u32 = 7;
    pub const R8: u32 = 16;
}

/// The general-purpose registers (no ip, flags or segments), in perf's numbering.
pub const GPR_MASK: u64 = 0x00ff_00ff;

/// Where register `r` sits among the registers a record carries for `mask`.
pub fn reg_index(mask: u64, r: u32) -> Option<usize> {
    (mask & (1 << r) != 0).then(|| (mask & ((1u64 << r) - 1)).count_ones() as usize)
}

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;

pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_TRACE_UPROBE_MULTI: u32 = 48;

/// `union bpf_attr`, as much of it as the commands here use.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
        self
    }
}

fn bpf(cmd: i32, attr: &mut Attr) -> Result<i64, i32> {
    // SAFETY: attr is a 128-byte, 8-aligned bpf_attr whose pointers (set by
    // the callers) point at live buffers for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
    if rc < 0 {
        Err(crate::sys::errno())
    } else {
        Ok(rc)
    }
}

/// `map_flags`: the map's values may be mapped into the process.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A new BPF map: its descriptor or the errno.
pub fn map_create(
    kind: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<i32, i32> {
    let mut a = Attr::new();
    a.u32(0, kind)
        .u32(4, key_size)
        .u32(8, value_size)
        .u32(12, max_entries)
        .u32(16, flags);
    let name = b"hotprobe\0";
    a.0[28..28 + name.len()].copy_from_slice(name);
    bpf(BPF_MAP_CREATE, &mut a).map(|fd| fd as i32)
}

/// The u64 value at `key` of an array map.
pub fn map_lookup_u64(fd: i32, key: u32) -> Option<u64> {
    let mut value = 0u64;
    let mut a = Attr::new();
    a.u32(0, fd as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &mut value as *mut u64 as u64);
    bpf(BPF_MAP_LOOKUP_ELEM, &mut a).ok().map(|_| value)
}

/// Loads a uprobe_multi program: its descriptor, or the errno and the verifier's log.
pub fn prog_load(insns: &[u64]) -> Result<i32, (i32, String)> {
    let license = b"Dual MIT/GPL\0";
    let mut log = vec![0u8; 1 << 16];
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_KPROBE)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .u32(68, BPF_TRACE_UPROBE_MULTI);
    let name = b"hotprobe\0";
    a.0[48..48 + name.len()].copy_from_slice(name);
    bpf(BPF_PROG_LOAD, &mut a).map(|fd| fd as i32).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        (e, String::from_utf8_lossy(&log[..end]).into_owned())
    })
}

/// Attaches `prog` to the instructions at `offsets` of the file `path`, for
/// every thread of process `pid` (threads created later included, fork
/// children not). Each hit runs the program with its `cookie`.
pub fn uprobe_multi(
    prog: i32,
    path: &std::ffi::CStr,
    offsets: &[u64],
    cookies: &[u64],
    pid: u32,
) -> Result<i32, i32> {
    let mut a = Attr::new();
    a.u32(0, prog as u32)
        .u32(8, BPF_TRACE_UPROBE_MULTI)
        .u64(16, path.as_ptr() as u64)
        .u64(24, offsets.as_ptr() as u64)
        .u64(40, cookies.as_ptr() as u64)
        .u32(48, offsets.len() as u32)
        .u32(56, pid);
    bpf(BPF_LINK_CREATE, &mut a).map(|fd| fd as i32)
}

pub fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: the caller owns `fd`.
        unsafe { libc::close(fd) };
    }
}

pub fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// This process's capabilities that matter here: (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).
pub fn capabilities() -> (bool, bool, bool) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header fills two data structs.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        // Unknown: let the bpf system call decide.
        return (true, true, true);
    }
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |cap: u32| data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0;
    (has(CAP_BPF), has(CAP_PERFMON), has(CAP_SYS_ADMIN))
}

/// What the process lacks to load the backend's program, if anything.
pub fn missing_capabilities() -> Option<String> {
    let (bpf, perfmon, admin) = capabilities();
    if admin || (bpf && perfmon) {
        return None;
    }
    let missing: Vec<&str> = [(!bpf, "CAP_BPF"), (!perfmon, "CAP_PERFMON")]
        .iter()
        .filter(|m| m.0)
        .map(|m| m.1)
        .collect();
    Some(format!(
        "this process lacks {} and CAP_SYS_ADMIN",
        missing.join(" and ")
    ))
}

/// The line that says why the kernel refused and how to allow it.
pub fn refusal(detail: &str) -> String {
    format!(
        "the kernel backend needs CAP_PERFMON and CAP_BPF (or CAP_SYS_ADMIN) to attach uprobes ({detail}): run the program as root, \
         or grant them as ambient capabilities (e.g. `sudo setpriv --inh-caps=+perfmon,+bpf --ambient-caps=+perfmon,+bpf -- program`; \
         `setcap cap_perfmon,cap_bpf+ep` on the program grants them too, but file capabilities make the loader ignore LD_PRELOAD paths), \
         or use HOTPROBE_BACKEND=inline"
    )
}

/// A message for a failed attach of one probe.
pub fn describe_attach_error(errno: i32) -> String {
    match errno {
        libc::EMFILE | libc::ENFILE => "out of file descriptors".into(),
        // ENOTSUPP (524, kernel-internal) or EOPNOTSUPP.
        524 | libc::EOPNOTSUPP => "the kernel cannot place a uprobe on this instruction".into(),
        libc::EINVAL => {
            "the kernel refused the uprobe (EINVAL: not an instruction boundary it accepts)".into()
        }
        e => format!("attaching the uprobe failed: {}", strerror(e)),
    }
}

/// The name the agent gives its own threads starts with this.
pub fn is_agent_thread(tid: i32) -> bool {
    let Ok(comm) = std::fs::read(format!("/proc/self/task/{tid}/comm")) else {
        return false;
    };
    comm.starts_with(b"hotprobe")
}

/// Whether thread `tid` of this process still exists.
pub fn thread_alive(tid: i32) -> bool {
    // SAFETY: tgkill with signal 0 only checks that the thread exists.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    rc == 0 || crate::sys::errno() != libc::ESRCH
}

/// Reads `out.len()` bytes of this process's memory at `addr` without faulting.
pub fn read_own(addr: usize, out: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: both iovecs describe valid ranges; process_vm_readv reports
    // unmapped remote memory as an error instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == out.len() as isize
}

//! The BPF program every probe site runs, and the maps it writes to.
//!
//! On each hit it writes one record to a BPF ring buffer (one ring for the
//! whole process, so one thread's records are always in order):
//!
//! | offset | narrow record (48 bytes)  | wide record (168 bytes)          |
//! | ------ | ------------------------- | -------------------------------- |
//! | 0      | cookie (the site)         | same                             |
//! | 8      | tgid << 32 \| tid         | same                             |
//! | 16     | CLOCK_MONOTONIC ns        | same                             |
//! | 24     | rsp                       | same                             |
//! | 32     | rflags                    | same                             |
//! | 40     | rcx                       | 16 general registers, perf order |
//!
//! Sites whose cookie has bit 63 set (indirect jumps) get wide records.
//! When the ring is full the record is dropped and counted in the `lost`
//! array map. Records are submitted without a wakeup: the reader polls.

use super::sys;

pub const NARROW: usize = 48;
pub const WIDE: usize = 168;
/// Cookie bit asking for a wide record.
pub const WIDE_BIT: u64 = 1 << 63;

/// Offsets in the kernel's `struct pt_regs` (x86-64).
mod regs {
    pub const R15: i16 = 0;
    pub const R14: i16 = 8;
    pub const R13: i16 = 16;
    pub const R12: i16 = 24;
    pub const BP: i16 = 32;
    pub const BX: i16 = 40;
    pub const R11: i16 = 48;
    pub const R10: i16 = 56;
    pub const R9: i16 = 64;
    pub const R8: i16 = 72;
    pub const AX: i16 = 80;
    pub const CX: i16 = 88;
    pub const DX: i16 = 96;
    pub const SI: i16 = 104;
    pub const DI: i16 = 112;
    pub const FLAGS: i16 = 144;
    pub const SP: i16 = 152;
    /// The general-purpose registers in perf's order.
    pub const GPRS: [i16; 16] = [
        AX, BX, CX, DX, SI, DI, BP, SP, R8, R9, R10, R11, R12, R13, R14, R15,
    ];
}

mod helper {
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    pub const KTIME_GET_NS: i32 = 5;
    pub const GET_CURRENT_PID_TGID: i32 = 14;
    pub const RINGBUF_RESERVE: i32 = 131;
    pub const RINGBUF_SUBMIT: i32 = 132;
    pub const GET_ATTACH_COOKIE: i32 = 174;
}

const BPF_RB_NO_WAKEUP: i32 = 1;

/// A tiny BPF assembler with forward labels.
struct Asm {
    insns: Vec<u64>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize)>,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | ((dst as u64 & 0xf) << 8)
        | ((src as u64 & 0xf) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

impl Asm {
    fn new() -> Asm {
        Asm {
            insns: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.insns.len());
    }
    fn emit(&mut self, i: u64) {
        self.insns.push(i);
    }
    fn mov(&mut self, dst: u8, src: u8) {
        self.emit(insn(0xbf, dst, src, 0, 0));
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.emit(insn(0xb7, dst, 0, 0, imm));
    }
    fn call(&mut self, helper: i32) {
        self.emit(insn(0x85, 0, 0, 0, helper));
    }
    fn exit(&mut self) {
        self.emit(insn(0x95, 0, 0, 0, 0));
    }
    fn load_map(&mut self, dst: u8, fd: i32) {
        // ld_imm64 with BPF_PSEUDO_MAP_FD: two instruction slots.
        self.emit(insn(0x18, dst, 1, 0, fd));
        self.emit(0);
    }
    fn store(&mut self, base: u8, off: i16, src: u8) {
        self.emit(insn(0x7b, base, src, off, 0));
    }
    fn load(&mut self, dst: u8, base: u8, off: i16) {
        self.emit(insn(0x79, dst, base, off, 0));
    }
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: usize) {
        self.fixups.push((self.insns.len(), to));
        self.emit(insn(code, dst, 0, 0, imm));
    }
    fn jump_reg(&mut self, code: u8, dst: u8, src: u8, to: usize) {
        self.fixups.push((self.insns.len(), to));
        self.emit(insn(code, dst, src, 0, 0));
    }
    fn finish(mut self) -> Vec<u64> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l].expect("bound label") as i64;
            let off = (target - at as i64 - 1) as i16;
            self.insns[at] = (self.insns[at] & !(0xffff << 16)) | ((off as u16 as u64) << 16);
        }
        self.insns
    }
}

const JA: u8 = 0x05;
const JEQ: u8 = 0x15;
const JNE: u8 = 0x55;
const JNE_REG: u8 = 0x5d;

/// The program, writing to the ring `ring`, counting drops in `lost`, and
/// recording a hit only when its site's word in `flags` accepts the
/// generation its cookie carries (see `flags`).
pub fn program(ring: i32, lost: i32, flags: i32) -> Vec<u64> {
    let mut a = Asm::new();
    let (wide, submit, dropped, out) = (a.label(), a.label(), a.label(), a.label());
    a.mov(6, 1); // r6 = ctx (the user registers)
    a.call(helper::GET_ATTACH_COOKIE);
    a.mov(8, 0);
    // r0 = &flags[(u32) cookie]
    a.emit(insn(0x63, 10, 8, -4, 0)); // *(u32 *)(r10 - 4) = r8
    a.mov(2, 10);
    a.emit(insn(0x07, 2, 0, 0, -4)); // r2 += -4
    a.load_map(1, flags);
    a.call(helper::MAP_LOOKUP_ELEM);
    a.jump(JEQ, 0, 0, out);
    a.load(1, 0, 0); // r1 = *(u64 *)(r0 + 0)
    a.jump(JEQ, 1, 0, out); // the site is off
    a.mov(2, 8);
    a.emit(insn(0x77, 2, 0, 0, 32)); // r2 >>= 32
    a.emit(insn(0x57, 2, 0, 0, 0xffff)); // r2 &= 0xffff: the link's generation
    a.emit(insn(0x07, 2, 0, 0, 1)); // r2 += 1
    a.jump_reg(JNE_REG, 1, 2, out); // another link's hit
    a.call(helper::GET_CURRENT_PID_TGID);
    a.mov(7, 0);
    a.call(helper::KTIME_GET_NS);
    a.mov(9, 0);
    a.mov(2, 8);
    a.emit(insn(0x77, 2, 0, 0, 63)); // r2 >>= 63
    a.jump(JNE, 2, 0, wide);
    // Narrow record.
    a.load_map(1, ring);
    a.mov_imm(2, NARROW as i32);
    a.mov_imm(3, 0);
    a.call(helper::RINGBUF_RESERVE);
    a.jump(JEQ, 0, 0, dropped);
    head(&mut a);
    a.load(1, 6, regs::CX);
    a.store(0, 40, 1);
    a.jump(JA, 0, 0, submit);
    // Wide record.
    a.bind(wide);
    a.load_map(1, ring);
    a.mov_imm(2, WIDE as i32);
    a.mov_imm(3, 0);
    a.call(helper::RINGBUF_RESERVE);
    a.jump(JEQ, 0, 0, dropped);
    head(&mut a);
    for (i, &off) in regs::GPRS.iter().enumerate() {
        a.load(1, 6, off);
        a.store(0, 40 + 8 * i as i16, 1);
    }
    a.bind(submit);
    a.mov(1, 0);
    a.mov_imm(2, BPF_RB_NO_WAKEUP);
    a.call(helper::RINGBUF_SUBMIT);
    a.mov_imm(0, 0);
    a.exit();
    // The ring is full: count the drop.
    a.bind(dropped);
    a.emit(insn(0x62, 10, 0, -4, 0)); // *(u32 *)(r10 - 4) = 0
    a.mov(2, 10);
    a.emit(insn(0x07, 2, 0, 0, -4)); // r2 += -4
    a.load_map(1, lost);
    a.call(helper::MAP_LOOKUP_ELEM);
    a.jump(JEQ, 0, 0, out);
    a.mov_imm(1, 1);
    a.emit(insn(0xdb, 0, 1, 0, 0)); // lock *(u64 *)(r0 + 0) += r1
    a.bind(out);
    a.mov_imm(0, 0);
    a.exit();
    a.finish()
}

/// cookie, tid, time, rsp and rflags into the record at r0.
fn head(a: &mut Asm) {
    a.store(0, 0, 8);
    a.store(0, 8, 7);
    a.store(0, 16, 9);
    a.load(1, 6, regs::SP);
    a.store(0, 24, 1);
    a.load(1, 6, regs::FLAGS);
    a.store(0, 32, 1);
}

/// The kernel objects of one process image.
pub struct Objects {
    pub ring: i32,
    pub lost: i32,
    pub prog: i32,
    /// The sites' switches.
    pub flags: super::flags::Flags,
    /// Bytes of the ring's data area.
    pub ring_size: usize,
    /// Where the image's descriptors go (`open::Budget::floor`).
    pub floor: i32,
}

/// Creates the ring (`bytes`, a power of two of pages), the drop counter
/// and the program. Errors are ready to show; refusals say so.
pub fn create(bytes: usize, floor: i32) -> Result<Objects, (bool, String)> {
    let refused = |e: i32| e == libc::EPERM || e == libc::EACCES;
    let mut size = bytes.next_power_of_two().max(4096);
    let ring = loop {
        match sys::map_create(sys::BPF_MAP_TYPE_RINGBUF, 0, 0, size as u32, 0) {
            Ok(fd) => break super::open::move_fd(fd, floor),
            Err(e) if e == libc::ENOMEM && size > 64 * 1024 => size /= 2,
            Err(e) if refused(e) => return Err((true, sys::refusal(&format!("creating a BPF ring buffer: {}", sys::strerror(e))))),
            Err(libc::ENOSYS) => {
                return Err((true, "the bpf system call is not available here (a seccomp filter, or a kernel without BPF); use HOTPROBE_BACKEND=inline".into()))
            }
            Err(e) => return Err((false, format!("cannot create the BPF ring buffer: {}", sys::strerror(e)))),
        }
    };
    let lost = match sys::map_create(sys::BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0) {
        Ok(fd) => super::open::move_fd(fd, floor),
        Err(e) => {
            sys::close(ring);
            return Err((
                refused(e),
                format!("cannot create the BPF drop counter: {}", sys::strerror(e)),
            ));
        }
    };
    let flags = match super::flags::Flags::create(floor) {
        Ok(f) => f,
        Err(e) => {
            sys::close(ring);
            sys::close(lost);
            return Err((
                refused(e),
                format!("cannot create the BPF site switches: {}", sys::strerror(e)),
            ));
        }
    };
    match sys::prog_load(&program(ring, lost, flags.fd)) {
        Ok(fd) => Ok(Objects {
            ring,
            lost,
            prog: super::open::move_fd(fd, floor),
            flags,
            ring_size: size,
            floor,
        }),
        Err((e, log)) => {
            sys::close(ring);
            sys::close(lost);
            sys::close(flags.fd);
            if refused(e) {
                Err((
                    true,
                    sys::refusal(&format!("loading the BPF program: {}", sys::strerror(e))),
                ))
            } else {
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                Err((false, format!("the kernel refused the backend's BPF program ({}; verifier: {last}); this kernel may lack uprobe_multi (Linux 6.6+)", sys::strerror(e))))
            }
        }
    }
}

impl Objects {
    /// Records dropped because the ring was full.
    pub fn lost(&self) -> u64 {
        sys::map_lookup_u64(self.lost, 0).unwrap_or(0)
    }

    pub fn close(&self) {
        sys::close(self.flags.fd);
        sys::close(self.prog);
        sys::close(self.lost);
        sys::close(self.ring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let p = program(3, 4, 5);
        // Every jump's target is inside the program.
        for (i, &w) in p.iter().enumerate() {
            let code = (w & 0xff) as u8;
            if matches!(code, JA | JEQ | JNE | JNE_REG) {
                let off = ((w >> 16) & 0xffff) as u16 as i16 as i64;
                let to = i as i64 + 1 + off;
                assert!(
                    to > i as i64 && (to as usize) < p.len(),
                    "jump at {i} to {to}"
                );
            }
        }
        // It ends with `exit`.
        assert_eq!(p.last().map(|w| w & 0xff), Some(0x95));
    }
}

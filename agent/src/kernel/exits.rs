//! Where a probed function ends, and how the reader tells at run time.
//!
//! uretprobes break C++ exceptions and backtraces, so the kernel backend
//! puts uprobes on the function's own exit instructions (from
//! `hotprobe_x86::exit_sites`, plus those of its `.cold` part) and closes
//! the frame whose entry stack pointer equals the stack pointer there:
//!
//! * `ret`: always an exit.
//! * a direct `jmp` out of the body: a tail call; the function ends here
//!   (so under this backend a tail-calling function's time excludes the
//!   callee, unlike inline, where the callee returns through the caller's
//!   exit), and the callee's entry opens its own frame at the same sp.
//! * a conditional branch out of the body: the uprobe fires whether or not
//!   the branch is taken, so the record carries rflags (and rcx) and the
//!   reader evaluates the instruction's condition.
//! * an indirect `jmp`: a switch table (target inside the body) or a tail
//!   call through a pointer (outside). The record carries the
//!   general-purpose registers (a wide record); the reader computes the target, reading
//!   the memory operand from its own process (the reader is in-process),
//!   and closes the frame only when the target is outside. A target it
//!   cannot compute (segment-relative operands) leaves the frame open: a
//!   later entry or return on the same thread closes it as abandoned.
//!
//! Jumps between a function and its `.cold` part are not exits.

use super::sys::{self, reg};
use hotprobe_x86::{ExitKind, ExitSite};
use iced_x86::{ConditionCode, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// What a hit at an exit site means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `ret` or a tail `jmp`: the frame at sp closes.
    Always,
    /// A conditional branch out of the body: closes when taken.
    When(Condition),
    /// An indirect `jmp`: closes when its target is outside the function.
    Indirect(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// A `jcc`: its condition code over the flags.
    Flags(ConditionCode),
    /// `jrcxz` / `jecxz`.
    CxZero { bits32: bool },
    /// `loop` (0), `loope` (1), `loopne` (2): rcx is decremented first.
    Loop(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// `jmp reg`: the perf register number.
    Register(u32),
    /// `jmp [base + index * scale + disp]` (RIP-relative: disp is absolute).
    Memory {
        base: Option<u32>,
        index: Option<u32>,
        scale: u32,
        disp: u64,
    },
    /// Not computable from the sampled registers.
    Unknown,
}

/// One exit site of a function, ready to open.
#[derive(Debug, Clone)]
pub struct ExitSpec {
    /// File offset of the instruction (what the uprobe needs).
    pub file_offset: u64,
    /// Runtime address, for messages.
    pub address: u64,
    pub exit: Exit,
    /// The kernel emulates the instruction (no single-step): a cheaper hit.
    pub emulated: bool,
}

/// One piece of a function's code: the body, or its `.cold` part.
pub struct Part<'a> {
    pub code: &'a [u8],
    pub address: u64,
    pub file_offset: u64,
}

/// The exits of a function made of `parts` (the body first). Runtime
/// address ranges of all parts count as inside the function.
pub fn plan(parts: &[Part<'_>]) -> Result<Vec<ExitSpec>, String> {
    let inside: Vec<(u64, u64)> = parts
        .iter()
        .map(|p| (p.address, p.address + p.code.len() as u64))
        .collect();
    let is_inside = |t: u64| inside.iter().any(|&(lo, hi)| lo <= t && t < hi);
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let sites = hotprobe_x86::exit_sites(part.code, part.address).map_err(|r| {
            if i == 0 {
                format!("exits not found: {r}")
            } else {
                format!("exits of its cold part not found: {r}")
            }
        })?;
        for site in sites {
            if let Some(spec) = spec_of(part, &site, &is_inside) {
                out.push(spec);
            }
        }
    }
    Ok(out)
}

fn spec_of(part: &Part<'_>, site: &ExitSite, is_inside: &dyn Fn(u64) -> bool) -> Option<ExitSpec> {
    let address = part.address + site.offset;
    let insn = decode_at(part.code, site.offset as usize, address)?;
    let exit = match site.kind {
        ExitKind::Ret => Exit::Always,
        ExitKind::TailJump { target } => {
            if is_inside(target) {
                return None;
            }
            Exit::Always
        }
        ExitKind::ConditionalTailJump { target } => {
            if is_inside(target) {
                return None;
            }
            Exit::When(condition_of(&insn)?)
        }
        ExitKind::IndirectJump => Exit::Indirect(operand_of(&insn)),
    };
    let emulated = is_emulated(&insn, &part.code[site.offset as usize..]);
    Some(ExitSpec {
        file_offset: part.file_offset + site.offset,
        address,
        exit,
        emulated,
    })
}

fn decode_at(code: &[u8], offset: usize, address: u64) -> Option<Instruction> {
    let bytes = code.get(offset..)?;
    let insn = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE).decode();
    (!insn.is_invalid()).then_some(insn)
}

/// Decodes the first instruction of a function: whether the kernel emulates it.
pub fn entry_is_emulated(code: &[u8], address: u64) -> bool {
    decode_at(code, 0, address).is_some_and(|i| is_emulated(&i, code))
}

/// Whether x86 uprobes emulate `insn` instead of single-stepping it out of
/// line (measured here: ~1 µs per hit against ~4.6 µs): `push reg`, `nop`,
/// and direct `jmp`/`call`/`jcc` without an operand-size prefix. `bytes`
/// start with the instruction.
fn is_emulated(insn: &Instruction, bytes: &[u8]) -> bool {
    const LEGACY_PREFIXES: [u8; 11] = [
        0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65,
    ];
    let operand_size_prefix = bytes
        .iter()
        .take(insn.len())
        .take_while(|b| LEGACY_PREFIXES.contains(b))
        .any(|&b| b == 0x66);
    match insn.mnemonic() {
        Mnemonic::Push => insn.op0_kind() == OpKind::Register && insn.op0_register().is_gpr64(),
        Mnemonic::Nop => insn.len() == 1,
        Mnemonic::Jmp | Mnemonic::Call => {
            matches!(
                insn.op0_kind(),
                OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
            ) && !operand_size_prefix
        }
        _ => {
            insn.condition_code() != ConditionCode::None
                && is_near_branch(insn)
                && !operand_size_prefix
        }
    }
}

fn is_near_branch(insn: &Instruction) -> bool {
    matches!(
        insn.op0_kind(),
        OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
    ) && !matches!(
        insn.mnemonic(),
        Mnemonic::Jrcxz
            | Mnemonic::Jecxz
            | Mnemonic::Jcxz
            | Mnemonic::Loop
            | Mnemonic::Loope
            | Mnemonic::Loopne
    )
}

fn condition_of(insn: &Instruction) -> Option<Condition> {
    match insn.mnemonic() {
        Mnemonic::Jrcxz => Some(Condition::CxZero { bits32: false }),
        Mnemonic::Jecxz => Some(Condition::CxZero { bits32: true }),
        Mnemonic::Loop => Some(Condition::Loop(0)),
        Mnemonic::Loope => Some(Condition::Loop(1)),
        Mnemonic::Loopne => Some(Condition::Loop(2)),
        _ => match insn.condition_code() {
            ConditionCode::None => None,
            cc => Some(Condition::Flags(cc)),
        },
    }
}

fn perf_reg(r: Register) -> Option<u32> {
    Some(match r {
        Register::RAX => reg::AX,
        Register::RBX => reg::BX,
        Register::RCX => reg::CX,
        Register::RDX => reg::DX,
        Register::RSI => reg::SI,
        Register::RDI => reg::DI,
        Register::RBP => reg::BP,
        Register::RSP => reg::SP,
        Register::R8 => reg::R8,
        Register::R9 => reg::R8 + 1,
        Register::R10 => reg::R8 + 2,
        Register::R11 => reg::R8 + 3,
        Register::R12 => reg::R8 + 4,
        Register::R13 => reg::R8 + 5,
        Register::R14 => reg::R8 + 6,
        Register::R15 => reg::R8 + 7,
        _ => return None,
    })
}

fn operand_of(insn: &Instruction) -> Operand {
    match insn.op0_kind() {
        OpKind::Register => {
            perf_reg(insn.op0_register()).map_or(Operand::Unknown, Operand::Register)
        }
        OpKind::Memory => {
            if matches!(insn.segment_prefix(), Register::FS | Register::GS)
                || insn.memory_size().size() != 8
            {
                return Operand::Unknown;
            }
            let base = match insn.memory_base() {
                Register::None | Register::RIP => None,
                r => match perf_reg(r) {
                    Some(p) => Some(p),
                    None => return Operand::Unknown,
                },
            };
            let index = match insn.memory_index() {
                Register::None => None,
                r => match perf_reg(r) {
                    Some(p) => Some(p),
                    None => return Operand::Unknown,
                },
            };
            Operand::Memory {
                base,
                index,
                scale: insn.memory_index_scale(),
                disp: insn.memory_displacement64(),
            }
        }
        _ => Operand::Unknown,
    }
}

/// Bits of RFLAGS.
const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;

/// Whether a conditional branch is taken, given the flags and rcx at the branch.
pub fn taken(cond: Condition, flags: u64, rcx: u64) -> bool {
    let f = |b: u64| flags & b != 0;
    match cond {
        Condition::CxZero { bits32 } => {
            if bits32 {
                rcx as u32 == 0
            } else {
                rcx == 0
            }
        }
        Condition::Loop(kind) => {
            let more = rcx.wrapping_sub(1) != 0;
            match kind {
                1 => more && f(ZF),
                2 => more && !f(ZF),
                _ => more,
            }
        }
        Condition::Flags(cc) => match cc {
            ConditionCode::o => f(OF),
            ConditionCode::no => !f(OF),
            ConditionCode::b => f(CF),
            ConditionCode::ae => !f(CF),
            ConditionCode::e => f(ZF),
            ConditionCode::ne => !f(ZF),
            ConditionCode::be => f(CF) || f(ZF),
            ConditionCode::a => !f(CF) && !f(ZF),
            ConditionCode::s => f(SF),
            ConditionCode::ns => !f(SF),
            ConditionCode::p => f(PF),
            ConditionCode::np => !f(PF),
            ConditionCode::l => f(SF) != f(OF),
            ConditionCode::ge => f(SF) == f(OF),
            ConditionCode::le => f(ZF) || f(SF) != f(OF),
            ConditionCode::g => !f(ZF) && f(SF) == f(OF),
            ConditionCode::None => false,
        },
    }
}

/// The target of an indirect jump from the sampled registers (and this
/// process's memory for a memory operand), or None when it cannot be had.
pub fn indirect_target(op: &Operand, regs: &[u64], mask: u64) -> Option<u64> {
    let get = |r: u32| sys::reg_index(mask, r).and_then(|i| regs.get(i).copied());
    match *op {
        Operand::Register(r) => get(r),
        Operand::Memory {
            base,
            index,
            scale,
            disp,
        } => {
            let mut addr = disp;
            if let Some(b) = base {
                addr = addr.wrapping_add(get(b)?);
            }
            if let Some(x) = index {
                addr = addr.wrapping_add(get(x)?.wrapping_mul(scale as u64));
            }
            let mut word = [0u8; 8];
            sys::read_own(addr as usize, &mut word).then(|| u64::from_le_bytes(word))
        }
        Operand::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(code: &[u8], address: u64) -> Part<'_> {
        Part {
            code,
            address,
            file_offset: address - 0x1000,
        }
    }

    #[test]
    fn ret_and_tail_jump_are_exits_and_jumps_inside_are_not() {
        // 0: test edi,edi; 2: je +3 (inside); 4: ret; 5: jmp 0x3000 (outside); 10: nop
        let code = [
            0x85, 0xff, 0x74, 0x01, 0xc3, 0xe9, 0xf6, 0x1f, 0x00, 0x00, 0x90,
        ];
        let specs = plan(&[part(&code, 0x2000)]).unwrap();
        assert_eq!(specs.len(), 2, "{specs:?}");
        assert_eq!(specs[0].file_offset, 0x1004);
        assert_eq!(specs[0].exit, Exit::Always);
        assert!(!specs[0].emulated, "ret is single-stepped");
        assert_eq!(specs[1].file_offset, 0x1005);
        assert_eq!(specs[1].exit, Exit::Always);
        assert!(specs[1].emulated, "a direct jmp is emulated");
    }

    #[test]
    fn conditional_tail_call_carries_its_condition() {
        // 0: test edi,edi; 2: jne rel32 out of the body; 8: ret
        let code = [0x85, 0xff, 0x0f, 0x85, 0x00, 0x10, 0x00, 0x00, 0xc3];
        let specs = plan(&[part(&code, 0x2000)]).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].exit,
            Exit::When(Condition::Flags(ConditionCode::ne))
        );
        let c = Condition::Flags(ConditionCode::ne);
        assert!(taken(c, 0, 0));
        assert!(!taken(c, ZF, 0));
    }

    #[test]
    fn jumps_into_the_cold_part_and_back_are_not_exits() {
        // body at 0x2000: jne to the cold part at 0x5000; ret
        let body = [0x0f, 0x85, 0xfa, 0x2f, 0x00, 0x00, 0xc3];
        // cold part at 0x5000: jmp back to 0x2006; ret
        let cold = [0xe9, 0x01, 0xd0, 0xff, 0xff, 0xc3];
        let specs = plan(&[part(&body, 0x2000), part(&cold, 0x5000)]).unwrap();
        let offsets: Vec<u64> = specs.iter().map(|s| s.file_offset).collect();
        assert_eq!(offsets, vec![0x1006, 0x4005], "{specs:?}");
    }

    #[test]
    fn indirect_jumps_name_their_operand() {
        // jmp rax; jmp [rip+0x10]; jmp [rdx+rax*8+0x20]
        let code = [
            0xff, 0xe0, 0xff, 0x25, 0x10, 0x00, 0x00, 0x00, 0xff, 0x64, 0xc2, 0x20,
        ];
        let specs = plan(&[part(&code, 0x2000)]).unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].exit, Exit::Indirect(Operand::Register(reg::AX)));
        assert_eq!(
            specs[1].exit,
            Exit::Indirect(Operand::Memory {
                base: None,
                index: None,
                scale: 1,
                disp: 0x2008 + 0x10
            })
        );
        assert_eq!(
            specs[2].exit,
            Exit::Indirect(Operand::Memory {
                base: Some(reg::DX),
                index: Some(reg::AX),
                scale: 8,
                disp: 0x20
            })
        );
        // The register form from sampled registers (mask: all GPRs).
        let mut regs = vec![0u64; sys::GPR_MASK.count_ones() as usize];
        regs[sys::reg_index(sys::GPR_MASK, reg::AX).unwrap()] = 0x4242;
        assert_eq!(
            indirect_target(&Operand::Register(reg::AX), &regs, sys::GPR_MASK),
            Some(0x4242)
        );
        // The memory form reads this process's memory.
        let table: [u64; 2] = [0x1111, 0x2222];
        let base = table.as_ptr() as u64;
        regs[sys::reg_index(sys::GPR_MASK, reg::DX).unwrap()] = base;
        regs[sys::reg_index(sys::GPR_MASK, reg::AX).unwrap()] = 1;
        let op = Operand::Memory {
            base: Some(reg::DX),
            index: Some(reg::AX),
            scale: 8,
            disp: 0,
        };
        assert_eq!(indirect_target(&op, &regs, sys::GPR_MASK), Some(0x2222));
        assert_eq!(
            indirect_target(&Operand::Unknown, &regs, sys::GPR_MASK),
            None
        );
    }

    #[test]
    fn condition_codes_follow_the_flags() {
        use ConditionCode::*;
        let cases: [(ConditionCode, u64, bool); 12] = [
            (e, ZF, true),
            (e, 0, false),
            (b, CF, true),
            (a, 0, true),
            (a, CF, false),
            (l, SF, true),
            (l, SF | OF, false),
            (ge, SF | OF, true),
            (le, ZF, true),
            (g, 0, true),
            (g, ZF, false),
            (p, PF, true),
        ];
        for (cc, flags, want) in cases {
            assert_eq!(
                taken(Condition::Flags(cc), flags, 0),
                want,
                "{cc:?} {flags:#x}"
            );
        }
        assert!(taken(Condition::CxZero { bits32: false }, 0, 0));
        assert!(!taken(Condition::CxZero { bits32: false }, 0, 1 << 40));
        assert!(taken(Condition::CxZero { bits32: true }, 0, 1 << 40));
        assert!(
            !taken(Condition::Loop(0), 0, 1),
            "loop falls through when rcx reaches 0"
        );
        assert!(taken(Condition::Loop(0), 0, 5));
        assert!(!taken(Condition::Loop(1), 0, 5), "loope needs ZF");
    }

    #[test]
    fn emulated_first_instructions() {
        assert!(entry_is_emulated(&[0x55], 0x1000), "push rbp");
        assert!(entry_is_emulated(&[0x41, 0x57], 0x1000), "push r15");
        assert!(entry_is_emulated(&[0x90], 0x1000), "nop");
        assert!(
            !entry_is_emulated(&[0xf3, 0x0f, 0x1e, 0xfa], 0x1000),
            "endbr64 is single-stepped"
        );
        assert!(
            !entry_is_emulated(&[0x48, 0x83, 0xec, 0x08], 0x1000),
            "sub rsp, 8"
        );
        assert!(!entry_is_emulated(&[0x8d, 0x47, 0x01], 0x1000), "lea");
    }
}

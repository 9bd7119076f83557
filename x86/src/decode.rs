//! Linear-sweep decoding and instruction classification shared by the analyses.

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind,
};

/// Decoding is always 64-bit.
pub(crate) const BITNESS: u32 = 64;

/// A decoder over `code` whose first byte is at `address`.
pub(crate) fn decoder(code: &[u8], address: u64) -> Decoder<'_> {
    Decoder::with_ip(BITNESS, code, address, DecoderOptions::NONE)
}

/// One step of a linear sweep.
pub(crate) enum Step {
    /// A decoded instruction (its `ip()` is its address).
    Insn(Instruction),
    /// A byte at this offset starts no valid instruction; the sweep goes on at the
    /// next byte.
    Invalid { offset: u64 },
    /// The instruction starting at this offset runs past the end of the code; the
    /// sweep ends.
    Truncated { offset: u64 },
}

/// Linear sweep over a whole body: every instruction from the first byte to the
/// last, resynchronising one byte later after an undecodable byte.
pub(crate) struct Sweep<'a> {
    decoder: Decoder<'a>,
    address: u64,
    done: bool,
}

impl<'a> Sweep<'a> {
    pub(crate) fn new(code: &'a [u8], address: u64) -> Self {
        Sweep {
            decoder: decoder(code, address),
            address,
            done: false,
        }
    }
}

impl Iterator for Sweep<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        if self.done || !self.decoder.can_decode() {
            return None;
        }
        let pos = self.decoder.position();
        let offset = pos as u64;
        let insn = self.decoder.decode();
        if !insn.is_invalid() {
            return Some(Step::Insn(insn));
        }
        if self.decoder.last_error() == DecoderError::NoMoreBytes {
            self.done = true;
            return Some(Step::Truncated { offset });
        }
        let next = pos + 1;
        if self.decoder.set_position(next).is_err() {
            self.done = true;
        } else {
            self.decoder.set_ip(self.address.wrapping_add(next as u64));
        }
        Some(Step::Invalid { offset })
    }
}

/// The target of a direct near branch (`jmp`, `jcc`, `call`, `loop*`, `jrcxz`,
/// `xbegin`), if the instruction is one.
pub(crate) fn near_target(insn: &Instruction) -> Option<u64> {
    let is_branch = (0..insn.op_count()).any(|n| {
        matches!(
            insn.op_kind(n),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        )
    });
    is_branch.then(|| insn.near_branch_target())
}

/// The address a RIP/EIP-relative memory operand refers to, if there is one.
pub(crate) fn ip_rel_target(insn: &Instruction) -> Option<u64> {
    let has_mem = (0..insn.op_count()).any(|n| insn.op_kind(n) == OpKind::Memory);
    (has_mem && insn.is_ip_rel_memory_operand()).then(|| insn.ip_rel_memory_address())
}

/// Execution never continues with the next instruction: returns and unconditional
/// jumps (direct or indirect).
pub(crate) fn no_fallthrough(insn: &Instruction) -> bool {
    matches!(
        insn.flow_control(),
        FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
    )
}

/// Padding that compilers and assemblers put between functions.
pub(crate) fn is_padding(insn: &Instruction) -> bool {
    matches!(
        insn.mnemonic(),
        Mnemonic::Nop | Mnemonic::Int3 | Mnemonic::Ud2
    ) || matches!(insn.code(), Code::Add_rm8_r8 if insn.op0_kind() == OpKind::Memory
            && insn.memory_base() == iced_x86::Register::RAX
            && insn.op1_register() == iced_x86::Register::AL
            && insn.memory_displacement64() == 0)
}

/// After this instruction, what follows may be padding or data rather than code
/// reached by falling through: it does not fall through, it traps, it is padding
/// itself, or it is a call (which may not return: `abort`, `__stack_chk_fail`).
pub(crate) fn may_precede_padding(insn: &Instruction) -> bool {
    no_fallthrough(insn)
        || is_padding(insn)
        || matches!(
            insn.flow_control(),
            FlowControl::Exception
                | FlowControl::Interrupt
                | FlowControl::Call
                | FlowControl::IndirectCall
        )
        || insn.mnemonic() == Mnemonic::Hlt
}

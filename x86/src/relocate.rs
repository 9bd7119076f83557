//! Re-encoding the stolen instructions at the trampoline.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, MemoryOperand, OpKind,
    Register,
};

use crate::analyze::{plan, Prologue};
use crate::decode::{self, BITNESS};
use crate::{in_reach, Rejection, MAX_RELOCATED_LEN};

/// Machine code to place at `dest` that executes the stolen instructions of the
/// function at `address` (body `code`) with the same effect as in place, then
/// continues at `address + stolen_len`.
///
/// Runs the whole of [`crate::analyze_entry`] first and fails with the same
/// rejection. Then:
/// * ordinary instructions are copied; RIP-relative operands and branches are
///   re-encoded by iced's `BlockEncoder` (short branches become near ones; a
///   `rel32` branch whose target is out of reach from `dest` becomes
///   `jmp [rip+pointer]`, which clobbers no register);
/// * a `call` (always the last stolen instruction) becomes
///   `push qword [rip+K]; jmp target` with `K` an 8-byte constant in the emitted
///   block holding the original return address, so the callee returns straight
///   into the original body and no return address ever points into the
///   trampoline; an rsp-based `call [rsp+d]` reads `[rsp+d+8]` after the push;
/// * unless the last relocated instruction does not fall through (`ret`, `jmp`,
///   or the call above), a `jmp` back to `address + stolen_len` ends the code.
///
/// No register and no flag is changed beyond what the original instructions do.
/// `dest` must be [`in_reach`] of `address` ([`Rejection::OutOfReach`]); a
/// RIP-relative operand whose target is out of ±2 GiB reach from `dest` gives
/// [`Rejection::RelocationFailed`]. The output is at most [`MAX_RELOCATED_LEN`]
/// bytes.
pub fn relocate_prologue(code: &[u8], address: u64, dest: u64) -> Result<Vec<u8>, Rejection> {
    let prologue = plan(code, address)?;
    if !in_reach(address, dest) {
        return Err(Rejection::OutOfReach { address, dest });
    }
    let block = build_block(&prologue, address)?;
    let encoded = BlockEncoder::encode(
        BITNESS,
        InstructionBlock::new(&block, dest),
        BlockEncoderOptions::NONE,
    )
    .map_err(|e| Rejection::RelocationFailed { why: e.to_string() })?;
    let bytes = encoded.code_buffer;
    if bytes.len() > MAX_RELOCATED_LEN {
        return Err(Rejection::RelocationFailed {
            why: format!(
                "{} bytes, more than the {MAX_RELOCATED_LEN} a trampoline holds",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

fn failed(why: impl std::fmt::Display) -> Rejection {
    Rejection::RelocationFailed {
        why: why.to_string(),
    }
}

/// The instructions to encode.
///
/// `BlockEncoder` treats a branch target or RIP-relative address equal to the
/// original IP of an instruction in the block as a reference to that instruction
/// and moves it along. A stolen `lea rax, [rip-7]` taking the function's own
/// address, or a `jmp` to the entry, must keep pointing at the original code, so
/// the emitted instructions get IPs from an unused range near the top of the
/// address space instead of their own; only the constants of relocated calls are
/// referred to by IP on purpose.
fn build_block(prologue: &Prologue, address: u64) -> Result<Vec<Instruction>, Rejection> {
    let resume = address.wrapping_add(prologue.stolen_len as u64);
    let mut referenced = vec![resume];
    for insn in &prologue.insns {
        referenced.extend(decode::near_target(insn));
        referenced.extend(decode::ip_rel_target(insn));
    }
    let mut next_ip = unused_ip_range(&referenced)
        .ok_or_else(|| failed("no free instruction addresses for the encoder"))?;
    let mut fresh_ip = move || {
        next_ip += 1;
        next_ip
    };

    let mut block = Vec::with_capacity(prologue.insns.len() + 3);
    let mut constants = Vec::new();
    let mut falls_through = true;
    for insn in &prologue.insns {
        if insn.mnemonic() == iced_x86::Mnemonic::Call {
            let const_ip = fresh_ip();
            constants.push((const_ip, insn.next_ip()));
            let mut push = Instruction::with1(
                Code::Push_rm64,
                MemoryOperand::with_base_displ(Register::RIP, const_ip as i64),
            )
            .map_err(failed)?;
            push.set_ip(fresh_ip());
            block.push(push);
            let mut jump = call_as_jump(insn)?;
            jump.set_ip(fresh_ip());
            block.push(jump);
            falls_through = false;
            // A call is always the last stolen instruction (checked by `plan`).
            break;
        }
        let mut copy = *insn;
        copy.set_ip(fresh_ip());
        block.push(copy);
        falls_through = !decode::no_fallthrough(insn);
    }
    if falls_through {
        let mut back = Instruction::with_branch(Code::Jmp_rel32_64, resume).map_err(failed)?;
        back.set_ip(fresh_ip());
        block.push(back);
    }
    for (ip, value) in constants {
        let mut data = Instruction::with_declare_qword_1(value);
        data.set_ip(ip);
        block.push(data);
    }
    Ok(block)
}

/// A range of 64 instruction addresses that no branch or operand refers to.
/// Returns the address just below it.
fn unused_ip_range(referenced: &[u64]) -> Option<u64> {
    (1..=32u64)
        .map(|k| u64::MAX - k * 0x1000)
        .find(|base| !referenced.iter().any(|r| r.wrapping_sub(*base) <= 64))
}

/// The `jmp` that replaces a stolen `call` (its forms were checked by `plan`).
fn call_as_jump(call: &Instruction) -> Result<Instruction, Rejection> {
    match call.code() {
        Code::Call_rel32_64 => {
            Instruction::with_branch(Code::Jmp_rel32_64, call.near_branch_target()).map_err(failed)
        }
        Code::Call_rm64 if call.op0_kind() == OpKind::Register => {
            Instruction::with1(Code::Jmp_rm64, call.op0_register()).map_err(failed)
        }
        Code::Call_rm64 => {
            let mut jump = *call;
            jump.set_code(Code::Jmp_rm64);
            if jump.memory_base() == Register::RSP {
                let displ = (jump.memory_displacement64() as i64)
                    .checked_add(8)
                    .filter(|d| *d <= i32::MAX as i64)
                    .ok_or_else(|| failed("call through [rsp+displacement] too large"))?;
                jump.set_memory_displacement64(displ as u64);
                // Let the encoder choose disp8 or disp32.
                jump.set_memory_displ_size(1);
            }
            Ok(jump)
        }
        _ => Err(failed("unsupported call form")),
    }
}

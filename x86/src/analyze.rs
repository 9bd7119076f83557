//! Can a function's entry be patched? The prologue and the whole-body checks.

use iced_x86::{Code, DecoderError, Instruction, Mnemonic, OpKind, Register};

use crate::decode::{self, Step, Sweep};
use crate::{EntryInfo, Rejection, ENDBR64, PATCH_LEN};

/// The stolen instructions of a patchable entry, as [`crate::relocate_prologue`]
/// needs them.
pub(crate) struct Prologue {
    /// Whole instructions covering at least `PATCH_LEN` bytes, in order. When one
    /// of them does not fall through (`ret`, `jmp`), it is the last one kept here:
    /// what follows it in the stolen bytes is dead and is not relocated.
    pub(crate) insns: Vec<Instruction>,
    /// Number of whole instructions in the stolen bytes (dead ones included).
    pub(crate) count: usize,
    /// Bytes stolen.
    pub(crate) stolen_len: usize,
}

/// See the crate docs and the contract in `lib.rs`.
///
/// `code` is the whole function body (`size` bytes as its symbol says), `address`
/// its address in any consistent address space. Decodes the prologue and the whole
/// body and rejects what cannot be patched safely (see [`Rejection`]).
pub fn analyze_entry(code: &[u8], address: u64) -> Result<EntryInfo, Rejection> {
    let prologue = plan(code, address)?;
    Ok(EntryInfo {
        stolen_len: prologue.stolen_len,
        starts_with_endbr64: code.starts_with(&ENDBR64),
        stolen_instructions: prologue.count,
    })
}

/// Runs the branch check of [`analyze_entry`] over code outside the function: any
/// direct branch or RIP-relative reference in `code` (at `code_address`) that lands
/// strictly inside `(entry_address, entry_address + stolen_len)` is reported as
/// [`Rejection::ForeignBranchIntoPatch`]. Meant for parts of a function that the
/// compiler split off (`foo.cold`, `foo.part.0`) and that may jump back into it.
pub fn check_foreign_code(
    code: &[u8],
    code_address: u64,
    entry_address: u64,
    stolen_len: usize,
) -> Result<(), Rejection> {
    for step in Sweep::new(code, code_address) {
        if let Step::Insn(insn) = step {
            for target in [decode::near_target(&insn), decode::ip_rel_target(&insn)]
                .into_iter()
                .flatten()
            {
                if let Some(to) = inside(target, entry_address, stolen_len) {
                    return Err(Rejection::ForeignBranchIntoPatch {
                        from: insn.ip(),
                        to,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The offset of `target` from `address` when it is strictly inside the stolen
/// bytes `(address, address + stolen_len)`.
fn inside(target: u64, address: u64, stolen_len: usize) -> Option<u64> {
    let off = target.wrapping_sub(address);
    (off > 0 && off < stolen_len as u64).then_some(off)
}

/// The full analysis: prologue decoding, relocatability, whole-body checks.
pub(crate) fn plan(code: &[u8], address: u64) -> Result<Prologue, Rejection> {
    let prologue = decode_prologue(code, address)?;
    for insn in &prologue.insns {
        check_relocatable(insn, address, prologue.stolen_len)?;
    }
    check_body(code, address, prologue.stolen_len)?;
    Ok(prologue)
}

/// Decodes whole instructions from the entry until they cover `PATCH_LEN` bytes.
fn decode_prologue(code: &[u8], address: u64) -> Result<Prologue, Rejection> {
    let size = code.len() as u64;
    if code.len() < PATCH_LEN {
        return Err(Rejection::TooSmall { size });
    }
    let mut decoder = decode::decoder(code, address);
    let mut insns = Vec::new();
    let mut count = 0;
    let mut len = 0usize;
    let mut terminated = false;
    while len < PATCH_LEN {
        let insn = decoder.decode();
        if insn.is_invalid() {
            if terminated {
                // Dead bytes after a `ret`/`jmp` that do not decode (padding cut
                // by the symbol size): the patch simply covers them.
                len = PATCH_LEN;
                break;
            }
            let at = len as u64;
            return Err(if decoder.last_error() == DecoderError::NoMoreBytes {
                Rejection::Truncated { at, size }
            } else {
                Rejection::Undecodable { at }
            });
        }
        len += insn.len();
        count += 1;
        if !terminated {
            terminated = decode::no_fallthrough(&insn);
            insns.push(insn);
        }
    }
    Ok(Prologue {
        insns,
        count,
        stolen_len: len,
    })
}

fn unrelocatable(insn: &Instruction, address: u64, why: impl Into<String>) -> Rejection {
    Rejection::Unrelocatable {
        at: insn.ip().wrapping_sub(address),
        why: why.into(),
    }
}

/// Whether a stolen instruction can be re-encoded in a trampoline with the same
/// effect (branch targets and RIP-relative operands are the encoder's business;
/// range problems show up only in `relocate_prologue`).
fn check_relocatable(insn: &Instruction, address: u64, stolen_len: usize) -> Result<(), Rejection> {
    match insn.code() {
        Code::Int3 | Code::Int1 => {
            return Err(unrelocatable(
                insn,
                address,
                "breakpoint (int3): a debugger or another tool has patched this function",
            ))
        }
        Code::Xbegin_rel16 | Code::Xbegin_rel32 => {
            return Err(unrelocatable(
                insn,
                address,
                "xbegin (transaction abort address)",
            ))
        }
        Code::Call_m1616
        | Code::Call_m1632
        | Code::Call_m1664
        | Code::Call_ptr1616
        | Code::Call_ptr1632
        | Code::Jmp_m1616
        | Code::Jmp_m1632
        | Code::Jmp_m1664
        | Code::Jmp_ptr1616
        | Code::Jmp_ptr1632 => return Err(unrelocatable(insn, address, "far call or jump")),
        _ => {}
    }
    if insn.mnemonic() != Mnemonic::Call {
        return Ok(());
    }
    // A call becomes "push the original return address; jmp target", so the
    // callee returns into the original body: that must be right after the patch.
    let end = insn.next_ip().wrapping_sub(address);
    if end != stolen_len as u64 {
        return Err(unrelocatable(
            insn,
            address,
            format!("call returns into the patched bytes (+{end:#x})"),
        ));
    }
    match insn.code() {
        Code::Call_rel32_64 => Ok(()),
        Code::Call_rm64 if insn.op0_kind() == OpKind::Register => {
            if insn.op0_register() == Register::RSP {
                Err(unrelocatable(insn, address, "call rsp"))
            } else {
                Ok(())
            }
        }
        Code::Call_rm64 => {
            // The pushed return address moves rsp down by 8 before the jump reads
            // its operand: an rsp-based operand gets 8 more displacement.
            match insn.memory_base() {
                Register::RSP => {
                    let displ = insn.memory_displacement64() as i64;
                    if displ.checked_add(8).is_some_and(|d| d <= i32::MAX as i64) {
                        Ok(())
                    } else {
                        Err(unrelocatable(
                            insn,
                            address,
                            "call through [rsp+displacement] too large",
                        ))
                    }
                }
                Register::ESP => Err(unrelocatable(
                    insn,
                    address,
                    "call through [esp+…] (32-bit address)",
                )),
                _ => Ok(()),
            }
        }
        _ => Err(unrelocatable(insn, address, "unsupported call form")),
    }
}

/// Whole-body linear sweep: no direct branch and no RIP-relative reference may land
/// strictly inside the stolen bytes.
fn check_body(code: &[u8], address: u64, stolen_len: usize) -> Result<(), Rejection> {
    for step in Sweep::new(code, address) {
        let Step::Insn(insn) = step else { continue };
        let from = insn.ip().wrapping_sub(address);
        if let Some(to) = decode::near_target(&insn).and_then(|t| inside(t, address, stolen_len)) {
            return Err(Rejection::BranchIntoPatch { from, to });
        }
        if let Some(to) = decode::ip_rel_target(&insn).and_then(|t| inside(t, address, stolen_len))
        {
            return Err(Rejection::ReferenceIntoPatch { from, to });
        }
    }
    Ok(())
}

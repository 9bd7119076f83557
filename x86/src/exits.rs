//! A function's exit instructions, for the kernel-uprobe backend.

use iced_x86::{FlowControl, Instruction};

use crate::decode::{self, Step, Sweep};
use crate::{ExitKind, ExitSite, Rejection};

/// Every exit instruction of the body `code` at `address`, in address order:
/// each `ret`/`ret imm16` ([`ExitKind::Ret`]), each direct `jmp` whose target is
/// outside `[address, address + size)` ([`ExitKind::TailJump`]; a jump to
/// `address` itself is inside and is not reported), each indirect `jmp`
/// ([`ExitKind::IndirectJump`]), and each conditional branch out of the body
/// ([`ExitKind::ConditionalTailJump`]). Offsets are relative to `address`.
///
/// A uprobe placed in the middle of an instruction corrupts the program, so this
/// refuses bodies it cannot decode with confidence: undecodable bytes are accepted
/// only after an instruction that may be followed by padding (one that does not
/// fall through, a trap, padding, a call that may not return) and only when
/// nothing but padding follows them up to the end ([`Rejection::Undecodable`]
/// otherwise); a last instruction that runs past the end is accepted in the same
/// position ([`Rejection::Truncated`] otherwise).
pub fn exit_sites(code: &[u8], address: u64) -> Result<Vec<ExitSite>, Rejection> {
    let size = code.len() as u64;
    let mut sites = Vec::new();
    let mut may_pad = false;
    let mut sweep = Sweep::new(code, address);
    while let Some(step) = sweep.next() {
        match step {
            Step::Insn(insn) => {
                if let Some(kind) = exit_kind(&insn, address, size) {
                    sites.push(ExitSite {
                        offset: insn.ip().wrapping_sub(address),
                        len: insn.len() as u8,
                        kind,
                    });
                }
                may_pad = decode::may_precede_padding(&insn);
            }
            Step::Truncated { offset } => {
                if may_pad {
                    break;
                }
                return Err(Rejection::Truncated { at: offset, size });
            }
            Step::Invalid { offset } => {
                if may_pad && only_padding_left(&mut sweep) {
                    break;
                }
                return Err(Rejection::Undecodable { at: offset });
            }
        }
    }
    Ok(sites)
}

/// Consumes the rest of the sweep; true when it is all padding or undecodable.
fn only_padding_left(sweep: &mut Sweep<'_>) -> bool {
    sweep.all(|step| match step {
        Step::Insn(insn) => decode::is_padding(&insn),
        Step::Invalid { .. } | Step::Truncated { .. } => true,
    })
}

fn exit_kind(insn: &Instruction, address: u64, size: u64) -> Option<ExitKind> {
    let outside = |target: u64| target.wrapping_sub(address) >= size;
    match insn.flow_control() {
        FlowControl::Return => Some(ExitKind::Ret),
        FlowControl::IndirectBranch => Some(ExitKind::IndirectJump),
        FlowControl::UnconditionalBranch => match decode::near_target(insn) {
            Some(target) if outside(target) => Some(ExitKind::TailJump { target }),
            Some(_) => None,
            // A far jump to an immediate pointer (not valid in 64-bit code).
            None => Some(ExitKind::IndirectJump),
        },
        FlowControl::ConditionalBranch => match decode::near_target(insn) {
            Some(target) if outside(target) => Some(ExitKind::ConditionalTailJump { target }),
            _ => None,
        },
        _ => None,
    }
}

//! x86-64 code analysis for hotprobe's entry patches and exit probes.
//!
//! hotprobe patches the first bytes of a function with a 5-byte `jmp rel32` to a
//! per-probe trampoline. The instructions that the jump overwrites (the *stolen*
//! instructions) are re-encoded elsewhere so that the function still does what it
//! did. This crate decides whether that is safe, produces the re-encoded code, and
//! finds a function's exit instructions for the kernel-uprobe backend:
//!
//! * [`analyze_entry`]: can the function's entry be patched, and how many bytes are
//!   stolen? Rejections carry a short human reason ([`Rejection`]'s `Display`).
//! * [`relocate_prologue`]: the stolen instructions re-encoded for a given
//!   trampoline address, followed by a jump back into the original body. At most
//!   [`MAX_RELOCATED_LEN`] bytes.
//! * [`exit_sites`]: every `ret`, tail-call `jmp` and indirect `jmp` of a body.
//! * Helpers for the agent: [`jmp_rel32`] (the patch itself), [`in_reach`] (is a
//!   trampoline close enough), [`check_foreign_code`] (run the branch check over
//!   code outside the function, e.g. its `foo.cold` part).
//!
//! All of it is safe Rust on top of `iced-x86`; no input makes these functions
//! panic (the tests feed them random bytes).
//!
//! ```
//! use hotprobe_x86::{analyze_entry, in_reach, jmp_rel32, relocate_prologue};
//!
//! // endbr64; push rbp; mov rbp, rsp; pop rbp; ret
//! let code = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
//! let address = 0x40_1000;
//! let info = analyze_entry(&code, address)?;
//! assert_eq!((info.stolen_len, info.stolen_instructions), (5, 2));
//!
//! // The trampoline meters the call, then runs the relocated prologue, placed at
//! // `dest`, which ends with a jump back to address + stolen_len.
//! let dest = 0x40_8000;
//! assert!(in_reach(address, dest));
//! let relocated = relocate_prologue(&code, address, dest)?;
//! assert_eq!(&relocated[..5], &code[..5]); // endbr64; push rbp
//! assert_eq!(relocated[5], 0xe9); // jmp address + 5
//!
//! // The patch written over the entry: jmp to the trampoline.
//! let trampoline = 0x40_7f00;
//! assert_eq!(jmp_rel32(address, trampoline).map(|p| p[0]), Some(0xe9));
//! # Ok::<(), hotprobe_x86::Rejection>(())
//! ```
//!
//! # Method
//!
//! The body is decoded by *linear sweep*: one instruction after the other from the
//! symbol's address to its end. Trailing padding (`int3`, `nop`, `ud2` runs) decodes
//! like code and is harmless. Bytes that do not decode are skipped one at a time
//! (the decoder resynchronises after a few bytes on real code); a truncated
//! instruction at the very end (a symbol size that cuts a padding `nop`) ends the
//! sweep. [`exit_sites`] is stricter than [`analyze_entry`] because a uprobe placed
//! in the middle of an instruction would corrupt the program: it accepts
//! undecodable bytes only after an instruction that does not fall through (or a
//! call, which may not return) and only when nothing but padding follows them.
//!
//! # What is checked
//!
//! [`analyze_entry`] rejects a function when
//! * it is smaller than the patch ([`Rejection::TooSmall`]);
//! * the stolen bytes do not decode, or an instruction runs past the symbol's end
//!   ([`Rejection::Undecodable`], [`Rejection::Truncated`]);
//! * a direct branch (`jmp`, `jcc`, `call`, `loop*`, `jrcxz`, `xbegin`) anywhere in the
//!   body targets a byte strictly inside the stolen bytes
//!   ([`Rejection::BranchIntoPatch`]; a branch to the entry itself, a tail call or
//!   a recursion, goes through the patch and is fine);
//! * a RIP-relative operand anywhere in the body refers to a byte strictly inside
//!   the stolen bytes (a computed-goto label address, code reading its own bytes:
//!   [`Rejection::ReferenceIntoPatch`]);
//! * a stolen instruction cannot be moved ([`Rejection::Unrelocatable`]): an
//!   `int3`/`int1` (a debugger or another tool already patched the entry), `xbegin`,
//!   far calls and jumps, a `call` that is not the last stolen instruction (its
//!   return address would point into the patch), `call rsp`, and call forms other
//!   than `call rel32` / `call r/m64`.
//!
//! # What is NOT caught
//!
//! The analysis sees one function body. It cannot know about
//! * indirect jumps whose targets are computed from data: switch jump tables in
//!   `.rodata`, computed gotos whose label addresses were taken elsewhere, function
//!   pointers into the middle of a function;
//! * branches from other code into the stolen bytes: hand-written assembly with
//!   several entry points, or GCC's split-off `foo.cold` / `foo.part.N` parts
//!   jumping back into the start of `foo` (run [`check_foreign_code`] over those
//!   parts when they are known);
//! * exception landing pads and other addresses recorded only in tables
//!   (`.gcc_except_table`, `.eh_frame`): a stolen `call` is always the last stolen
//!   instruction, so its return address (and a landing pad right after it) lies at
//!   or after the end of the stolen bytes, but a landing pad of a later call placed
//!   inside the first bytes would not be seen;
//! * data mixed into code, which linear sweep decodes as instructions (this can
//!   only cause spurious rejections in [`analyze_entry`]; [`exit_sites`] refuses
//!   bodies with undecodable bytes in the middle);
//! * self-modifying code and code that reads its own bytes through pointers that
//!   are not RIP-relative;
//! * a thread executing inside the stolen bytes at the moment the patch is written
//!   (the agent's patching protocol deals with that).
//!
//! Other limits:
//! * the relocated prologue has no unwind information: a backtrace taken (by a
//!   signal handler, a profiler) while a thread is inside it, between a relocated
//!   `push rbp` and the jump back, stops there. A relocated `call` never leaves a
//!   return address in it, so frames *below* a callee always unwind.
//! * [`exit_sites`] reports a `jmp` to the function's own entry (a self tail call)
//!   as nothing, as specified: it lands inside the body. In unrelocated object
//!   files a `jmp`/`call` to another section has a zero displacement and looks
//!   like a jump to the next instruction; apply relocations (or link) first.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod analyze;
mod decode;
mod exits;
mod relocate;

pub use analyze::{analyze_entry, check_foreign_code};
pub use exits::exit_sites;
pub use relocate::relocate_prologue;

/// Length of the entry patch: `jmp rel32`.
pub const PATCH_LEN: usize = 5;

/// The `endbr64` instruction that `-fcf-protection` puts at the start of functions.
pub const ENDBR64: [u8; 4] = [0xF3, 0x0F, 0x1E, 0xFA];

/// Upper bound on the length of [`relocate_prologue`]'s output.
///
/// The stolen bytes are at most 4 + 15 bytes (an instruction starting at offset 4
/// is the last one) and at most 5 instructions. The long cases are `rel32`
/// branches whose targets are out of reach from the trampoline (a `jcc rel32`
/// becomes `jncc +8; jmp [rip+p]` plus an 8-byte pointer, 16 bytes; `call rel32`
/// becomes `push [rip+r]; jmp [rip+p]` plus two 8-byte constants, 28 bytes) and
/// `loop`/`jrcxz`, which have no near form (`jrcxz +2; jmp +5; jmp target`, 9
/// bytes). The encoder aligns its pointers to 8 bytes (up to 7 bytes of `int3`).
/// The worst combination, `jrcxz; jrcxz; call far`, needs 53 bytes; the tests
/// re-encode such combinations, and `relocate_prologue` refuses, rather than
/// returns, anything longer than this bound.
pub const MAX_RELOCATED_LEN: usize = 64;

/// How far (in bytes, either direction) a trampoline may be from the function it
/// serves: ±2 GiB minus a margin that keeps every `rel32` between the trampoline's
/// instructions and the first bytes of the body (and their short-branch targets)
/// in range.
pub const TRAMPOLINE_REACH: u64 = (1 << 31) - (1 << 16);

/// Whether a trampoline at `dest` can serve a function at `address`: the patch's
/// `jmp rel32` reaches it and the relocated prologue can jump back.
pub fn in_reach(address: u64, dest: u64) -> bool {
    address.abs_diff(dest) <= TRAMPOLINE_REACH
}

/// The patch: `jmp rel32` placed at `from`, jumping to `to`; `None` when `to` is
/// out of `rel32` reach.
pub fn jmp_rel32(from: u64, to: u64) -> Option<[u8; PATCH_LEN]> {
    let rel = to.wrapping_sub(from.wrapping_add(PATCH_LEN as u64)) as i64;
    let rel = i32::try_from(rel).ok()?;
    let r = rel.to_le_bytes();
    Some([0xE9, r[0], r[1], r[2], r[3]])
}

/// Why a function cannot get an entry patch (or exit probes).
///
/// Offsets (`from`, `to`, `at`) are relative to the function's address. `Display`
/// gives a short human reason for snapshots and `hotprobe list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The function is smaller than the patch.
    TooSmall {
        /// The function's size in bytes.
        size: u64,
    },
    /// A direct branch in the body lands strictly inside the stolen bytes.
    BranchIntoPatch {
        /// Offset of the branch instruction.
        from: u64,
        /// Offset of its target.
        to: u64,
    },
    /// A RIP-relative operand in the body refers to a byte strictly inside the
    /// stolen bytes (a label address taken for a computed goto, code reading itself).
    ReferenceIntoPatch {
        /// Offset of the instruction.
        from: u64,
        /// Offset it refers to.
        to: u64,
    },
    /// A direct branch or RIP-relative reference in code outside the function (see
    /// [`check_foreign_code`]) lands strictly inside the stolen bytes.
    ForeignBranchIntoPatch {
        /// Address of the instruction (in the address space of the call).
        from: u64,
        /// Offset of its target from the function's address.
        to: u64,
    },
    /// A stolen instruction cannot be moved to the trampoline.
    Unrelocatable {
        /// Offset of the instruction.
        at: u64,
        /// What it is and why it cannot move.
        why: String,
    },
    /// Bytes that do not decode as an instruction.
    Undecodable {
        /// Offset of the first such byte.
        at: u64,
    },
    /// An instruction runs past the end of the function as its size says.
    Truncated {
        /// Offset of the instruction.
        at: u64,
        /// The function's size in bytes.
        size: u64,
    },
    /// The trampoline is too far from the function (see [`TRAMPOLINE_REACH`]).
    OutOfReach {
        /// The function's address.
        address: u64,
        /// The trampoline's address.
        dest: u64,
    },
    /// The stolen instructions could not be re-encoded at the trampoline (a
    /// RIP-relative operand out of ±2 GiB reach from there, or a form the encoder
    /// does not support).
    RelocationFailed {
        /// The encoder's explanation.
        why: String,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::TooSmall { size } => {
                write!(f, "too small ({size} bytes < {PATCH_LEN})")
            }
            Rejection::BranchIntoPatch { from, to } => {
                write!(f, "branch at +{from:#x} into the patched bytes (+{to:#x})")
            }
            Rejection::ReferenceIntoPatch { from, to } => write!(
                f,
                "RIP-relative reference at +{from:#x} into the patched bytes (+{to:#x})"
            ),
            Rejection::ForeignBranchIntoPatch { from, to } => write!(
                f,
                "branch from {from:#x} (outside the function) into the patched bytes (+{to:#x})"
            ),
            Rejection::Unrelocatable { at, why } => {
                write!(f, "unrelocatable instruction at +{at:#x}: {why}")
            }
            Rejection::Undecodable { at } => write!(f, "undecodable instruction at +{at:#x}"),
            Rejection::Truncated { at, size } => write!(
                f,
                "instruction at +{at:#x} runs past the end of the function ({size} bytes)"
            ),
            Rejection::OutOfReach { address, dest } => write!(
                f,
                "trampoline at {dest:#x} is out of ±2 GiB reach of the function at {address:#x}"
            ),
            Rejection::RelocationFailed { why } => {
                write!(f, "cannot re-encode the prologue: {why}")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// What [`analyze_entry`] found out about a patchable entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Bytes of whole instructions covering at least [`PATCH_LEN`] bytes: the
    /// bytes the patch makes unusable (the patch itself is [`PATCH_LEN`] bytes).
    pub stolen_len: usize,
    /// Whether the function starts with [`ENDBR64`].
    pub starts_with_endbr64: bool,
    /// How many instructions the stolen bytes hold.
    pub stolen_instructions: usize,
}

/// What kind of exit instruction an [`ExitSite`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// `ret`, `ret imm16` (and the far/interrupt returns, should a body hold one).
    Ret,
    /// A direct `jmp` to an address outside the body: a tail call.
    TailJump {
        /// The jump's target address.
        target: u64,
    },
    /// An indirect `jmp` through a register or memory: a switch table (the target
    /// is in the body) or a tail call through a pointer (it is not); only the
    /// target register/memory at run time tells.
    IndirectJump,
    /// A conditional branch (`jcc`, `loop*`, `jrcxz`) to an address outside the
    /// body: a conditional tail call, which GCC and Clang emit at -O2. The function
    /// exits there only when the branch is taken.
    ConditionalTailJump {
        /// The branch's target address.
        target: u64,
    },
}

/// One exit instruction of a function body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitSite {
    /// Offset of the instruction from the function's address.
    pub offset: u64,
    /// Length of the instruction in bytes.
    pub len: u8,
    /// What kind of exit it is.
    pub kind: ExitKind,
}

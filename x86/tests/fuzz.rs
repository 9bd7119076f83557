//! Fuzz-ish tests: random and semi-structured bytes at random addresses. Nothing
//! may panic, the analyses must agree with each other, and whatever
//! `relocate_prologue` produces must only write registers and flags that the
//! original instructions write, and only leave for targets the original
//! instructions could reach.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::{qword_at, Rng};
use hotprobe_x86::*;
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
    OpKind, Register,
};

fn random_address(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => rng.below(0x2000),
        1 => u64::MAX - rng.below(0x2000),
        2 => 0x40_0000 + rng.below(0x10_0000),
        3 => 0x7f00_0000_0000 + rng.below(1 << 40),
        4 => 0x8000_0000 + rng.below(0x1000),
        _ => rng.next(),
    }
}

fn random_dest(rng: &mut Rng, address: u64) -> u64 {
    match rng.below(5) {
        0 => address.wrapping_add(rng.below(1 << 20)),
        1 => address.wrapping_sub(rng.below(1 << 20)),
        2 => address.wrapping_add(TRAMPOLINE_REACH - rng.below(1 << 12)),
        3 => address.wrapping_sub(TRAMPOLINE_REACH - rng.below(1 << 12)),
        _ => rng.next(),
    }
}

/// Instruction templates seen in prologues, with random immediates and targets.
fn structured(rng: &mut Rng) -> Vec<u8> {
    let mut code = Vec::new();
    if rng.below(2) == 0 {
        code.extend_from_slice(&ENDBR64);
    }
    let pieces = 1 + rng.below(6);
    for _ in 0..pieces {
        let r = rng.bytes(4);
        let piece: Vec<u8> = match rng.below(22) {
            0 => vec![0x55],
            1 => vec![0x48, 0x89, 0xe5],
            2 => vec![0x48, 0x83, 0xec, r[0]],
            3 => vec![0x48, 0x8b, 0x05, r[0], r[1], r[2], r[3]],
            4 => vec![0x48, 0x8d, 0x3d, r[0], r[1], r[2], r[3]],
            5 => vec![0x85, 0xff],
            6 => vec![0x74, r[0]],
            7 => vec![0x0f, 0x85, r[0], r[1], r[2], r[3]],
            8 => vec![0xe8, r[0], r[1], r[2], r[3]],
            9 => vec![0xe9, r[0], r[1], r[2], r[3]],
            10 => vec![0xeb, r[0]],
            11 => vec![0xff, 0xd0 | (r[0] & 7)],
            12 => vec![0xff, 0x15, r[0], r[1], r[2], r[3]],
            13 => vec![0xff, 0x54, 0x24, r[0]],
            14 => vec![0xc3],
            15 => vec![0xe3, r[0]],
            16 => vec![0xe2, r[0]],
            17 => vec![0x41, 0x54],
            18 => vec![0x31, 0xc0],
            19 => vec![0xcc],
            20 => vec![0x8b, 0x05, r[0], r[1], r[2], 0x00],
            _ => {
                let n = 1 + rng.below(8) as usize;
                rng.bytes(n)
            }
        };
        code.extend_from_slice(&piece);
    }
    let tail = rng.below(40) as usize;
    code.extend(rng.bytes(tail));
    code
}

fn written_registers(insns: &[Instruction]) -> (HashSet<Register>, u32) {
    let mut factory = InstructionInfoFactory::new();
    let mut regs = HashSet::new();
    let mut flags = 0;
    for insn in insns {
        flags |= insn.rflags_modified();
        for used in factory.info(insn).used_registers() {
            if matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) {
                regs.insert(used.register().full_register());
            }
        }
    }
    (regs, flags)
}

/// Where control can leave a piece of code for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Exit {
    To(u64),
    Indirect,
}

/// The instructions reachable from `dest` in the relocated code (so the data after
/// it is not mistaken for code), and the places they leave for.
fn reachable(out: &[u8], dest: u64) -> (Vec<Instruction>, BTreeSet<Exit>) {
    let end = dest.wrapping_add(out.len() as u64);
    let inside = |a: u64| a.wrapping_sub(dest) < out.len() as u64;
    let mut seen = BTreeSet::new();
    let mut insns = Vec::new();
    let mut exits = BTreeSet::new();
    let mut work = vec![dest];
    while let Some(ip) = work.pop() {
        if !seen.insert(ip) {
            continue;
        }
        assert!(
            inside(ip),
            "relocated code runs off its end at {ip:#x} (end {end:#x})"
        );
        let off = (ip - dest) as usize;
        let mut dec = Decoder::with_ip(64, &out[off..], ip, DecoderOptions::NONE);
        let insn = dec.decode();
        assert!(!insn.is_invalid(), "undecodable relocated code at {ip:#x}");
        insns.push(insn);
        let fc = insn.flow_control();
        let target = match insn.op0_kind() {
            OpKind::NearBranch64 => Some(insn.near_branch_target()),
            _ => None,
        };
        if let Some(t) = target {
            if inside(t) {
                work.push(t);
            } else {
                exits.insert(Exit::To(t));
            }
        }
        if fc == FlowControl::IndirectBranch || fc == FlowControl::IndirectCall {
            let via_pointer = insn.op0_kind() == OpKind::Memory
                && insn.memory_base() == Register::RIP
                && inside(insn.ip_rel_memory_address());
            match via_pointer.then(|| qword_at(out, dest, insn.ip_rel_memory_address())) {
                Some(Some(t)) => exits.insert(Exit::To(t)),
                _ => exits.insert(Exit::Indirect),
            };
        }
        if fc == FlowControl::Return {
            exits.insert(Exit::Indirect);
        }
        let falls = !matches!(
            fc,
            FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
        );
        if falls {
            work.push(insn.next_ip());
        }
    }
    (insns, exits)
}

fn check_one(code: &[u8], address: u64, dest: u64) {
    let analysis = analyze_entry(code, address);
    let relocated = relocate_prologue(code, address, dest);
    let _ = exit_sites(code, address);
    let _ = check_foreign_code(code, address.wrapping_add(0x100), address, 5);
    if let Err(e) = &analysis {
        assert_eq!(relocated.as_ref().err(), Some(e), "{code:02x?}");
        let _ = e.to_string();
        return;
    }
    let info = analysis.unwrap();
    assert!(info.stolen_len >= PATCH_LEN && info.stolen_len <= code.len());
    assert!(info.stolen_instructions >= 1 && info.stolen_instructions <= PATCH_LEN);
    let Ok(out) = relocated else { return };
    assert!(out.len() <= MAX_RELOCATED_LEN);

    let original: Vec<Instruction> =
        Decoder::with_ip(64, &code[..info.stolen_len], address, DecoderOptions::NONE)
            .into_iter()
            .take_while(|i| !i.is_invalid())
            .collect();
    let (insns, exits) = reachable(&out, dest);

    // Registers and flags.
    let (orig_regs, orig_flags) = written_registers(&original);
    let (new_regs, new_flags) = written_registers(&insns);
    for r in &new_regs {
        assert!(
            *r == Register::RSP || orig_regs.contains(r),
            "relocated code writes {r:?}, the original does not: {code:02x?} -> {out:02x?}"
        );
    }
    assert_eq!(
        new_flags & !orig_flags,
        0,
        "flags: {code:02x?} -> {out:02x?}"
    );

    // Control flow leaves only for the original targets or back to the body.
    let resume = address.wrapping_add(info.stolen_len as u64);
    let mut allowed: BTreeSet<Exit> = original
        .iter()
        .filter(|i| i.op0_kind() == OpKind::NearBranch64)
        .map(|i| Exit::To(i.near_branch_target()))
        .collect();
    allowed.insert(Exit::To(resume));
    allowed.insert(Exit::Indirect);
    for e in &exits {
        assert!(
            allowed.contains(e),
            "exit {e:x?} not in {allowed:x?}: {code:02x?} -> {out:02x?}"
        );
    }
    // A relocated call pushes its original return address.
    for (i, insn) in insns.iter().enumerate() {
        let own_constant = insn.ip_rel_memory_address().wrapping_sub(dest) < out.len() as u64;
        if insn.code() == Code::Push_rm64 && insn.memory_base() == Register::RIP && own_constant {
            let value = qword_at(&out, dest, insn.ip_rel_memory_address());
            let call = original
                .iter()
                .find(|o| o.mnemonic() == iced_x86::Mnemonic::Call);
            assert_eq!(
                value,
                call.map(|c| c.next_ip()),
                "push #{i}: {code:02x?} -> {out:02x?}"
            );
            assert_eq!(value, Some(resume));
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..30_000 {
        let len = rng.below(48) as usize;
        let code = rng.bytes(len);
        let address = random_address(&mut rng);
        let dest = random_dest(&mut rng, address);
        check_one(&code, address, dest);
    }
}

#[test]
fn structured_prologues_relocate_faithfully() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut relocated = 0;
    for _ in 0..30_000 {
        let code = structured(&mut rng);
        let address = random_address(&mut rng);
        let dest = random_dest(&mut rng, address);
        if relocate_prologue(&code, address, dest).is_ok() {
            relocated += 1;
        }
        check_one(&code, address, dest);
    }
    // The generator must actually exercise relocation, not just rejections.
    assert!(relocated > 3_000, "only {relocated} relocations");
}

#[test]
fn huge_and_odd_inputs() {
    let mut rng = Rng(42);
    let big = rng.bytes(1 << 20);
    check_one(&big, 0x40_0000, 0x50_0000);
    let zeros = vec![0u8; 4096];
    check_one(&zeros, 0x40_0000, 0x50_0000);
    let int3 = vec![0xccu8; 4096];
    check_one(&int3, 0x40_0000, 0x50_0000);
    let prefixes = vec![0x66u8; 100];
    check_one(&prefixes, u64::MAX - 10, 5);
}

//! Handcrafted byte sequences: each accepted prologue shape, each rejection with its
//! exact reason, the relocated code's structure, and exit sites.

mod common;

use common::{decode_all, decode_code, qword_at};
use hotprobe_x86::*;
use iced_x86::{Code, Instruction, Register};

const A: u64 = 0x40_1000;
const D: u64 = 0x40_8000;

fn reloc(code: &[u8]) -> (Vec<u8>, Vec<Instruction>) {
    let out = relocate_prologue(code, A, D).expect("relocatable");
    assert!(out.len() <= MAX_RELOCATED_LEN);
    let insns = decode_code(&out, D);
    (out, insns)
}

fn is_jmp_to(insn: &Instruction, target: u64) -> bool {
    matches!(insn.code(), Code::Jmp_rel32_64 | Code::Jmp_rel8_64)
        && insn.near_branch_target() == target
}

// ---------------------------------------------------------------- accepted shapes

#[test]
fn endbr64_push_rbp_mov_rbp_rsp() {
    let code = [
        0xf3, 0x0f, 0x1e, 0xfa, // endbr64
        0x55, // push rbp
        0x48, 0x89, 0xe5, // mov rbp, rsp
        0x89, 0x7d, 0xfc, // mov [rbp-4], edi
        0x8b, 0x45, 0xfc, // mov eax, [rbp-4]
        0x5d, // pop rbp
        0xc3, // ret
    ];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!(
        info,
        EntryInfo {
            stolen_len: 5,
            starts_with_endbr64: true,
            stolen_instructions: 2
        }
    );
    let (out, insns) = reloc(&code);
    assert_eq!(&out[..5], &code[..5], "plain instructions are copied");
    assert_eq!(out.len(), 10);
    assert_eq!(insns.len(), 3);
    assert_eq!(insns[0].code(), Code::Endbr64);
    assert!(is_jmp_to(&insns[2], A + 5));
}

#[test]
fn push_rbp_mov_then_sub_rsp() {
    let code = [
        0x55, 0x48, 0x89, 0xe5, // push rbp; mov rbp, rsp
        0x48, 0x83, 0xec, 0x10, // sub rsp, 0x10
        0xc9, 0xc3, // leave; ret
    ];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (8, 3));
    assert!(!info.starts_with_endbr64);
    let (out, insns) = reloc(&code);
    assert_eq!(&out[..8], &code[..8]);
    assert!(is_jmp_to(&insns[3], A + 8));
}

#[test]
fn sub_rsp_imm() {
    let code = [
        0x48, 0x83, 0xec, 0x18, // sub rsp, 0x18
        0x48, 0x89, 0x7c, 0x24, 0x08, // mov [rsp+8], rdi
        0x48, 0x83, 0xc4, 0x18, 0xc3, // add rsp, 0x18; ret
    ];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (9, 2));
    let (_, insns) = reloc(&code);
    assert!(is_jmp_to(&insns[2], A + 9));
}

#[test]
fn rip_relative_load_is_reencoded() {
    // mov rax, [rip+0xff9] ; target A+0x1000
    let code = [0x48, 0x8b, 0x05, 0xf9, 0x0f, 0x00, 0x00, 0xc3];
    assert_eq!(analyze_entry(&code, A).unwrap().stolen_len, 7);
    let (_, insns) = reloc(&code);
    assert_eq!(insns[0].code(), Code::Mov_r64_rm64);
    assert_eq!(insns[0].memory_base(), Register::RIP);
    assert_eq!(insns[0].ip_rel_memory_address(), A + 0x1000);
    assert!(is_jmp_to(&insns[1], A + 7));
}

#[test]
fn endbr64_rip_relative_load() {
    // endbr64; mov eax, [rip+0x1000]; add eax, 1; ret
    let code = [
        0xf3, 0x0f, 0x1e, 0xfa, 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00, 0x83, 0xc0, 0x01, 0xc3,
    ];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (10, 2));
    let (_, insns) = reloc(&code);
    assert_eq!(insns[1].ip_rel_memory_address(), A + 10 + 0x1000);
    assert!(is_jmp_to(&insns[2], A + 10));
}

#[test]
fn lea_of_own_address_keeps_pointing_at_the_original() {
    // lea rax, [rip-7] (the function's own address); ret
    let code = [0x48, 0x8d, 0x05, 0xf9, 0xff, 0xff, 0xff, 0xc3];
    assert_eq!(analyze_entry(&code, A).unwrap().stolen_len, 7);
    let (_, insns) = reloc(&code);
    assert_eq!(insns[0].code(), Code::Lea_r64_m);
    assert_eq!(insns[0].ip_rel_memory_address(), A);
}

#[test]
fn test_jcc_rel8_becomes_near_jcc_to_original_target() {
    let code = [
        0x85, 0xff, // 0: test edi, edi
        0x74, 0x04, // 2: je 8
        0x8d, 0x04, 0x7f, // 4: lea eax, [rdi+rdi*2]
        0xc3, // 7: ret
        0xb8, 0x07, 0x00, 0x00, 0x00, // 8: mov eax, 7
        0xc3, // 13: ret
    ];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (7, 3));
    let (_, insns) = reloc(&code);
    assert_eq!(insns[1].code(), Code::Je_rel32_64);
    assert_eq!(insns[1].near_branch_target(), A + 8);
    assert!(is_jmp_to(&insns[3], A + 7));
}

#[test]
fn whole_function_jmp_rel32() {
    let code = [0xe9, 0xfb, 0x0f, 0x00, 0x00]; // jmp A+0x1000
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (5, 1));
    let (out, insns) = reloc(&code);
    assert_eq!(out.len(), 5, "no jump back after a jmp");
    assert_eq!(insns.len(), 1);
    assert!(is_jmp_to(&insns[0], A + 0x1000));
}

#[test]
fn endbr64_ret() {
    let code = [0xf3, 0x0f, 0x1e, 0xfa, 0xc3];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (5, 2));
    let (out, _) = reloc(&code);
    assert_eq!(out, code.to_vec());
}

#[test]
fn dead_bytes_after_ret_are_not_relocated() {
    let code = [0xc3, 0xcc, 0xcc, 0xcc, 0xcc];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (5, 5));
    assert_eq!(relocate_prologue(&code, A, D).unwrap(), vec![0xc3]);
    // Undecodable padding after the ret is covered by the patch, not refused.
    let code = [0xc3, 0x06, 0x06, 0x06, 0x06];
    let info = analyze_entry(&code, A).unwrap();
    assert_eq!((info.stolen_len, info.stolen_instructions), (5, 1));
    assert_eq!(relocate_prologue(&code, A, D).unwrap(), vec![0xc3]);
}

#[test]
fn jump_to_own_entry_is_fine() {
    // 0: push rbp; mov rbp,rsp; dec edi; jnz 0 (the entry: goes through the patch);
    let code = [
        0x55, 0x48, 0x89, 0xe5, // push rbp; mov rbp, rsp
        0xff, 0xcf, // dec edi
        0x5d, // pop rbp
        0x75, 0xf7, // jnz 0
        0xc3,
    ];
    assert_eq!(analyze_entry(&code, A).unwrap().stolen_len, 6);
    // A short jmp to itself at the entry stays a jump to the original entry.
    let code = [0xeb, 0xfe, 0x90, 0x90, 0x90];
    let (_, insns) = reloc(&code);
    assert!(is_jmp_to(&insns[0], A));
}

#[test]
fn call_rel32_pushes_the_original_return_address() {
    // call A+0x1000; add eax, 1; ret
    let code = [0xe8, 0xfb, 0x0f, 0x00, 0x00, 0x83, 0xc0, 0x01, 0xc3];
    assert_eq!(analyze_entry(&code, A).unwrap().stolen_len, 5);
    let (out, insns) = reloc(&code);
    assert_eq!(insns.len(), 2);
    assert_eq!(insns[0].code(), Code::Push_rm64);
    assert_eq!(insns[0].memory_base(), Register::RIP);
    assert_eq!(
        qword_at(&out, D, insns[0].ip_rel_memory_address()),
        Some(A + 5)
    );
    assert!(is_jmp_to(&insns[1], A + 0x1000));
    assert_eq!(out.len(), 6 + 5 + 8);
}

#[test]
fn endbr64_call_rel32() {
    let code = [0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0x00, 0x01, 0x00, 0x00, 0xc3];
    let (out, insns) = reloc(&code);
    assert_eq!(insns[0].code(), Code::Endbr64);
    assert_eq!(
        qword_at(&out, D, insns[1].ip_rel_memory_address()),
        Some(A + 9)
    );
    assert!(is_jmp_to(&insns[2], A + 9 + 0x100));
}

#[test]
fn indirect_calls_become_push_and_jmp() {
    // push rbx; push r12; call rax; pop r12; pop rbx; ret
    let code = [0x53, 0x41, 0x54, 0xff, 0xd0, 0x41, 0x5c, 0x5b, 0xc3];
    let (out, insns) = reloc(&code);
    assert_eq!(insns.len(), 4);
    assert_eq!(
        qword_at(&out, D, insns[2].ip_rel_memory_address()),
        Some(A + 5)
    );
    assert_eq!(insns[3].code(), Code::Jmp_rm64);
    assert_eq!(insns[3].op0_register(), Register::RAX);

    // push rdi; push rdi; call [rsp+8] -> jmp [rsp+0x10] after the push
    let code = [
        0x57, 0x57, 0xff, 0x54, 0x24, 0x08, 0x48, 0x83, 0xc4, 0x10, 0xc3,
    ];
    let (out, insns) = reloc(&code);
    assert_eq!(
        qword_at(&out, D, insns[2].ip_rel_memory_address()),
        Some(A + 6)
    );
    assert_eq!(insns[3].code(), Code::Jmp_rm64);
    assert_eq!(insns[3].memory_base(), Register::RSP);
    assert_eq!(insns[3].memory_displacement64(), 0x10);

    // call [rip+0x2000] (a PLT-less call through the GOT)
    let code = [0xff, 0x15, 0x00, 0x20, 0x00, 0x00, 0xc3];
    let (out, insns) = reloc(&code);
    assert_eq!(
        qword_at(&out, D, insns[0].ip_rel_memory_address()),
        Some(A + 6)
    );
    assert_eq!(insns[1].code(), Code::Jmp_rm64);
    assert_eq!(insns[1].ip_rel_memory_address(), A + 6 + 0x2000);
}

#[test]
fn plt_style_indirect_jump() {
    // endbr64; bnd jmp [rip+0x2ff2]
    let code = [
        0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0xf2, 0x2f, 0x00, 0x00,
    ];
    assert_eq!(analyze_entry(&code, A).unwrap().stolen_len, 11);
    let (_, insns) = reloc(&code);
    assert_eq!(insns.len(), 2, "no jump back after an indirect jmp");
    assert_eq!(insns[1].code(), Code::Jmp_rm64);
    assert_eq!(insns[1].ip_rel_memory_address(), A + 11 + 0x2ff2);
}

#[test]
fn jrcxz_and_loop_are_relocated() {
    let code = [
        0xe3, 0x04, // 0: jrcxz 6
        0xe2, 0x02, // 2: loop 6
        0x31, 0xc0, // 4: xor eax, eax
        0xc3, // 6: ret
    ];
    let out = relocate_prologue(&code, A, D).unwrap();
    let insns = decode_all(&out, D);
    // jrcxz +2; jmp +5; jmp near A+6 — twice — then xor and the jump back.
    let targets: Vec<u64> = insns
        .iter()
        .filter(|i| i.code() == Code::Jmp_rel32_64)
        .map(|i| i.near_branch_target())
        .collect();
    assert_eq!(targets, vec![A + 6, A + 6, A + 6]);
    assert!(insns.iter().any(|i| i.code() == Code::Jrcxz_rel8_64));
    assert!(insns.iter().any(|i| i.code() == Code::Loop_rel8_64_RCX));
}

// ---------------------------------------------------------------- rejections

fn reason(code: &[u8]) -> (Rejection, String) {
    let r = analyze_entry(code, A).unwrap_err();
    assert_eq!(
        relocate_prologue(code, A, D).unwrap_err(),
        r,
        "relocate_prologue refuses the same way"
    );
    let s = r.to_string();
    (r, s)
}

#[test]
fn xor_eax_ret_is_too_small() {
    let (r, s) = reason(&[0x31, 0xc0, 0xc3]);
    assert_eq!(r, Rejection::TooSmall { size: 3 });
    assert_eq!(s, "too small (3 bytes < 5)");
    assert_eq!(reason(&[]).0, Rejection::TooSmall { size: 0 });
}

#[test]
fn loop_back_to_byte_2_is_a_branch_into_the_patch() {
    let code = [
        0x31, 0xc0, // 0: xor eax, eax
        0x83, 0xc0, 0x01, // 2: add eax, 1
        0x39, 0xf8, // 5: cmp eax, edi
        0x7c, 0xf9, // 7: jl 2
        0xc3,
    ];
    let (r, s) = reason(&code);
    assert_eq!(r, Rejection::BranchIntoPatch { from: 7, to: 2 });
    assert_eq!(s, "branch at +0x7 into the patched bytes (+0x2)");
}

#[test]
fn branch_inside_the_stolen_bytes_themselves() {
    // push rbp; jmp $ (a jump to itself at +1)
    let (r, _) = reason(&[0x55, 0xeb, 0xfe, 0x90, 0x90, 0xc3]);
    assert_eq!(r, Rejection::BranchIntoPatch { from: 1, to: 1 });
}

#[test]
fn call_into_the_patch() {
    // 0: push rbp; mov rbp,rsp; 4: sub rsp,8 ...; call +1
    let code = [
        0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x08, // 0..8
        0xe8, 0xf4, 0xff, 0xff, 0xff, // 8: call 1
        0xc9, 0xc3,
    ];
    assert_eq!(
        reason(&code).0,
        Rejection::BranchIntoPatch { from: 8, to: 1 }
    );
}

#[test]
fn rip_relative_reference_into_the_patch() {
    let code = [
        0x48, 0x8d, 0x05, 0xf9, 0xff, 0xff, 0xff, // 0: lea rax, [rip-7] (own address: fine)
        0x48, 0x8d, 0x05, 0xf4, 0xff, 0xff, 0xff, // 7: lea rax, [rip-12] -> +2
        0xff, 0xe0, // jmp rax
    ];
    let (r, s) = reason(&code);
    assert_eq!(r, Rejection::ReferenceIntoPatch { from: 7, to: 2 });
    assert_eq!(
        s,
        "RIP-relative reference at +0x7 into the patched bytes (+0x2)"
    );
}

#[test]
fn int3_at_the_entry_is_unrelocatable() {
    let (r, s) = reason(&[0xcc, 0x55, 0x48, 0x89, 0xe5, 0xc3]);
    assert!(matches!(r, Rejection::Unrelocatable { at: 0, .. }));
    assert!(
        s.starts_with("unrelocatable instruction at +0x0: breakpoint (int3)"),
        "{s}"
    );
}

#[test]
fn call_that_is_not_last_is_unrelocatable() {
    // call rax; add rsp, 8; ret
    let (r, s) = reason(&[0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3]);
    assert_eq!(
        r,
        Rejection::Unrelocatable {
            at: 0,
            why: "call returns into the patched bytes (+0x2)".into()
        }
    );
    assert_eq!(
        s,
        "unrelocatable instruction at +0x0: call returns into the patched bytes (+0x2)"
    );
}

#[test]
fn other_unrelocatable_instructions() {
    // push rbx; push r12; call rsp
    let (r, _) = reason(&[0x53, 0x41, 0x54, 0xff, 0xd4, 0xc3]);
    assert_eq!(
        r,
        Rejection::Unrelocatable {
            at: 3,
            why: "call rsp".into()
        }
    );
    // xbegin +0
    let (r, _) = reason(&[0xc7, 0xf8, 0x00, 0x00, 0x00, 0x00, 0xc3]);
    assert!(matches!(r, Rejection::Unrelocatable { at: 0, .. }), "{r}");
    // call far [rax] (48 ff 18)
    let (r, s) = reason(&[0x48, 0xff, 0x18, 0x90, 0x90, 0xc3]);
    assert!(matches!(r, Rejection::Unrelocatable { at: 0, .. }), "{r}");
    assert!(s.contains("far"), "{s}");
}

#[test]
fn undecodable_and_truncated_prologues() {
    // push rbp; (06 is invalid in 64-bit mode)
    let (r, s) = reason(&[0x55, 0x06, 0x48, 0x89, 0xe5, 0xc3]);
    assert_eq!(r, Rejection::Undecodable { at: 1 });
    assert_eq!(s, "undecodable instruction at +0x1");
    // push rbp; mov rax, [rip+…] cut by the symbol size
    let (r, s) = reason(&[0x55, 0x48, 0x8b, 0x05, 0x00, 0x00]);
    assert_eq!(r, Rejection::Truncated { at: 1, size: 6 });
    assert_eq!(
        s,
        "instruction at +0x1 runs past the end of the function (6 bytes)"
    );
}

#[test]
fn undecodable_bytes_after_the_patch_are_not_a_rejection() {
    // push rbp; mov rbp,rsp; pop rbp; ret; then junk and a truncated nop
    let code = [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x06, 0x07, 0x0f, 0x1f];
    assert_eq!(analyze_entry(&code, A).unwrap().stolen_len, 5);
}

#[test]
fn trampoline_out_of_reach() {
    let code = [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    let far = A + 0x8000_0000;
    let r = relocate_prologue(&code, A, far).unwrap_err();
    assert_eq!(
        r,
        Rejection::OutOfReach {
            address: A,
            dest: far
        }
    );
    assert!(r.to_string().contains("out of ±2 GiB reach"));
    assert!(relocate_prologue(&code, A, A + TRAMPOLINE_REACH).is_ok());
    assert!(relocate_prologue(&code, A + TRAMPOLINE_REACH, A).is_ok());
}

#[test]
fn rip_operand_out_of_reach_from_the_trampoline() {
    let a = 0x1_0000_0000u64;
    // mov rax, [rip+0x7ffffff9] -> a + 0x8000_0000; trampoline 1.75 GiB below a
    let code = [0x48, 0x8b, 0x05, 0xf9, 0xff, 0xff, 0x7f, 0xc3];
    assert!(analyze_entry(&code, a).is_ok());
    let r = relocate_prologue(&code, a, a - 0x7000_0000).unwrap_err();
    assert!(matches!(r, Rejection::RelocationFailed { .. }), "{r}");
    assert!(r.to_string().starts_with("cannot re-encode the prologue: "));
    // Close by it works.
    assert!(relocate_prologue(&code, a, a + 0x1000).is_ok());
}

#[test]
fn far_rel32_branches_go_through_a_pointer() {
    let a = 0x1_0000_0000u64;
    let dest = a - 0x7000_0000;
    // je a+0x7ffffff6 (rel32); ret
    let code = [0x0f, 0x84, 0xf0, 0xff, 0xff, 0x7f, 0xc3];
    let out = relocate_prologue(&code, a, dest).unwrap();
    assert!(out.len() <= MAX_RELOCATED_LEN);
    let insns = decode_all(&out, dest);
    assert_eq!(insns[0].code(), Code::Jne_rel8_64, "inverted short jcc");
    let ptr = insns
        .iter()
        .find(|i| i.code() == Code::Jmp_rm64)
        .expect("jmp [rip+pointer]");
    assert_eq!(
        qword_at(&out, dest, ptr.ip_rel_memory_address()),
        Some(a + 0x7fff_fff6)
    );
    // The fall-through path still jumps back to the body.
    assert!(insns.iter().any(|i| is_jmp_to(i, a + 6)));

    // call rel32 far: push [rip+r]; jmp [rip+p]; r; p
    let code = [0xe8, 0xf0, 0xff, 0xff, 0x7f, 0xc3];
    let out = relocate_prologue(&code, a, dest).unwrap();
    let insns = decode_code(&out, dest);
    assert_eq!(
        qword_at(&out, dest, insns[0].ip_rel_memory_address()),
        Some(a + 5)
    );
    assert_eq!(insns[1].code(), Code::Jmp_rm64);
    assert_eq!(
        qword_at(&out, dest, insns[1].ip_rel_memory_address()),
        Some(a + 5 + 0x7fff_fff0)
    );
    // 6 + 6 + 8, the encoder's pointer aligned to 8 bytes.
    assert_eq!(out.len(), 20 + 4 + 8);
}

#[test]
fn worst_case_lengths_fit_max_relocated_len() {
    let a = 0x1_0000_0000u64;
    let call_far = [0xe8, 0xf0, 0xff, 0xff, 0x7f];
    let jcc_far = [0x0f, 0x84, 0xf0, 0xff, 0xff, 0x7f];
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for lead in [
        vec![],
        vec![0xe3, 0x10],
        vec![0xe3, 0x10, 0xe3, 0x10],
        vec![0xe2, 0x10, 0x74, 0x10],
        vec![0x55, 0x56, 0x57, 0x53],
        vec![0xe3, 0x10, 0x55, 0x56],
    ] {
        for tail in [&call_far[..], &jcc_far[..]] {
            let mut c = lead.clone();
            c.extend_from_slice(tail);
            c.extend_from_slice(&[0xc3; 0x30]);
            cases.push(c);
        }
    }
    // Three short branches, the longest instruction at offset 4.
    let mut c = vec![0xe3, 0x10, 0xe2, 0x10, 0xe3, 0x10];
    c.extend_from_slice(&[0xc3; 0x30]);
    cases.push(c);
    let mut c = vec![0x55, 0x56, 0x57, 0x53];
    // lock add qword [fs:rax+r12*8+0x12345678], 0x12345678 with a segment prefix
    c.extend_from_slice(&[
        0x64, 0xf0, 0x4a, 0x81, 0x84, 0xe0, 0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12,
    ]);
    c.extend_from_slice(&[0xc3; 0x30]);
    cases.push(c);

    let mut longest = 0;
    for code in &cases {
        for dest in (0..8).flat_map(|m| [a - 0x7000_0000 + m, a + 0x7000_0000 + m, a + 0x1000 + m])
        {
            let out = relocate_prologue(code, a, dest)
                .unwrap_or_else(|e| panic!("{code:02x?} at {dest:#x}: {e}"));
            longest = longest.max(out.len());
        }
    }
    assert_eq!(longest, 53, "the documented worst case");
    assert!(longest <= MAX_RELOCATED_LEN);
}

// ---------------------------------------------------------------- helpers

#[test]
fn patch_bytes() {
    assert_eq!(
        jmp_rel32(A, A + 0x105),
        Some([0xe9, 0x00, 0x01, 0x00, 0x00])
    );
    assert_eq!(jmp_rel32(A, A), Some([0xe9, 0xfb, 0xff, 0xff, 0xff]));
    assert_eq!(jmp_rel32(A, A + 0x1_0000_0000), None);
    assert!(in_reach(A, A - 0x1000) && !in_reach(A, A + (1 << 31)));
}

#[test]
fn foreign_code_branching_into_the_patch() {
    let cold = 0x40_2000u64;
    // jmp A+2 from foo.cold
    let rel = (A + 2).wrapping_sub(cold + 5) as u32;
    let mut code = vec![0xe9];
    code.extend_from_slice(&rel.to_le_bytes());
    let r = check_foreign_code(&code, cold, A, 5).unwrap_err();
    assert_eq!(r, Rejection::ForeignBranchIntoPatch { from: cold, to: 2 });
    assert_eq!(
        r.to_string(),
        "branch from 0x402000 (outside the function) into the patched bytes (+0x2)"
    );
    // A jump back to the entry itself, or past the stolen bytes, is fine.
    for target in [A, A + 5] {
        let rel = target.wrapping_sub(cold + 5) as u32;
        let mut code = vec![0xe9];
        code.extend_from_slice(&rel.to_le_bytes());
        assert_eq!(check_foreign_code(&code, cold, A, 5), Ok(()));
    }
}

// ---------------------------------------------------------------- exit sites

#[test]
fn exit_sites_of_every_kind() {
    let code = [
        0x85, 0xff, // 0: test edi, edi
        0x74, 0x0d, // 2: je 17 (inside)
        0x0f, 0x85, 0x00, 0x10, 0x00, 0x00, // 4: jne A+10+0x1000 (conditional tail call)
        0xc2, 0x08, 0x00, // 10: ret 8
        0xeb, 0x02, // 13: jmp 17 (inside)
        0xff, 0xe0, // 15: jmp rax
        0xff, 0x25, 0x00, 0x00, 0x00, 0x00, // 17: jmp [rip+0]
        0xe9, 0x00, 0x20, 0x00, 0x00, // 23: jmp A+28+0x2000 (tail call)
        0xc3, // 28: ret
        0xe9, 0xde, 0xff, 0xff, 0xff, // 29: jmp A (own entry: not an exit)
        0xcc, 0xcc, 0xcc, // padding
    ];
    let sites = exit_sites(&code, A).unwrap();
    let expect = vec![
        ExitSite {
            offset: 4,
            len: 6,
            kind: ExitKind::ConditionalTailJump { target: A + 0x100a },
        },
        ExitSite {
            offset: 10,
            len: 3,
            kind: ExitKind::Ret,
        },
        ExitSite {
            offset: 15,
            len: 2,
            kind: ExitKind::IndirectJump,
        },
        ExitSite {
            offset: 17,
            len: 6,
            kind: ExitKind::IndirectJump,
        },
        ExitSite {
            offset: 23,
            len: 5,
            kind: ExitKind::TailJump { target: A + 0x201c },
        },
        ExitSite {
            offset: 28,
            len: 1,
            kind: ExitKind::Ret,
        },
    ];
    assert_eq!(sites, expect);
}

#[test]
fn exit_sites_and_padding() {
    // ret; a truncated nop: fine
    assert_eq!(exit_sites(&[0xc3, 0x0f, 0x1f], A).unwrap().len(), 1);
    // ret; junk; int3 padding: fine
    assert_eq!(
        exit_sites(&[0xc3, 0x06, 0x07, 0xcc, 0xcc], A)
            .unwrap()
            .len(),
        1
    );
    // call abort; truncated padding: fine (a call may not return)
    assert_eq!(
        exit_sites(&[0xe8, 0x00, 0x00, 0x00, 0x00, 0x66, 0x0f], A).unwrap(),
        vec![]
    );
    // ret; junk; then real code: refused (a uprobe could land mid-instruction)
    assert_eq!(
        exit_sites(&[0xc3, 0x06, 0x48, 0x89, 0xe5, 0xc3], A),
        Err(Rejection::Undecodable { at: 1 })
    );
    // undecodable in the middle
    assert_eq!(
        exit_sites(&[0x55, 0x06, 0x5d, 0xc3], A),
        Err(Rejection::Undecodable { at: 1 })
    );
    // an ordinary instruction cut by the end
    assert_eq!(
        exit_sites(&[0x48, 0x89, 0xe5, 0x48, 0x8b], A),
        Err(Rejection::Truncated { at: 3, size: 5 })
    );
    assert_eq!(exit_sites(&[], A), Ok(vec![]));
}

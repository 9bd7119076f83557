//! Helpers shared by the integration tests.
#![allow(dead_code)]

use iced_x86::{Decoder, DecoderOptions, Instruction};

/// Decodes all of `bytes` placed at `ip`.
pub fn decode_all(bytes: &[u8], ip: u64) -> Vec<Instruction> {
    Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

/// Decodes the relocated code at `dest` up to its first instruction that does not
/// fall through (the constants after it are data).
pub fn decode_code(bytes: &[u8], dest: u64) -> Vec<Instruction> {
    use iced_x86::FlowControl;
    let mut out = Vec::new();
    for insn in Decoder::with_ip(64, bytes, dest, DecoderOptions::NONE) {
        let stop = matches!(
            insn.flow_control(),
            FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
        );
        out.push(insn);
        if stop {
            break;
        }
    }
    out
}

/// Reads the little-endian qword at `addr` in `bytes` placed at `base`.
pub fn qword_at(bytes: &[u8], base: u64, addr: u64) -> Option<u64> {
    let off = usize::try_from(addr.checked_sub(base)?).ok()?;
    let b = bytes.get(off..off + 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// A small deterministic PRNG (xorshift64*), so the tests need no `rand`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

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

/// A function symbol read from an ELF file.
#[derive(Debug, Clone)]
pub struct Func {
    pub name: String,
    pub address: u64,
    pub bytes: Vec<u8>,
}

/// Writes `sources` into `dir` and runs gcc on them with `args`, producing `out`.
/// Panics with gcc's output when it fails. Set `HOTPROBE_SKIP_GCC_TESTS=1` to
/// skip (returns `None`) on machines without gcc.
pub fn gcc(
    dir: &std::path::Path,
    sources: &[(&str, &str)],
    args: &[&str],
    out: &str,
) -> Option<std::path::PathBuf> {
    if std::env::var_os("HOTPROBE_SKIP_GCC_TESTS").is_some_and(|v| v == "1") {
        eprintln!("HOTPROBE_SKIP_GCC_TESTS=1: skipping a test that needs gcc");
        return None;
    }
    let mut cmd = std::process::Command::new("gcc");
    for (name, text) in sources {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write source");
        cmd.arg(path);
    }
    let out_path = dir.join(out);
    cmd.args(args).arg("-o").arg(&out_path);
    let output = cmd
        .output()
        .expect("gcc must be installed for these tests (or set HOTPROBE_SKIP_GCC_TESTS=1)");
    assert!(
        output.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(out_path)
}

/// The defined function symbols (with a size) of an ELF file, with their bytes.
pub fn functions(path: &std::path::Path) -> Vec<Func> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    let data = std::fs::read(path).expect("read ELF");
    let file = object::File::parse(&*data).expect("parse ELF");
    let mut out = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 || sym.is_undefined() {
            continue;
        }
        let Some(index) = sym.section_index() else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        let Ok(bytes) = section.data() else { continue };
        let start = sym.address().wrapping_sub(section.address()) as usize;
        let Some(code) = bytes.get(start..start + sym.size() as usize) else {
            continue;
        };
        out.push(Func {
            name: sym.name().unwrap_or("").to_string(),
            address: sym.address(),
            bytes: code.to_vec(),
        });
    }
    out
}

/// The function called `name`.
pub fn func<'a>(funcs: &'a [Func], name: &str) -> &'a Func {
    funcs
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no function {name}"))
}

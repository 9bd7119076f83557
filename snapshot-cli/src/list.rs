//! `hotprobe list BINARY_OR_LIB`: the functions the agent would probe in an
//! object, and why the others are not probed.
//!
//! Two stages. The discover crate's listing knows what discovery and
//! selection leave out (PLT stubs, toolchain glue, functions without a
//! size…). Then each remaining function's bytes are read from the file and
//! given to the same entry analysis the inline engine runs before patching
//! (`hotprobe_x86::analyze_entry`), and its prologue is re-encoded for a
//! trampoline placed just past the object, as the agent places them: a
//! function the engine would reject (too small, a branch into the patched
//! bytes, an instruction that cannot move) moves to the not-probed list
//! with the reason the agent records in its snapshot.

use crate::error::{CliError, Result};
use hotprobe_discover::listing::{from_object, ListedFunction, Listing, NotProbed};
use hotprobe_discover::{
    discover_with, DiscoverOptions, Function, MappedObject, ObjectFunctions, SourceResolver,
};
use hotprobe_x86::{analyze_entry, relocate_prologue, Rejection};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
First the functions the agent would probe (file offset, size, source
position when the object has line tables, name), then those it will not
probe and why: reasons from discovery (PLT stubs, toolchain start-up glue,
no size…) and the inline engine's rejections after decoding the function's
first bytes (too small for the 5-byte patch, a branch into the patched bytes,
an instruction that cannot be moved) — the same reasons a snapshot records
for `rejected` probes. Symbols come from .symtab, a separate debug file, or
.dynsym (a stripped -rdynamic program, a shared library).

--include/--exclude narrow both lists the way HOTPROBE_INCLUDE/EXCLUDE narrow
the agent's selection (globs over demangled names).

JSON: schema `hotprobe.list/1`; each not-probed entry has `reason` and a
stable `reason_code`; the engine's rejections have codes starting `inline-`.

Examples:
  hotprobe list ./server
  hotprobe list /usr/bin/redis-server --include 'dict*'
  hotprobe list /usr/lib/x86_64-linux-gnu/libz.so.1 --format json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ListArgs {
    /// An executable or shared library (ELF).
    #[arg(value_name = "BINARY_OR_LIB")]
    pub object: PathBuf,
    /// Only functions whose demangled name matches one of these globs (repeatable, or comma-separated).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out functions whose name matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// x86-64 in `e_machine`.
const EM_X86_64: u16 = 62;

/// How far past the object's last function the simulated trampoline lies.
const TRAMPOLINE_GAP: u64 = 0x1000;

/// The stable code of an engine rejection.
pub fn rejection_code(r: &Rejection) -> &'static str {
    match r {
        Rejection::TooSmall { .. } => "inline-too-small",
        Rejection::BranchIntoPatch { .. } => "inline-branch-into-patch",
        Rejection::ReferenceIntoPatch { .. } => "inline-reference-into-patch",
        Rejection::ForeignBranchIntoPatch { .. } => "inline-foreign-branch-into-patch",
        Rejection::Unrelocatable { .. } => "inline-unrelocatable",
        Rejection::Undecodable { .. } => "inline-undecodable",
        Rejection::Truncated { .. } => "inline-truncated",
        Rejection::OutOfReach { .. } => "inline-out-of-reach",
        Rejection::RelocationFailed { .. } => "inline-relocation-failed",
    }
}

/// Why the inline engine would refuse `f`, given its bytes (`None` when
/// they are not in the file), or `None` when it would patch it.
pub fn engine_verdict(
    code: Option<&[u8]>,
    f: &Function,
    trampoline: u64,
) -> Option<(String, &'static str)> {
    let Some(code) = code else {
        return Some((
            "not inside an executable segment of its object".to_string(),
            "inline-no-code",
        ));
    };
    let checked = analyze_entry(code, f.address)
        .and_then(|_| relocate_prologue(code, f.address, trampoline).map(|_| ()));
    checked.err().map(|r| (r.to_string(), rejection_code(&r)))
}

/// Moves the functions the engine would reject from `functions` to
/// `not_probed` (kept in offset order).
pub fn apply_engine(listing: &mut Listing, obj: &ObjectFunctions, mapped: &MappedObject) {
    let by_address: HashMap<(u64, &str), &Function> = obj
        .candidates
        .iter()
        .map(|f| ((f.address, f.symbol.as_str()), f))
        .collect();
    let trampoline = obj
        .candidates
        .iter()
        .map(Function::end_address)
        .max()
        .unwrap_or(0)
        .saturating_add(TRAMPOLINE_GAP);
    let x86 = obj.machine == EM_X86_64;
    let mut kept = Vec::with_capacity(listing.functions.len());
    for lf in std::mem::take(&mut listing.functions) {
        let verdict = match by_address.get(&(lf.address, lf.symbol.as_str())) {
            _ if !x86 => Some((
                format!(
                    "the inline engine patches x86-64 code only (e_machine {})",
                    obj.machine
                ),
                "inline-not-x86-64",
            )),
            Some(f) => engine_verdict(mapped.code(f), f, trampoline),
            None => None,
        };
        match verdict {
            Some((reason, code)) => listing.not_probed.push(not_probed(&lf, reason, code)),
            None => kept.push(lf),
        }
    }
    listing.functions = kept;
    listing.not_probed.sort_by_key(|n| (n.offset, n.address));
}

fn not_probed(f: &ListedFunction, reason: String, reason_code: &'static str) -> NotProbed {
    NotProbed {
        name: f.name.clone(),
        symbol: f.symbol.clone(),
        offset: f.offset,
        address: f.address,
        size: f.size,
        reason,
        reason_code,
    }
}

/// Both stages: discovery's listing, then the engine's verdicts.
pub fn listing(args: &ListArgs) -> Result<Listing> {
    let options = DiscoverOptions::default();
    let obj =
        discover_with(&args.object, &options).map_err(|e| CliError::failure(e.to_string()))?;
    let mapped = MappedObject::open(&obj.path).map_err(|e| CliError::failure(e.to_string()))?;
    let mut resolver = SourceResolver::with_options(&obj, &options);
    let mut listing = from_object(&obj, &args.include, &args.exclude, Some(&mut resolver))
        .map_err(|e| CliError::usage(e.to_string()))?;
    apply_engine(&mut listing, &obj, &mapped);
    Ok(listing)
}

pub fn run(args: &ListArgs, out: &mut dyn Write) -> Result<i32> {
    let listing = listing(args)?;
    match args.format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &listing).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        ListFormat::Table => write!(out, "{}", listing.to_table())?,
    }
    out.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotprobe_discover::SizeSource;

    fn func(address: u64, size: u64) -> Function {
        Function {
            name: "f".into(),
            symbol: "f".into(),
            aliases: vec![],
            address,
            offset: address,
            size,
            size_from: SizeSource::Symbol,
            ordinal: 1,
            global: true,
            weak: false,
        }
    }

    #[test]
    fn verdicts_name_the_engine_reason() {
        // xor eax,eax; ret
        let tiny = [0x31, 0xc0, 0xc3];
        let (why, code) = engine_verdict(Some(&tiny), &func(0x1000, 3), 0x9000).unwrap();
        assert_eq!(code, "inline-too-small");
        assert!(why.starts_with("too small"), "{why}");
        // nop; 1: dec edi; jnz 1b; mov eax,edi; ret
        let loops = [0x90, 0xff, 0xcf, 0x75, 0xfc, 0x89, 0xf8, 0xc3];
        let (why, code) = engine_verdict(Some(&loops), &func(0x1000, 8), 0x9000).unwrap();
        assert_eq!(code, "inline-branch-into-patch", "{why}");
        // push rbp; mov rbp,rsp; pop rbp; ret
        let fine = [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
        assert_eq!(engine_verdict(Some(&fine), &func(0x1000, 6), 0x9000), None);
        assert_eq!(
            engine_verdict(None, &func(0x1000, 6), 0x9000).unwrap().1,
            "inline-no-code"
        );
    }
}

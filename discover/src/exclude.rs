//! What is never probed, and why.
//!
//! Whole modules ([`module_exclusion`]):
//!
//! | module | why |
//! | --- | --- |
//! | `libhotprobe*.so*` | the agent itself: probing it would meter the meter |
//! | `libc.so*`, `libc-2.*.so`, `libc.musl*` | the agent runs on libc (allocation, threads, I/O) |
//! | `ld-linux*`, `ld.so*`, `ld-2.*.so`, `ld-musl*` | the dynamic loader resolves symbols for the agent, runs constructors, `dlopen` |
//! | `libgcc_s*` | the unwinder: the agent hooks unwinding and must see it unprobed |
//! | `libpthread*`, `libdl*`, `librt*` | parts of libc (stubs since glibc 2.34; real code before) |
//! | `linux-vdso*`, `linux-gate*` | the kernel's vDSO has no file to read |
//!
//! `libm` **is** probed when selected: the agent never calls it, and math
//! functions are real hotspots of numeric programs. `libstdc++` is probed
//! too, except its unwinding entry points (below).
//!
//! Single functions ([`classify`]): PLT stubs, toolchain start-up and
//! tear-down glue, ifunc resolvers, cold parts split off a function,
//! exception-unwinding machinery, functions that return twice or switch
//! stacks, symbols outside executable sections or loaded segments, and
//! functions whose size cannot be found.

use std::fmt;
use std::path::Path;

/// A module the agent must never probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// `libhotprobe*.so`: the agent itself.
    Agent,
    /// The C library.
    Libc,
    /// The dynamic loader.
    Loader,
    /// libgcc_s: the unwinder.
    Libgcc,
    /// libpthread, libdl, librt: parts of the C library.
    LibcPart,
    /// The kernel's vDSO.
    Vdso,
}

impl ModuleKind {
    fn why(self) -> &'static str {
        match self {
            ModuleKind::Agent => "the hotprobe agent itself",
            ModuleKind::Libc => "the C library (the agent runs on it)",
            ModuleKind::Loader => "the dynamic loader (the agent depends on it)",
            ModuleKind::Libgcc => "libgcc_s, the unwinder (the agent hooks unwinding)",
            ModuleKind::LibcPart => "part of the C library (the agent runs on it)",
            ModuleKind::Vdso => "the kernel's vDSO (no file)",
        }
    }
}

/// Why a function is not a probe candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExcludeReason {
    /// A PLT stub (`.plt`, `.plt.sec`, `.plt.got`, `.iplt`): a jump to
    /// another object's function.
    PltStub,
    /// Start-up and tear-down glue of the toolchain (`_start`, `_init`,
    /// `frame_dummy`, thunks, …): runs before the agent or is not a call.
    ToolchainGlue,
    /// An `STT_GNU_IFUNC` symbol: its code is the resolver, run once by the
    /// loader; the symbol names whatever it picks.
    Ifunc,
    /// `foo.cold`: the cold part of another function, entered by a jump.
    ColdPart,
    /// `_Unwind_*`, `__cxa_throw`, personality routines, `backtrace`: they
    /// must see real return addresses.
    Unwinder,
    /// `setjmp`, `longjmp`, `vfork`, `clone`, `*context`, `*_fcontext`:
    /// return twice or switch stacks, which an exit probe cannot follow.
    StackSwitch,
    /// The symbol is not in an executable section.
    NotExecutable,
    /// The function's bytes are not all inside a loaded segment of the file.
    OutsideSegments,
    /// Symbol size 0 and no DWARF for it.
    UnknownSize,
    /// The whole module is never probed.
    Module(ModuleKind),
}

impl ExcludeReason {
    /// Short stable code, for JSON and scripts.
    pub fn code(self) -> &'static str {
        match self {
            ExcludeReason::PltStub => "plt",
            ExcludeReason::ToolchainGlue => "toolchain-glue",
            ExcludeReason::Ifunc => "ifunc",
            ExcludeReason::ColdPart => "cold-part",
            ExcludeReason::Unwinder => "unwinder",
            ExcludeReason::StackSwitch => "stack-switch",
            ExcludeReason::NotExecutable => "not-executable",
            ExcludeReason::OutsideSegments => "outside-segments",
            ExcludeReason::UnknownSize => "unknown-size",
            ExcludeReason::Module(_) => "module",
        }
    }
}

impl fmt::Display for ExcludeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ExcludeReason::PltStub => "PLT stub",
            ExcludeReason::ToolchainGlue => "toolchain start-up/tear-down glue",
            ExcludeReason::Ifunc => "ifunc resolver (STT_GNU_IFUNC)",
            ExcludeReason::ColdPart => "cold part of another function (entered by a jump)",
            ExcludeReason::Unwinder => "exception-unwinding machinery",
            ExcludeReason::StackSwitch => "returns twice or switches stacks",
            ExcludeReason::NotExecutable => "not in an executable section",
            ExcludeReason::OutsideSegments => "not inside a loaded segment of the file",
            ExcludeReason::UnknownSize => "size unknown (symbol size 0, no DWARF)",
            ExcludeReason::Module(kind) => return write!(f, "module never probed: {}", kind.why()),
        };
        f.write_str(text)
    }
}

/// Whether the agent must never probe the object at `path`, judged by its
/// file name (see the module table above). Symlinks are not resolved here:
/// callers pass the real path when they have it.
pub fn module_exclusion(path: &Path) -> Option<ExcludeReason> {
    let name = path.file_name()?.to_str()?;
    module_kind(name).map(ExcludeReason::Module)
}

fn module_kind(name: &str) -> Option<ModuleKind> {
    let versioned = |prefix: &str| {
        // `prefix.so`, `prefix.so.N…`, `prefix-2.31.so`
        name.strip_prefix(prefix).is_some_and(|rest| {
            rest == ".so"
                || rest.starts_with(".so.")
                || (rest
                    .strip_prefix('-')
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                    && rest.ends_with(".so"))
        })
    };
    if name.starts_with("libhotprobe") && name.contains(".so") {
        Some(ModuleKind::Agent)
    } else if versioned("libc") || name.starts_with("libc.musl") {
        Some(ModuleKind::Libc)
    } else if name.starts_with("ld-linux")
        || name.starts_with("ld.so")
        || name.starts_with("ld-musl")
        || versioned("ld")
    {
        Some(ModuleKind::Loader)
    } else if name.starts_with("libgcc_s") {
        Some(ModuleKind::Libgcc)
    } else if versioned("libpthread") || versioned("libdl") || versioned("librt") {
        Some(ModuleKind::LibcPart)
    } else if name.starts_with("linux-vdso") || name.starts_with("linux-gate") {
        Some(ModuleKind::Vdso)
    } else {
        None
    }
}

/// The exclusion a symbol name alone implies, if any.
pub(crate) fn classify_name(symbol: &str) -> Option<ExcludeReason> {
    if symbol.as_bytes().contains(&b'.') && is_cold_part(symbol) {
        return Some(ExcludeReason::ColdPart);
    }
    // Versioned names from .symtab (`memcpy@GLIBC_2.2.5`) are judged by their base.
    let base = match symbol.find('@') {
        Some(at) => &symbol[..at],
        None => symbol,
    };
    // One `match` (compiled to length tests, then compares) keeps this at
    // a few nanoseconds per symbol.
    let exact = match base {
        // Start-up/tear-down glue, signal and lazy-binding trampolines.
        "_start"
        | "_init"
        | "_fini"
        | "__libc_csu_init"
        | "__libc_csu_fini"
        | "_dl_relocate_static_pie"
        | "deregister_tm_clones"
        | "register_tm_clones"
        | "__do_global_dtors_aux"
        | "__do_global_ctors_aux"
        | "frame_dummy"
        | "call_weak_fn"
        | "__restore_rt"
        | "__restore"
        | "_dl_start"
        | "_dl_start_user"
        | "__morestack"
        | "__x86_return_thunk" => Some(ExcludeReason::ToolchainGlue),
        // Unwinding: must see real return addresses; the agent hooks it.
        "__cxa_throw"
        | "__cxa_rethrow"
        | "__cxa_begin_catch"
        | "__cxa_end_catch"
        | "__cxa_call_unexpected"
        | "__cxa_call_terminate"
        | "__cxa_end_cleanup"
        | "__gxx_personality_v0"
        | "__gxx_personality_sj0"
        | "__gcc_personality_v0"
        | "rust_eh_personality"
        | "backtrace"
        | "__backtrace"
        | "uw_init_context_1"
        | "uw_frame_state_for"
        | "uw_update_context"
        | "uw_update_context_1"
        | "uw_install_context_1"
        | "uw_advance_context"
        | "execute_cfa_program"
        | "execute_stack_op" => Some(ExcludeReason::Unwinder),
        // Return twice or switch stacks.
        "setjmp"
        | "_setjmp"
        | "__setjmp"
        | "sigsetjmp"
        | "__sigsetjmp"
        | "__sigsetjmp_cancel"
        | "longjmp"
        | "_longjmp"
        | "siglongjmp"
        | "__longjmp"
        | "__longjmp_chk"
        | "____longjmp_chk"
        | "__libc_longjmp"
        | "__libc_siglongjmp"
        | "_longjmp_unwind"
        | "vfork"
        | "__vfork"
        | "__libc_vfork"
        | "clone"
        | "__clone"
        | "__clone3"
        | "__clone_internal"
        | "getcontext"
        | "setcontext"
        | "swapcontext"
        | "makecontext"
        | "__getcontext"
        | "__setcontext"
        | "__swapcontext"
        | "__makecontext"
        | "__start_context"
        | "__push___start_context"
        | "savectx"
        | "jump_fcontext"
        | "make_fcontext"
        | "ontop_fcontext" => Some(ExcludeReason::StackSwitch),
        _ => None,
    };
    if exact.is_some() || !base.starts_with('_') {
        return exact;
    }
    const GLUE_PREFIXES: &[&str] = &[
        "__x86.get_pc_thunk",
        "__x86_indirect_thunk_",
        "__x86_indirect_call_thunk_",
        "__x86_indirect_jump_thunk_",
        "__llvm_retpoline_",
        "_dl_runtime_resolve",
        "_dl_runtime_profile",
    ];
    const UNWINDER_PREFIXES: &[&str] = &["_Unwind_", "__libunwind_Unwind_", "_ULx86_64_", "__unw_"];
    if GLUE_PREFIXES.iter().any(|p| base.starts_with(p)) {
        Some(ExcludeReason::ToolchainGlue)
    } else if UNWINDER_PREFIXES.iter().any(|p| base.starts_with(p)) {
        Some(ExcludeReason::Unwinder)
    } else {
        None
    }
}

/// `foo.cold`, `foo.cold.3`, `_Z1fv.cold`: a part GCC or LLVM split off.
fn is_cold_part(symbol: &str) -> bool {
    symbol.split('.').skip(1).any(|part| part == "cold")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules() {
        let kind = |p: &str| module_exclusion(Path::new(p));
        assert_eq!(
            kind("/lib/x86_64-linux-gnu/libc.so.6"),
            Some(ExcludeReason::Module(ModuleKind::Libc))
        );
        assert_eq!(
            kind("/lib/libc-2.31.so"),
            Some(ExcludeReason::Module(ModuleKind::Libc))
        );
        assert_eq!(
            kind("/lib64/ld-linux-x86-64.so.2"),
            Some(ExcludeReason::Module(ModuleKind::Loader))
        );
        assert_eq!(
            kind("/lib/ld-2.31.so"),
            Some(ExcludeReason::Module(ModuleKind::Loader))
        );
        assert_eq!(
            kind("/x/target/release/libhotprobe.so"),
            Some(ExcludeReason::Module(ModuleKind::Agent))
        );
        assert_eq!(
            kind("/lib/libgcc_s.so.1"),
            Some(ExcludeReason::Module(ModuleKind::Libgcc))
        );
        assert_eq!(
            kind("/lib/libpthread.so.0"),
            Some(ExcludeReason::Module(ModuleKind::LibcPart))
        );
        assert_eq!(
            kind("/lib/libdl.so.2"),
            Some(ExcludeReason::Module(ModuleKind::LibcPart))
        );
        assert_eq!(
            kind("/lib/librt.so.1"),
            Some(ExcludeReason::Module(ModuleKind::LibcPart))
        );
        assert_eq!(
            kind("linux-vdso.so.1"),
            Some(ExcludeReason::Module(ModuleKind::Vdso))
        );
        for fine in [
            "/lib/libm.so.6",
            "/lib/libcrypt.so.1",
            "/lib/libcurl.so.4",
            "/usr/lib/libdlib.so",
            "/lib/libstdc++.so.6",
            "/usr/bin/ld",
            "/lib/libresolv.so.2",
            "/lib/librtmp.so.1",
            "/usr/lib/libc-client.so.2007e",
            "/usr/lib/libc-foo.so",
        ] {
            assert_eq!(kind(fine), None, "{fine}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(classify_name("_start"), Some(ExcludeReason::ToolchainGlue));
        assert_eq!(
            classify_name("__x86.get_pc_thunk.bx"),
            Some(ExcludeReason::ToolchainGlue)
        );
        assert_eq!(classify_name("main.cold"), Some(ExcludeReason::ColdPart));
        assert_eq!(
            classify_name("_Z3fooi.cold.7"),
            Some(ExcludeReason::ColdPart)
        );
        assert_eq!(
            classify_name("_Unwind_RaiseException"),
            Some(ExcludeReason::Unwinder)
        );
        assert_eq!(classify_name("__cxa_throw"), Some(ExcludeReason::Unwinder));
        assert_eq!(classify_name("_setjmp"), Some(ExcludeReason::StackSwitch));
        assert_eq!(
            classify_name("longjmp@GLIBC_2.2.5"),
            Some(ExcludeReason::StackSwitch)
        );
        for fine in [
            "main",
            "foo.part.0",
            "foo.constprop.0",
            "coldest",
            "start",
            "_init_thing",
            "setjmp_like",
        ] {
            assert_eq!(classify_name(fine), None, "{fine}");
        }
    }
}

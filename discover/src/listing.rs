//! What `hotprobe list BINARY_OR_LIB [--include G] [--exclude G] [--format
//! table|json]` prints: every function the agent would probe in that
//! object (name, file offset, size, source position when known), then the
//! functions it will not probe and why. `--include`/`--exclude` narrow both
//! lists the way they narrow the agent's selection (an empty include list
//! means everything).
//!
//! JSON (`schema: "hotprobe.list/1"`):
//!
//! ```json
//! {"schema": "hotprobe.list/1", "module": "/real/path", "build_id": "hex or null",
//!  "is_pie_or_dso": true, "symbol_source": "symtab | dynsym | debug-file | none",
//!  "debug_file": "path or null", "module_excluded": "reason or null",
//!  "filtered_out": 0,
//!  "functions": [{"name": "helper#2", "symbol": "helper", "offset": 4409, "address": 4409,
//!                 "size": 11, "size_from": "symbol | dwarf", "source": "b.c:3 or null",
//!                 "global": false, "aliases": []}],
//!  "not_probed": [{"name": "_start", "symbol": "_start", "offset": 4160, "address": 4160,
//!                  "size": 34, "reason": "toolchain start-up/tear-down glue",
//!                  "reason_code": "toolchain-glue"}]}
//! ```

use crate::{
    discover_with, module_exclusion, DiscoverError, DiscoverOptions, Function, ObjectFunctions,
    Selector, SourceResolver,
};
use serde::Serialize;
use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

pub const LIST_SCHEMA: &str = "hotprobe.list/1";

/// A function the agent would probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedFunction {
    /// Display name (`name#N` for the N-th same-symbol function).
    pub name: String,
    pub symbol: String,
    pub offset: u64,
    pub address: u64,
    pub size: u64,
    pub size_from: &'static str,
    pub source: Option<String>,
    pub global: bool,
    pub aliases: Vec<String>,
}

/// A function the agent will not probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotProbed {
    pub name: String,
    pub symbol: String,
    pub offset: u64,
    pub address: u64,
    pub size: u64,
    pub reason: String,
    pub reason_code: &'static str,
}

/// The listing of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub schema: &'static str,
    pub module: String,
    pub build_id: Option<String>,
    pub is_pie_or_dso: bool,
    pub symbol_source: &'static str,
    pub debug_file: Option<String>,
    /// Why the whole module is never probed, if it is not.
    pub module_excluded: Option<String>,
    /// Functions left out of both lists by `--include`/`--exclude`.
    pub filtered_out: usize,
    pub functions: Vec<ListedFunction>,
    pub not_probed: Vec<NotProbed>,
}

/// `list` failed: the object could not be read, or a glob is bad.
#[derive(Debug)]
pub enum ListError {
    Discover(DiscoverError),
    Glob(String),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Discover(e) => write!(f, "{e}"),
            ListError::Glob(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ListError {}

impl From<DiscoverError> for ListError {
    fn from(e: DiscoverError) -> Self {
        ListError::Discover(e)
    }
}

/// Lists the object at `path` with the default debug-file search.
pub fn list(path: &Path, include: &[String], exclude: &[String]) -> Result<Listing, ListError> {
    list_with(path, include, exclude, &DiscoverOptions::default())
}

pub fn list_with(
    path: &Path,
    include: &[String],
    exclude: &[String],
    options: &DiscoverOptions,
) -> Result<Listing, ListError> {
    let obj = discover_with(path, options)?;
    let mut resolver = SourceResolver::with_options(&obj, options);
    from_object(&obj, include, exclude, Some(&mut resolver))
}

/// Builds the listing of an already discovered object; `resolver` adds
/// source positions.
pub fn from_object(
    obj: &ObjectFunctions,
    include: &[String],
    exclude: &[String],
    mut resolver: Option<&mut SourceResolver>,
) -> Result<Listing, ListError> {
    let all = ["*".to_string()];
    let include = if include.is_empty() {
        &all[..]
    } else {
        include
    };
    let filter = Selector::from_lists(&[], include, exclude, None).map_err(ListError::Glob)?;
    let mut filtered_out = 0;
    let mut functions = Vec::new();
    for f in &obj.candidates {
        if !filter.allows(f) {
            filtered_out += 1;
            continue;
        }
        let source = resolver.as_deref_mut().and_then(|r| r.locate(f.address));
        functions.push(listed(f, source));
    }
    let mut not_probed = Vec::new();
    for x in &obj.excluded {
        if !filter.allows(&x.function) {
            filtered_out += 1;
            continue;
        }
        let f = &x.function;
        not_probed.push(NotProbed {
            name: f.display_name().into_owned(),
            symbol: f.symbol.clone(),
            offset: f.offset,
            address: f.address,
            size: f.size,
            reason: x.reason.to_string(),
            reason_code: x.reason.code(),
        });
    }
    Ok(Listing {
        schema: LIST_SCHEMA,
        module: obj.path.display().to_string(),
        build_id: obj.build_id.clone(),
        is_pie_or_dso: obj.is_pie_or_dso,
        symbol_source: obj.symbol_source.code(),
        debug_file: obj.debug_file.as_ref().map(|p| p.display().to_string()),
        module_excluded: module_exclusion(&obj.path).map(|r| r.to_string()),
        filtered_out,
        functions,
        not_probed,
    })
}

fn listed(f: &Function, source: Option<String>) -> ListedFunction {
    ListedFunction {
        name: f.display_name().into_owned(),
        symbol: f.symbol.clone(),
        offset: f.offset,
        address: f.address,
        size: f.size,
        size_from: f.size_from.code(),
        source,
        global: f.global,
        aliases: f.aliases.clone(),
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

impl Listing {
    /// JSON, see the module docs.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// A plain-text aligned table: a header, the functions to probe, then
    /// the ones not probed with their reasons. Names come last (C++ names
    /// are long).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "module       {}", self.module);
        let _ = writeln!(
            out,
            "build id     {}",
            self.build_id.as_deref().unwrap_or("none")
        );
        let _ = writeln!(out, "symbols      {}", self.symbol_source);
        let _ = writeln!(
            out,
            "debug file   {}",
            self.debug_file.as_deref().unwrap_or("none")
        );
        if let Some(why) = &self.module_excluded {
            let _ = writeln!(out, "excluded     {why}");
        }
        let _ = write!(
            out,
            "{} functions to probe, {} not probed",
            self.functions.len(),
            self.not_probed.len()
        );
        if self.filtered_out > 0 {
            let _ = write!(
                out,
                " ({} more left out by --include/--exclude)",
                self.filtered_out
            );
        }
        out.push_str("\n\n");

        let offsets: Vec<String> = self
            .functions
            .iter()
            .map(|f| format!("{:#x}", f.offset))
            .collect();
        let sources: Vec<&str> = self
            .functions
            .iter()
            .map(|f| f.source.as_deref().unwrap_or("-"))
            .collect();
        let ow = offsets
            .iter()
            .map(|s| width(s))
            .chain([width("OFFSET")])
            .max()
            .unwrap_or(6);
        let sw = self
            .functions
            .iter()
            .map(|f| f.size.to_string().len())
            .chain([width("SIZE")])
            .max()
            .unwrap_or(4);
        let srcw = sources
            .iter()
            .map(|s| width(s))
            .chain([width("SOURCE")])
            .max()
            .unwrap_or(6);
        let _ = writeln!(
            out,
            "{:<ow$}  {:>sw$}  {:<srcw$}  NAME",
            "OFFSET", "SIZE", "SOURCE"
        );
        for ((f, off), src) in self.functions.iter().zip(&offsets).zip(&sources) {
            let _ = writeln!(out, "{off:<ow$}  {:>sw$}  {src:<srcw$}  {}", f.size, f.name);
        }

        if !self.not_probed.is_empty() {
            out.push_str("\nnot probed:\n");
            let offsets: Vec<String> = self
                .not_probed
                .iter()
                .map(|f| format!("{:#x}", f.offset))
                .collect();
            let ow = offsets
                .iter()
                .map(|s| width(s))
                .chain([width("OFFSET")])
                .max()
                .unwrap_or(6);
            let sw = self
                .not_probed
                .iter()
                .map(|f| f.size.to_string().len())
                .chain([width("SIZE")])
                .max()
                .unwrap_or(4);
            let rw = self
                .not_probed
                .iter()
                .map(|f| width(&f.reason))
                .chain([width("REASON")])
                .max()
                .unwrap_or(6);
            let _ = writeln!(
                out,
                "{:<ow$}  {:>sw$}  {:<rw$}  NAME",
                "OFFSET", "SIZE", "REASON"
            );
            for (f, off) in self.not_probed.iter().zip(&offsets) {
                let _ = writeln!(
                    out,
                    "{off:<ow$}  {:>sw$}  {:<rw$}  {}",
                    f.size, f.reason, f.name
                );
            }
        }
        out
    }
}

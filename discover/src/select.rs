//! Which functions get probes: the same rules for the agent and the CLI.
//!
//! Without a probe set:
//! * a module is wanted when one of `target.modules` (`HOTPROBE_MODULES`)
//!   matches it: the token `main` means the executable; a glob containing
//!   `/` is matched against the object's path; one without `/` against its
//!   file name or its path (so `libfoo.so*` and `*/lib/*` both work). The
//!   path as loaded and the real path (symlinks resolved) are both tried;
//! * in a wanted module, a candidate is selected when `include` matches its
//!   demangled name, raw symbol or an alias, and `exclude` matches none.
//!
//! With a probe set, only its entries are selected, in the modules they
//! name (`module` is `main`, a file name, or a glob over the path or file
//! name; `target.modules` is not consulted). An entry matches candidates by
//! `symbol` (or an alias), else by `name` (without a `#N` suffix); when
//! several same-symbol functions match, `offset` picks the one at that
//! offset, else the ordinal of `name#N`, else all of them are taken (a
//! rebuilt binary moved them). `include`/`exclude` still narrow the result.
//! Entries that selected nothing are kept for one summary warning.
//!
//! Modules refused by [`module_exclusion`] are never wanted.

use crate::elf::FastMap;
use crate::exclude::{module_exclusion, ExcludeReason};
use crate::{Function, ObjectFunctions};
use hotprobe_config::{GlobList, ProbeSet, ProbeSetEntry, Settings};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Module patterns: `main`, globs over paths, globs over file names or paths.
#[derive(Debug, Clone)]
struct ModuleFilter {
    main: bool,
    path_globs: GlobList,
    name_globs: GlobList,
}

impl ModuleFilter {
    fn new(patterns: &[String]) -> Result<ModuleFilter, String> {
        let main = patterns.iter().any(|p| p == "main");
        let (with_slash, bare): (Vec<String>, Vec<String>) = patterns
            .iter()
            .filter(|p| *p != "main")
            .cloned()
            .partition(|p| p.contains('/'));
        Ok(ModuleFilter {
            main,
            path_globs: GlobList::new(&with_slash)?,
            name_globs: GlobList::new(&bare)?,
        })
    }

    fn matches(&self, paths: &[&Path], is_main: bool) -> bool {
        if self.main && is_main {
            return true;
        }
        paths.iter().any(|p| {
            let text = p.to_string_lossy();
            if !self.path_globs.is_empty() && self.path_globs.is_match(&text) {
                return true;
            }
            if self.name_globs.is_empty() {
                return false;
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            self.name_globs.is_match(&name) || self.name_globs.is_match(&text)
        })
    }
}

/// Why a probe-set entry selected nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// No module offered so far matched the entry's `module`.
    ModuleNotSeen,
    /// The module was offered but has no such function.
    NotFound { module: PathBuf },
    /// The function exists but is never probed.
    NotProbeable {
        module: PathBuf,
        reason: ExcludeReason,
    },
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::ModuleNotSeen => write!(f, "module not loaded"),
            MissReason::NotFound { module } => {
                write!(f, "no such function in {}", module.display())
            }
            MissReason::NotProbeable { module, reason } => {
                write!(f, "not probeable in {}: {reason}", module.display())
            }
        }
    }
}

/// A probe-set entry that selected nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSetMiss {
    pub entry: ProbeSetEntry,
    pub reason: MissReason,
}

/// What became of one probe-set entry so far; later states win.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Unseen,
    NotFound(PathBuf),
    Refused(PathBuf, ExcludeReason),
    /// Found, then removed by include/exclude: deliberate, not a miss.
    Narrowed,
    Selected,
}

impl Status {
    fn rank(&self) -> u8 {
        match self {
            Status::Unseen => 0,
            Status::NotFound(_) => 1,
            Status::Refused(..) => 2,
            Status::Narrowed => 3,
            Status::Selected => 4,
        }
    }
}

#[derive(Debug)]
struct ProbeSetState {
    entries: Vec<ProbeSetEntry>,
    /// One filter per distinct `module` string, with its entries.
    groups: Vec<(ModuleFilter, Vec<usize>)>,
    status: Mutex<Vec<Status>>,
}

impl ProbeSetState {
    /// Records what became of entries; a later state only replaces an
    /// earlier one of lower rank (selected anywhere stays selected).
    fn update(&self, updates: impl IntoIterator<Item = (usize, Status)>) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        for (i, new) in updates {
            if let Some(old) = status.get_mut(i) {
                if new.rank() >= old.rank() {
                    *old = new;
                }
            }
        }
    }
}

/// Decides which modules and functions get probes; see the module docs.
/// Shareable between threads (the probe-set bookkeeping is behind a lock).
#[derive(Debug)]
pub struct Selector {
    modules: ModuleFilter,
    include_all: bool,
    include: GlobList,
    exclude: GlobList,
    probe_set: Option<ProbeSetState>,
}

impl Selector {
    /// From `target.modules`, `target.include`, `target.exclude` and, when
    /// given, the probe set already read from `target.probe_set`.
    pub fn new(settings: &Settings, probe_set: Option<&ProbeSet>) -> Result<Selector, String> {
        let t = &settings.target;
        Self::from_lists(&t.modules, &t.include, &t.exclude, probe_set)
    }

    /// The same from explicit lists (already split).
    pub fn from_lists(
        modules: &[String],
        include: &[String],
        exclude: &[String],
        probe_set: Option<&ProbeSet>,
    ) -> Result<Selector, String> {
        let modules = ModuleFilter::new(modules).map_err(|e| format!("target.modules: {e}"))?;
        let include_all = include.iter().any(|p| p == "*");
        let include = GlobList::new(include).map_err(|e| format!("target.include: {e}"))?;
        let exclude = GlobList::new(exclude).map_err(|e| format!("target.exclude: {e}"))?;
        let probe_set = match probe_set {
            None => None,
            Some(set) => {
                let mut by_module: Vec<(String, Vec<usize>)> = Vec::new();
                for (i, entry) in set.probes.iter().enumerate() {
                    match by_module.iter_mut().find(|(m, _)| *m == entry.module) {
                        Some((_, list)) => list.push(i),
                        None => by_module.push((entry.module.clone(), vec![i])),
                    }
                }
                let mut groups = Vec::with_capacity(by_module.len());
                for (module, list) in by_module {
                    let filter = ModuleFilter::new(std::slice::from_ref(&module))
                        .map_err(|e| format!("probe set: module `{module}`: {e}"))?;
                    groups.push((filter, list));
                }
                Some(ProbeSetState {
                    entries: set.probes.clone(),
                    groups,
                    status: Mutex::new(vec![Status::Unseen; set.probes.len()]),
                })
            }
        };
        Ok(Selector {
            modules,
            include_all,
            include,
            exclude,
            probe_set,
        })
    }

    pub fn has_probe_set(&self) -> bool {
        self.probe_set.is_some()
    }

    /// Whether functions of the object at `path` may be selected (call it
    /// before [`crate::discover`] to skip unwanted objects). `is_main`: the
    /// object is the executable.
    pub fn wants_module(&self, path: &Path, is_main: bool) -> bool {
        let real = std::fs::canonicalize(path).ok();
        let mut paths: Vec<&Path> = vec![path];
        if let Some(r) = real.as_deref().filter(|r| *r != path) {
            paths.push(r);
        }
        if let Some(reason) = paths.iter().find_map(|p| module_exclusion(p)) {
            // Probe-set entries naming this module are explained, not "not loaded".
            if let Some(ps) = &self.probe_set {
                let module = paths.last().map(|p| p.to_path_buf()).unwrap_or_default();
                let hits: Vec<usize> = ps
                    .groups
                    .iter()
                    .filter(|(filter, _)| filter.matches(&paths, is_main))
                    .flat_map(|(_, list)| list.iter().copied())
                    .collect();
                ps.update(
                    hits.into_iter()
                        .map(|i| (i, Status::Refused(module.clone(), reason))),
                );
            }
            return false;
        }
        match &self.probe_set {
            None => self.modules.matches(&paths, is_main),
            Some(ps) => ps
                .groups
                .iter()
                .any(|(filter, _)| filter.matches(&paths, is_main)),
        }
    }

    /// Whether `include`/`exclude` let this function through.
    pub fn allows(&self, f: &Function) -> bool {
        if self.include_all && self.exclude.is_empty() {
            return true;
        }
        let name = f.demangled();
        let any = |globs: &GlobList| {
            globs.is_match(&name)
                || globs.is_match(&f.symbol)
                || f.aliases.iter().any(|a| globs.is_match(a))
        };
        (self.include_all || any(&self.include)) && (self.exclude.is_empty() || !any(&self.exclude))
    }

    /// The candidates of `obj` to probe, by address.
    pub fn select<'a>(&self, obj: &'a ObjectFunctions, is_main: bool) -> Vec<&'a Function> {
        let paths = [obj.opened_as.as_path(), obj.path.as_path()];
        let excluded_module = paths.iter().find_map(|p| module_exclusion(p));
        match &self.probe_set {
            None => {
                if excluded_module.is_some() || !self.modules.matches(&paths, is_main) {
                    return Vec::new();
                }
                obj.candidates.iter().filter(|f| self.allows(f)).collect()
            }
            Some(ps) => self.select_probe_set(ps, obj, &paths, is_main, excluded_module),
        }
    }

    fn select_probe_set<'a>(
        &self,
        ps: &ProbeSetState,
        obj: &'a ObjectFunctions,
        paths: &[&Path],
        is_main: bool,
        excluded_module: Option<ExcludeReason>,
    ) -> Vec<&'a Function> {
        let applicable: Vec<usize> = ps
            .groups
            .iter()
            .filter(|(filter, _)| filter.matches(paths, is_main))
            .flat_map(|(_, list)| list.iter().copied())
            .collect();
        if applicable.is_empty() {
            return Vec::new();
        }
        let index = Index::new(obj);
        let mut selected: Vec<&'a Function> = Vec::new();
        let mut updates: Vec<(usize, Status)> = Vec::with_capacity(applicable.len());
        for i in applicable {
            let entry = &ps.entries[i];
            let found = index.find(entry);
            let status = if found.is_empty() {
                Status::NotFound(obj.path.clone())
            } else if let Some(reason) = excluded_module {
                Status::Refused(obj.path.clone(), reason)
            } else {
                let mut status = None;
                for hit in &found {
                    match hit {
                        Hit::Candidate(f) if self.allows(f) => {
                            selected.push(f);
                            status = Some(Status::Selected);
                        }
                        Hit::Candidate(_) => {
                            if status != Some(Status::Selected) {
                                status = Some(Status::Narrowed);
                            }
                        }
                        Hit::Excluded(reason) => {
                            if status.is_none() {
                                status = Some(Status::Refused(obj.path.clone(), *reason));
                            }
                        }
                    }
                }
                status.unwrap_or(Status::NotFound(obj.path.clone()))
            };
            updates.push((i, status));
        }
        ps.update(updates);
        selected.sort_by_key(|f| f.address);
        selected.dedup_by_key(|f| f.address);
        selected
    }

    /// Probe-set entries that selected nothing in the modules offered so
    /// far (call it after every loaded module was offered), with why.
    pub fn probe_set_misses(&self) -> Vec<ProbeSetMiss> {
        let Some(ps) = &self.probe_set else {
            return Vec::new();
        };
        let status = ps.status.lock().unwrap_or_else(|p| p.into_inner());
        ps.entries
            .iter()
            .zip(status.iter())
            .filter_map(|(entry, s)| {
                let reason = match s {
                    Status::Unseen => MissReason::ModuleNotSeen,
                    Status::NotFound(m) => MissReason::NotFound { module: m.clone() },
                    Status::Refused(m, r) => MissReason::NotProbeable {
                        module: m.clone(),
                        reason: *r,
                    },
                    Status::Narrowed | Status::Selected => return None,
                };
                Some(ProbeSetMiss {
                    entry: entry.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// The entries of [`Selector::probe_set_misses`], without the reasons.
    pub fn unmatched_probe_set_entries(&self) -> Vec<ProbeSetEntry> {
        self.probe_set_misses()
            .into_iter()
            .map(|m| m.entry)
            .collect()
    }
}

/// A function found for a probe-set entry.
enum Hit<'a> {
    Candidate(&'a Function),
    Excluded(ExcludeReason),
}

/// Candidates and excluded functions of one object by symbol (aliases
/// included) and, built only when an entry needs it, by demangled name.
struct Index<'a> {
    obj: &'a ObjectFunctions,
    /// Key → (is_candidate, index).
    by_symbol: FastMap<&'a str, Vec<(bool, usize)>>,
    by_name: std::cell::OnceCell<FastMap<String, Vec<(bool, usize)>>>,
}

impl<'a> Index<'a> {
    fn all(obj: &'a ObjectFunctions) -> impl Iterator<Item = (bool, usize, &'a Function)> {
        obj.candidates
            .iter()
            .enumerate()
            .map(|(i, f)| (true, i, f))
            .chain(
                obj.excluded
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (false, i, &x.function)),
            )
    }

    fn new(obj: &'a ObjectFunctions) -> Index<'a> {
        let mut by_symbol: FastMap<&str, Vec<(bool, usize)>> = FastMap::default();
        for (cand, i, f) in Self::all(obj) {
            by_symbol
                .entry(f.symbol.as_str())
                .or_default()
                .push((cand, i));
            for alias in &f.aliases {
                by_symbol.entry(alias.as_str()).or_default().push((cand, i));
            }
        }
        Index {
            obj,
            by_symbol,
            by_name: std::cell::OnceCell::new(),
        }
    }

    fn by_name(&self, name: &str) -> Option<&Vec<(bool, usize)>> {
        self.by_name
            .get_or_init(|| {
                let mut map: FastMap<String, Vec<(bool, usize)>> = FastMap::default();
                for (cand, i, f) in Self::all(self.obj) {
                    map.entry(f.demangled().into_owned())
                        .or_default()
                        .push((cand, i));
                }
                map
            })
            .get(name)
    }

    fn function(&self, (cand, i): (bool, usize)) -> &'a Function {
        if cand {
            &self.obj.candidates[i]
        } else {
            &self.obj.excluded[i].function
        }
    }

    fn find(&self, entry: &ProbeSetEntry) -> Vec<Hit<'a>> {
        let (base_name, name_ordinal) = split_ordinal(&entry.name);
        let lookup = self
            .by_symbol
            .get(entry.symbol.as_str())
            .or_else(|| {
                (!base_name.is_empty())
                    .then(|| self.by_name(base_name))
                    .flatten()
            })
            .or_else(|| self.by_name(entry.symbol.as_str()));
        let Some(keys) = lookup else {
            return Vec::new();
        };
        let mut keys: Vec<(bool, usize)> = keys.clone();
        if keys.len() > 1 {
            let at_offset: Vec<_> = keys
                .iter()
                .copied()
                .filter(|&k| Some(self.function(k).offset) == entry.offset)
                .collect();
            if !at_offset.is_empty() {
                keys = at_offset;
            } else if let Some(n) = name_ordinal {
                let nth: Vec<_> = keys
                    .iter()
                    .copied()
                    .filter(|&k| self.function(k).ordinal == n)
                    .collect();
                if !nth.is_empty() {
                    keys = nth;
                }
            }
        }
        keys.into_iter()
            .map(|k @ (cand, i)| {
                if cand {
                    Hit::Candidate(self.function(k))
                } else {
                    Hit::Excluded(self.obj.excluded[i].reason)
                }
            })
            .collect()
    }
}

/// `helper#2` → (`helper`, Some(2)); anything else → (name, None).
fn split_ordinal(name: &str) -> (&str, Option<u32>) {
    if let Some((base, n)) = name.rsplit_once('#') {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = n.parse::<u32>() {
                if n >= 2 {
                    return (base, Some(n));
                }
            }
        }
    }
    (name, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ordinal_suffix() {
        assert_eq!(split_ordinal("helper#2"), ("helper", Some(2)));
        assert_eq!(split_ordinal("helper#1"), ("helper#1", None));
        assert_eq!(split_ordinal("operator#"), ("operator#", None));
        assert_eq!(split_ordinal("plain"), ("plain", None));
    }

    #[test]
    fn module_patterns() {
        let f = ModuleFilter::new(&s(&["main", "libz.so*", "/opt/*"])).unwrap();
        assert!(f.matches(&[Path::new("/usr/bin/prog")], true));
        assert!(!f.matches(&[Path::new("/usr/bin/prog")], false));
        assert!(f.matches(&[Path::new("/lib/x86_64-linux-gnu/libz.so.1")], false));
        assert!(f.matches(&[Path::new("/opt/app/lib/libx.so")], false));
        assert!(!f.matches(&[Path::new("/usr/lib/libx.so")], false));
        let g = ModuleFilter::new(&s(&["*/lib/*"])).unwrap();
        assert!(g.matches(&[Path::new("/usr/lib/libx.so")], false));
    }

    #[test]
    fn excluded_modules_are_never_wanted() {
        let sel = Selector::from_lists(&s(&["*"]), &s(&["*"]), &[], None).unwrap();
        assert!(!sel.wants_module(Path::new("/nonexistent/libc.so.6"), false));
        assert!(!sel.wants_module(Path::new("/nonexistent/libhotprobe.so"), false));
        assert!(sel.wants_module(Path::new("/nonexistent/libm.so.6"), false));
    }
}

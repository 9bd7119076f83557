//! Every setting of the agent, with its default, read from the TOML file
//! and then from the environment (defaults < file < environment). Errors
//! name the file and line (or the variable) and the key.

use crate::error::{line_of, ConfigError, Origin};
use crate::lists::{split_list, GlobList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which probe mechanism the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Inline,
    Kernel,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Inline => "inline",
            Backend::Kernel => "kernel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    #[default]
    Warn,
    Info,
    Debug,
}

/// Which child processes the agent stays active in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Follow {
    #[default]
    All,
    None,
    /// Globs over executable file names.
    Only(Vec<String>),
}

impl Follow {
    fn parse(text: &str) -> Follow {
        match text.trim() {
            "" | "all" => Follow::All,
            "none" => Follow::None,
            other => Follow::Only(split_list(other)),
        }
    }

    /// Whether an image whose executable has this file name stays probed.
    pub fn allows(&self, exe_file_name: &str) -> bool {
        match self {
            Follow::All => true,
            Follow::None => false,
            Follow::Only(globs) => GlobList::new(globs)
                .map(|g| g.is_match(exe_file_name))
                .unwrap_or(false),
        }
    }
}

impl Serialize for Follow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Follow::All => s.serialize_str("all"),
            Follow::None => s.serialize_str("none"),
            Follow::Only(g) => g.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Follow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Follow, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(s) => Follow::parse(&s),
            Raw::Many(v) => Follow::Only(v),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Target {
    pub modules: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub probe_set: String,
    pub follow: Follow,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            modules: vec!["main".into()],
            include: vec!["*".into()],
            exclude: vec![],
            probe_set: String::new(),
            follow: Follow::All,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Probes {
    pub backend: Backend,
}

/// The score card (see CONTRACT.md "The score card"). Defaults are
/// documented in the README with the measurements behind them: a probed
/// call costs 26–37 ns on the project's machine today, so an inherent
/// threshold of 0.06 µs (about twice that) takes out functions whose own
/// time is within a small multiple of the probe's cost; 0.18 µs inclusive
/// keeps a native server's request path — redis's `call` (0.2–0.3 µs a
/// call) and `processCommand` (0.25–0.45 µs) — hot, where Satoris' JVM
/// values (10 µs / 2 µs) would disable it, and so did 0.5 µs and then
/// 0.3 µs each time the machine got faster (README, "Why these score-card
/// defaults").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hotspot {
    pub adaptive: bool,
    pub threshold_us: f64,
    pub inherent_threshold_us: f64,
    pub credit: i64,
    pub debit: i64,
    pub initial: i64,
    pub lower: i64,
    pub upper: i64,
    /// No verdict on a probe whose calls reach a threshold until this long
    /// (ms) after they first did: its score is kept within
    /// initial..upper-1 until then, so a few milliseconds in which the
    /// machine (or the program) runs unusually fast or slow at a function's
    /// first calls neither take it out nor make it hot for good. While
    /// either window is above 0, no probe is removed before 128 of its
    /// calls were scored. Both 0 = Satoris' rule, from the first call.
    /// A snapshot without it comes from an agent that had no window: 0.
    #[serde(default)]
    pub min_judging_ms: f64,
    /// A probe whose calls reach a threshold is not removed until this long
    /// (ms) after they first did, though it can turn hot after
    /// `min_judging_ms`: its score is kept at `initial` or above until
    /// then, while its calls still come near a threshold (one at a
    /// threshold in its last 32 batches of 16) and for at most 32 probes at
    /// once (each costs its calls while kept). Removal is the verdict a
    /// loop cannot undo (refine drops the function), and a function near a
    /// threshold that was judged only in one of the machine's fast
    /// stretches was removed in one loop and hot in the others. Below
    /// `min_judging_ms` it is `min_judging_ms`.
    /// A snapshot without it comes from an agent that had none: 0.
    #[serde(default)]
    pub min_removal_ms: f64,
    /// A probe whose score falls to 0 is kept (its score held at 1, so it
    /// stays `active`) while this thread's own time in it is at least this
    /// share of the time since the agent started and at least four times
    /// the probe's calibrated cost a call: taking it out would hide a large
    /// part of the program's time (CPython's `_PyObject_MakeTpCall`, 15 %
    /// of a run, most calls under 180 ns and a few far over) for a small
    /// saving. 0 = Satoris' rule. A snapshot without it comes from an agent
    /// that had none: 0.
    #[serde(default)]
    pub keep_share: f64,
}

impl Default for Hotspot {
    fn default() -> Self {
        Hotspot {
            adaptive: true,
            threshold_us: 0.18,
            inherent_threshold_us: 0.06,
            credit: 1,
            debit: 2,
            initial: 200,
            lower: 1000,
            upper: 20000,
            min_judging_ms: 200.0,
            min_removal_ms: 1000.0,
            keep_share: 0.01,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotSettings {
    pub path: String,
    pub interval_s: f64,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        SnapshotSettings {
            path: "hotprobe-{exe}-{pid}.json".into(),
            interval_s: 0.0,
        }
    }
}

/// Settings of the metering engine (an extension of the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meter {
    /// Calling-context nodes per process before deeper paths fold into their
    /// parent. A folded call takes the engine's slow paths on entry and exit:
    /// with 100,000, CPython's first iteration (every libpython function
    /// probed, 145,561 contexts) folded and ran at 0.7× bare against 0.8×
    /// unfolded (BENCHMARKS.md). About 80 bytes a node.
    pub contexts_cap: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            contexts_cap: 500_000,
        }
    }
}

/// Settings of the kernel backend (an extension of the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Kernel {
    /// Data pages of each per-CPU ring buffer (a power of two).
    pub ring_pages: u64,
    /// How often the reader drains the rings, in milliseconds.
    pub drain_ms: u64,
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel {
            ring_pages: 1024,
            drain_ms: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Agent {
    pub log: LogLevel,
}

/// The effective settings. Serialized as the snapshot's `config`, with the
/// same keys as the TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub target: Target,
    pub probes: Probes,
    pub hotspot: Hotspot,
    pub snapshot: SnapshotSettings,
    pub meter: Meter,
    pub kernel: Kernel,
    pub agent: Agent,
    /// The file the settings were read from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Where each key that is not a default came from (not serialized).
    #[serde(skip)]
    pub origins: BTreeMap<String, Origin>,
}

/// Environment variables and the keys they set.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("HOTPROBE_MODULES", "target.modules"),
    ("HOTPROBE_INCLUDE", "target.include"),
    ("HOTPROBE_EXCLUDE", "target.exclude"),
    ("HOTPROBE_PROBESET", "target.probe_set"),
    ("HOTPROBE_FOLLOW", "target.follow"),
    ("HOTPROBE_ADAPTIVE", "hotspot.adaptive"),
    ("HOTPROBE_BACKEND", "probes.backend"),
    ("HOTPROBE_OUTPUT", "snapshot.path"),
    ("HOTPROBE_INTERVAL", "snapshot.interval_s"),
    ("HOTPROBE_LOG", "agent.log"),
];

impl Settings {
    /// Reads the settings the way the agent does: the file named by
    /// `HOTPROBE_CONFIG` (or `./hotprobe.toml` when present), then the
    /// environment. `env` is a lookup so tests need not touch the process
    /// environment.
    pub fn load(env: &dyn Fn(&str) -> Option<String>, cwd: &Path) -> Result<Settings, ConfigError> {
        let mut settings = Settings::default();
        let named = env("HOTPROBE_CONFIG").filter(|v| !v.is_empty());
        let file = match named {
            Some(p) => {
                let path = cwd.join(p);
                if !path.is_file() {
                    return Err(ConfigError::new(
                        Origin::Env {
                            var: "HOTPROBE_CONFIG".into(),
                        },
                        "",
                        format!("config file {} does not exist", path.display()),
                        "set HOTPROBE_CONFIG to an existing TOML file or unset it",
                    ));
                }
                Some(path)
            }
            None => Some(cwd.join("hotprobe.toml")).filter(|p| p.is_file()),
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    Origin::File {
                        path: path.clone(),
                        line: None,
                    },
                    "",
                    format!("cannot read: {e}"),
                    "check the file's permissions",
                )
            })?;
            settings.apply_toml(&text, &path)?;
            settings.file = Some(path);
        }
        settings.apply_env(env)?;
        Ok(settings)
    }

    /// Overlays a TOML document on these settings.
    pub fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>| Origin::File {
            path: path.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)),
        };
        let de = toml::Deserializer::new(text);
        let file: file::File = serde_path_to_error::deserialize(de).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.message().to_string();
            let (problem, hint) = if message.starts_with("unknown field") {
                (
                    message.clone(),
                    "remove it or check its spelling against the README".to_string(),
                )
            } else if key == "." || key.is_empty() {
                (message.clone(), "fix the TOML syntax".to_string())
            } else {
                (message.clone(), "fix the value's type".to_string())
            };
            let key = if key == "." { String::new() } else { key };
            let key = unknown_field_key(&key, &message);
            ConfigError::new(at(inner.span()), key, problem, hint)
        })?;
        file.apply(self, &at)?;
        self.validate()
    }

    /// Overlays the `HOTPROBE_*` variables. A variable set to "" is unset.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, key) in ENV_KEYS {
            let Some(value) = env(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            let origin = Origin::Env {
                var: (*var).to_string(),
            };
            let bad =
                |problem: String, hint: &str| ConfigError::new(origin.clone(), *key, problem, hint);
            match *key {
                "target.modules" => self.target.modules = split_list(&value),
                "target.include" => self.target.include = split_list(&value),
                "target.exclude" => self.target.exclude = split_list(&value),
                "target.probe_set" => self.target.probe_set = value.clone(),
                "target.follow" => self.target.follow = Follow::parse(&value),
                "hotspot.adaptive" => {
                    self.hotspot.adaptive = parse_bool(&value).ok_or_else(|| {
                        bad(
                            format!("`{value}` is not a boolean"),
                            "use 1/0, true/false or yes/no",
                        )
                    })?
                }
                "probes.backend" => {
                    self.probes.backend = parse_backend(&value).ok_or_else(|| {
                        bad(
                            format!("unknown backend `{value}`"),
                            "use `inline` or `kernel`",
                        )
                    })?
                }
                "snapshot.path" => self.snapshot.path = value.clone(),
                "snapshot.interval_s" => {
                    self.snapshot.interval_s = value.trim().parse::<f64>().map_err(|_| {
                        bad(
                            format!("`{value}` is not a number of seconds"),
                            "use e.g. 10 or 0.5",
                        )
                    })?
                }
                "agent.log" => {
                    self.agent.log = parse_log_level(&value).ok_or_else(|| {
                        bad(
                            format!("unknown log level `{value}`"),
                            "use error, warn, info or debug",
                        )
                    })?
                }
                _ => unreachable!("every ENV_KEYS key is handled"),
            }
            self.origins.insert((*key).to_string(), origin);
        }
        self.validate()
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.hotspot;
        let origin_of = |key: &str| self.origins.get(key).cloned().unwrap_or(Origin::Default);
        let fail = |key: &str, problem: String, hint: &str| {
            Err(ConfigError::new(origin_of(key), key, problem, hint))
        };
        for (key, v) in [
            ("hotspot.threshold_us", h.threshold_us),
            ("hotspot.inherent_threshold_us", h.inherent_threshold_us),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return fail(
                    key,
                    format!("{v} is not a threshold"),
                    "use a number of microseconds ≥ 0",
                );
            }
        }
        for (key, v) in [("hotspot.credit", h.credit), ("hotspot.debit", h.debit)] {
            if v < 0 {
                return fail(key, format!("{v} is negative"), "use a whole number ≥ 0");
            }
        }
        if h.initial <= 0 {
            return fail(
                "hotspot.initial",
                format!("{} must be above 0", h.initial),
                "a probe starting at 0 is disabled at once",
            );
        }
        if h.lower <= 0 {
            return fail(
                "hotspot.lower",
                format!("{} must be above 0", h.lower),
                "use a whole number > 0",
            );
        }
        if h.upper < h.lower {
            return Err(self.order_error(
                ("hotspot.lower", h.lower),
                ("hotspot.upper", h.upper),
                false,
            ));
        }
        if h.upper <= h.initial {
            return Err(self.order_error(
                ("hotspot.initial", h.initial),
                ("hotspot.upper", h.upper),
                true,
            ));
        }
        if !(h.min_judging_ms.is_finite() && h.min_judging_ms >= 0.0) {
            return fail(
                "hotspot.min_judging_ms",
                format!("{} is not a duration", h.min_judging_ms),
                "use milliseconds ≥ 0 (0 = judge from the first call)",
            );
        }
        if !(h.min_removal_ms.is_finite() && h.min_removal_ms >= 0.0) {
            return fail(
                "hotspot.min_removal_ms",
                format!("{} is not a duration", h.min_removal_ms),
                "use milliseconds ≥ 0 (below min_judging_ms counts as min_judging_ms)",
            );
        }
        if !(h.keep_share.is_finite() && (0.0..=1.0).contains(&h.keep_share)) {
            return fail(
                "hotspot.keep_share",
                format!("{} is not a share", h.keep_share),
                "use a fraction from 0 to 1 (0.01 = 1 % of the run; 0 = off)",
            );
        }
        if !(self.snapshot.interval_s.is_finite() && self.snapshot.interval_s >= 0.0) {
            return fail(
                "snapshot.interval_s",
                format!("{} is not an interval", self.snapshot.interval_s),
                "use seconds ≥ 0 (0 = off)",
            );
        }
        if self.snapshot.path.trim().is_empty() {
            return fail(
                "snapshot.path",
                "is empty".into(),
                "give a path template such as hotprobe-{exe}-{pid}.json",
            );
        }
        if self.meter.contexts_cap == 0 {
            return fail(
                "meter.contexts_cap",
                "must be above 0".into(),
                "use e.g. 100000",
            );
        }
        if !self.kernel.ring_pages.is_power_of_two() {
            return fail(
                "kernel.ring_pages",
                format!("{} is not a power of two", self.kernel.ring_pages),
                "use e.g. 64 or 256",
            );
        }
        for key in ["target.modules", "target.include", "target.exclude"] {
            let list = match key {
                "target.modules" => &self.target.modules,
                "target.include" => &self.target.include,
                _ => &self.target.exclude,
            };
            if let Err(e) = GlobList::new(list) {
                return fail(key, e, "fix the glob (escape literal * ? [ ] with \\)");
            }
        }
        if let Follow::Only(globs) = &self.target.follow {
            if let Err(e) = GlobList::new(globs) {
                return fail(
                    "target.follow",
                    e,
                    "use all, none, or globs over executable names",
                );
            }
        }
        Ok(())
    }

    /// An error for two keys out of order: `high` must be above `low`
    /// (`strict`) or at least `low`. It blames the key the user set — a
    /// default is never the one to fix — with that key's origin (file:line
    /// or variable); when the user set both, `low` is blamed and where
    /// `high` came from is named too.
    fn order_error(&self, low: (&str, i64), high: (&str, i64), strict: bool) -> ConfigError {
        let origin = |key: &str| self.origins.get(key).cloned();
        let blame_low = origin(low.0).is_some() || origin(high.0).is_none();
        let (rule, below, above) = if strict {
            ("above", "<", ">")
        } else {
            ("at least", "≤", "≥")
        };
        let ((key, value), (other, other_value), hint) = if blame_low {
            let hint = format!("use a value {below} {}, or raise {} too", high.1, high.0);
            (low, high, hint)
        } else {
            let hint = format!("use a value {above} {}, or lower {} too", low.1, low.0);
            (high, low, hint)
        };
        let other_origin = origin(other).unwrap_or(Origin::Default);
        ConfigError::new(
            origin(key).unwrap_or(Origin::Default),
            key,
            format!(
                "{} = {value} with {} = {other_value} (from {other_origin}), but {} must be {rule} {}",
                short(key),
                short(other),
                short(high.0),
                short(low.0),
            ),
            hint,
        )
    }

    /// The probe-set path, if one is configured.
    pub fn probe_set_path(&self) -> Option<&str> {
        Some(self.target.probe_set.as_str()).filter(|p| !p.is_empty())
    }
}

/// The last part of a dotted key (`hotspot.upper` → `upper`).
fn short(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// The dotted key of a serde path, without the private segments of
/// `toml::Spanned`; unknown-field errors name the field in the message.
fn unknown_field_key(path: &str, message: &str) -> String {
    let path = path
        .replace(".$__serde_spanned_private_value", "")
        .replace("$__serde_spanned_private_value", "");
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            if path == name || path.ends_with(&format!(".{name}")) {
                return path;
            }
            return if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
        }
    }
    path
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_backend(text: &str) -> Option<Backend> {
    match text.trim() {
        "inline" => Some(Backend::Inline),
        "kernel" => Some(Backend::Kernel),
        _ => None,
    }
}

fn parse_log_level(text: &str) -> Option<LogLevel> {
    match text.trim().to_ascii_lowercase().as_str() {
        "error" => Some(LogLevel::Error),
        "warn" | "warning" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        _ => None,
    }
}

/// The TOML file's shape: every key optional, unknown keys refused, each
/// value carrying its position for error messages.
mod file {
    use super::*;
    use toml::Spanned;

    type At<'a> = dyn Fn(Option<std::ops::Range<usize>>) -> Origin + 'a;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        target: Option<Target>,
        probes: Option<Probes>,
        hotspot: Option<Hotspot>,
        snapshot: Option<Snap>,
        meter: Option<MeterF>,
        kernel: Option<KernelF>,
        agent: Option<AgentF>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Target {
        modules: Option<Spanned<Vec<String>>>,
        include: Option<Spanned<Vec<String>>>,
        exclude: Option<Spanned<Vec<String>>>,
        probe_set: Option<Spanned<String>>,
        follow: Option<Spanned<super::Follow>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probes {
        backend: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Hotspot {
        adaptive: Option<Spanned<bool>>,
        threshold_us: Option<Spanned<f64>>,
        inherent_threshold_us: Option<Spanned<f64>>,
        credit: Option<Spanned<i64>>,
        debit: Option<Spanned<i64>>,
        initial: Option<Spanned<i64>>,
        lower: Option<Spanned<i64>>,
        upper: Option<Spanned<i64>>,
        min_judging_ms: Option<Spanned<f64>>,
        min_removal_ms: Option<Spanned<f64>>,
        keep_share: Option<Spanned<f64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Snap {
        path: Option<Spanned<String>>,
        interval_s: Option<Spanned<f64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MeterF {
        contexts_cap: Option<Spanned<u64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KernelF {
        ring_pages: Option<Spanned<u64>>,
        drain_ms: Option<Spanned<u64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AgentF {
        log: Option<Spanned<String>>,
    }

    /// Copies one optional spanned value into the settings, remembering its origin.
    fn set<T: Clone>(
        s: &mut Settings,
        at: &At,
        key: &str,
        from: &Option<Spanned<T>>,
        to: impl FnOnce(&mut Settings, T),
    ) {
        if let Some(v) = from {
            to(s, v.get_ref().clone());
            s.origins.insert(key.to_string(), at(Some(v.span())));
        }
    }

    impl File {
        pub fn apply(self, s: &mut Settings, at: &At) -> Result<(), ConfigError> {
            if let Some(t) = &self.target {
                set(s, at, "target.modules", &t.modules, |s, v| {
                    s.target.modules = v
                });
                set(s, at, "target.include", &t.include, |s, v| {
                    s.target.include = v
                });
                set(s, at, "target.exclude", &t.exclude, |s, v| {
                    s.target.exclude = v
                });
                set(s, at, "target.probe_set", &t.probe_set, |s, v| {
                    s.target.probe_set = v
                });
                set(s, at, "target.follow", &t.follow, |s, v| {
                    s.target.follow = v
                });
            }
            if let Some(p) = &self.probes {
                if let Some(b) = &p.backend {
                    s.probes.backend = parse_backend(b.get_ref()).ok_or_else(|| {
                        ConfigError::new(
                            at(Some(b.span())),
                            "probes.backend",
                            format!("unknown backend `{}`", b.get_ref()),
                            "use \"inline\" or \"kernel\"",
                        )
                    })?;
                    s.origins
                        .insert("probes.backend".into(), at(Some(b.span())));
                }
            }
            if let Some(h) = &self.hotspot {
                set(s, at, "hotspot.adaptive", &h.adaptive, |s, v| {
                    s.hotspot.adaptive = v
                });
                set(s, at, "hotspot.threshold_us", &h.threshold_us, |s, v| {
                    s.hotspot.threshold_us = v
                });
                set(
                    s,
                    at,
                    "hotspot.inherent_threshold_us",
                    &h.inherent_threshold_us,
                    |s, v| s.hotspot.inherent_threshold_us = v,
                );
                set(s, at, "hotspot.credit", &h.credit, |s, v| {
                    s.hotspot.credit = v
                });
                set(s, at, "hotspot.debit", &h.debit, |s, v| s.hotspot.debit = v);
                set(s, at, "hotspot.initial", &h.initial, |s, v| {
                    s.hotspot.initial = v
                });
                set(s, at, "hotspot.lower", &h.lower, |s, v| s.hotspot.lower = v);
                set(s, at, "hotspot.upper", &h.upper, |s, v| s.hotspot.upper = v);
                set(
                    s,
                    at,
                    "hotspot.min_judging_ms",
                    &h.min_judging_ms,
                    |s, v| s.hotspot.min_judging_ms = v,
                );
                set(
                    s,
                    at,
                    "hotspot.min_removal_ms",
                    &h.min_removal_ms,
                    |s, v| s.hotspot.min_removal_ms = v,
                );
                set(s, at, "hotspot.keep_share", &h.keep_share, |s, v| {
                    s.hotspot.keep_share = v
                });
            }
            if let Some(n) = &self.snapshot {
                set(s, at, "snapshot.path", &n.path, |s, v| s.snapshot.path = v);
                set(s, at, "snapshot.interval_s", &n.interval_s, |s, v| {
                    s.snapshot.interval_s = v
                });
            }
            if let Some(m) = &self.meter {
                set(s, at, "meter.contexts_cap", &m.contexts_cap, |s, v| {
                    s.meter.contexts_cap = v
                });
            }
            if let Some(k) = &self.kernel {
                set(s, at, "kernel.ring_pages", &k.ring_pages, |s, v| {
                    s.kernel.ring_pages = v
                });
                set(s, at, "kernel.drain_ms", &k.drain_ms, |s, v| {
                    s.kernel.drain_ms = v
                });
            }
            if let Some(a) = &self.agent {
                if let Some(l) = &a.log {
                    s.agent.log = parse_log_level(l.get_ref()).ok_or_else(|| {
                        ConfigError::new(
                            at(Some(l.span())),
                            "agent.log",
                            format!("unknown log level `{}`", l.get_ref()),
                            "use error, warn, info or debug",
                        )
                    })?;
                    s.origins.insert("agent.log".into(), at(Some(l.span())));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hotprobe.toml"), toml).unwrap();
        Settings::load(&env_of(env), dir.path())
    }

    #[test]
    fn precedence_defaults_file_env() {
        let s = load(
            "[hotspot]\nthreshold_us = 5.0\ninitial = 50\n[target]\ninclude = [\"a*\", \"b*\"]\n",
            &[("HOTPROBE_INCLUDE", "c*")],
        )
        .unwrap();
        assert_eq!(s.hotspot.threshold_us, 5.0, "file beats default");
        assert_eq!(s.hotspot.initial, 50);
        assert_eq!(s.hotspot.debit, 2, "default kept");
        assert_eq!(s.target.include, vec!["c*"], "env replaces the file's list");
        assert!(matches!(
            s.origins["hotspot.threshold_us"],
            Origin::File { line: Some(2), .. }
        ));
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let s = load(
            "[target]\ninclude = [\"a*\"]\n",
            &[("HOTPROBE_INCLUDE", "")],
        )
        .unwrap();
        assert_eq!(s.target.include, vec!["a*"]);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = load("[hotspot]\nthreshold_us = 5.0\nthreshhold = 3\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.threshhold");
        assert!(
            matches!(e.origin, Origin::File { line: Some(3), .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("hotprobe.toml:3: key `hotspot.threshhold`"),
            "{e}"
        );
    }

    #[test]
    fn a_snapshot_of_an_agent_without_the_window_reads_as_none() {
        let old: Hotspot = serde_json::from_str(r#"{"threshold_us": 0.3}"#).unwrap();
        assert_eq!(old.min_judging_ms, 0.0);
        assert_eq!(old.keep_share, 0.0);
        assert_eq!(old.min_removal_ms, 0.0);
        assert_eq!(old.upper, Hotspot::default().upper, "the rest as built in");
    }

    #[test]
    fn min_judging_ms_is_read_and_checked() {
        assert_eq!(load("", &[]).unwrap().hotspot.min_judging_ms, 200.0);
        assert_eq!(load("", &[]).unwrap().hotspot.min_removal_ms, 1000.0);
        let s = load("[hotspot]\nmin_judging_ms = 50.0\n", &[]).unwrap();
        assert_eq!(s.hotspot.min_judging_ms, 50.0);
        let e = load("[hotspot]\nmin_judging_ms = -1.0\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.min_judging_ms");
        assert!(e.to_string().contains("-1 is not a duration"), "{e}");
        let s = load("[hotspot]\nmin_removal_ms = 900\n", &[]).unwrap();
        assert_eq!(s.hotspot.min_removal_ms, 900.0);
        let e = load("[hotspot]\nmin_removal_ms = nan\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.min_removal_ms");
        assert_eq!(load("", &[]).unwrap().hotspot.keep_share, 0.01);
        let s = load("[hotspot]\nkeep_share = 0\n", &[]).unwrap();
        assert_eq!(s.hotspot.keep_share, 0.0);
        for bad in ["1.5", "-0.1", "nan"] {
            let e = load(&format!("[hotspot]\nkeep_share = {bad}\n"), &[]).unwrap_err();
            assert_eq!(e.key, "hotspot.keep_share", "{bad}");
        }
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let e = load("[snapshot]\n\n[hotspot]\nupper = \"lots\"\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.upper");
        assert!(
            matches!(e.origin, Origin::File { line: Some(4), .. }),
            "{e}"
        );
    }

    #[test]
    fn negative_threshold_is_refused() {
        let e = load("[hotspot]\ninherent_threshold_us = -1.0\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.inherent_threshold_us");
        assert!(
            matches!(e.origin, Origin::File { line: Some(2), .. }),
            "{e}"
        );
    }

    #[test]
    fn cross_field_errors_blame_the_key_the_user_set() {
        // lower above the default upper: lower is at fault, not upper.
        let e = load("[hotspot]\n\nlower = 30000\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.lower");
        assert!(
            matches!(e.origin, Origin::File { line: Some(3), .. }),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("hotprobe.toml:3: key `hotspot.lower`"),
            "{text}"
        );
        assert!(
            text.contains("upper = 20000 (from built-in default)"),
            "{text}"
        );
        // initial at or above the default upper.
        let e = load("[hotspot]\ninitial = 30000\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.initial");
        assert!(
            matches!(e.origin, Origin::File { line: Some(2), .. }),
            "{e}"
        );
        // upper below the default lower: upper is at fault.
        let e = load("[hotspot]\nupper = 500\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.upper");
        assert!(
            matches!(e.origin, Origin::File { line: Some(2), .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("lower = 1000 (from built-in default)"),
            "{e}"
        );
        // Both set: lower is blamed and upper's line is named.
        let e = load("[hotspot]\nupper = 500\nlower = 600\n", &[]).unwrap_err();
        assert_eq!(e.key, "hotspot.lower");
        assert!(
            matches!(e.origin, Origin::File { line: Some(3), .. }),
            "{e}"
        );
        assert!(e.to_string().contains("hotprobe.toml:2)"), "{e}");
    }

    #[test]
    fn broken_toml_names_the_line() {
        let e = load("[hotspot\nupper = 3\n", &[]).unwrap_err();
        assert!(
            matches!(e.origin, Origin::File { line: Some(1), .. }),
            "{e}"
        );
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let e = load("", &[("HOTPROBE_ADAPTIVE", "maybe")]).unwrap_err();
        assert_eq!(
            e.origin,
            Origin::Env {
                var: "HOTPROBE_ADAPTIVE".into()
            }
        );
        let e = load("", &[("HOTPROBE_BACKEND", "ebpf")]).unwrap_err();
        assert_eq!(e.key, "probes.backend");
        let s = load(
            "",
            &[("HOTPROBE_ADAPTIVE", "no"), ("HOTPROBE_BACKEND", "kernel")],
        )
        .unwrap();
        assert!(!s.hotspot.adaptive);
        assert_eq!(s.probes.backend, Backend::Kernel);
    }

    #[test]
    fn missing_named_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e =
            Settings::load(&env_of(&[("HOTPROBE_CONFIG", "nope.toml")]), dir.path()).unwrap_err();
        assert_eq!(
            e.origin,
            Origin::Env {
                var: "HOTPROBE_CONFIG".into()
            }
        );
    }

    #[test]
    fn follow_forms() {
        let s = load("[target]\nfollow = \"none\"\n", &[]).unwrap();
        assert_eq!(s.target.follow, Follow::None);
        let s = load("[target]\nfollow = [\"redis-*\"]\n", &[]).unwrap();
        assert!(s.target.follow.allows("redis-server") && !s.target.follow.allows("sh"));
        let s = load("", &[("HOTPROBE_FOLLOW", "a,b")]).unwrap();
        assert_eq!(s.target.follow, Follow::Only(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn settings_round_trip_through_json() {
        let s = Settings::default();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["hotspot"]["threshold_us"], 0.18);
        assert_eq!(v["target"]["follow"], "all");
        let back: Settings = serde_json::from_value(v).unwrap();
        assert_eq!(back.hotspot, s.hotspot);
    }
}

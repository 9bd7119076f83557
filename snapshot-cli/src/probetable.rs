//! The probe table of a snapshot in a compact form: the numbers of each
//! probe in a row, its strings in one text buffer per snapshot. Reading a
//! large snapshot this way allocates a handful of buffers instead of a few
//! strings per probe, and freeing it is as cheap. Field names are matched as
//! raw bytes. What it accepts matches the contract's derived reader for
//! well-formed files; on anything else it fails, and the caller re-reads the
//! file with the contract's reader for the exact message.

use hotprobe_config::snapshot::{module_file_name, ProbeRecord, ProbeState};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// A string in the table's text buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    pub fn new(start: u32, len: u32) -> Span {
        Span { start, len }
    }
    pub fn start(self) -> u32 {
        self.start
    }
    pub fn len(self) -> usize {
        self.len as usize
    }
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// One probe; strings are spans of [`ProbeTable::text`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeRow {
    pub id: u32,
    pub name: Span,
    pub symbol: Span,
    pub module: Span,
    pub source: Option<Span>,
    pub reason: Option<Span>,
    pub offset: u64,
    pub size: u64,
    pub state: ProbeState,
    pub score: i64,
    pub disabled_at_ns: Option<u64>,
    pub count: u64,
    pub abandoned: u64,
    pub in_flight: u64,
    pub inclusive_ns: u64,
    pub inherent_ns: u64,
    pub max_inclusive_ns: u64,
    pub p50_inclusive_ns: u64,
    pub p99_inclusive_ns: u64,
    /// Ordinal among the same-symbol functions of the module, by offset.
    pub ordinal: u32,
    /// Whether the module has several functions with this symbol.
    pub ambiguous: bool,
}

/// The fields of a probe record, in the order the agent writes them. The
/// bits of [`ProbeFields`] are indices into it.
pub const FIELD_NAMES: [&str; 19] = [
    "id",
    "name",
    "symbol",
    "module",
    "offset",
    "size",
    "source",
    "state",
    "reason",
    "score",
    "disabled_at_ns",
    "count",
    "abandoned",
    "in_flight",
    "inclusive_ns",
    "inherent_ns",
    "max_inclusive_ns",
    "p50_inclusive_ns",
    "p99_inclusive_ns",
];

/// The fields that hold measurements: a snapshot of another agent version
/// may lack some, and a missing one reads as 0, which is no measurement.
pub const MEASUREMENTS: [&str; 6] = [
    "count",
    "inclusive_ns",
    "inherent_ns",
    "max_inclusive_ns",
    "p50_inclusive_ns",
    "p99_inclusive_ns",
];

/// Which fields of [`FIELD_NAMES`] every probe record had (a set of bits).
/// A table without records lacks nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFields(u32);

impl ProbeFields {
    pub const ALL: ProbeFields = ProbeFields((1 << FIELD_NAMES.len()) - 1);
    pub const NONE: ProbeFields = ProbeFields(0);

    /// The set of these bits (bit i is `FIELD_NAMES[i]`).
    pub(crate) fn from_bits(bits: u32) -> ProbeFields {
        ProbeFields(bits & Self::ALL.0)
    }

    /// Fields in both sets.
    pub fn both(self, other: ProbeFields) -> ProbeFields {
        ProbeFields(self.0 & other.0)
    }

    /// Whether the field of this name is in the set (an unknown name is not).
    pub fn has(self, name: &str) -> bool {
        FIELD_NAMES
            .iter()
            .position(|f| *f == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    /// The measurement fields not in the set, in [`MEASUREMENTS`] order.
    pub fn missing_measurements(self) -> Vec<&'static str> {
        MEASUREMENTS
            .iter()
            .copied()
            .filter(|f| !self.has(f))
            .collect()
    }
}

impl Default for ProbeFields {
    fn default() -> ProbeFields {
        ProbeFields::ALL
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeTable {
    pub(crate) text: String,
    pub rows: Vec<ProbeRow>,
    /// The fields every row was read with; those outside it are defaults.
    /// A table built from contract records ([`ProbeTable::from_records`])
    /// cannot tell and claims all.
    pub present: ProbeFields,
}

impl ProbeTable {
    pub fn str(&self, s: Span) -> &str {
        self.text
            .get(s.start as usize..(s.start + s.len) as usize)
            .unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The identity symbol: the symbol, or the name when there is none.
    pub fn identity_symbol(&self, r: &ProbeRow) -> &str {
        let s = self.str(r.symbol);
        if s.is_empty() {
            self.str(r.name)
        } else {
            s
        }
    }

    /// The module's file name (how modules are matched across runs).
    pub fn module_file_name(&self, r: &ProbeRow) -> &str {
        module_file_name(self.str(r.module))
    }

    fn push_str(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    /// Builds a table from the contract's records.
    pub fn from_records(records: &[ProbeRecord]) -> ProbeTable {
        let mut t = ProbeTable::default();
        for p in records {
            let row = ProbeRow {
                id: p.id,
                name: t.push_str(&p.name),
                symbol: t.push_str(&p.symbol),
                module: t.push_str(&p.module),
                source: p.source.as_deref().map(|s| t.push_str(s)),
                reason: p.reason.as_deref().map(|s| t.push_str(s)),
                offset: p.offset,
                size: p.size,
                state: p.state,
                score: p.score,
                disabled_at_ns: p.disabled_at_ns,
                count: p.count,
                abandoned: p.abandoned,
                in_flight: p.in_flight,
                inclusive_ns: p.inclusive_ns,
                inherent_ns: p.inherent_ns,
                max_inclusive_ns: p.max_inclusive_ns,
                p50_inclusive_ns: p.p50_inclusive_ns,
                p99_inclusive_ns: p.p99_inclusive_ns,
                ordinal: 0,
                ambiguous: false,
            };
            t.rows.push(row);
        }
        t.number_ordinals();
        t
    }

    /// The contract's records again, with each row's ordinal (for tests and tools).
    pub fn to_records(&self) -> Vec<(ProbeRecord, u32, bool)> {
        self.rows
            .iter()
            .map(|r| {
                let rec = ProbeRecord {
                    id: r.id,
                    name: self.str(r.name).into(),
                    symbol: self.str(r.symbol).into(),
                    module: self.str(r.module).into(),
                    offset: r.offset,
                    size: r.size,
                    source: r.source.map(|s| self.str(s).into()),
                    state: r.state,
                    reason: r.reason.map(|s| self.str(s).into()),
                    score: r.score,
                    disabled_at_ns: r.disabled_at_ns,
                    count: r.count,
                    abandoned: r.abandoned,
                    in_flight: r.in_flight,
                    inclusive_ns: r.inclusive_ns,
                    inherent_ns: r.inherent_ns,
                    max_inclusive_ns: r.max_inclusive_ns,
                    p50_inclusive_ns: r.p50_inclusive_ns,
                    p99_inclusive_ns: r.p99_inclusive_ns,
                };
                (rec, r.ordinal, r.ambiguous)
            })
            .collect()
    }

    /// Sets each row's ordinal among the same-symbol functions of its module.
    pub(crate) fn number_ordinals(&mut self) {
        const UNIQUE: usize = usize::MAX;
        let mut first: HashMap<
            (&str, &str),
            usize,
            std::hash::BuildHasherDefault<crate::merge::FxHasher>,
        > = HashMap::default();
        first.reserve(self.rows.len());
        let mut shared: Vec<usize> = Vec::new();
        let mut module_cache = (
            Span {
                start: u32::MAX,
                len: 0,
            },
            "",
        );
        for (i, r) in self.rows.iter().enumerate() {
            if r.module != module_cache.0 {
                module_cache = (r.module, module_file_name(self.str(r.module)));
            }
            match first.entry((module_cache.1, self.identity_symbol(r))) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    if *e.get() != UNIQUE {
                        shared.push(*e.get());
                        e.insert(UNIQUE);
                    }
                    shared.push(i);
                }
            }
        }
        if shared.is_empty() {
            return;
        }
        let key = |i: usize| {
            let r = &self.rows[i];
            (
                module_file_name(self.str(r.module)),
                self.identity_symbol(r),
                r.offset,
                r.id,
            )
        };
        let mut order: Vec<(&str, &str, u64, u32, usize)> = shared
            .into_iter()
            .map(|i| {
                let k = key(i);
                (k.0, k.1, k.2, k.3, i)
            })
            .collect();
        order.sort_unstable();
        let mut marks = Vec::with_capacity(order.len());
        let mut ordinal = 0;
        for (n, s) in order.iter().enumerate() {
            ordinal = if n > 0 && (order[n - 1].0, order[n - 1].1) == (s.0, s.1) {
                ordinal + 1
            } else {
                0
            };
            marks.push((s.4, ordinal));
        }
        for (i, ordinal) in marks {
            self.rows[i].ordinal = ordinal;
            self.rows[i].ambiguous = true;
        }
    }
}

impl<'de> Deserialize<'de> for ProbeTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProbeTable, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ProbeTable;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of probes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ProbeTable, A::Error> {
                let mut t = ProbeTable::default();
                while let Some((row, fields)) = seq.next_element_seed(RowSeed(&mut t.text))? {
                    t.rows.push(row);
                    t.present = t.present.both(fields);
                }
                t.number_ordinals();
                Ok(t)
            }
        }
        d.deserialize_seq(V)
    }
}

/// A probe record's key; the variants before `Other` are in
/// [`FIELD_NAMES`] order, so `field as u32` is its bit in [`ProbeFields`].
#[derive(Clone, Copy)]
enum Field {
    Id,
    Name,
    Symbol,
    Module,
    Offset,
    Size,
    Source,
    State,
    Reason,
    Score,
    DisabledAt,
    Count,
    Abandoned,
    InFlight,
    Inclusive,
    Inherent,
    Max,
    P50,
    P99,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Field, E> {
                // By length first: one or two comparisons per key instead of up to 19.
                Ok(match (v.len(), v) {
                    (2, b"id") => Field::Id,
                    (4, b"name") => Field::Name,
                    (4, b"size") => Field::Size,
                    (5, b"state") => Field::State,
                    (5, b"score") => Field::Score,
                    (5, b"count") => Field::Count,
                    (6, b"symbol") => Field::Symbol,
                    (6, b"module") => Field::Module,
                    (6, b"offset") => Field::Offset,
                    (6, b"source") => Field::Source,
                    (6, b"reason") => Field::Reason,
                    (9, b"abandoned") => Field::Abandoned,
                    (9, b"in_flight") => Field::InFlight,
                    (11, b"inherent_ns") => Field::Inherent,
                    (12, b"inclusive_ns") => Field::Inclusive,
                    (14, b"disabled_at_ns") => Field::DisabledAt,
                    (16, b"max_inclusive_ns") => Field::Max,
                    (16, b"p50_inclusive_ns") => Field::P50,
                    (16, b"p99_inclusive_ns") => Field::P99,
                    _ => Field::Other,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                self.visit_bytes(v.as_bytes())
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A string appended to the text buffer.
struct StrSeed<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = Span;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Span, D::Error> {
        struct V<'a>(&'a mut String);
        impl Visitor<'_> for V<'_> {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                let start =
                    u32::try_from(self.0.len()).map_err(|_| E::custom("snapshot too large"))?;
                self.0.push_str(v);
                Ok(Span {
                    start,
                    len: v.len() as u32,
                })
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// A string or null.
struct OptStrSeed<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for OptStrSeed<'_> {
    type Value = Option<Span>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Span>, D::Error> {
        struct V<'a>(&'a mut String);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Option<Span>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Option<Span>, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Option<Span>, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Span>, D::Error> {
                StrSeed(self.0).deserialize(d).map(Some)
            }
        }
        d.deserialize_option(V(self.0))
    }
}

/// One probe object, and the fields it had.
struct RowSeed<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = (ProbeRow, ProbeFields);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<'a>(&'a mut String);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = (ProbeRow, ProbeFields);
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a probe object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let text = self.0;
                let mut p = ProbeRow::default();
                let mut seen = 0u32;
                while let Some(field) = map.next_key::<Field>()? {
                    if !matches!(field, Field::Other) {
                        seen |= 1 << field as u32;
                    }
                    match field {
                        Field::Id => p.id = map.next_value()?,
                        Field::Name => p.name = map.next_value_seed(StrSeed(text))?,
                        Field::Symbol => p.symbol = map.next_value_seed(StrSeed(text))?,
                        Field::Module => p.module = map.next_value_seed(StrSeed(text))?,
                        Field::Offset => p.offset = map.next_value()?,
                        Field::Size => p.size = map.next_value()?,
                        Field::Source => p.source = map.next_value_seed(OptStrSeed(text))?,
                        Field::State => p.state = map.next_value::<ProbeState>()?,
                        Field::Reason => p.reason = map.next_value_seed(OptStrSeed(text))?,
                        Field::Score => p.score = map.next_value()?,
                        Field::DisabledAt => p.disabled_at_ns = map.next_value()?,
                        Field::Count => p.count = map.next_value()?,
                        Field::Abandoned => p.abandoned = map.next_value()?,
                        Field::InFlight => p.in_flight = map.next_value()?,
                        Field::Inclusive => p.inclusive_ns = map.next_value()?,
                        Field::Inherent => p.inherent_ns = map.next_value()?,
                        Field::Max => p.max_inclusive_ns = map.next_value()?,
                        Field::P50 => p.p50_inclusive_ns = map.next_value()?,
                        Field::P99 => p.p99_inclusive_ns = map.next_value()?,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok((p, ProbeFields::from_bits(seen)))
            }
        }
        d.deserialize_map(V(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_contract_reads() {
        let s = crate::fixture::server(9);
        let text = serde_json::to_string(&s.probes).unwrap();
        let fast: ProbeTable = serde_json::from_str(&text).unwrap();
        assert_eq!(
            fast.to_records(),
            ProbeTable::from_records(&s.probes).to_records()
        );
        assert_eq!(
            fast.to_records()
                .into_iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            s.probes
        );
        assert_eq!(fast.len(), s.probes.len());
        for (row, rec) in fast.rows.iter().zip(&s.probes) {
            assert_eq!(fast.str(row.name), rec.name);
            assert_eq!(fast.str(row.module), rec.module);
            assert_eq!(row.source.map(|x| fast.str(x).to_string()), rec.source);
            assert_eq!(
                (row.count, row.inherent_ns, row.state),
                (rec.count, rec.inherent_ns, rec.state)
            );
        }
        let extra: ProbeTable = serde_json::from_str(
            r#"[{"id":2,"future":[1,{"x":2}],"name":"a\u00e9","source":null}]"#,
        )
        .unwrap();
        assert_eq!(
            (
                extra.rows[0].id,
                extra.str(extra.rows[0].name),
                extra.rows[0].source
            ),
            (2, "aé", None)
        );
        assert!(serde_json::from_str::<ProbeTable>(r#"[{"count":"many"}]"#).is_err());
        assert!(serde_json::from_str::<ProbeTable>(r#"[{"name":3}]"#).is_err());
    }

    #[test]
    fn ordinals_follow_offsets() {
        let rec = |module: &str, symbol: &str, offset| ProbeRecord {
            module: module.into(),
            symbol: symbol.into(),
            offset,
            ..Default::default()
        };
        let t = ProbeTable::from_records(&[
            rec("/a/m", "f", 300),
            rec("/a/m", "f", 100),
            rec("/a/m", "g", 5),
            rec("/b/n", "f", 1),
            rec("/c/m", "f", 200),
        ]);
        let got: Vec<(u32, bool)> = t.rows.iter().map(|r| (r.ordinal, r.ambiguous)).collect();
        assert_eq!(
            got,
            vec![(2, true), (0, true), (0, false), (0, false), (1, true)]
        );
    }
}

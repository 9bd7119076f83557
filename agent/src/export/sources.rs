//! `file:line` of probed functions, resolved lazily at snapshot time (never
//! at start) and remembered for later snapshots of the image.

use crate::engine::probe;
use crate::meter::merge::View;
use std::collections::HashMap;
use std::sync::Mutex;

static KNOWN: Mutex<Option<HashMap<u32, Option<String>>>> = Mutex::new(None);

/// Sources of the probes that were called, by probe id.
pub fn resolve_for(view: &View) -> HashMap<u32, Option<String>> {
    let mut known = crate::state::lock(&KNOWN);
    let known = known.get_or_insert_with(HashMap::new);
    let all = probe::all();
    let wanted: Vec<&probe::Probe> = all
        .iter()
        .zip(view.probes.iter())
        .filter(|(p, v)| v.totals.count > 0 && !known.contains_key(&p.id))
        .map(|(p, _)| *p)
        .collect();
    let mut by_module: HashMap<&str, Vec<&probe::Probe>> = HashMap::new();
    for p in wanted {
        by_module.entry(p.meta.module.as_str()).or_default().push(p);
    }
    for (module, probes) in by_module {
        let options = hotprobe_discover::DiscoverOptions::default();
        let mut resolver =
            hotprobe_discover::SourceResolver::for_path(std::path::Path::new(module), &options);
        for p in probes {
            let source = resolver.locate(p.meta.link_address);
            known.insert(p.id, source);
        }
    }
    known.clone()
}

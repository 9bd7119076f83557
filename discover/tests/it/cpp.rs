use crate::common::*;
use crate::require;
use hotprobe_discover::{discover, discover_with, DiscoverOptions, ObjectFunctions, Selector};

const SRC: &str = r#"#include <cstdio>
namespace ns {
__attribute__((noinline)) int g(int x) { return x + 1; }
template <typename T> __attribute__((noinline)) T maxx(T a, T b) { return a > b ? a : b; }
struct Box {
    int v;
    __attribute__((noinline)) Box(int x) : v(x) {}
    __attribute__((noinline)) int get() const { return v; }
};
}
__attribute__((noinline)) int f(int x) { return x * 2; }
__attribute__((noinline)) double f(double x) { return x * 2.5; }
int main(int argc, char **) {
    ns::Box b(argc);
    std::printf("%d %f %d %d %f\n", f(argc), f(argc * 1.0), ns::g(argc), ns::maxx(argc, 3), ns::maxx(1.0, 2.0));
    return b.get();
}
"#;

fn names(obj: &ObjectFunctions, include: &[&str], exclude: &[&str]) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let sel = Selector::from_lists(&s(&["main"]), &s(include), &s(exclude), None).unwrap();
    let mut out: Vec<String> = sel
        .select(obj, true)
        .into_iter()
        .map(|f| f.demangled().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn overloads_templates_namespaces() {
    require!("g++");
    let dir = tempdir();
    let prog = compile(dir.path(), "g++", &[("prog.cpp", SRC)], "prog", &["-O1"]);
    let obj = discover(&prog).unwrap();
    let all: Vec<&str> = obj.candidates.iter().map(|f| f.name.as_str()).collect();
    for want in [
        "f(int)",
        "f(double)",
        "ns::g(int)",
        "ns::maxx<int>(int, int)",
        "ns::maxx<double>(double, double)",
        "ns::Box::get() const",
        "ns::Box::Box(int)",
        "main",
    ] {
        assert_eq!(
            all.iter().filter(|n| **n == want).count(),
            1,
            "{want} once among {all:?}"
        );
    }
    let fi = obj.candidates.iter().find(|f| f.name == "f(int)").unwrap();
    assert_eq!(fi.symbol, "_Z1fi");

    // Complete and base constructors share one address: one candidate.
    let ctor = obj
        .candidates
        .iter()
        .find(|f| f.name == "ns::Box::Box(int)")
        .unwrap();
    let mut symbols = vec![ctor.symbol.clone()];
    symbols.extend(ctor.aliases.iter().cloned());
    symbols.sort();
    if symbols.len() == 2 {
        assert_eq!(symbols, ["_ZN2ns3BoxC1Ei", "_ZN2ns3BoxC2Ei"]);
        assert_eq!(
            ctor.symbol, "_ZN2ns3BoxC1Ei",
            "same rank: the first alphabetically"
        );
    }

    // Globs over demangled names (the raw symbol also matches).
    assert_eq!(names(&obj, &["f(int)"], &[]), ["f(int)"]);
    assert_eq!(names(&obj, &["f(*)"], &[]), ["f(double)", "f(int)"]);
    assert_eq!(names(&obj, &["_Z1fd"], &[]), ["f(double)"]);
    assert_eq!(
        names(&obj, &["ns::*"], &[]),
        [
            "ns::Box::Box(int)",
            "ns::Box::get() const",
            "ns::g(int)",
            "ns::maxx<double>(double, double)",
            "ns::maxx<int>(int, int)"
        ]
    );
    assert_eq!(
        names(&obj, &["*"], &["ns::*", "main"]),
        ["f(double)", "f(int)"]
    );
    assert_eq!(
        names(&obj, &["ns::maxx<*>*"], &["*double*"]),
        ["ns::maxx<int>(int, int)"]
    );

    // Lean discovery (no demangling up front) selects the same.
    let lean = discover_with(&prog, &DiscoverOptions::lean()).unwrap();
    assert!(
        lean.candidates.iter().any(|f| f.name == "_Z1fi"),
        "names stay raw"
    );
    assert_eq!(names(&lean, &["ns::*"], &[]), names(&obj, &["ns::*"], &[]));
    assert_eq!(
        names(&lean, &["*"], &["f(*)"]),
        names(&obj, &["*"], &["f(*)"])
    );
    let mut demangled = lean.clone();
    demangled.demangle_names();
    let a: Vec<_> = demangled.candidates.iter().map(|f| &f.name).collect();
    let b: Vec<_> = obj.candidates.iter().map(|f| &f.name).collect();
    assert_eq!(a, b);
}

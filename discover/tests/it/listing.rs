use crate::common::*;
use crate::require;
use hotprobe_discover::listing::list;

#[test]
fn table_and_json() {
    require!("gcc");
    let dir = tempdir();
    let prog = compile(
        dir.path(),
        "gcc",
        &[("prog.c", crate::c_program::PROG)],
        "prog",
        &["-O1", "-g"],
    );
    let l = list(&prog, &[], &[]).unwrap();
    let table = l.to_table();
    assert!(table.contains("functions to probe"), "{table}");
    let main_line = table
        .lines()
        .find(|line| line.ends_with("  main"))
        .unwrap_or_else(|| panic!("{table}"));
    let main_src = format!("prog.c:{}", line_of(crate::c_program::PROG, "int main("));
    assert!(main_line.contains(&main_src), "{main_line}");
    assert!(main_line.starts_with("0x"), "{main_line}");
    assert!(table.contains("not probed:"));
    let start = table
        .lines()
        .find(|line| line.ends_with("  _start"))
        .unwrap();
    assert!(
        start.contains("toolchain start-up/tear-down glue"),
        "{start}"
    );
    // The columns line up: every row of the first table has its name at the same column.
    let header = table
        .lines()
        .find(|l| l.starts_with("OFFSET") && l.contains("SOURCE"))
        .unwrap();
    let name_col = header.find("NAME").unwrap();
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(rows.len() >= 4);
    for r in &rows {
        assert_ne!(r.as_bytes()[name_col - 1], b' ' + 1, "{r}");
        assert!(r[..name_col].ends_with("  "), "misaligned: {r}");
    }

    let json = l.to_json();
    assert_eq!(json["schema"], "hotprobe.list/1");
    assert_eq!(json["symbol_source"], "symtab");
    let fns = json["functions"].as_array().unwrap();
    let main = fns.iter().find(|f| f["name"] == "main").unwrap();
    assert_eq!(main["source"], main_src.as_str());
    assert!(main["offset"].as_u64().unwrap() > 0);
    let np = json["not_probed"].as_array().unwrap();
    let s = np.iter().find(|f| f["name"] == "_start").unwrap();
    assert_eq!(s["reason_code"], "toolchain-glue");

    // --include / --exclude narrow both lists.
    let l = list(&prog, &["*main*".to_string()], &["__*".to_string()]).unwrap();
    assert_eq!(
        l.functions
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["main"]
    );
    assert!(l.not_probed.is_empty(), "{:?}", l.not_probed);
    assert!(l.filtered_out > 0);
    assert!(l.to_table().contains("left out by --include/--exclude"));
    assert!(list(&prog, &["[".to_string()], &[]).is_err());

    // Errors name the file.
    let err = list(&dir.path().join("missing"), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("missing"));
}

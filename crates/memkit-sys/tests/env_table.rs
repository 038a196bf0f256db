//! `memkit_sys::env::VARS` lists every `MEMKIT_*` environment variable the
//! source reads, and nothing else: a new variable cannot be forgotten in
//! `memkit env`, the man pages and the README, and a removed one does not
//! linger there.
//!
//! Every `MEMKIT_…` name in the workspace's source (crates/, include/,
//! scripts/, .ci/) counts, except C macros (`#define MEMKIT_…`: the C API's
//! constants and include guards), Rust constants (`const MEMKIT_…`) and
//! the names tests use as unknown variables ([`NOT_VARIABLES`]).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use memkit_sys::env::VARS;

/// Names the tests use because memkit does not read them: a typo that
/// `memkit env` flags (crates/memkit-cli/tests/install.rs), this file's
/// own example.
const NOT_VARIABLES: &[&str] = &["MEMKIT_PURGE_DELAY", "MEMKIT_A1_B"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every source file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && name != ".git" {
                sources(&p, out);
            }
        } else {
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            let dir_name = dir.file_name().and_then(|n| n.to_str());
            let script = matches!(dir_name, Some("scripts" | ".ci"));
            if matches!(ext, "rs" | "c" | "h" | "cc" | "sh" | "py" | "toml")
                || (script && ext.is_empty())
            {
                out.push(p);
            }
        }
    }
}

/// The `MEMKIT_…` names in `text` (a trailing `_` is a prefix in prose,
/// as in `MEMKIT_PROT_*`, not a name).
fn names(text: &str) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("MEMKIT_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|j| bytes[j]);
        let mut end = start + "MEMKIT_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let word_start = !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let name = &text[start..end];
        if word_start && !name.ends_with('_') {
            out.push((start, name.to_owned()));
        }
        i = end;
    }
    out
}

/// Whether the name at `at` is defined there as a C macro or Rust constant.
fn is_constant_definition(text: &str, at: usize) -> bool {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = text[line_start..at].trim();
    before.ends_with("#define") || before.ends_with("const") || before.ends_with("#ifndef")
}

#[test]
fn every_variable_in_the_source_is_in_the_table_and_back() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["crates", "include", "scripts", ".ci"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {files:?}");
    let mut constants = BTreeSet::new();
    let mut used: Vec<(String, PathBuf)> = Vec::new();
    for f in &files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for (at, name) in names(&text) {
            if is_constant_definition(&text, at) {
                constants.insert(name);
            } else {
                used.push((name, f.clone()));
            }
        }
    }
    let table: BTreeSet<&str> = VARS.iter().map(|v| v.name).collect();
    let missing: BTreeSet<String> = used
        .iter()
        .filter(|(n, _)| !constants.contains(n) && !table.contains(n.as_str()))
        .filter(|(n, _)| !NOT_VARIABLES.contains(&n.as_str()))
        .map(|(n, f)| format!("{n} ({})", f.strip_prefix(&root).unwrap_or(f).display()))
        .collect();
    assert!(
        missing.is_empty(),
        "environment variables missing from memkit_sys::env::VARS \
         (crates/memkit-sys/src/env.rs): {missing:#?}"
    );
    let env_rs = root.join("crates/memkit-sys/src/env.rs");
    let stale: Vec<&str> = table
        .iter()
        .filter(|v| !used.iter().any(|(n, f)| n == *v && *f != env_rs))
        .copied()
        .collect();
    assert!(stale.is_empty(), "in VARS but read nowhere: {stale:?}");
}

#[test]
fn the_table_is_well_formed() {
    let mut seen = BTreeSet::new();
    for v in VARS {
        assert!(v.name.starts_with("MEMKIT_"), "{}", v.name);
        assert!(seen.insert(v.name), "{} twice", v.name);
        assert!(!v.default.is_empty() && !v.meaning.is_empty(), "{}", v.name);
        assert!(v.read_by != 0, "{}: nobody reads it", v.name);
        assert_eq!(
            v.meaning.matches('`').count() % 2,
            0,
            "{}: unbalanced `",
            v.name
        );
        assert!(
            !v.meaning.ends_with('.'),
            "{}: the renderers add the full stop",
            v.name
        );
    }
}

#[test]
fn finds_names_not_prefixes() {
    let text = "x MEMKIT_THP y `MEMKIT_PROT_*` NOT_MEMKIT_A MEMKIT_A1_B\n#define MEMKIT_H\n";
    let found: Vec<String> = names(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(found, ["MEMKIT_THP", "MEMKIT_A1_B", "MEMKIT_H"]);
    let at = text.find("MEMKIT_H").unwrap();
    assert!(is_constant_definition(text, at));
    assert!(!is_constant_definition(
        text,
        text.find("MEMKIT_THP").unwrap()
    ));
}

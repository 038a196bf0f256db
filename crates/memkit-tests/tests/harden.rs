//! Heap hardening (issue 11): the primitives of `c/exploit.c` under
//! LD_PRELOAD=libmemkit.so. Whatever the primitive (double free, write of a
//! free-list link after free, overflow into a freed neighbour, free of an
//! interior, misaligned or forged pointer), malloc must never hand out a
//! duplicate, overlapping or attacker-chosen block: memkit aborts instead
//! (SIGABRT) after exactly one stderr line `memkit: ...` naming the problem.
//!
//! Every case runs at each of [`SIZES`]; the sizes of one case run in
//! parallel threads, and the cases are separate tests.

use memkit_tests::*;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Block sizes: small classes, a medium one, and two large ones.
const SIZES: &[usize] = &[16, 100, 1000, 20000, 100000];

/// The process kills itself with alarm(10) when it hangs; this is the backstop.
const T: Duration = Duration::from_secs(30);

/// The phrases a hardening abort message may contain.
const PHRASES: &[&str] = &["double free", "invalid pointer", "corrupted free list"];

/// What a case must do under libmemkit.so.
#[derive(Clone, Copy)]
enum Expect {
    /// Killed by SIGABRT after one `memkit: ` line containing one of these.
    Abort(&'static [&'static str]),
    /// Like `Abort`, but the program may find the primitive not applicable
    /// here (`RESULT ... SKIP`, exit 0).
    AbortOrSkip(&'static [&'static str]),
    /// Exit 0 with `RESULT ... SURVIVED` and nothing on stderr.
    Survive,
    /// `Abort`, or `Survive` where the corrupted link is never followed at
    /// this size (a block too large for the list the primitive corrupts).
    AbortOrSurvive(&'static [&'static str]),
    /// Exit 0 and `USABLE 0`: malloc_usable_size of an interior pointer.
    UsableZero,
}

const DOUBLE: Expect = Expect::Abort(&["double free"]);
const ANY: Expect = Expect::Abort(PHRASES);

/// Every case of exploit.c (`exploit list` must print exactly these).
const CASES: &[(&str, Expect)] = &[
    ("double-free-adjacent", DOUBLE),
    ("double-free-between", DOUBLE),
    ("double-free-threads", DOUBLE),
    ("double-free-realloc", DOUBLE),
    ("uaf-link-write", ANY),
    ("uaf-link-write-2", ANY),
    ("uaf-link-write-deep", ANY),
    ("overflow-link", Expect::AbortOrSkip(PHRASES)),
    ("interior-free-1", ANY),
    ("interior-free-8", ANY),
    ("interior-free-16", ANY),
    ("interior-realloc", ANY),
    ("forged-free", ANY),
    ("forged-free-far", ANY),
    ("usable-interior", Expect::UsableZero),
    ("foreign-free", Expect::Survive),
    ("aligned-interior-free", ANY),
    ("aligned-double-free", DOUBLE),
    ("realloc-zero-free", Expect::AbortOrSkip(&["double free"])),
    ("realloc-freed", DOUBLE),
    ("link-copy-remote", Expect::AbortOrSurvive(PHRASES)),
    ("link-copy-delayed", Expect::AbortOrSurvive(PHRASES)),
    ("link-bit-flip", Expect::AbortOrSurvive(PHRASES)),
];

fn compile(dir: &TempDir) -> PathBuf {
    compile_c("exploit.c", dir.path(), "exploit", &[])
}

/// `exploit CASE SIZE` under libmemkit.so (no core file), with `env` added.
fn exploit(prog: &Path, case: &str, size: usize, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = preloaded(prog);
    cmd.arg(case).arg(size.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    limit_child(&mut cmd, true, None);
    run(&mut cmd, T)
}

/// The verdict of the `RESULT <case> <size> <verdict>` line, if any.
fn verdict(o: &Outcome) -> Option<&str> {
    o.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .next_back()
        .and_then(|r| r.split_whitespace().nth(2))
}

fn stderr_lines(o: &Outcome) -> Vec<&str> {
    o.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Checks one run against `expect`; `Err` says what went wrong.
fn judge(o: &Outcome, expect: Expect) -> Result<String, String> {
    let v = verdict(o);
    if let Some(bad @ ("DUPLICATE" | "CHOSEN" | "OVERLAP")) = v {
        let step = o
            .stdout
            .lines()
            .rfind(|l| l.starts_with("STEP "))
            .unwrap_or("");
        return Err(format!("malloc returned a bad pointer: {bad} ({step})"));
    }
    if o.timed_out {
        return Err("hung (killed by the harness)".into());
    }
    let aborted = o.status.signal() == Some(libc::SIGABRT);
    let phrases = match expect {
        Expect::AbortOrSkip(_) if v == Some("SKIP") && o.status.success() => {
            return Ok("skipped (the primitive does not apply here)".into())
        }
        Expect::AbortOrSurvive(_) if v == Some("SURVIVED") && o.status.success() => {
            if !o.stderr.trim().is_empty() {
                return Err("expected silence on stderr".into());
            }
            return Ok("survived (the corrupted link is not followed at this size)".into());
        }
        Expect::Abort(p) | Expect::AbortOrSkip(p) | Expect::AbortOrSurvive(p) => p,
        Expect::Survive => {
            if !o.status.success() || v != Some("SURVIVED") {
                return Err(format!(
                    "expected exit 0 with RESULT ... SURVIVED, got {} / {v:?}",
                    o.status_text()
                ));
            }
            if !o.stderr.trim().is_empty() {
                return Err("expected silence on stderr".into());
            }
            return Ok("survived".into());
        }
        Expect::UsableZero => {
            if !o.status.success() {
                return Err(format!("expected exit 0, got {}", o.status_text()));
            }
            let usable = o.stdout.lines().find_map(|l| l.strip_prefix("USABLE "));
            if usable.map(str::trim) != Some("0") {
                return Err(format!(
                    "malloc_usable_size(a+16) must be 0 (as in glibc), got {usable:?}"
                ));
            }
            return Ok("usable 0".into());
        }
    };
    if !aborted {
        return Err(format!(
            "expected SIGABRT, got {} (verdict {v:?})",
            o.status_text()
        ));
    }
    let lines = stderr_lines(o);
    let memkit: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("memkit: "))
        .collect();
    if lines.len() != 1 || memkit.len() != 1 {
        return Err(format!(
            "expected exactly one stderr line `memkit: ...`, got {} line(s): {lines:?}",
            lines.len()
        ));
    }
    if !phrases.iter().any(|p| memkit[0].contains(p)) {
        return Err(format!(
            "abort message {:?} contains none of {phrases:?}",
            memkit[0]
        ));
    }
    Ok(format!("aborted: {}", memkit[0]))
}

/// Runs `case` at every size (in parallel) and panics with every failure.
fn check_case(case: &str) {
    if !require(case, &["gcc"]) {
        return;
    }
    let expect = CASES
        .iter()
        .find(|(c, _)| *c == case)
        .unwrap_or_else(|| panic!("unknown case {case}"))
        .1;
    let dir = TempDir::new("harden");
    let prog = compile(&dir);
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = SIZES
            .iter()
            .map(|&size| {
                let prog = &prog;
                s.spawn(move || (size, exploit(prog, case, size, &[])))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = String::new();
    for (size, o) in &outcomes {
        match judge(o, expect) {
            Ok(what) => eprintln!("{case} {size}: {what} ({})", o.status_text()),
            Err(e) => {
                eprintln!("{case} {size}: FAILED: {e}");
                failures.push_str(&format!("\n=== {case} {size}: {e}\n{}", o.describe()));
            }
        }
    }
    if !failures.is_empty() {
        panic!("{case}: not hardened{failures}");
    }
}

macro_rules! cases {
    ($($name:ident => $case:literal,)*) => {
        $(
            #[test]
            fn $name() {
                check_case($case);
            }
        )*

        /// The cases above are exactly CASES, and exactly what exploit.c runs.
        #[test]
        fn case_lists_agree() {
            let tests: Vec<&str> = vec![$($case),*];
            let table: Vec<&str> = CASES.iter().map(|(c, _)| *c).collect();
            assert_eq!(tests, table, "the test functions and CASES differ");
            if !require("case_lists_agree", &["gcc"]) {
                return;
            }
            let dir = TempDir::new("harden-list");
            let prog = compile(&dir);
            let o = run_ok(&mut Command::new(&prog).arg("list"), T, "exploit list");
            let listed: Vec<&str> = o.stdout.lines().collect();
            assert_eq!(listed, table, "exploit.c's cases and CASES differ");
        }
    };
}

cases! {
    double_free_adjacent => "double-free-adjacent",
    double_free_between => "double-free-between",
    double_free_threads => "double-free-threads",
    double_free_realloc => "double-free-realloc",
    uaf_link_write => "uaf-link-write",
    uaf_link_write_2 => "uaf-link-write-2",
    uaf_link_write_deep => "uaf-link-write-deep",
    overflow_link => "overflow-link",
    interior_free_1 => "interior-free-1",
    interior_free_8 => "interior-free-8",
    interior_free_16 => "interior-free-16",
    interior_realloc => "interior-realloc",
    forged_free => "forged-free",
    forged_free_far => "forged-free-far",
    usable_interior => "usable-interior",
    foreign_free => "foreign-free",
    aligned_interior_free => "aligned-interior-free",
    aligned_double_free => "aligned-double-free",
    realloc_zero_free => "realloc-zero-free",
    realloc_freed => "realloc-freed",
    link_copy_remote => "link-copy-remote",
    link_copy_delayed => "link-copy-delayed",
    link_bit_flip => "link-bit-flip",
}

/// `MEMKIT_HARDEN=off` is an accepted setting (no "ignoring" warning) and
/// foreign pointers are still ignored silently with it.
#[test]
fn harden_off_is_accepted() {
    if !require("harden_off_is_accepted", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("harden-off");
    let prog = compile(&dir);
    for size in [16, 100000] {
        let o = exploit(&prog, "foreign-free", size, &[("MEMKIT_HARDEN", "off")]);
        if let Err(e) = judge(&o, Expect::Survive) {
            panic!(
                "MEMKIT_HARDEN=off foreign-free {size}: {e}\n{}",
                o.describe()
            );
        }
    }
}

/// `MEMKIT_HARDEN=off` really turns the checks off (so that their cost can
/// be measured): a double free of a small block is then not caught, and the
/// next mallocs return the block twice, as before hardening. A bad setting
/// warns once and keeps the checks on.
#[test]
fn harden_off_turns_the_checks_off() {
    if !require("harden_off_turns_the_checks_off", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("harden-off-2");
    let prog = compile(&dir);
    let o = exploit(
        &prog,
        "double-free-adjacent",
        16,
        &[("MEMKIT_HARDEN", "off")],
    );
    // A library built with debug assertions (the checked pass of .ci/run,
    // MEMKIT_TESTS_CHECKED=1) trips its own invariant checks on the
    // corrupted list instead.
    let checked = std::env::var_os("MEMKIT_TESTS_CHECKED").is_some()
        && o.stderr.contains("memkit: internal error");
    assert!(
        verdict(&o) == Some("DUPLICATE") || checked,
        "{}",
        o.describe()
    );
    assert!(!o.stderr.contains("double free"), "{}", o.describe());
    let o = exploit(
        &prog,
        "double-free-adjacent",
        16,
        &[("MEMKIT_HARDEN", "maybe")],
    );
    assert!(
        o.stderr.contains("ignoring MEMKIT_HARDEN=maybe") && o.stderr.contains("double free"),
        "{}",
        o.describe()
    );
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", o.describe());
}

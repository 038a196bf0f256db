//! End-to-end tests of `memkit check`, driving the real binary on
//! libmemkit_check.so (built when missing, see
//! `memkit_tests::check_lib_path`).
//!
//! - The one-bug programs of `crates/memkit-tests/c/check/` (`cases`; a case per
//!   report kind; `ok-CASE` is its correct twin): every report's kind,
//!   block size and offset, the function names of its stacks, the leak
//!   kind, bytes and count, the exit status; every twin must give `[]` and
//!   exit 0. The C cases run twice, at -O0 and at -O2
//!   -fomit-frame-pointer (the stacks then come from the DWARF unwinder
//!   alone).
//! - The command's options (here): --error-exitcode, --suppressions, --leaks no,
//!   --halt-on-error, --show-reachable, --log-file; child processes (`sh
//!   -c`, fork).
//! - Real programs (`programs`: python3, git, sqlite3, g++, a multi-threaded
//!   stress program): no report but leaks, and their normal output.
//! - The library's quarantine record queue (`records`, the library's own
//!   file: the cdylib has no unit tests of its own).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use memkit_tests::{check_lib_path, compile_c, compile_cxx, require, run, Outcome, TempDir};
use serde_json::Value;

const MEMKIT: &str = env!("CARGO_BIN_EXE_memkit");
const T: Duration = Duration::from_secs(120);
/// `memkit check`'s default --error-exitcode.
const ERROR_EXIT: i32 = 23;

// ---------------------------------------------------------------------------
// Programs and runs
// ---------------------------------------------------------------------------

/// A test program compiled once for all tests, into cargo's scratch
/// directory for integration tests.
fn compiled(
    cell: &'static OnceLock<PathBuf>,
    build: impl FnOnce(&Path) -> PathBuf,
) -> &'static Path {
    cell.get_or_init(|| build(Path::new(env!("CARGO_TARGET_TMPDIR"))))
}

/// check_bugs.c at -O0.
fn bugs() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    compiled(&P, |d| {
        compile_c("check/check_bugs.c", d, "check_bugs", &["-O0"])
    })
}

/// check_bugs.c at -O2 without frame pointers.
fn bugs_optimized() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    compiled(&P, |d| {
        compile_c(
            "check/check_bugs.c",
            d,
            "check_bugs_o2",
            &["-O2", "-fomit-frame-pointer"],
        )
    })
}

fn bugs_cxx() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    compiled(&P, |d| {
        compile_cxx("check/check_bugs_cxx.cc", d, "check_bugs_cxx", &["-O0"])
    })
}

/// What one `memkit check --json FILE` run did.
struct Checked {
    out: Outcome,
    reports: Vec<Value>,
}

impl Checked {
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// Panics (describing the run) unless it exited `code` with `reports`
    /// reports.
    fn expect(&self, code: i32, reports: usize) -> &Self {
        assert_eq!(self.code(), Some(code), "exit status\n{}", self.describe());
        assert_eq!(self.reports.len(), reports, "reports\n{}", self.describe());
        self
    }

    /// Panics unless `text` is in stdout (`present`), or is not.
    fn stdout_has(&self, text: &str, present: bool) -> &Self {
        self.has("stdout", &self.out.stdout, text, present)
    }

    /// Panics unless `text` is in stderr (`present`), or is not.
    fn stderr_has(&self, text: &str, present: bool) -> &Self {
        self.has("stderr", &self.out.stderr, text, present)
    }

    fn has(&self, name: &str, stream: &str, text: &str, present: bool) -> &Self {
        let ok = stream.contains(text) == present;
        assert!(
            ok,
            "{name}: `{text}` present {}\n{}",
            !present,
            self.describe()
        );
        self
    }

    fn describe(&self) -> String {
        let json = serde_json::to_string_pretty(&self.reports).unwrap_or_default();
        let json = if json.len() > 6000 {
            format!("{}...", &json[..6000])
        } else {
            json
        };
        format!("{}--- reports ---\n{json}\n", self.out.describe())
    }
}

/// `memkit check --json F OPTIONS -- PROGRAM ARGS` with `env` added; the
/// reports are parsed and each checked to be well formed.
fn check_with(
    options: &[&str],
    program: impl AsRef<OsStr>,
    args: &[&str],
    env: &[(&str, &OsStr)],
) -> Checked {
    let dir = TempDir::new("check");
    let json = dir.join("reports.json");
    let mut cmd = Command::new(MEMKIT);
    cmd.env("MEMKIT_CHECK_LIB", check_lib_path())
        .arg("check")
        .arg("--json")
        .arg(&json)
        .args(options)
        .arg("--")
        .arg(program)
        .args(args);
    // The command passes the caller's own options on: none but `env`'s.
    cmd.env_remove("MEMKIT_CHECK_OPTIONS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, T);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no --json file ({e})\n{}", out.describe()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("--json file is not JSON ({e}): {text}\n{}", out.describe()));
    let reports = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .clone();
    for r in &reports {
        if let Err(e) = well_formed(r) {
            panic!("malformed report ({e}): {r}\n{}", out.describe());
        }
    }
    Checked { out, reports }
}

fn check(options: &[&str], program: impl AsRef<OsStr>, args: &[&str]) -> Checked {
    check_with(options, program, args, &[])
}

/// Every report kind (docs/CHECK.md).
const KINDS: &[&str] = &[
    "leak",
    "double-free",
    "invalid-free",
    "heap-buffer-overflow",
    "use-after-free",
    "memcpy-param-overlap",
    "alloc-dealloc-mismatch",
    "invalid-alignment",
    "allocation-size-too-big",
    "calloc-overflow",
    "reallocarray-overflow",
    "new-delete-type-mismatch",
    "free-size-mismatch",
    "bad-malloc_usable_size",
    "heap-corruption",
];

fn frames_ok(v: &Value, nullable: bool) -> Result<(), String> {
    if v.is_null() && nullable {
        return Ok(());
    }
    let frames = v.as_array().ok_or("a stack is not an array")?;
    for f in frames {
        let addr = f["address"].as_str().ok_or("frame address not a string")?;
        if !addr.starts_with("0x") {
            return Err(format!("frame address {addr}"));
        }
        for k in ["object", "function", "file", "line"] {
            if f.get(k).is_none() {
                return Err(format!("frame without {k}"));
            }
        }
    }
    Ok(())
}

/// The report object's schema (version 1).
fn well_formed(r: &Value) -> Result<(), String> {
    if r["schema_version"] != 1 {
        return Err("schema_version is not 1".into());
    }
    let kind = r["kind"].as_str().ok_or("no kind")?;
    if !KINDS.contains(&kind) {
        return Err(format!("unknown kind {kind}"));
    }
    for k in ["pid", "thread"] {
        r[k].as_u64().ok_or(format!("{k} is not a number"))?;
    }
    r["message"].as_str().ok_or("no message")?;
    if !r["address"].as_str().is_some_and(|a| a.starts_with("0x")) {
        return Err("address is not a 0x string".into());
    }
    if !(r["size"].is_null() || r["size"].is_u64())
        || !(r["offset"].is_null() || r["offset"].is_i64())
    {
        return Err("size or offset neither null nor a number".into());
    }
    frames_ok(&r["stack"], false)?;
    frames_ok(&r["alloc_stack"], true)?;
    frames_ok(&r["free_stack"], true)?;
    if kind == "leak" {
        if !matches!(
            r["leak_kind"].as_str(),
            Some("direct" | "indirect" | "reachable")
        ) {
            return Err("bad leak_kind".into());
        }
        r["bytes"].as_u64().ok_or("leak without bytes")?;
        r["count"].as_u64().ok_or("leak without count")?;
    }
    Ok(())
}

/// Runs `f` over `items` on 4 threads; results in the items' order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break done };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

mod cases;
mod layout;
mod programs;
#[allow(dead_code)]
#[path = "../../../memkit-check/src/records.rs"]
mod records;

use cases::{leak, matches, text_matches, C_CASES};

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

#[test]
fn error_exitcode() {
    if !require("error_exitcode", &["gcc"]) {
        return;
    }
    check(&["--error-exitcode", "7"], bugs(), &["leak-direct"]).expect(7, 1);
    // Nothing reported: the program's own status.
    check(&["--error-exitcode", "7"], "sh", &["-c", "exit 3"]).expect(3, 0);
}

/// A --json path that cannot be written is refused before the program
/// runs (it used to run to the end, then lose every report).
#[test]
fn json_path_refused_before_the_run() {
    let dir = TempDir::new("check-json");
    let marker = dir.join("ran");
    let out = run(
        Command::new(MEMKIT)
            .env("MEMKIT_CHECK_LIB", check_lib_path())
            .args(["check", "--json"])
            .arg(dir.join("missing").join("reports.json"))
            .args(["--", "sh", "-c", "touch \"$0\"; exit 3"])
            .arg(&marker),
        T,
    );
    assert_eq!(out.status.code(), Some(125), "{}", out.describe());
    assert!(out.stderr.contains("cannot write"), "{}", out.describe());
    assert!(!marker.exists(), "the program ran\n{}", out.describe());
    // A program that cannot be started leaves no (empty) report file.
    let json = dir.join("reports.json");
    let out = run(
        Command::new(MEMKIT)
            .env("MEMKIT_CHECK_LIB", check_lib_path())
            .args(["check", "--json"])
            .arg(&json)
            .args(["--", "/nonexistent/program"]),
        T,
    );
    assert_eq!(out.status.code(), Some(127), "{}", out.describe());
    assert!(!json.exists(), "{}", out.describe());
}

/// A program that never ran on the library (statically linked) is said to
/// be unchecked, not passed as clean in silence.
#[test]
fn unchecked_program_is_named() {
    if !require("unchecked_program_is_named", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let program = compiled(&P, |d| {
        compile_c("check/guard_reads.c", d, "check_guard_static", &["-static"])
    });
    let note = "no process ran on libmemkit_check.so";
    check(&[], program, &["ok-read-past-end"])
        .expect(0, 0)
        .stdout_has("END ok-read-past-end", true)
        .stderr_has(note, true);
    check(&[], guard_reads(), &["ok-read-past-end"])
        .expect(0, 0)
        .stderr_has(note, false);
}

/// The library's options without a flag come through the caller's own
/// MEMKIT_CHECK_OPTIONS (it used to be replaced); the command's flags win.
#[test]
fn library_options_pass_through() {
    if !require("library_options_pass_through", &["gcc"]) {
        return;
    }
    let env = [(
        "MEMKIT_CHECK_OPTIONS",
        OsStr::new("alloc_fill=0x11:error_exitcode=9"),
    )];
    check_with(&[], bugs(), &["fill"], &env)
        .expect(0, 0)
        .stdout_has("FILL 11", true);
    check_with(&[], bugs(), &["double-free"], &env).expect(ERROR_EXIT, 1);
}

/// `scan_mmap=0` leaves the program's anonymous mappings out of the
/// roots, as LeakSanitizer does: the blocks only they point to are leaks.
#[test]
fn scan_mmap_off_is_lsans_roots() {
    if !require("scan_mmap_off_is_lsans_roots", &["gcc"]) {
        return;
    }
    check(&[], bugs(), &["ok-leak-mmap"])
        .expect(0, 0)
        .stdout_has("END ok-leak-mmap", true);
    let env = [("MEMKIT_CHECK_OPTIONS", OsStr::new("scan_mmap=0"))];
    check_with(&[], bugs(), &["ok-leak-mmap"], &env)
        .expect(ERROR_EXIT, 2)
        .stderr_has("alloc_site_mmap_deep", true);
}

#[test]
fn suppressions() {
    if !require("suppressions", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("check-supp");
    let file = dir.join("supp.txt");
    std::fs::write(&file, "# one leak\nleak:alloc_site_suppressed\n").unwrap();
    let supp = &["--suppressions", file.to_str().unwrap()];
    check(supp, bugs(), &["leak-suppressed"])
        .expect(0, 0)
        .stdout_has("END leak-suppressed", true)
        .stderr_has("Suppressions used", true)
        .stderr_has("leak:alloc_site_suppressed", true);
    // A suppression matches only its frames, and only for its kind.
    check(supp, bugs(), &["leak-direct"]).expect(ERROR_EXIT, 1);
    check(supp, bugs(), &["double-free"])
        .expect(ERROR_EXIT, 1)
        .stderr_has("Suppressions used", false);
    // Wildcard patterns match anywhere in a name, as LeakSanitizer's do:
    // a function's middle, an object's path by its file name.
    std::fs::write(&file, "leak:site_suppr*ssed\nleak:libc.so*\n").unwrap();
    check(supp, bugs(), &["leak-suppressed"])
        .expect(0, 0)
        .stderr_has("leak:site_suppr*ssed", true);
    check(supp, bugs(), &["leak-strdup"])
        .expect(0, 0)
        .stderr_has("leak:libc.so*", true);
    // Anchored, they must match the whole name.
    std::fs::write(&file, "leak:^alloc_site_suppressed$\nleak:^libc.so*\n").unwrap();
    check(supp, bugs(), &["leak-suppressed"]).expect(0, 0);
    check(supp, bugs(), &["leak-strdup"]).expect(ERROR_EXIT, 1);
    // A line that could never match is refused before the program runs.
    std::fs::write(&file, "leak:ok\nleaks:alloc_site\nno colon\nleak:\n").unwrap();
    let out = run(
        Command::new(MEMKIT)
            .env("MEMKIT_CHECK_LIB", check_lib_path())
            .args(["check", "--suppressions"])
            .arg(&file)
            .args(["--", "sh", "-c", "echo RAN"]),
        T,
    );
    assert_eq!(out.status.code(), Some(125), "{}", out.describe());
    assert!(!out.stdout.contains("RAN"), "{}", out.describe());
    for line in [
        "supp.txt:2: `leaks` is no report kind",
        "supp.txt:3: `no colon` is not kind:pattern",
        "supp.txt:4: `leak:` is not kind:pattern",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.describe());
    }
}

#[test]
fn leaks_no() {
    if !require("leaks_no", &["gcc"]) {
        return;
    }
    check(&["--leaks", "no"], bugs(), &["leak-indirect"])
        .expect(0, 0)
        .stdout_has("END leak-indirect", true);
    // Other kinds are still reported.
    check(&["--leaks", "no"], bugs(), &["double-free"]).expect(ERROR_EXIT, 1);
}

/// The first report ends the program: the second bug, and what the program
/// prints between them, never happen.
#[test]
fn halt_on_error() {
    if !require("halt_on_error", &["gcc"]) {
        return;
    }
    let c = check(&["--halt-on-error"], bugs(), &["two-bugs"]);
    c.expect(ERROR_EXIT, 1)
        .stdout_has("AFTER-FIRST", false)
        .stderr_has("SUMMARY: memkit check: 1 report(s)", true);
    assert_eq!(c.reports[0]["kind"], "double-free", "{}", c.describe());
}

/// Reachable blocks are listed (leak_kind "reachable") but are no reports:
/// exit 0.
#[test]
fn show_reachable() {
    if !require("show_reachable", &["gcc"]) {
        return;
    }
    let c = check(&["--show-reachable"], bugs(), &["ok-leak-global"]);
    c.stderr_has("Still reachable of 100 byte(s) in 1 object(s)", true)
        .stderr_has("SUMMARY", false);
    assert_eq!(c.code(), Some(0), "{}", c.describe());
    let reachable = |r: &&Value| r["leak_kind"] == "reachable";
    assert!(c.reports.iter().all(|r| reachable(&r)), "{}", c.describe());
    let global = leak(
        "reachable",
        100,
        1,
        &["malloc", "alloc_site_global", "main"],
    );
    assert!(
        c.reports.iter().any(|r| matches(r, &global).is_ok()),
        "no reachable block from alloc_site_global\n{}",
        c.describe()
    );
}

/// --log-file: the text goes to PATH.PID, not stderr; the JSON is the same.
#[test]
fn log_file() {
    if !require("log_file", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("check-log");
    let log = dir.join("log");
    let c = check(
        &["--log-file", log.to_str().unwrap()],
        bugs(),
        &["double-free"],
    );
    c.expect(ERROR_EXIT, 1).stderr_has("double-free", false);
    let pid = c.reports[0]["pid"].as_u64().unwrap();
    let text = std::fs::read_to_string(dir.join(format!("log.{pid}")))
        .unwrap_or_else(|e| panic!("no log.{pid}: {e}\n{}", c.describe()));
    text_matches(&text, &c.reports[0]).unwrap_or_else(|e| panic!("log.{pid}: {e}\n{text}"));
}

/// Child processes are checked too: a leak in a program the shell starts is
/// reported (with its own pid) and sets the exit status, although the shell
/// exits 0. The leaking program keeps its own status, so the script goes on
/// (`&&`), as `make` does past a leaking compiler.
#[test]
fn children_through_sh() {
    if !require("children_through_sh", &["gcc", "sh"]) {
        return;
    }
    let prog = memkit_tests::shell_quote(bugs());
    let script = format!("{prog} leak-direct && echo SH-END");
    let c = check(&[], "sh", &["-c", &script]);
    c.expect(ERROR_EXIT, 1)
        .stdout_has("END leak-direct\nSH-END", true);
    matches(&c.reports[0], &C_CASES[0].reports[0])
        .unwrap_or_else(|e| panic!("{e}\n{}", c.describe()));
    let script = format!("{prog} ok-leak-direct && {prog} ok-double-free");
    check(&[], "sh", &["-c", &script]).expect(0, 0);
}

fn guard_reads() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    compiled(&P, |d| {
        compile_c("check/guard_reads.c", d, "check_guard", &["-O2"])
    })
}

/// The two guard modes the guard tests run in.
const GUARD_MODES: [[&str; 2]; 2] = [["--guard", "all"], ["--guard", "sample=1"]];

/// Runs `case` of guard_reads.c under `mode`: one report of `kind` at
/// `offset`, from a block of `alloc_site_guard`, and the program on to its
/// end; its `ok-` twin reports nothing. Returns the run for more checks.
fn guard_case(mode: &[&str], program: &Path, case: &str, kind: &str, offset: i64) -> Checked {
    let c = check(mode, program, &[case]);
    c.expect(ERROR_EXIT, 1)
        .stdout_has(&format!("END {case}"), true);
    let r = &c.reports[0];
    assert_eq!(r["kind"], kind, "{}", c.describe());
    assert_eq!(r["offset"], offset, "{}", c.describe());
    assert_eq!(
        r["alloc_stack"][1]["function"],
        "alloc_site_guard",
        "{}",
        c.describe()
    );
    check(mode, program, &[&format!("ok-{case}")]).expect(0, 0);
    c
}

/// `--guard all` and `--guard sample=1`: a read past the end and a read
/// after free fault at the reading instruction and are reported with its
/// stack (the bug site first), then the program goes on to its end. The
/// default mode cannot see such reads (docs/CHECK.md says so): no report.
#[test]
fn guard_pages_catch_reads() {
    if !require("guard_pages_catch_reads", &["gcc"]) {
        return;
    }
    let program = guard_reads();
    for (case, kind, site, offset) in [
        (
            "read-past-end",
            "heap-buffer-overflow",
            "bug_site_read_past_end",
            40,
        ),
        (
            "read-after-free",
            "use-after-free",
            "bug_site_read_after_free",
            3,
        ),
    ] {
        for mode in GUARD_MODES {
            let c = guard_case(&mode, program, case, kind, offset);
            let r = &c.reports[0];
            assert_eq!(r["stack"][0]["function"], site, "{}", c.describe());
            assert!(
                r["message"].as_str().unwrap_or("").starts_with("READ"),
                "{}",
                c.describe()
            );
        }
        check(&[], program, &[case]).expect(0, 0);
    }
}

/// `--guard`: a read past the end and a read after free through a checked
/// call (`strlen`, `memcpy`) are reported once, with the call's site: the
/// interceptor's check and the guard fault of glibc's function it calls
/// (`strlen` reads before it is checked, `memcpy` after) are one bug. Each
/// was reported twice.
#[test]
fn guard_reports_a_checked_call_once() {
    if !require("guard_reports_a_checked_call_once", &["gcc"]) {
        return;
    }
    let program = guard_reads();
    for (case, kind, site, offset) in [
        (
            "strlen-past-end",
            "heap-buffer-overflow",
            "bug_site_strlen_past_end",
            24,
        ),
        (
            "memcpy-after-free",
            "use-after-free",
            "bug_site_memcpy_after_free",
            0,
        ),
    ] {
        for mode in GUARD_MODES {
            let c = guard_case(&mode, program, case, kind, offset);
            let stack = c.reports[0]["stack"].as_array().unwrap();
            assert!(
                stack.iter().any(|f| f["function"] == site),
                "{}",
                c.describe()
            );
        }
        // The default mode sees them too, at the call.
        let c = check(&[], program, &[case]);
        c.expect(ERROR_EXIT, 1);
        assert_eq!(c.reports[0]["kind"], kind, "{}", c.describe());
    }
}

/// A write past a block's red zone into the next core block, a free one
/// on the core's free list: the core's hardening finds it when it next
/// hands that block out and ends the process (it cannot go on from a
/// corrupted list), but the checker reports first: an overflow of the
/// block before it when that block's red zone is damaged too, else
/// `heap-corruption` naming that block; the twin without the write runs
/// to its end. (Before, the process ended with the core's one line and no
/// report: sweep3's corpus.)
#[test]
fn core_corruption_is_reported() {
    if !require("core_corruption_is_reported", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c("check/far_overflow.c", d, "far_overflow", &["-O1"])
    });
    for (mode, kind, offset) in [
        ("contiguous", "heap-buffer-overflow", 16),
        ("skip", "heap-corruption", 32),
    ] {
        let c = check(&[], prog, &[mode]);
        c.expect(ERROR_EXIT, 1)
            .stdout_has("SURVIVED", false)
            .stderr_has("killed by signal 6 (SIGABRT)", true)
            .stderr_has("memkit: malloc(): corrupted free list", true);
        let r = &c.reports[0];
        assert_eq!(r["kind"], kind, "{mode}\n{}", c.describe());
        assert_eq!(
            (r["size"].as_u64(), r["offset"].as_i64()),
            (Some(16), Some(offset)),
            "{mode}\n{}",
            c.describe()
        );
        assert_eq!(r["stack"][0]["function"], "malloc", "{}", c.describe());
        let alloc = r["alloc_stack"].as_array().expect("an allocation stack");
        assert!(
            alloc.iter().any(|f| f["function"] == "far_site_alloc"),
            "{mode}\n{}",
            c.describe()
        );
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("free list is corrupted")),
            "{}",
            c.describe()
        );
    }
    check(&[], prog, &["ok"])
        .expect(0, 0)
        .stdout_has("SURVIVED", true);
}

/// glibc's introspection answers for the checker: `mallinfo2`'s
/// `uordblks` rises by exactly the bytes 1000 blocks were asked with and
/// falls back when they are freed (a program's own leak test compares
/// it), `fsmblks` shows them in quarantine, `mallinfo` agrees, `mallopt`
/// and `malloc_info` answer as glibc's do, `malloc_stats` is the
/// checker's summary. (Before, the checker exported none of them but
/// `malloc_trim`, which did nothing: glibc's own answered, for a heap the
/// program never used, with zeros.)
#[test]
fn introspection_is_the_checkers() {
    if !require("introspection_is_the_checkers", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/introspect.c",
            d,
            "introspect",
            &["-O2", "-Wno-deprecated-declarations"],
        )
    });
    let c = check(&[], prog, &[]);
    c.expect(0, 0);
    for line in [
        "LIVE_DELTA 100000",
        "BLOCKS_DELTA 1000",
        "ARENA_COVERS 1",
        "AFTER_FREE 0",
        "QUARANTINE_GREW 1",
        "MALLINFO_MATCHES 1",
        "MALLOPT 1 0",
        "INFO 0",
        "INFO_INUSE 1",
        "INFO_BAD -1",
    ] {
        c.stdout_has(line, true);
    }
    c.stderr_has("memkit check malloc_stats (pid ", true)
        .stderr_has("  quarantine: ", true)
        .stderr_has("Arena 0:", false);
}

/// A quarantine whose blocks grow: the records 37,000 freed 16-byte
/// blocks needed are given back once 4 KiB blocks fill the quarantine
/// (the record chunks fill their 16 KiB blocks, and freed chunks' pages go
/// back to the system), so the peak rises less than 700 KiB past the
/// first phase's RSS (2,160 KiB before; 576 measured after).
#[test]
fn quarantine_records_are_given_back() {
    if !require("quarantine_records_are_given_back", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/quarantine_memory.c",
            d,
            "quarantine_memory",
            &["-O2"],
        )
    });
    let c = check(&[], prog, &[]);
    c.expect(0, 0);
    let line = c.out.stdout.lines().find(|l| l.starts_with("RSS small "));
    let line = line.unwrap_or_else(|| panic!("no RSS line\n{}", c.describe()));
    let f: Vec<i64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(f.len(), 2, "{line}");
    assert!(f[0] > 0 && f[1] >= f[0], "{line}");
    assert!(
        f[1] - f[0] < 700,
        "the peak rose {} KiB: {line}",
        f[1] - f[0]
    );
}

/// A buffer grown a byte at a time: the large block `realloc` made is
/// resized in place or moved with room to spare, so 200,000 one-byte
/// growths move it a few dozen times, not 200,000 (each move copied the
/// whole buffer: quadratic), and keep its bytes. What the checker finds
/// stays found: a write past the grown block's end (its size the new
/// one, its allocation stack the last `realloc`'s), a stale pointer to a
/// block the first `realloc` moved, and gained bytes read as the
/// allocation fill.
#[test]
fn realloc_growth_is_amortised() {
    if !require("realloc_growth_is_amortised", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c("check/realloc_grow.c", d, "realloc_grow", &["-O0"])
    });
    let c = check(&[], prog, &["grow", "200000"]);
    c.expect(0, 0);
    let line = c.out.stdout.lines().find(|l| l.starts_with("SIZE "));
    let line = line.unwrap_or_else(|| panic!("no SIZE line\n{}", c.describe()));
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(f.len(), 3, "{line}");
    assert_eq!((f[0], f[2]), (208_192, 0), "size, bad bytes: {line}");
    assert!(f[1] >= 1 && f[1] <= 40, "moves: {line}\n{}", c.describe());

    let c = check(&[], prog, &["overflow"]);
    c.expect(ERROR_EXIT, 1)
        .stdout_has("OVERFLOW AT 13192", true);
    let r = &c.reports[0];
    assert_eq!(r["kind"], "heap-buffer-overflow", "{}", c.describe());
    assert_eq!(
        (r["size"].as_u64(), r["offset"].as_i64()),
        (Some(13192), Some(13192))
    );
    assert_eq!(
        r["alloc_stack"][0]["function"],
        "realloc",
        "{}",
        c.describe()
    );
    assert_eq!(r["alloc_stack"][1]["function"], "grow", "{}", c.describe());

    let c = check(&[], prog, &["stale"]);
    c.expect(ERROR_EXIT, 1).stdout_has("MOVED 1", true);
    let r = &c.reports[0];
    assert_eq!(r["kind"], "use-after-free", "{}", c.describe());
    assert_eq!(r["offset"], 100, "{}", c.describe());
    assert_eq!(
        r["free_stack"][0]["function"],
        "realloc",
        "{}",
        c.describe()
    );

    check(&[], prog, &["fill"])
        .expect(0, 0)
        .stdout_has("IN PLACE 1 NOT FILL 0", true);
}

/// A program with its own SIGSEGV handler (installed with `sigaction` or
/// `signal`): the guard faults are still memkit's (the handler stays in
/// front; the program reads its own back), its own fault at the end still
/// reaches its handler. It used to replace memkit's, which then saw none.
#[test]
fn guard_keeps_its_handler_in_front() {
    if !require("guard_keeps_its_handler_in_front", &["gcc"]) {
        return;
    }
    let program = guard_reads();
    for case in ["sigaction-read-after-free", "signal-read-after-free"] {
        for mode in [["--guard", "all"], ["--guard", "sample=1"]] {
            let c = check(&mode, program, &[case]);
            c.expect(ERROR_EXIT, 1)
                .stdout_has(&format!("END {case}"), true)
                .stdout_has("OWN HANDLER", true);
            let r = &c.reports[0];
            assert_eq!(r["kind"], "use-after-free", "{}", c.describe());
            assert_eq!(
                r["stack"][0]["function"],
                "bug_site_read_after_free",
                "{}",
                c.describe()
            );
            check(&mode, program, &[&format!("ok-{case}")])
                .expect(0, 0)
                .stdout_has("OWN HANDLER", true);
        }
        check(&[], program, &[case])
            .expect(0, 0)
            .stdout_has("OWN HANDLER", true);
    }
}

/// `--guard all` stops guarding before the guarded blocks take every
/// mapping `vm.max_map_count` allows: the program's own `mmap` calls (a
/// `dlopen`, a thread's stack) still succeed. They failed once the guarded
/// blocks had taken them all (python's `import ctypes`).
#[test]
fn guard_leaves_mappings_to_the_program() {
    if !require("guard_leaves_mappings_to_the_program", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let program = compiled(&P, |d| {
        compile_c("check/guard_budget.c", d, "check_guard_budget", &["-O2"])
    });
    check(&["--guard", "all"], program, &[])
        .expect(0, 0)
        .stdout_has("END FAILED 0", true);
}

fn zones() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    compiled(&P, |d| {
        compile_c("check/zones.c", d, "check_zones", &["-O1"])
    })
}

/// The sizes check/zones.c allocates, in order.
fn zone_sizes() -> Vec<i64> {
    let more = [
        511, 512, 1000, 1024, 4095, 4096, 4097, 10000, 32728, 32768, 40000, 65536, 70000,
    ];
    (1..=300).chain(more).collect()
}

/// Red zones and fill patterns at every size the fills and canary checks
/// treat differently: new blocks hold the allocation pattern and freed
/// ones the free pattern throughout, and a one-byte write past the end,
/// before the start, or into a freed block's first or last byte is
/// reported once per block, with the block's size and the byte's offset.
#[test]
fn zones_at_every_size() {
    if !require("zones_at_every_size", &["gcc"]) {
        return;
    }
    let program = zones();
    check(&[], program, &["clean"])
        .expect(0, 0)
        .stdout_has("END clean", true)
        .stdout_has("BAD", false);
    let sizes = zone_sizes();
    for (case, kind, offset) in [
        ("past-end", "heap-buffer-overflow", None),
        ("before-start", "heap-buffer-overflow", Some(-1)),
        ("after-free", "use-after-free", Some(0)),
    ] {
        let c = check(&[], program, &[case]);
        c.expect(ERROR_EXIT, sizes.len())
            .stdout_has(&format!("END {case}"), true);
        let mut seen: Vec<i64> = c
            .reports
            .iter()
            .map(|r| r["size"].as_i64().unwrap())
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            sizes,
            "{case}: one report per block\n{}",
            c.describe()
        );
        for r in &c.reports {
            assert_eq!(r["kind"], kind, "{case}\n{}", c.describe());
            let want = offset.unwrap_or_else(|| r["size"].as_i64().unwrap());
            assert_eq!(r["offset"], want, "{case}: {r}\n{}", c.describe());
        }
    }
}

fn fortify() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    compiled(&P, |d| {
        compile_c(
            "check/fortify.c",
            d,
            "check_fortify",
            &["-O2", "-D_FORTIFY_SOURCE=2"],
        )
    })
}

/// Debian's binaries are built with `_FORTIFY_SOURCE`: the string functions
/// reach the checker as `__strcpy_chk` and friends. Called with an unknown
/// destination size, each reports a heap overflow as its plain form does
/// and goes on; the fortified build's calls that fit give no report (its
/// binary imports every form); one that does not fit is reported and then
/// ends in glibc's `__chk_fail` (SIGABRT) before writing, as it would
/// without memkit.
#[test]
fn fortified_string_functions() {
    if !require("fortified_string_functions", &["gcc", "nm"]) {
        return;
    }
    let program = fortify();
    let nm = run(Command::new("nm").arg("-D").arg(program), T);
    for f in [
        "__strcpy_chk",
        "__strncpy_chk",
        "__strcat_chk",
        "__strncat_chk",
        "__memcpy_chk",
        "__stpcpy_chk",
        "__mempcpy_chk",
    ] {
        assert!(nm.stdout.contains(f), "{f} not imported\n{}", nm.describe());
    }
    for func in [
        "strcpy", "strncpy", "strcat", "strncat", "memcpy", "stpcpy", "mempcpy",
    ] {
        let case = format!("direct-{func}");
        let c = check(&[], program, &[&case]);
        c.expect(ERROR_EXIT, 1)
            .stdout_has(&format!("END {case}"), true);
        let r = &c.reports[0];
        assert_eq!(r["kind"], "heap-buffer-overflow", "{}", c.describe());
        assert_eq!(r["size"], 24, "{}", c.describe());
        assert_eq!(r["offset"], 24, "{}", c.describe());
        let names: Vec<&str> = r["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["function"].as_str().unwrap_or(""))
            .collect();
        let chk = format!("__{func}_chk");
        assert_eq!(names.first(), Some(&chk.as_str()), "{}", c.describe());
        assert_eq!(names[1], "bug_site_direct", "{}", c.describe());
        assert_eq!(
            r["alloc_stack"][1]["function"],
            "alloc_site_fortify",
            "{}",
            c.describe()
        );
        check(&[], program, &[&format!("ok-{case}")])
            .expect(0, 0)
            .stdout_has(&format!("END ok-{case}"), true);
    }
    check(&[], program, &["fortified"])
        .expect(0, 0)
        .stdout_has("ab0123456789 ab0123456789\nEND fortified", true);
    // Reported (so the command exits with the error exit code), then
    // glibc's abort before `END`.
    let c = check(&[], program, &["fortified-overflow"]);
    c.expect(ERROR_EXIT, 1)
        .stderr_has("buffer overflow detected", true)
        .stdout_has("END", false);
    assert_eq!(c.reports[0]["kind"], "heap-buffer-overflow");
    assert_eq!(c.reports[0]["offset"], 24, "{}", c.describe());
}

/// A fault that is not on a guarded block still kills the program with
/// SIGSEGV, as without memkit (the handler passes it on).
#[test]
fn guard_passes_other_faults_on() {
    if !require("guard_passes_other_faults_on", &["sh"]) {
        return;
    }
    let dir = TempDir::new("segv");
    let json = dir.join("r.json");
    let o = run(
        Command::new(MEMKIT)
            .env("MEMKIT_CHECK_LIB", check_lib_path())
            .args(["check", "--guard", "all", "--json"])
            .arg(&json)
            .args(["--", "sh", "-c", "kill -SEGV $$"]),
        T,
    );
    assert_eq!(o.status.code(), Some(128 + 11), "{}", o.describe());
}

/// glibc's frames are symbolized from its detached debug file when one is
/// installed (`libc6-dbg`, found by build ID under /usr/lib/debug), as
/// AddressSanitizer, Valgrind and gdb show them: the frame under `main`
/// is `__libc_start_call_main` with its file and line. It was `??`
/// (the function is in no dynamic symbol table). Skipped without the
/// debug file.
#[test]
fn libc_frames_named_from_its_debug_file() {
    if !require("libc_frames_named_from_its_debug_file", &["gcc"]) {
        return;
    }
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    let Some(id) = memkit_trace::symbolize::build_id(libc) else {
        panic!("{libc} has no GNU build ID");
    };
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    if !Path::new(&debug).is_file() {
        eprintln!("SKIP: libc_frames_named_from_its_debug_file: no {debug} (libc6-dbg)");
        return;
    }
    let c = check(&[], bugs(), &["double-free"]);
    c.expect(ERROR_EXIT, 1);
    let stack = c.reports[0]["stack"].as_array().unwrap();
    let main = stack
        .iter()
        .position(|f| f["function"] == "main")
        .unwrap_or_else(|| panic!("no main\n{}", c.describe()));
    let below = &stack[main + 1];
    assert_eq!(
        below["function"],
        "__libc_start_call_main",
        "{}",
        c.describe()
    );
    assert!(below["object"]
        .as_str()
        .unwrap_or("")
        .ends_with("libc.so.6"));
    assert!(
        below["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("libc_start_call_main.h")),
        "{}",
        c.describe()
    );
    assert!(
        below["line"].as_u64().is_some_and(|l| l > 0),
        "{}",
        c.describe()
    );
}

/// A program that closes every descriptor above 2 and opens files again
/// (a daemon): the text report still reaches stderr, the JSON report file
/// still gets its line and nothing else (`close-fds` in check/check_bugs.c
/// asserts the JSON). The text went into the JSON file, which then read as
/// garbage, and stderr showed nothing.
#[test]
fn reports_survive_closed_descriptors() {
    if !require("reports_survive_closed_descriptors", &["gcc"]) {
        return;
    }
    let c = check(&[], bugs(), &["close-fds"]);
    c.expect(ERROR_EXIT, 1)
        .stderr_has("ERROR: memkit check: double-free", true)
        .stderr_has("SUMMARY: memkit check: 1 report(s): 1 double-free", true)
        .stderr_has("incomplete report", false);
    let dir = TempDir::new("close-fds");
    let log = dir.join("log");
    let c = check(
        &["--log-file", log.to_str().unwrap()],
        bugs(),
        &["close-fds"],
    );
    c.expect(ERROR_EXIT, 1)
        .stderr_has("incomplete report", false);
    let pid = c.reports[0]["pid"].as_u64().unwrap();
    let text = std::fs::read_to_string(format!("{}.{pid}", log.display())).unwrap();
    assert!(text.contains("ERROR: memkit check: double-free"), "{text}");
    assert!(
        text.contains("SUMMARY: memkit check: 1 report(s)"),
        "{text}"
    );
}

/// A program linked with `-static-libstdc++` has libstdc++'s `operator new`
/// in its executable, bound there: the preload cannot interpose it, the
/// blocks are malloc's, and new/delete mismatches go unseen (x10 in the
/// sweep: `new int[16]` then `delete`, reported by ASan and Valgrind, not
/// by memkit). The first report that shows it says so, once; a program
/// on the shared libstdc++ gets no such note.
#[test]
fn static_libstdcxx_is_noted() {
    if !require("static_libstdcxx_is_noted", &["g++"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_cxx(
            "check/check_bugs_cxx.cc",
            d,
            "check_bugs_cxx_static",
            &["-O0", "-static-libstdc++"],
        )
    });
    let note = "is the program's own (libstdc++ linked statically?)";
    let c = check(&[], prog, &["leak-new"]);
    c.expect(ERROR_EXIT, 2).stderr_has(note, true);
    assert_eq!(c.out.stderr.matches(note).count(), 1, "{}", c.describe());
    assert_eq!(c.reports[0]["alloc_stack"][0]["function"], "malloc");
    check(&[], bugs_cxx(), &["leak-new"])
        .expect(ERROR_EXIT, 2)
        .stderr_has(note, false);
}

/// A program killed by a signal: `memkit check` passes 128 + N on (so the
/// shell says nothing) and says it on stderr, as `memkit run` does. It
/// said nothing: a crash on a pointer read from a freed block looked like
/// a silent exit 139.
#[test]
fn check_says_the_program_was_killed() {
    if !require("check_says_the_program_was_killed", &["sh"]) {
        return;
    }
    let o = run(
        Command::new(MEMKIT)
            .env("MEMKIT_CHECK_LIB", check_lib_path())
            .args(["check", "--", "sh", "-c", "kill -SEGV $$"]),
        T,
    );
    assert_eq!(o.status.code(), Some(128 + 11), "{}", o.describe());
    assert!(
        o.stderr
            .contains("memkit check: sh killed by signal 11 (SIGSEGV)"),
        "{}",
        o.describe()
    );
    let o = run(
        Command::new(MEMKIT)
            .env("MEMKIT_CHECK_LIB", check_lib_path())
            .args(["check", "--", "sh", "-c", "exit 3"]),
        T,
    );
    assert_eq!(o.status.code(), Some(3), "{}", o.describe());
    assert!(!o.stderr.contains("killed"), "{}", o.describe());
}

/// Stacks record their module at capture: a leak allocated inside a
/// library that was dlclosed before exit still names the library's
/// function, file and object.
#[test]
fn stacks_survive_dlclose() {
    if !require("stacks_survive_dlclose", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("dlclose");
    let lib = compile_c(
        "check/dlclose_leak.c",
        dir.path(),
        "libdlleak.so",
        &["-g", "-O1", "-DLIB", "-shared", "-fPIC"],
    );
    let prog = compile_c(
        "check/dlclose_leak.c",
        dir.path(),
        "dlclose_leak",
        &["-g", "-O1", "-ldl"],
    );
    let c = check(&[], &prog, &[lib.to_str().unwrap()]);
    c.expect(ERROR_EXIT, 1).stdout_has("END dlclose", true);
    let r = &c.reports[0];
    assert_eq!(r["kind"], "leak", "{}", c.describe());
    assert_eq!(r["size"], 72, "{}", c.describe());
    let frame = &r["alloc_stack"][1];
    assert_eq!(frame["function"], "lib_alloc_site", "{}", c.describe());
    assert!(
        frame["object"]
            .as_str()
            .unwrap_or("")
            .ends_with("libdlleak.so"),
        "{}",
        c.describe()
    );
    assert!(
        frame["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("dlclose_leak.c"),
        "{}",
        c.describe()
    );
    assert_eq!(r["alloc_stack"][2]["function"], "main", "{}", c.describe());
}

/// fork while three threads allocate and free (small and big blocks): no
/// child may hang on a lock of the checker (each has a 5 s alarm; every
/// lock is taken around fork). The window is small, so this can pass by
/// luck; it fails when a lock is left out of the fork handlers often
/// enough to be seen.
/// A fork child's leak check, the parent running another thread: the
/// blocks that thread holds (on its stack, in a thread-local) are not the
/// child's leaks (they were: its stack is no live thread's in the child);
/// the block the child drops is, reported with the child's own pid and
/// thread id (the thread id was the parent's).
#[test]
fn fork_child_leaks_are_its_own() {
    if !require("fork_child_leaks_are_its_own", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/fork_child_leaks.c",
            d,
            "fork_child_leaks",
            &["-O0", "-pthread"],
        )
    });
    let c = check(&[], prog, &["ok"]);
    c.expect(0, 0).stdout_has("STATUS 0", true);
    let c = check(&[], prog, &["leak"]);
    // The child keeps its status; memkit check's own says it leaked.
    c.expect(ERROR_EXIT, 1).stdout_has("STATUS 0", true);
    let child: u64 = c
        .out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("CHILD ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no CHILD line\n{}", c.describe()));
    let r = &c.reports[0];
    assert!(
        cases::matches(
            r,
            &cases::leak("direct", 77, 1, &["malloc", "alloc_site_child", "main"])
        )
        .is_ok(),
        "{}",
        c.describe()
    );
    assert_eq!(r["pid"].as_u64(), Some(child), "{}", c.describe());
    assert_eq!(r["thread"].as_u64(), Some(child), "{}", c.describe());
}

#[test]
fn fork_while_threads_allocate() {
    if !require("fork_while_threads_allocate", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/fork_threads.c",
            d,
            "fork_threads",
            &["-O1", "-pthread"],
        )
    });
    check(&["--leaks", "no"], prog, &["300"])
        .expect(0, 0)
        .stdout_has("children 300 hung 0", true);
}

/// The leak check runs at exit while three threads still allocate and
/// free: it stops them, reports the one leak, and the process ends (five
/// runs; a hang ends in the program's alarm). Taking the side table before
/// the threads were stopped hung every run while listing the threads
/// allocated through libc's `opendir` (a shard was asked for again).
#[test]
fn leak_check_at_exit_while_threads_allocate() {
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/exit_threads.c",
            d,
            "exit_threads",
            &["-O1", "-pthread"],
        )
    });
    for _ in 0..5 {
        let c = check(&[], prog, &[]);
        c.expect(ERROR_EXIT, 1).stdout_has("started", true);
        assert_eq!(c.reports[0]["kind"], "leak", "{}", c.describe());
        assert_eq!(c.reports[0]["size"], 4242, "{}", c.describe());
    }
}

/// Four threads report while the main thread forks ten children that
/// report too (check/fork_while_reporting.c): every report arrives and
/// nothing hangs (three runs; a hang ends in the program's alarm). Since
/// the checker's own allocations stopped coming from the core, the core
/// registered its fork handlers after the checker's, `fork` took the
/// core's locks first and deadlocked with a reporting thread every run.
#[test]
fn fork_while_threads_report() {
    if !require("fork_while_threads_report", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/fork_while_reporting.c",
            d,
            "fork_while_reporting",
            &["-O1", "-pthread"],
        )
    });
    for _ in 0..3 {
        let c = check(&["--leaks", "no"], prog, &[]);
        c.expect(ERROR_EXIT, 4 * 60 + 10)
            .stdout_has("END bad=0", true);
        let kinds = |k: &str| c.reports.iter().filter(|r| r["kind"] == k).count();
        assert_eq!(kinds("invalid-free"), 240, "{}", c.describe());
        assert_eq!(kinds("double-free"), 10, "{}", c.describe());
    }
}

/// The main thread leaves first (pthread_exit), the last thread's exit runs
/// the check: that thread's stack and thread-locals are roots (they were
/// not: /proc/self/maps is empty then, and the check waited 2 s for the
/// exited main thread to stop), and a block it drops is still a leak.
#[test]
fn leak_check_after_the_main_thread_left() {
    if !require("leak_check_after_the_main_thread_left", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| {
        compile_c(
            "check/main_exits_first.c",
            d,
            "main_exits_first",
            &["-O1", "-pthread"],
        )
    });
    check(&[], prog, &["ok"])
        .expect(0, 0)
        .stdout_has("worker", true);
    let c = check(&[], prog, &["leak"]);
    c.expect(ERROR_EXIT, 1).stdout_has("worker", true);
    assert!(
        cases::matches(
            &c.reports[0],
            &cases::leak("direct", 99, 1, &["malloc", "alloc_site_lost", "drop"])
        )
        .is_ok(),
        "{}",
        c.describe()
    );
}

/// A Rust program (std's runtime start and each spawned thread call
/// pthread_getattr_np, which allocates while holding the thread's lock:
/// the checker asked it again from that allocation and hung): it runs, its
/// one leak is the only report, and its stack names the Rust function,
/// demangled.
#[test]
fn rust_program_runs_and_its_leak_is_named() {
    if !require("rust_program_runs_and_its_leak_is_named", &["rustc"]) {
        return;
    }
    let dir = TempDir::new("check-rust");
    let prog = memkit_tests::compile_rust("rsites.rs", dir.path(), "rsites");
    let c = check(&[], &prog, &[]);
    c.expect(ERROR_EXIT, 1).stdout_has("done", true);
    let r = &c.reports[0];
    assert_eq!(r["kind"], "leak", "{}", c.describe());
    assert_eq!(r["size"], 4242, "{}", c.describe());
    let named = r["alloc_stack"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["function"] == "rsites::shapes::keep_bytes");
    assert!(named, "{}", c.describe());
}

//! `memkit profile` around a stand-in runtime
//! (crates/memkit-tests/c/profile_stand_in.c: each process that exits
//! writes a raw profile with fixed figures, and the options it got): the
//! output directory and its rules, one profile per process, the exit
//! status, `report` and `diff`, and clear errors (missing library, bad
//! `-o`, unreadable records), never a panic.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use memkit_tests::TempDir;

use super::summary;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn stand_in() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join(format!("libprofile_stand_in.{}.so", std::process::id()));
        let define = format!("-DSTAND_IN_VERSION=\"{VERSION}\"");
        let stand_in = memkit_tests::c_source("stand_in.c");
        let flags = ["-shared", "-fPIC", &define, stand_in.to_str().unwrap()];
        memkit_tests::compile_with(
            "gcc",
            &memkit_tests::c_source("profile_stand_in.c"),
            &out,
            &flags,
        )
    })
}

/// A program that exits (through its exit handlers) with status argv[1].
fn exit_with() -> &'static Path {
    static PROG: OnceLock<PathBuf> = OnceLock::new();
    PROG.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let src = dir.join(format!("exit_with.{}.c", std::process::id()));
        fs::write(
            &src,
            "#include <stdlib.h>\nint main(int c, char **v) { return c > 1 ? atoi(v[1]) : 0; }\n",
        )
        .unwrap();
        memkit_tests::compile_with("gcc", &src, &src.with_extension(""), &[])
    })
}

/// memkit with the stand-in runtime.
fn memkit(cwd: &Path) -> Command {
    super::memkit(cwd, stand_in())
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Ran {
    let o = memkit_tests::run(cmd, Duration::from_secs(120));
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    Ran {
        code: o.status.code(),
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

const FILES: [&str; 4] = ["profile.pb.gz", "peak.pb.gz", "summary.json", "report.html"];

#[test]
fn every_process_gets_its_files_and_the_status_is_the_programs() {
    if !memkit_tests::require("profile processes", &["gcc", "sh"]) {
        return;
    }
    let t = TempDir::new("profile-cli-procs");
    let out = t.join("out");
    let r = run(memkit(t.path())
        .args(["profile", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c"])
        .arg(format!("/bin/true; exec {} 3", exit_with().display())));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    for f in FILES {
        assert!(out.join(f).is_file(), "{f}: {}", r.stderr);
    }
    // The main process (sh, then exit_with in its place: dash ends
    // through _exit, which runs no exit handler, so only exit_with left a
    // record) at the top, `true` in its own directory.
    let main = summary(&out);
    assert_eq!(main["peak_bytes"], 200);
    assert_eq!(main["leaked_bytes"], 100);
    assert!(
        main["exe"].as_str().unwrap().contains("exit_with"),
        "{main}"
    );
    let sh_pid = main["pid"].as_u64().unwrap();
    let others: Vec<PathBuf> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "raw")
        .collect();
    assert_eq!(others.len(), 1, "{others:?}");
    let child = summary(&others[0]);
    assert!(child["exe"].as_str().unwrap().ends_with("/true"), "{child}");
    assert_eq!(child["ppid"].as_u64().unwrap(), sh_pid);
    for f in FILES {
        assert!(others[0].join(f).is_file());
    }
    // Raw records stay in raw/, with the options memkit passed.
    let options = fs::read_to_string(out.join(format!("raw/{sh_pid}.options"))).unwrap();
    assert_eq!(options, "sample=0:stack_depth=64:interval_ms=10");
    // The terminal summary.
    assert!(
        r.stderr.contains(&format!("(pid {sh_pid}), exit status 3")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("peak      200 B in use"), "{}", r.stderr);
    assert!(
        r.stderr.contains("other processes profiled:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&others[0].display().to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn options_reach_the_runtime() {
    if !memkit_tests::require("profile options", &["gcc"]) {
        return;
    }
    let t = TempDir::new("profile-cli-options");
    let out = t.join("out");
    let r = run(memkit(t.path())
        .args([
            "profile",
            "--sample",
            "4096",
            "--stack-depth",
            "8",
            "--interval-ms",
            "5",
            "-o",
        ])
        .arg(&out)
        .args(["--", "true"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let raw: Vec<PathBuf> = fs::read_dir(out.join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "options"))
        .collect();
    assert_eq!(raw.len(), 1);
    assert_eq!(
        fs::read_to_string(&raw[0]).unwrap(),
        "sample=4096:stack_depth=8:interval_ms=5"
    );
    let r = run(memkit(t.path()).args(["profile", "--stack-depth", "65", "--", "true"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

#[test]
fn the_default_directory_is_named_by_the_programs_pid() {
    if !memkit_tests::require("profile default dir", &["gcc"]) {
        return;
    }
    let t = TempDir::new("profile-cli-default");
    let r = run(memkit(t.path()).args(["profile", "--", "true"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let names: Vec<String> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "nothing else is left behind: {names:?}");
    let pid = summary(&t.join(&names[0]))["pid"].as_u64().unwrap();
    assert_eq!(names[0], format!("memkit-profile.{pid}"));
    assert!(
        r.stderr.contains(&format!("memkit-profile.{pid}/")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_killed_program_gives_the_shells_status() {
    if !memkit_tests::require("profile signal", &["gcc", "sh"]) {
        return;
    }
    let t = TempDir::new("profile-cli-signal");
    let out = t.join("out");
    let r = run(memkit(t.path()).args(["profile", "-o"]).arg(&out).args([
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]));
    assert_eq!(r.code, Some(128 + 15), "{}", r.stderr);
    assert!(
        r.stderr.contains("killed by signal 15 (SIGTERM)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("left no profile"), "{}", r.stderr);
    // A missing program: the shell's 127, and nothing left behind.
    let r = run(memkit(t.path()).args(["profile", "--", "/nonexistent/prog"]));
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    assert_eq!(
        fs::read_dir(t.path()).unwrap().count(),
        1,
        "only out/ remains"
    );
}

#[test]
fn errors_are_messages() {
    let t = TempDir::new("profile-cli-errors");
    // No library.
    let r = run(memkit(t.path())
        .env("MEMKIT_PROFILE_LIB", "/nonexistent/libmemkit_profile.so")
        .args(["profile", "--", "true"]));
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr.starts_with(
            "memkit: MEMKIT_PROFILE_LIB=/nonexistent/libmemkit_profile.so does not exist"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    if !memkit_tests::require("profile errors", &["gcc"]) {
        return;
    }
    // -o: a file, a directory with something in it.
    fs::write(t.join("file"), "x").unwrap();
    let r = run(memkit(t.path()).args(["profile", "-o", "file", "--", "true"]));
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr.contains("exists and is not a directory"),
        "{}",
        r.stderr
    );
    let r = run(memkit(t.path()).args(["profile", "-o", ".", "--", "true"]));
    assert_eq!(r.code, Some(125));
    assert!(r.stderr.contains("exists and is not empty"), "{}", r.stderr);
    // Unreadable records.
    let raw = t.join("raw");
    fs::create_dir(&raw).unwrap();
    fs::write(raw.join("12.json"), "{\"format\": 3}").unwrap();
    let r = run(memkit(t.path()).args(["profile", "report", "raw"]));
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr
            .contains("no raw profile in raw: raw/12.json: not a memkit raw profile"),
        "{}",
        r.stderr
    );
    let r = run(memkit(t.path()).args(["profile", "report", "nonexistent"]));
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr
            .contains("nonexistent is not a directory of raw profiles"),
        "{}",
        r.stderr
    );
    let r = run(memkit(t.path()).args(["profile", "diff", "file", "raw"]));
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr.contains("file: not a pprof profile"),
        "{}",
        r.stderr
    );
}

#[test]
fn report_and_diff_from_a_run() {
    if !memkit_tests::require("profile report", &["gcc", "sh"]) {
        return;
    }
    let t = TempDir::new("profile-cli-report");
    let r = run(memkit(t.path())
        .args(["profile", "-o", "a", "--", "sh", "-c"])
        .arg(format!("/bin/true; exec {}", exit_with().display())));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The records again, as if preloaded by hand.
    let r = run(memkit(t.path()).args(["profile", "report", "a/raw", "-o", "b"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for f in FILES {
        assert!(t.join("b").join(f).is_file(), "{f}");
    }
    assert_eq!(summary(&t.join("a"))["pid"], summary(&t.join("b"))["pid"]);
    let r = run(memkit(t.path()).args(["profile", "diff", "a", "b"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with("memkit profile diff: a -> b\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("in use at the peak: 200 B -> 200 B (0 B)"),
        "{}",
        r.stdout
    );
    let r = run(memkit(t.path()).args(["profile", "diff", "a/profile.pb.gz", "b/peak.pb.gz"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("in use: 100 B -> 200 B (+100 B)"),
        "{}",
        r.stdout
    );
}

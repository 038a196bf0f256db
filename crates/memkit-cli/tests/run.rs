//! End-to-end tests of `memkit run`, driving the real binary.
//!
//! Tests of memkit's own behaviour (exit statuses, signals, errors, the
//! environment) preload a stand-in for libmemkit.so: a shared object with
//! memkit's version note and nothing else (`crates/memkit-tests/c/stand_in.c`),
//! so preloading it is a silent no-op, and no process leaves a record. The tests of the reports run C programs
//! (`crates/memkit-tests/c/report_end.c`) and the shell on the real
//! libmemkit.so, built when missing.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const MEMKIT: &str = env!("CARGO_BIN_EXE_memkit");

/// The stand-in for libmemkit.so, of this memkit's version.
fn stand_in_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        memkit_tests::stand_in_lib(dir, Some(env!("CARGO_PKG_VERSION")))
    })
    .clone()
}

/// The real library (memkit-tests finds or builds it).
fn real_lib() -> &'static Path {
    memkit_tests::lib_path()
}

/// `report_end` compiled once for all tests (see its source for the modes),
/// into cargo's scratch directory for integration tests.
fn report_end() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        memkit_tests::compile_c("report_end.c", dir, "report_end", &[])
    })
}

/// memkit run on the real library, `--json`: its exit code, the report
/// and the whole stderr.
fn run_real_json(args: &[&str]) -> (Option<i32>, Value, String) {
    let (code, _, stderr) = run(memkit()
        .env("MEMKIT_LIB", real_lib())
        .args(["run", "--json", "--"])
        .args(args));
    let v = last_json_line(&stderr);
    (code, v, stderr)
}

/// The processes of a JSON report, each checked to be well formed.
fn processes(v: &Value) -> Vec<Value> {
    let list = v["processes"].as_array().expect("processes").clone();
    for p in &list {
        for key in [
            "pid",
            "ppid",
            "allocs",
            "exe",
            "exit_handlers",
            "ended",
            "ending",
        ] {
            assert!(!p[key].is_null(), "{key} missing in {p}");
        }
    }
    list
}

/// The process of the JSON report with this pid.
fn process(v: &Value, pid: &Value) -> Value {
    processes(v)
        .into_iter()
        .find(|p| &p["pid"] == pid)
        .unwrap_or_else(|| panic!("no process {pid} in {v}"))
}

/// `program` with a clean environment as far as memkit is concerned and
/// the stand-in library selected.
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("MEMKIT_LIB", stand_in_lib())
        .env_remove("LD_PRELOAD")
        .env_remove("MEMKIT_REPORT_DIR")
        .env_remove("MEMKIT_SHOW_STATS");
    cmd
}

fn memkit() -> Command {
    command(MEMKIT)
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("spawn memkit");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn last_json_line(stderr: &str) -> Value {
    let line = stderr.lines().last().expect("some stderr");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

#[test]
fn exit_status_passes_through() {
    let (code, _, stderr) = run(memkit().args(["run", "--", "sh", "-c", "exit 3"]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "memkit: no report from sh: no process ran on libmemkit.so (statically linked, \
             or LD_PRELOAD removed from its environment?)"
        ),
        "{stderr}"
    );
}

#[test]
fn signal_passes_through_as_128_plus_signal() {
    let (code, _, stderr) =
        run(memkit().args(["run", "--", "sh", "-c", "ulimit -c 0; kill -SEGV $$"]));
    assert_eq!(code, Some(139), "{stderr}");
    assert!(
        stderr.contains("memkit: sh killed by signal 11 (SIGSEGV)"),
        "{stderr}"
    );
}

#[test]
fn missing_program_exits_127() {
    let (code, _, stderr) = run(memkit().args(["run", "--", "memkit-no-such-program", "x"]));
    assert_eq!(code, Some(127));
    assert_eq!(
        stderr,
        "memkit: cannot run memkit-no-such-program: No such file or directory\n"
    );
}

#[test]
fn unexecutable_program_exits_126() {
    let (code, _, stderr) = run(memkit().args(["run", "--", "/"]));
    assert_eq!(code, Some(126));
    assert_eq!(stderr, "memkit: cannot run /: Permission denied\n");
}

#[test]
fn memkit_lib_pointing_nowhere_is_a_clear_error() {
    let (code, _, stderr) = run(memkit()
        .env("MEMKIT_LIB", "/nonexistent/libmemkit.so")
        .args(["run", "--", "true"]));
    assert_eq!(code, Some(125));
    assert_eq!(
        stderr,
        "memkit: MEMKIT_LIB=/nonexistent/libmemkit.so does not exist; \
         point it at a built libmemkit.so or unset it\n"
    );
}

#[test]
fn missing_library_says_how_to_fix_it() {
    for lib in [
        Path::new(MEMKIT).with_file_name("libmemkit.so"),
        PathBuf::from("/usr/lib/x86_64-linux-gnu/libmemkit.so.0"),
        PathBuf::from("/usr/lib/x86_64-linux-gnu/libmemkit.so"),
    ] {
        if lib.exists() {
            eprintln!("skipping: {} exists", lib.display());
            return;
        }
    }
    let (code, _, stderr) = run(memkit()
        .env_remove("MEMKIT_LIB")
        .args(["run", "--", "true"]));
    assert_eq!(code, Some(125));
    assert!(
        stderr.starts_with("memkit: cannot find libmemkit.so"),
        "{stderr}"
    );
    assert!(stderr.contains("cargo build --release"), "{stderr}");
    assert!(stderr.contains("MEMKIT_LIB="), "{stderr}");
}

#[test]
fn usage_errors() {
    // Without `--` the program would be ambiguous with memkit's own flags.
    let (code, _, stderr) = run(memkit().args(["run", "true"]));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("Usage: memkit run"), "{stderr}");
    let (code, _, stderr) = run(memkit().args(["run", "--"]));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("<PROG>"), "{stderr}");
    let (code, _, _) = run(memkit().args(["run"]));
    assert_eq!(code, Some(2));
}

#[test]
fn help_documents_the_json_schema() {
    let (code, stdout, _) = run(memkit().args(["run", "--help"]));
    assert_eq!(code, Some(0));
    for key in ["peak_rss_bytes", "main_reported", "totals", "processes"] {
        assert!(stdout.contains(key), "{key} missing from --help");
    }
}

#[test]
fn stdout_is_untouched() {
    let (code, stdout, _) = run(memkit().args(["run", "--", "echo", "hello"]));
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "hello\n");
}

#[test]
fn environment_for_the_child() {
    let script = "echo \"$LD_PRELOAD\"; echo \"$MEMKIT_SHOW_STATS\"; \
                  test -d \"$MEMKIT_REPORT_DIR\" && stat -c %a \"$MEMKIT_REPORT_DIR\" && \
                  echo \"$MEMKIT_REPORT_DIR\"";
    let (code, stdout, stderr) = run(memkit()
        .env("LD_PRELOAD", "/user/one.so /user/two.so")
        .args(["run", "--stats", "--", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let lib = std::fs::canonicalize(stand_in_lib()).unwrap();
    assert_eq!(
        lines[0],
        format!("{}:/user/one.so /user/two.so", lib.display())
    );
    assert_eq!(lines[1], "1");
    // A fresh private directory existed for the child and is removed
    // afterwards.
    assert_eq!(lines[2], "700");
    let report_dir = Path::new(lines[3]);
    assert!(report_dir.is_absolute());
    assert!(!report_dir.exists());
}

#[test]
fn stats_flag_is_off_by_default() {
    let (_, stdout, _) =
        run(memkit().args(["run", "--", "sh", "-c", "echo \"[$MEMKIT_SHOW_STATS]\""]));
    assert_eq!(stdout, "[]\n");
}

#[test]
fn reports_are_summed_into_a_table() {
    let prog = report_end().display().to_string();
    let script = format!(
        "'{prog}' 1000 exit 0; '{prog}' 2000 exit 0; \
         echo 'not a report' > \"$MEMKIT_REPORT_DIR/junk\"; exit 5"
    );
    let (code, _, stderr) = run(memkit()
        .env("MEMKIT_LIB", real_lib())
        .args(["run", "--", "sh", "-c", &script]));
    assert_eq!(code, Some(5), "{stderr}");
    let expect = [
        "memkit: warning: ignoring report file junk: incomplete (not a report file, \
         or its process was stopped while creating it)\n",
        "memkit report: sh (pid ",
        "), exit status 5, ",
        "\n  allocations ",
        "  bytes allocated ",
        " still allocated in all processes)\n",
        "  peak RSS ",
        "  mapped from OS ",
        "  threads                     3\n",
        "  child processes             2   (totals above include them; \
         peaks are of the main process)\n",
        "  processes (pid, program, allocations, how it ended):\n",
        "  dash ",
        "  exit status 5 without running exit handlers (_exit); \
         counters as of its last refresh\n",
        "  report_end ",
        "  exit status 0\n",
        "  report_end ",
        "  exit status 0\n",
    ];
    let mut rest = stderr.as_str();
    for piece in expect {
        let at = rest
            .find(piece)
            .unwrap_or_else(|| panic!("{piece:?} not found in order in:\n{stderr}"));
        rest = &rest[at + piece.len()..];
    }
}

#[test]
fn report_as_json() {
    let prog = report_end().display().to_string();
    let script = format!("'{prog}' 100 exit 7; kill -USR1 $$");
    let (code, _, stderr) = run(memkit()
        .env("MEMKIT_LIB", real_lib())
        .args(["run", "--json", "--", "sh", "-c", &script]));
    assert_eq!(code, Some(138), "{stderr}");
    // In JSON mode memkit prints nothing but the object.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let v = last_json_line(&stderr);
    assert_eq!(v["program"], "sh");
    assert_eq!(v["exit_code"], Value::Null);
    assert_eq!(v["signal"], 10);
    assert_eq!(v["signal_name"], "SIGUSR1");
    assert_eq!(v["status"], 138);
    assert_eq!(v["reported"], true);
    assert_eq!(v["main_reported"], true);
    assert_eq!(v["child_processes"], 1);
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{stderr}");
    let list = processes(&v);
    assert_eq!(list.len(), 2, "{stderr}");
    // In the order they started: the shell, then its child.
    let (sh, child) = (&list[0], &list[1]);
    assert_eq!(sh["pid"], v["pid"]);
    assert!(sh["exe"].as_str().unwrap().ends_with("sh"), "{sh}");
    assert_eq!(sh["ended"], "killed");
    assert_eq!(sh["signal_name"], "SIGUSR1");
    assert_eq!(sh["exit_handlers"], false);
    assert_eq!(child["ppid"], v["pid"]);
    assert_eq!(child["ended"], "exited");
    assert_eq!(child["exit_code"], 7);
    assert_eq!(child["exit_handlers"], true);
    assert_eq!(child["ending"], "exit status 7");
    assert!(child["allocs"].as_u64().unwrap() >= 1100, "{child}");
    assert!(v["totals"]["allocs"].as_u64().unwrap() >= 1100);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(v["elapsed_seconds"].as_f64().unwrap() >= 0.0);
}

/// Spawns memkit running a shell that traps `signal`, and waits until the
/// trap is installed. The shell gives up after ~10 s so a broken test
/// cannot hang.
fn spawn_trapping(signal: &str, action: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let script = format!(
        "trap '{action}' {signal}; echo ready; i=0; \
         while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 99"
    );
    let mut cmd = memkit();
    cmd.args(["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a group-wide signal cannot hit the harness.
        .process_group(0);
    // The harness may itself run with SIGINT or SIGQUIT ignored (started in
    // the background by a non-interactive shell); memkit then rightly keeps
    // them ignored for the program, which could not trap them. These tests
    // are about signals that do arrive.
    // SAFETY: signal() is async-signal-safe; the closure only calls it.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn memkit");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

fn wait_with_timeout(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "memkit did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(pid: i32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[test]
fn sigterm_to_memkit_is_forwarded_to_the_program() {
    let mut child = spawn_trapping("TERM", "exit 7");
    send(child.id() as i32, libc::SIGTERM);
    assert_eq!(wait_with_timeout(&mut child), Some(7));
}

#[test]
fn memkit_outlives_a_ctrl_c_to_the_whole_group() {
    // Like Ctrl-C: the whole process group gets SIGINT. memkit must stay
    // until the program has finished its cleanup, then pass on its status.
    let mut child = spawn_trapping("INT", "sleep 0.3; exit 9");
    send(-(child.id() as i32), libc::SIGINT);
    assert_eq!(wait_with_timeout(&mut child), Some(9));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("no report from sh"), "{stderr}");
}

#[test]
fn real_library_reports_allocations() {
    let mut cases = vec![vec!["/bin/true"]];
    if Command::new("python3")
        .arg("-c")
        .arg("")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        cases.push(vec!["python3", "-c", "x=[str(i) for i in range(100000)]"]);
    } else {
        eprintln!("python3 not available; only checking /bin/true");
    }
    for case in cases {
        let (code, v, stderr) = run_real_json(&case);
        assert_eq!(code, Some(0), "{case:?}: {stderr}");
        assert_eq!(v["reported"], true, "{case:?}: {stderr}");
        assert_eq!(v["main_reported"], true, "{case:?}: {stderr}");
        assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{stderr}");
        let main = process(&v, &v["pid"]);
        assert_eq!(main["ended"], "exited", "{stderr}");
        assert_eq!(main["exit_handlers"], true, "{stderr}");
        if case[0] == "python3" {
            assert!(v["totals"]["allocs"].as_u64().unwrap() > 0, "{stderr}");
            assert!(
                v["totals"]["bytes_allocated"].as_u64().unwrap() > 0,
                "{stderr}"
            );
            assert!(v["peak_in_use"].as_u64().unwrap() > 0, "{stderr}");
        }
    }
}

#[test]
fn real_library_table() {
    let (code, _, stderr) = run(memkit().env("MEMKIT_LIB", real_lib()).args([
        "run",
        "--",
        "sh",
        "-c",
        "ls / >/dev/null; exit 4",
    ]));
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("memkit report: sh (pid "), "{stderr}");
    assert!(stderr.contains("exit status 4"), "{stderr}");
    assert!(stderr.contains("  allocations "), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(!stderr.contains("no report"), "{stderr}");
}

/// `sh -c 'prog; prog'`: the shell ends with `_exit` (dash does), yet it
/// is reported, beside both children, each marked.
#[test]
fn a_shell_and_both_its_children() {
    let prog = report_end().display().to_string();
    let script = format!("'{prog}' 1000 exit 0; '{prog}' 2000 exit 0");
    let (code, v, stderr) = run_real_json(&["sh", "-c", &script]);
    assert_eq!(code, Some(0), "{stderr}");
    let list = processes(&v);
    assert_eq!(list.len(), 3, "{stderr}");
    let sh = &list[0];
    assert_eq!(sh["pid"], v["pid"]);
    assert_eq!(sh["ended"], "exited");
    assert_eq!(sh["exit_code"], 0);
    assert_eq!(sh["exit_handlers"], false, "dash ends with _exit: {sh}");
    assert!(sh["allocs"].as_u64().unwrap() > 0, "{sh}");
    for (child, n) in list[1..].iter().zip([1000, 2000]) {
        assert_eq!(child["ppid"], v["pid"]);
        assert!(child["exe"].as_str().unwrap().ends_with("/report_end"));
        assert_eq!(child["ending"], "exit status 0");
        assert!(child["allocs"].as_u64().unwrap() >= n + 1024, "{child}");
        assert!(child["bytes_allocated"].as_u64().unwrap() >= 64 * n);
    }
    assert!(!stderr.contains("statically linked"), "{stderr}");
}

#[test]
fn underscore_exit_is_reported_with_counters_and_status() {
    let prog = report_end().to_str().unwrap();
    let (code, v, stderr) = run_real_json(&[prog, "5000", "_exit", "3"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(v["main_reported"], true, "{stderr}");
    let p = process(&v, &v["pid"]);
    assert_eq!(p["ended"], "exited");
    assert_eq!(p["exit_code"], 3);
    assert_eq!(p["exit_handlers"], false);
    assert_eq!(
        p["ending"],
        "exit status 3 without running exit handlers (_exit); counters as of its last refresh"
    );
    // From the refresh after its settling: every block of the first phase.
    assert!(p["allocs"].as_u64().unwrap() >= 5000, "{p}");
    assert!(p["peak_in_use"].as_u64().unwrap() >= 5000 * 64, "{p}");
}

#[test]
fn sigkill_is_reported_with_the_last_refresh() {
    let prog = report_end().to_str().unwrap();
    let (code, v, stderr) = run_real_json(&[prog, "5000", "kill"]);
    assert_eq!(code, Some(137), "{stderr}");
    let p = process(&v, &v["pid"]);
    assert_eq!(p["ended"], "killed");
    assert_eq!(p["signal"], 9);
    assert_eq!(p["signal_name"], "SIGKILL");
    assert_eq!(p["exit_handlers"], false);
    assert!(p["allocs"].as_u64().unwrap() >= 5000, "{p}");
    assert!(p["in_use"].as_u64().unwrap() >= 5000 * 64, "{p}");
    // The table says so too, and nothing blames static linking.
    let (code, _, stderr) = run(memkit()
        .env("MEMKIT_LIB", real_lib())
        .args(["run", "--", prog, "5000", "kill"]));
    assert_eq!(code, Some(137), "{stderr}");
    assert!(
        stderr.contains("  killed by signal 9 (SIGKILL); counters as of its last refresh\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("no report"), "{stderr}");
}

#[test]
fn a_forked_child_gets_its_own_record() {
    let prog = report_end().to_str().unwrap();
    let (code, v, stderr) = run_real_json(&[prog, "3000", "fork"]);
    assert_eq!(code, Some(0), "{stderr}");
    let list = processes(&v);
    assert_eq!(list.len(), 2, "{stderr}");
    let (parent, child) = (&list[0], &list[1]);
    assert_eq!(parent["pid"], v["pid"]);
    assert_ne!(child["pid"], v["pid"]);
    assert_eq!(child["ppid"], v["pid"]);
    assert_eq!(child["exe"], parent["exe"]);
    for p in [parent, child] {
        assert_eq!(p["ending"], "exit status 0", "{p}");
    }
    // The child's counters go on from the parent's at fork, as its memory
    // does.
    let child_allocs = child["allocs"].as_u64().unwrap();
    assert!(child_allocs >= 2 * 3000 + 2 * 1024, "{child}");
    assert!(
        parent["allocs"].as_u64().unwrap() < child_allocs,
        "{stderr}"
    );
}

/// A grandchild killed while its parent (the shell) collects its status:
/// memkit cannot know how it ended, and says what it knows.
#[test]
fn a_grandchild_ended_without_exit_handlers() {
    let prog = report_end().display().to_string();
    let script = format!("'{prog}' 100 kill; true");
    let (code, v, stderr) = run_real_json(&["sh", "-c", &script]);
    assert_eq!(code, Some(0), "{stderr}");
    let list = processes(&v);
    assert_eq!(list.len(), 2, "{stderr}");
    let p = &list[1];
    assert_eq!(p["ended"], "unknown");
    assert_eq!(
        p["ending"],
        "ended without running exit handlers (_exit, exec failure, or a signal); \
         counters as of its last refresh"
    );
    assert!(p["allocs"].as_u64().unwrap() >= 100, "{p}");
}

/// An orphan is reaped by memkit (its subreaper): how it ended is known.
#[test]
fn an_orphan_is_reaped_by_memkit() {
    let prog = report_end().display().to_string();
    let script = format!("('{prog}' 100 kill &); sleep 1");
    let (code, v, stderr) = run_real_json(&["sh", "-c", &script]);
    assert_eq!(code, Some(0), "{stderr}");
    let orphan = processes(&v)
        .into_iter()
        .find(|p| p["exe"].as_str().unwrap().ends_with("/report_end"))
        .unwrap_or_else(|| panic!("no report_end in {stderr}"));
    assert_eq!(orphan["ended"], "killed", "{stderr}");
    assert_eq!(orphan["signal_name"], "SIGKILL");
}

#[test]
fn ignored_sigint_stays_ignored_for_the_program() {
    // Scripts start background jobs with SIGINT ignored; wrapping such a job
    // in memkit must not make the program killable by Ctrl-C again.
    let script = format!("trap '' INT; exec '{MEMKIT}' run -- sh -c 'kill -INT $$; echo survived'");
    let (code, stdout, stderr) = run(command("sh").args(["-c", &script]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "survived\n");
}

//! End-to-end tests of `memkit run`, driving the real binary.
//!
//! Most tests fake the library side of the report protocol with a shell
//! that appends a line to `$MEMKIT_REPORT_FILE`, preloading libc (already
//! loaded by everything, so preloading it again is a silent no-op). That
//! keeps them independent of the allocator's state and exercises the
//! parser end to end. The tests at the bottom use the real libmemkit.so
//! when it has been built and are skipped otherwise.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const MEMKIT: &str = env!("CARGO_BIN_EXE_memkit");

/// A report line for the process running the shell snippet, with `allocs`
/// and `threads` chosen by the caller so tests can check the sums.
fn fake_line(allocs: u64, threads: u64) -> String {
    format!(
        "echo \"memkit-report v1 pid=$$ ppid=$PPID allocs={allocs} frees=1 reallocs=2 \
         bytes_allocated=2097152 in_use=1024 peak_in_use=1048576 mapped=65536 \
         peak_mapped=4194304 unmapped=8192 purged=4096 threads={threads} \
         future_key=42 exe=/bin/sh\" >> \"$MEMKIT_REPORT_FILE\""
    )
}

/// libc.so.6 as mapped into this test process: a real shared object that is
/// always present, so the loader accepts it as a stand-in for libmemkit.so.
fn stand_in_lib() -> PathBuf {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libc.so.6"))
        .map(PathBuf::from)
        .expect("libc.so.6 in /proc/self/maps")
}

/// The real library: beside the memkit binary (the release layout), else
/// the workspace's release build.
fn real_lib() -> Option<PathBuf> {
    let beside = Path::new(MEMKIT).parent()?.join("libmemkit.so");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/libmemkit.so");
    [beside, workspace].into_iter().find(|p| p.is_file())
}

/// `program` with a clean environment as far as memkit is concerned and
/// the stand-in library selected.
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("MEMKIT_LIB", stand_in_lib())
        .env_remove("LD_PRELOAD")
        .env_remove("MEMKIT_REPORT_FILE")
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
            "memkit: no report from sh: it did not run on libmemkit.so (statically linked?) \
             or did not exit normally"
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
    if Path::new(MEMKIT).with_file_name("libmemkit.so").exists() {
        eprintln!("skipping: libmemkit.so exists next to {MEMKIT}");
        return;
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
                  test -f \"$MEMKIT_REPORT_FILE\" && echo \"$MEMKIT_REPORT_FILE\"";
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
    // A fresh file existed for the child and is cleaned up afterwards.
    let report_file = Path::new(lines[2]);
    assert!(report_file.is_absolute());
    assert!(!report_file.exists());
}

#[test]
fn stats_flag_is_off_by_default() {
    let (_, stdout, _) =
        run(memkit().args(["run", "--", "sh", "-c", "echo \"[$MEMKIT_SHOW_STATS]\""]));
    assert_eq!(stdout, "[]\n");
}

#[test]
fn fake_reports_are_summed_into_a_table() {
    let script = format!(
        "{main}; sh -c '{child}'; echo 'not a report' >> \"$MEMKIT_REPORT_FILE\"; exit 5",
        main = fake_line(1_000_000, 3),
        child = fake_line(234_567, 2).replace('\'', "'\\''"),
    );
    let (code, _, stderr) = run(memkit().args(["run", "--", "sh", "-c", &script]));
    assert_eq!(code, Some(5), "{stderr}");
    let expect = [
        "memkit: warning: ignoring malformed report line 3: does not start with \
         `memkit-report v1`: not a report\n",
        "memkit report: sh (pid ",
        "), exit status 5, ",
        "\n  allocations         1,234,567   (frees 2, reallocs 4)\n",
        "  bytes allocated       4.0 MiB\n",
        "  peak in use           1.0 MiB   (at exit: 2.0 KiB still allocated in all processes)\n",
        "  peak RSS ",
        "  mapped from OS        4.0 MiB peak, 16.0 KiB returned (munmap), 8.0 KiB purged\n",
        "  threads                     5\n",
        "  child processes             1   (totals above include them; \
         peaks are of the main process)\n",
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
fn fake_report_as_json() {
    let script = format!("{}; kill -USR1 $$", fake_line(7, 1));
    // A report written before dying still counts (e.g. a child's).
    let (code, _, stderr) = run(memkit().args(["run", "--json", "--", "sh", "-c", &script]));
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
    assert_eq!(v["child_processes"], 0);
    assert_eq!(v["totals"]["allocs"], 7);
    assert_eq!(v["peak_in_use"], 1_048_576);
    assert_eq!(v["processes"][0]["pid"], v["pid"]);
    assert_eq!(v["processes"][0]["exe"], "/bin/sh");
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
    let Some(lib) = real_lib() else {
        eprintln!("skipping: libmemkit.so is not built (cargo build --release)");
        return;
    };
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
        let (code, _, stderr) = run(memkit()
            .env("MEMKIT_LIB", &lib)
            .args(["run", "--json", "--"])
            .args(&case));
        assert_eq!(code, Some(0), "{case:?}: {stderr}");
        let v = last_json_line(&stderr);
        assert_eq!(v["reported"], true, "{case:?}: {stderr}");
        assert_eq!(v["main_reported"], true, "{case:?}: {stderr}");
        assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{stderr}");
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
    let Some(lib) = real_lib() else {
        eprintln!("skipping: libmemkit.so is not built (cargo build --release)");
        return;
    };
    let (code, _, stderr) = run(memkit().env("MEMKIT_LIB", &lib).args([
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

//! `memkit maps` end to end: output formats, options and bad input (each a
//! one-line error and a non-zero exit, never a panic).

use std::fs;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn memkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memkit"))
}

fn run(args: &[&str]) -> Output {
    memkit()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memkit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A one-line error starting with "memkit: maps: ", exit status 1.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "status {:?}, stderr {err:?}",
        o.status
    );
    assert!(err.starts_with("memkit: maps: "), "{err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err:?}");
    assert!(o.stdout.is_empty());
}

/// `sleep` that is killed and reaped on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("60").spawn().unwrap())
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&d).unwrap();
    d.join(format!("maps-{}-{name}", std::process::id()))
}

#[test]
fn table_for_self() {
    let o = run(&["maps", "self"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for heading in [
        "\ntext — ",
        "\ndata — ",
        "\nheap — ",
        "\nstack — ",
        "\ntotals\n",
        "all (smaps_rollup)",
    ] {
        assert!(out.contains(heading), "no {heading:?} in\n{out}");
    }
    assert!(out.contains("program break  start 0x"), "{out}");
    // All ten categories in the totals table, zero or not.
    for c in [
        "text",
        "data",
        "bss",
        "heap",
        "stack",
        "thread_stack",
        "anon",
        "file",
        "shm",
        "other",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} "))),
            "no totals row {c}"
        );
    }
}

#[test]
fn json_for_another_process() {
    let s = Sleeper::start();
    let o = run(&["maps", &s.pid(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(j["pid"].to_string(), s.pid());
    assert!(j["command"].as_str().unwrap().starts_with("sleep"));
    assert_eq!(j["categories"].as_object().unwrap().len(), 10);
    assert!(j["brk"]["start"].as_str().unwrap().starts_with("0x"));
    assert!(j["totals"]["rss_kib"].as_u64().unwrap() > 0);
    assert!(!j["mappings"].as_array().unwrap().is_empty());
}

#[test]
fn fast_and_sort_and_svg() {
    let s = Sleeper::start();
    let o = run(&["maps", &s.pid(), "--fast", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["fast"], true);
    assert!(j["mappings"][0]["rss_kib"].is_null());

    let o = run(&["maps", &s.pid(), "--sort", "size"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Within the text group, sizes never grow going down.
    let text = out
        .split("\ntext — ")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let sizes: Vec<f64> = text
        .lines()
        .skip(2)
        .map(|l| {
            let size = l.split_whitespace().nth(3).unwrap();
            let (n, unit) = size.split_at(size.len() - 1);
            let mult = match unit {
                "K" => 1.0,
                "M" => 1024.0,
                "G" => 1024.0 * 1024.0,
                _ => panic!("size {size}"),
            };
            n.parse::<f64>().unwrap() * mult
        })
        .collect();
    assert!(
        sizes.len() >= 2 && sizes.windows(2).all(|w| w[0] >= w[1]),
        "{sizes:?}\n{text}"
    );

    let svg = tmp("picture.svg");
    let o = run(&["maps", &s.pid(), "--svg", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let picture = fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("thread_stack"));
    let _ = fs::remove_file(svg);
}

#[test]
fn bad_arguments() {
    let o = run(&["maps", "abc"]);
    assert_clean_failure(&o, "\"abc\" is not a process id");
    let o = run(&["maps", "0"]);
    assert_clean_failure(&o, "not a process id");
    let o = run(&["maps", "-5"]);
    assert!(!o.status.success() && !stderr(&o).contains("panicked"));
    let o = run(&["maps", "self", "--watch", "0"]);
    assert_clean_failure(&o, "--watch");
    // clap's own errors (usage, exit 2) for a missing PID or a bad --sort.
    for args in [
        &["maps"][..],
        &["maps", "self", "--sort", "bogus"],
        &["maps", "self", "--nope"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// Every numeric argument is refused with its range and the value as
/// typed, never a rendering of the parsed number.
#[test]
fn numeric_arguments_state_their_range() {
    let range = "expected a number of seconds from 0.1 to 86400";
    for (value, problem) in [
        ("1e308", "is out of range"),
        ("inf", "is out of range"),
        ("-inf", "is out of range"),
        ("-1", "is out of range"),
        ("0", "is out of range"),
        ("0.01", "is out of range"),
        ("86401", "is out of range"),
        ("nan", "is not a number"),
        ("abc", "is not a number"),
        ("", "is not a number"),
    ] {
        // `--watch=` so that "-inf" is a value, not a flag.
        let o = run(&["maps", "self", &format!("--watch={value}")]);
        assert_clean_failure(&o, &format!("maps: --watch {value:?} {problem}: {range}"));
        assert!(stderr(&o).len() < 120, "{}", stderr(&o));
    }
    let o = run(&["maps", "self", &format!("--watch={}", "1".repeat(400))]);
    assert_clean_failure(&o, "is out of range");
    assert!(stderr(&o).len() < 160, "{}", stderr(&o));

    for pid in ["0", "-5", "+5", "4294967295", "2147483648", "1e3"] {
        let o = run(&["maps", pid]);
        assert_clean_failure(
            &o,
            &format!(
                "maps: {pid:?} is not a process id: expected `self` or a number from 1 to 2147483647"
            ),
        );
    }
}

#[test]
fn no_such_process() {
    let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let o = run(&["maps", &(pid_max + 1).to_string()]);
    assert_clean_failure(&o, &format!("no process with pid {}", pid_max + 1));
}

#[test]
fn zombie() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let mut state = ' ';
    for _ in 0..2000 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        state = stat.rsplit_once(") ").unwrap().1.chars().next().unwrap();
        if state == 'Z' {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(state, 'Z');
    let o = run(&["maps", &pid.to_string()]);
    assert_clean_failure(&o, "has exited");
    child.wait().unwrap();
}

fn euid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// Another user's process: run memkit as nobody (65534) against a process
/// of root's. Needs root to drop privileges.
#[test]
fn permission_denied() {
    if euid() != Some(0) {
        eprintln!("permission_denied: not root, cannot switch to uid 65534; not checked");
        return;
    }
    let s = Sleeper::start();
    let run = memkit()
        .args(["maps", &s.pid()])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output();
    let o = match run {
        Ok(o) if o.status.code() != Some(126) => o,
        // The binary is not executable by nobody (a private target dir).
        _ => {
            eprintln!("permission_denied: memkit not executable by uid 65534; not checked");
            return;
        }
    };
    assert_clean_failure(&o, &format!("permission denied (process {} ", s.pid()));
    assert!(
        stderr(&o).contains("belongs to uid 0; run as the same user or as root)"),
        "{}",
        stderr(&o)
    );
}

/// A process of nobody's, for memkit running as root to be refused.
fn nobodys_sleeper() -> Sleeper {
    Sleeper(
        Command::new("sleep")
            .arg("60")
            .uid(65534)
            .gid(65534)
            .spawn()
            .unwrap(),
    )
}

/// Root refused: the message names the kernel's reason and never suggests
/// running as root.
fn assert_refused_root(o: &Output, cause: &str) {
    assert_clean_failure(o, "permission denied (memkit runs as root ");
    let err = stderr(o);
    assert!(err.contains(cause), "{err}");
    assert!(
        !err.contains("same user") && !err.contains("as root)"),
        "{err}"
    );
}

/// Root without CAP_SYS_PTRACE (a container's default) reading another
/// user's process. Some kernels let root read smaps without the capability;
/// then there is no refusal to check.
#[test]
fn permission_denied_root_without_cap_sys_ptrace() {
    if euid() != Some(0) {
        eprintln!("permission_denied_root_without_cap_sys_ptrace: not root; not checked");
        return;
    }
    let s = nobodys_sleeper();
    let mut cmd = memkit();
    cmd.args(["maps", &s.pid(), "--fast"]).stdin(Stdio::null());
    // SAFETY: the closure only makes an async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            const CAP_SYS_PTRACE: libc::c_ulong = 19;
            // Out of the bounding set, exec does not give it back to root.
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    if o.status.success() {
        eprintln!(
            "permission_denied_root_without_cap_sys_ptrace: this kernel lets root read \
             another user's smaps without CAP_SYS_PTRACE; not checked"
        );
        return;
    }
    assert_refused_root(&o, "without CAP_SYS_PTRACE");
}

/// Root of a user namespace (a rootless container) reading a process of
/// the namespace's parent: root with CAP_SYS_PTRACE, refused all the same.
#[test]
fn permission_denied_root_in_another_user_namespace() {
    if euid() != Some(0) {
        eprintln!("permission_denied_root_in_another_user_namespace: not root; not checked");
        return;
    }
    let s = nobodys_sleeper();
    let mut cmd = memkit();
    cmd.args(["maps", &s.pid(), "--fast"]).stdin(Stdio::null());
    // SAFETY: the closure only makes async-signal-safe system calls on
    // buffers it owns.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Root inside is root (uid 0) outside: only the namespace differs.
            let fd = libc::open(c"/proc/self/uid_map".as_ptr(), libc::O_WRONLY);
            let map = b"0 0 1\n";
            let written = fd >= 0 && libc::write(fd, map.as_ptr().cast(), map.len()) == 6;
            if fd >= 0 {
                libc::close(fd);
            }
            if !written {
                return Err(std::io::Error::other("cannot write uid_map"));
            }
            Ok(())
        });
    }
    let o = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "permission_denied_root_in_another_user_namespace: no user namespace ({e}); \
                 not checked"
            );
            return;
        }
    };
    assert_refused_root(&o, "with CAP_SYS_PTRACE, yet the kernel refused");
    assert!(
        stderr(&o).contains("outside this user namespace"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn watch_ends_when_the_process_exits() {
    let mut child = Command::new("sleep").arg("1.2").spawn().unwrap();
    let o = run(&["maps", &child.id().to_string(), "--watch", "0.3", "--fast"]);
    child.wait().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.matches("\ntotals\n").count() >= 2, "{out}");
    assert!(stderr(&o).contains("has exited"), "{}", stderr(&o));
}

#[test]
fn closed_pipe_is_not_an_error() {
    // --watch keeps writing: the write after the reader has gone fails with
    // EPIPE, which must end memkit quietly.
    let mut child = memkit()
        .args(["maps", "self", "--watch", "0.1", "--fast"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(status.success(), "{status:?}: {err}");
}

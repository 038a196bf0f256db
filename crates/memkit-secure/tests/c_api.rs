//! The secure-memory C API of libmemkit.so: `tests/c/secure.c` under
//! `LD_PRELOAD`, one scenario per run. Scenarios that must crash run in
//! their own process, and the test checks the signal (SIGSEGV for guard
//! pages and access control, SIGABRT for canaries).
//!
//! libmemkit.so comes from `MEMKIT_LIB`, or is (re)built with
//! `cargo build --release -p memkit-preload` into this test's target
//! directory.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use memkit_tests::{compile_with, require, run, Outcome, TempDir};

const T: Duration = Duration::from_secs(120);

fn lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if std::env::var_os("MEMKIT_LIB").is_some() {
            return memkit_tests::lib_path().to_path_buf();
        }
        // <target>/<profile>/deps/<this test>
        let exe = std::env::current_exe().unwrap();
        let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
        memkit_tests::build_lib(target, true)
    })
}

/// The compiled test program (once per test binary).
fn program() -> &'static Path {
    static PROG: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &PROG
        .get_or_init(|| {
            let dir = TempDir::new("secure-c");
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/secure.c");
            let flags = memkit_tests::memkit_link_flags(lib());
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let prog = compile_with("gcc", &src, &dir.join("secure"), &flags);
            (dir, prog)
        })
        .1
}

fn scenario(args: &[&str]) -> Command {
    let mut c = Command::new(program());
    c.args(args)
        .env("LD_PRELOAD", lib())
        .env_remove("MEMKIT_SECURE_MLOCK")
        .env_remove("MEMKIT_MLOCKALL");
    c
}

/// Limits for the child: no core files from the expected crashes, and
/// optionally no CAP_IPC_LOCK plus a given RLIMIT_MEMLOCK (as an
/// unprivileged process has).
fn limits(c: &mut Command, memlock: Option<u64>) -> &mut Command {
    memkit_tests::limit_child(c, true, memlock)
}

fn gcc() -> bool {
    require("memkit-secure c_api", &["gcc"])
}

fn ok(args: &[&str]) -> Outcome {
    let mut c = scenario(args);
    let o = run(limits(&mut c, None), T);
    assert!(
        o.success() && o.stdout.contains("ok"),
        "{args:?} failed\n{}",
        o.describe()
    );
    o
}

fn dies(args: &[&str], signal: i32) -> Outcome {
    let mut c = scenario(args);
    let o = run(limits(&mut c, None), T);
    assert_eq!(
        o.status.signal(),
        Some(signal),
        "{args:?} should die of signal {signal}\n{}",
        o.describe()
    );
    o
}

#[test]
fn basic_api() {
    if gcc() {
        ok(&["basic"]);
    }
}

#[test]
fn one_byte_overflow_faults() {
    if !gcc() {
        return;
    }
    for n in ["16", "32", "48", "4096", "10000"] {
        dies(&["overflow", n], libc::SIGSEGV);
    }
}

#[test]
fn underflow_into_canary_aborts_at_free() {
    if gcc() {
        let o = dies(&["underflow"], libc::SIGABRT);
        assert_eq!(
            o.stderr.lines().filter(|l| l.contains("corrupted")).count(),
            1,
            "{}",
            o.describe()
        );
    }
}

#[test]
fn write_into_padding_aborts_at_free() {
    if gcc() {
        dies(&["slack"], libc::SIGABRT);
    }
}

#[test]
fn packed_overflow_into_neighbour_canary_aborts() {
    if gcc() {
        dies(&["packed_overflow"], libc::SIGABRT);
    }
}

#[test]
fn double_free_aborts() {
    if gcc() {
        let o = dies(&["double_free"], libc::SIGABRT);
        assert!(o.stderr.contains("double free"), "{}", o.describe());
    }
}

#[test]
fn noaccess_read_and_readonly_write_fault() {
    if gcc() {
        dies(&["noaccess_read"], libc::SIGSEGV);
        dies(&["readonly_write"], libc::SIGSEGV);
    }
}

#[test]
fn smaps_shows_locked_dontdump_wipeonfork() {
    if gcc() {
        let o = ok(&["smaps"]);
        eprint!("{}", o.stdout);
    }
}

#[test]
fn forked_child_reads_zeros() {
    if gcc() {
        ok(&["fork"]);
    }
}

#[test]
fn secretmem_when_available() {
    if gcc() {
        let o = ok(&["secretmem"]);
        eprint!("{}", o.stdout);
    }
}

#[test]
fn lowered_memlock_limit_refuses_with_message() {
    if !gcc() {
        return;
    }
    for (limit, errno) in [(64 * 1024, "ENOMEM"), (0, "EPERM")] {
        let mut c = scenario(&["refuse"]);
        let o = run(limits(&mut c, Some(limit)), T);
        assert!(o.success(), "{}", o.describe());
        assert!(
            o.stdout.contains(&format!("errno={errno}")),
            "{}",
            o.describe()
        );
        let refusal: Vec<&str> = o.stderr.lines().filter(|l| l.contains("refused")).collect();
        assert_eq!(refusal.len(), 1, "one refusal message\n{}", o.describe());
        let msg = refusal[0];
        let shown = if limit == 0 {
            "0 bytes".to_string()
        } else {
            format!("{} KiB", limit / 1024)
        };
        for needle in ["RLIMIT_MEMLOCK", &format!("is {shown}"), "ulimit -l", errno] {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
        // best-effort warns once, whatever the number of unlocked secrets.
        let warnings = o
            .stderr
            .lines()
            .filter(|l| l.contains("not locked"))
            .count();
        assert_eq!(warnings, 1, "{}", o.describe());
    }
}

#[test]
fn policy_from_environment() {
    if !gcc() {
        return;
    }
    for (v, want, warns) in [
        ("require", "policy=0", false),
        ("best-effort", "policy=1", false),
        ("off", "policy=2", false),
        ("sometimes", "policy=0", true),
    ] {
        let mut c = scenario(&["policy_env"]);
        c.env("MEMKIT_SECURE_MLOCK", v);
        let o = run(&mut c, T);
        assert!(
            o.success() && o.stdout.contains(want),
            "{v}: {}",
            o.describe()
        );
        assert_eq!(
            o.stderr.contains("ignoring MEMKIT_SECURE_MLOCK"),
            warns,
            "{}",
            o.describe()
        );
    }
}

#[test]
fn hundred_thousand_packed_secrets_under_default_memlock_limit() {
    if !gcc() {
        return;
    }
    // As an unprivileged process with the default 8 MiB limit.
    let mut c = scenario(&["packed100k"]);
    let o = run(limits(&mut c, Some(8 << 20)), T);
    assert!(o.success() && o.stdout.contains("ok"), "{}", o.describe());
    eprint!("{}", o.stdout);
}

#[test]
fn guarded_secrets_cost_about_two_mappings() {
    if gcc() {
        let o = ok(&["guarded_maps"]);
        eprint!("{}", o.stdout);
    }
}

/// MEMKIT_MLOCKALL=1 under the preload: the process's memory is locked
/// (VmLck), future mappings too; a failure is one line on stderr and the
/// program goes on.
#[test]
fn mlockall_from_environment() {
    if !gcc() {
        return;
    }
    let vmlck = |o: &Outcome, key: &str| -> i64 {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in output\n{}", o.describe()))
    };
    let mut c = scenario(&["vmlck"]);
    let o = run(c.env("MEMKIT_MLOCKALL", "1"), T);
    assert!(o.success(), "{}", o.describe());
    assert!(vmlck(&o, "VmLck") > 0, "nothing locked\n{}", o.describe());
    assert!(
        vmlck(&o, "VmLck_after_malloc") >= vmlck(&o, "VmLck") + 8 * 1024,
        "future memory not locked\n{}",
        o.describe()
    );

    let o = run(&mut scenario(&["vmlck"]), T);
    assert_eq!(vmlck(&o, "VmLck"), 0, "{}", o.describe());

    // Over the limit: reported once, and the program still runs.
    let mut c = scenario(&["vmlck"]);
    c.env("MEMKIT_MLOCKALL", "1");
    let o = run(limits(&mut c, Some(64 * 1024)), T);
    assert!(o.success(), "{}", o.describe());
    assert_eq!(vmlck(&o, "VmLck"), 0, "{}", o.describe());
    let lines: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("MEMKIT_MLOCKALL"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", o.describe());
    assert!(
        lines[0].contains("RLIMIT_MEMLOCK is 64 KiB") && lines[0].contains("continuing"),
        "{}",
        lines[0]
    );
}

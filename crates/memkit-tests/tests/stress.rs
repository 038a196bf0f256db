//! Torture tests under LD_PRELOAD=libmemkit.so: cross-thread frees with
//! content checks, thousands of short-lived threads, fork while threads run.

use memkit_tests::*;
use std::process::Command;
use std::time::Duration;

/// 4 threads x 1M operations, blocks handed between threads through a ring and
/// checked byte for byte before every free.
#[test]
fn stress_cross_thread() {
    if !require("stress_cross_thread", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("stress");
    let prog = compile_c("stress.c", dir.path(), "stress", &[]);
    let mut cmd = preloaded(&prog);
    cmd.args(["4", "1000000"]);
    let o = run_checking_bindings(
        &mut cmd,
        Duration::from_secs(120),
        &["malloc", "free", "realloc", "calloc"],
        "stress",
    );
    eprint!("{}", o.stdout);
    assert!(
        o.stdout.contains("ops ok"),
        "unexpected output: {}",
        o.stdout
    );
}

/// 2000 short-lived threads, 4 at a time, each allocating ~1 MiB: RSS must
/// stay under 200 MiB (memory of exited threads is reused).
#[test]
fn churn_short_lived_threads() {
    if !require("churn_short_lived_threads", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("churn");
    let prog = compile_c("churn.c", dir.path(), "churn", &[]);
    let mut cmd = preloaded(&prog);
    cmd.args(["2000", "4", "200"]);
    let o = run_checking_bindings(
        &mut cmd,
        Duration::from_secs(120),
        &["malloc", "free"],
        "churn",
    );
    eprint!("{}", o.stdout);
}

/// 300 forks while threads allocate, start and exit; every child must
/// allocate (also from a new thread) and exit 0 within 5 s.
#[test]
fn fork_while_threads_allocate() {
    if !require("fork_while_threads_allocate", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("fork");
    let prog = compile_c("fork.c", dir.path(), "fork", &[]);
    let mut cmd = preloaded(&prog);
    cmd.arg("300");
    // No LD_DEBUG here: 300 children would each write a bindings log.
    let o = run_ok(
        &mut cmd,
        Duration::from_secs(180),
        "fork under libmemkit.so",
    );
    eprint!("{}", o.stdout);
    let mut check = preloaded(&prog);
    check.arg("3");
    run_checking_bindings(
        &mut check,
        Duration::from_secs(60),
        &["malloc", "free"],
        "fork (3 forks, bindings)",
    );
}

/// Thread exit: pthread key destructors (before and after the allocator's
/// own) malloc, free, realloc and re-arm their keys; 2000 threads; RSS bound.
#[test]
fn thread_exit_destructors_allocate() {
    if !require("thread_exit_destructors_allocate", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("thread-exit");
    let prog = compile_c("thread_exit.c", dir.path(), "thread_exit", &[]);
    run_ok(
        Command::new(&prog).args(["200", "64"]),
        Duration::from_secs(60),
        "thread_exit (plain glibc)",
    );
    let mut cmd = preloaded(&prog);
    cmd.args(["2000", "64"]);
    let o = run_checking_bindings(
        &mut cmd,
        Duration::from_secs(120),
        &["malloc", "free", "realloc"],
        "thread_exit",
    );
    eprint!("{}", o.stdout);
}

/// The same programs on plain glibc, briefly: validates the tests themselves.
#[test]
fn baseline_glibc() {
    if !require("baseline_glibc", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("stress-base");
    let t = Duration::from_secs(120);
    let stress = compile_c("stress.c", dir.path(), "stress", &[]);
    run_ok(
        Command::new(&stress).args(["4", "100000"]),
        t,
        "stress (plain glibc)",
    );
    let churn = compile_c("churn.c", dir.path(), "churn", &[]);
    run_ok(
        Command::new(&churn).args(["400", "4", "200"]),
        t,
        "churn (plain glibc)",
    );
    let fork = compile_c("fork.c", dir.path(), "fork", &[]);
    run_ok(Command::new(&fork).arg("50"), t, "fork (plain glibc)");
}

/// Threads that exit leaving their blocks for the main thread to free: the
/// memory must go back to the OS as the main thread frees it, without a
/// `malloc_trim` call (before, memkit kept 49 MB where glibc keeps 5 MB:
/// the dead heaps' pages were collected only on other threads' allocation
/// slow paths). memkit must end within 1.5x glibc's RSS (+2 MiB of slack
/// for the runtime, and never below 16 MiB, for a loaded machine),
/// measured after a second of idleness.
#[test]
fn memory_left_by_exited_threads_returns_without_trim() {
    if !require(
        "memory_left_by_exited_threads_returns_without_trim",
        &["gcc"],
    ) {
        return;
    }
    let dir = TempDir::new("leave");
    let prog = compile_c("leave.c", dir.path(), "leave", &[]);
    let t = Duration::from_secs(120);
    let kb = |out: &str, key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
    };
    let glibc = run_ok(
        Command::new(&prog).args(["20", "200"]),
        t,
        "leave (plain glibc)",
    );
    let mut cmd = preloaded(&prog);
    cmd.args(["20", "200"]);
    let o = run_checking_bindings(&mut cmd, t, &["malloc", "free"], "leave");
    eprintln!("glibc:\n{}memkit:\n{}", glibc.stdout, o.stdout);
    let (g, m) = (
        kb(&glibc.stdout, "RSS_IDLE_KB"),
        kb(&o.stdout, "RSS_IDLE_KB"),
    );
    // Alone, memkit ends at 4.2-5.4 MB and glibc at 5.5-7.0; beside the
    // other stress tests (2 cores) memkit 4.8-11 MB and glibc 5.3-14.5, so
    // the bound has a 16 MiB floor: the failure it guards against left
    // 49-78 MB.
    assert!(
        m <= (g * 3 / 2 + 2048).max(16 << 10),
        "RSS after the frees and 1 s idle: memkit {m} kB, glibc {g} kB"
    );
}

//! The process environment, read straight from `environ` (no `getenv`
//! copy, no allocation, safe inside the allocator), and [`VARS`], the table
//! of every `MEMKIT_*` variable: name, default, meaning and who reads it.
//! The table is const data, so the no_std libraries carry no cost for it.

unsafe extern "C" {
    static environ: *const *const u8;
}

/// Looks `name` up in the process environment; returns the value's bytes.
pub fn var(name: &[u8]) -> Option<&'static [u8]> {
    entries().find_map(|entry| {
        let rest = entry.strip_prefix(name)?;
        rest.strip_prefix(b"=")
    })
}

/// Who reads a variable (a bit set; see [`Var::read_by`]).
pub mod reader {
    /// libmemkit.so, in the program it is preloaded into (or linked to).
    pub const LIBRARY: u8 = 1;
    /// A Rust program on `memkit::MemKit` (`#[global_allocator]`) or
    /// `memkit::secure`.
    pub const RUST: u8 = 2;
    /// The `memkit` command.
    pub const CLI: u8 = 4;
    /// The benchmark harness (`memkit-bench`).
    pub const BENCH: u8 = 8;
    /// memkit's own test suite.
    pub const TESTS: u8 = 16;
    /// libmemkit_check.so, the checking allocator (`memkit check`).
    pub const CHECK_LIB: u8 = 32;
    /// libmemkit_profile.so, the profiling runtime (`memkit profile`).
    pub const PROFILE_LIB: u8 = 64;
    /// Each bit with the name it is shown as.
    pub const NAMES: [(u8, &str); 7] = [
        (LIBRARY, "libmemkit.so"),
        (RUST, "memkit::MemKit"),
        (CLI, "memkit"),
        (BENCH, "memkit-bench"),
        (TESTS, "tests"),
        (CHECK_LIB, "libmemkit_check.so"),
        (PROFILE_LIB, "libmemkit_profile.so"),
    ];
    /// The readers a user of memkit deals with (the others are memkit's
    /// own development tools).
    pub const USER: u8 = LIBRARY | RUST | CLI | CHECK_LIB | PROFILE_LIB;
}

/// One environment variable of memkit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// The value in force when it is unset, as a user would write it
    /// (`"unset"`: nothing happens without it).
    pub default: &'static str,
    /// What it does and the values it takes; `code` in backquotes.
    pub meaning: &'static str,
    /// [`reader`] bits.
    pub read_by: u8,
}

impl Var {
    /// The value this process's environment sets, if any.
    pub fn current(&self) -> Option<&'static [u8]> {
        var(self.name.as_bytes())
    }
}

/// Every `MEMKIT_*` environment variable that any part of memkit reads:
/// the one list that `memkit env`, the ENVIRONMENT sections of memkit(1)
/// and libmemkit(3), and the README's table are made from. A test
/// (`crates/memkit-sys/tests/env_table.rs`) fails when the source names a
/// `MEMKIT_*` variable that is missing here.
pub const VARS: &[Var] = {
    use reader::*;
    &[
        Var {
            name: "MEMKIT_PURGE_DELAY_MS",
            default: "250",
            meaning: "how long free pages stay resident before `MADV_DONTNEED`, and cached \
                      segments and huge blocks before `munmap` (0–3600000)",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_HUGE_CACHE_MB",
            default: "64",
            meaning: "most bytes of freed huge blocks (> 256 KiB) kept for reuse, in MiB \
                      (0–1048576)",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_SEGMENT_CACHE",
            default: "8",
            meaning: "most free 4 MiB segments kept for reuse (0–4096)",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_THP",
            default: "default",
            meaning: "transparent huge pages for segments and huge blocks: `default` (the \
                      system policy, plus `MADV_HUGEPAGE` for huge blocks of 6 MiB or more \
                      that are grown by `realloc`, or reused from the cache after a use \
                      that touched most of them: 13x fewer page faults on 5–25 MiB block \
                      churn), `always` (`MADV_HUGEPAGE` on every \
                      segment and huge block, at the cost of RSS for sparsely used memory), \
                      `never` (`MADV_NOHUGEPAGE` everywhere)",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_HARDEN",
            default: "on",
            meaning: "`off`: no free tags, link checks or block-start checks (double frees \
                      and bad pointers inside memkit's memory are then not caught); for \
                      measuring what hardening costs",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_VERBOSE",
            default: "0",
            meaning: "`1`: a line on stderr for every pointer `free` ignores (not from \
                      memkit's memory)",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_SHOW_STATS",
            default: "0",
            meaning: "`1`: print the `malloc_stats` summary on (a duplicate of) stderr at \
                      exit (`memkit run --stats` sets it)",
            read_by: LIBRARY,
        },
        Var {
            name: "MEMKIT_MLOCKALL",
            default: "0",
            meaning: "`1` (or `onfault`, `current`, `future`): lock the process's memory at \
                      start (`mlockall`); a failure is reported once and the program \
                      continues. With future memory locked, memkit stops returning memory \
                      on decay (it would have to fault back in); `malloc_trim` still does",
            read_by: LIBRARY,
        },
        Var {
            name: "MEMKIT_SECURE_MLOCK",
            default: "require",
            meaning: "lock policy of secure allocations: `require` (refuse a secret that \
                      cannot be locked), `best-effort` (allocate it, warn once), `off` \
                      (never lock); `memkit_secure_set_policy` wins over it",
            read_by: LIBRARY | RUST,
        },
        Var {
            name: "MEMKIT_REPORT_DIR",
            default: "unset",
            meaning: "set by `memkit run`: a private directory (owned by the user, writable \
                      by nobody else) where each process keeps its record in a file \
                      `PID-START`, mapped shared and kept up to date (docs/RUN.md)",
            read_by: LIBRARY,
        },
        Var {
            name: "MEMKIT_LIB",
            default: "unset",
            meaning: "the `libmemkit.so` to preload, instead of the one `memkit` finds beside \
                      its executable or in `/usr/lib/x86_64-linux-gnu`; it must be the same \
                      version as `memkit` (`memkit --version` shows which one is used)",
            read_by: CLI | BENCH | TESTS,
        },
        Var {
            name: "MEMKIT_CHECK_LIB",
            default: "unset",
            meaning: "the `libmemkit_check.so` `memkit check` preloads, instead of the one it \
                      finds beside its executable or in `/usr/lib/x86_64-linux-gnu`; it must be \
                      the same version as `memkit`",
            read_by: CLI,
        },
        Var {
            name: "MEMKIT_CHECK_OPTIONS",
            default: "unset",
            meaning: "options of `libmemkit_check.so`: `name=value` pairs separated by colons \
                      (`leaks`, `show_reachable`, `scan_mmap`, `halt_on_error`, `error_exitcode`, `keep_status`, `log_file`, \
                      `json_dir`, `suppressions`, `quarantine_mb`, `alloc_fill`, `free_fill`, \
                      `max_fill`, `free_check`, `stack_depth`, `guard`, `guard_sample`, `guard_max`; \
                      docs/CHECK.md); `memkit check` sets it from its command line",
            read_by: CHECK_LIB,
        },
        Var {
            name: "MEMKIT_PROFILE_LIB",
            default: "unset",
            meaning: "the `libmemkit_profile.so` `memkit profile` preloads, instead of the one \
                      it finds beside its executable or in `/usr/lib/x86_64-linux-gnu`; it must \
                      be the same version as `memkit`",
            read_by: CLI,
        },
        Var {
            name: "MEMKIT_PROFILE_DIR",
            default: "unset",
            meaning: "where `libmemkit_profile.so` writes each process's raw profile at exit \
                      (`PID.json`; `PID.1.json`, … for later profiles of the same pid, after an \
                      exec): an absolute directory that exists; `memkit profile` sets it to \
                      `DIR/raw` (docs/PROFILE.md)",
            read_by: PROFILE_LIB,
        },
        Var {
            name: "MEMKIT_PROFILE_OPTIONS",
            default: "unset",
            meaning: "options of `libmemkit_profile.so`: `name=value` pairs separated by \
                      colons: `sample=BYTES` (mean bytes between samples, 0: every \
                      allocation, the default), `stack_depth=N` (1–64, default 64), \
                      `interval_ms=N` (timeline period, default 10); `memkit profile` sets it \
                      from its command line",
            read_by: PROFILE_LIB,
        },
        Var {
            name: "MEMKIT_BENCH_PRELOAD",
            default: "unset",
            meaning: "set by the benchmark harness for its launcher: the library the \
                      launcher preloads into the workload (empty: none)",
            read_by: BENCH,
        },
        Var {
            name: "MEMKIT_NO_REBUILD",
            default: "unset",
            meaning: "set: the tests use a `target/*/libmemkit.so` older than its sources \
                      instead of rebuilding it",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_TESTS_REQUIRE_ALL",
            default: "unset",
            meaning: "`1` (implied by `CI=true`): a test whose external program (python3, \
                      git, gcc, ...) is missing fails instead of skipping",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_TESTS_KEEP",
            default: "unset",
            meaning: "`1`: keep every temporary directory of the tests (failed tests always \
                      keep theirs)",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_TESTS_CHECKED",
            default: "unset",
            meaning: "`1`: the library under test is the checked build (debug assertions), \
                      whose invariant checks may stop a corruption test first",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_PROFILE_SCREENSHOT",
            default: "unset",
            meaning: "a PNG path: the test that renders `memkit profile`'s report.html in \
                      headless chromium copies its screenshot there, for a person to look at",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_SHM_CRASH",
            default: "unset",
            meaning: "`N`: a process using a shared heap (libmemkit.so's `memkit_shm_*`, \
                      `memkit::shm`) kills itself with SIGKILL at the Nth crash point it \
                      reaches between two stores of a change to the heap; for the crash tests",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_TEST_CHILD",
            default: "unset",
            meaning: "set by a test that runs its own executable again: the name of the test \
                      the child runs",
            read_by: TESTS,
        },
        Var {
            name: "MEMKIT_TEST_SHM",
            default: "unset",
            meaning: "set by memkit::shm's tests for the processes they exec: the name of the \
                      shared heap to open",
            read_by: TESTS,
        },
    ]
};

/// The entry of [`VARS`] named `name`.
pub fn lookup(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}

/// Every `NAME=value` of this process's environment whose name starts with
/// `MEMKIT_` but is not in [`VARS`] (a typo, or a variable of another
/// version), in environment order.
pub fn unknown() -> impl Iterator<Item = (&'static [u8], &'static [u8])> {
    entries().filter_map(|entry| {
        let eq = entry.iter().position(|&b| b == b'=')?;
        let (name, value) = (&entry[..eq], &entry[eq + 1..]);
        let known = VARS.iter().any(|v| v.name.as_bytes() == name);
        (name.starts_with(b"MEMKIT_") && !known).then_some((name, value))
    })
}

/// The entries of `environ`, as bytes without their NUL.
fn entries() -> impl Iterator<Item = &'static [u8]> {
    let mut e = core::ptr::null::<*const u8>();
    core::iter::from_fn(move || {
        // SAFETY: `environ` is a NULL-terminated array of NUL-terminated
        // strings owned by libc for the process's lifetime; we only read
        // it, from its start (`e` null) to its NULL. (A concurrent setenv
        // may replace the array; libc keeps old strings alive, as getenv
        // relies on too.)
        unsafe {
            if e.is_null() {
                e = environ;
                if e.is_null() {
                    return None;
                }
            }
            let s = *e;
            if s.is_null() {
                return None;
            }
            e = e.add(1);
            let mut n = 0;
            while *s.add(n) != 0 {
                n += 1;
            }
            Some(core::slice::from_raw_parts(s, n))
        }
    })
}

//! Helpers shared by memkit's integration tests (see `tests/`).
//!
//! The tests run C/C++ programs (in `c/`) and real programs (python3, git,
//! gcc, sqlite3, perl) with `LD_PRELOAD=libmemkit.so` and check both that they
//! work and that `malloc`/`free` really bound to libmemkit.so.
//!
//! Environment:
//! - `MEMKIT_LIB=/path/libmemkit.so`: the library under test. Without it, the
//!   workspace's `target/{release,debug}/libmemkit.so` is used (found from the
//!   test executable's path, release before debug), built with
//!   `cargo build --release -p memkit-preload` when missing, and rebuilt
//!   when a source file of memkit-{sys,alloc,preload} is newer than it
//!   (unless `MEMKIT_NO_REBUILD` is set).
//! - `MEMKIT_CHECK_LIB=/path/libmemkit_check.so`: the same for the checking
//!   library of `memkit check` ([`check_lib_path`]; built from
//!   memkit-{sys,alloc,trace,check} with `cargo build --release -p
//!   memkit-check`).
//! - `MEMKIT_TESTS_REQUIRE_ALL=1` (implied by `CI=true`): a missing external
//!   program (python3, git, gcc, sqlite3, perl, ...) fails the test instead of
//!   skipping it.
//! - `MEMKIT_TESTS_KEEP=1`: keep every temporary directory (failed tests
//!   always keep theirs, and print the path).

mod bindings;
pub mod child;

pub use bindings::*;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Compiler flags for every C/C++ test program. `-fno-builtin` keeps gcc from
/// deleting `free(malloc(n))` pairs and other calls the tests rely on.
pub const CFLAGS: &[&str] = &["-O1", "-g", "-fno-builtin", "-pthread"];

/// The memkit-tests crate directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let root = crate_dir().join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Path of a test program source in `c/`.
pub fn c_source(name: &str) -> PathBuf {
    crate_dir().join("c").join(name)
}

// ---------------------------------------------------------------------------
// Finding (or building) libmemkit.so and libmemkit_check.so
// ---------------------------------------------------------------------------

/// A preload library of the workspace that tests need built.
struct Library {
    /// File name in `target/<profile>/`.
    file: &'static str,
    /// The package that builds it.
    package: &'static str,
    /// The environment variable that names a library to use instead.
    env: &'static str,
    /// The crates whose sources it is built from (for staleness).
    crates: &'static [&'static str],
}

const MEMKIT: Library = Library {
    file: "libmemkit.so",
    package: "memkit-preload",
    env: "MEMKIT_LIB",
    crates: &[
        "memkit-sys",
        "memkit-alloc",
        "memkit-secure",
        "memkit-preload",
    ],
};

const MEMKIT_CHECK: Library = Library {
    file: "libmemkit_check.so",
    package: "memkit-check",
    env: "MEMKIT_CHECK_LIB",
    crates: &["memkit-sys", "memkit-alloc", "memkit-trace", "memkit-check"],
};

const MEMKIT_PROFILE: Library = Library {
    file: "libmemkit_profile.so",
    package: "memkit-profile",
    env: "MEMKIT_PROFILE_LIB",
    crates: &[
        "memkit-sys",
        "memkit-alloc",
        "memkit-trace",
        "memkit-profdata",
        "memkit-profile",
    ],
};

/// The libmemkit.so under test (absolute path). Panics if it cannot be found
/// or built.
pub fn lib_path() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| MEMKIT.find_or_build())
}

/// The libmemkit_check.so under test (absolute path), found and built like
/// libmemkit.so (see the crate docs), `MEMKIT_CHECK_LIB` in place of
/// `MEMKIT_LIB`. Panics if it cannot be found or built.
pub fn check_lib_path() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| MEMKIT_CHECK.find_or_build())
}

/// The libmemkit_profile.so under test (absolute path), found and built
/// like libmemkit.so, `MEMKIT_PROFILE_LIB` in place of `MEMKIT_LIB`.
pub fn profile_lib_path() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| MEMKIT_PROFILE.find_or_build())
}

/// The cargo target directory this test executable lives in:
/// `<target>/<profile>/deps/<exe>` gives `<target>`.
fn exe_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    Some(deps.parent()?.parent()?.to_path_buf())
}

impl Library {
    fn find_or_build(&self) -> PathBuf {
        let p = self.find_or_build_uncached();
        eprintln!("memkit-tests: using {}", p.display());
        p
    }

    fn candidates(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(t) = exe_target_dir() {
            dirs.push(t);
        }
        let ws_target = workspace_root().join("target");
        if !dirs.contains(&ws_target) {
            dirs.push(ws_target);
        }
        let mut out = Vec::new();
        for d in &dirs {
            for profile in ["release", "debug"] {
                out.push(d.join(profile).join(self.file));
            }
        }
        out
    }

    fn find_or_build_uncached(&self) -> PathBuf {
        if let Some(p) = std::env::var_os(self.env) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{}={} does not exist", self.env, p.display());
            return p.canonicalize().unwrap();
        }
        let candidates = self.candidates();
        if let Some(p) = candidates.iter().find(|p| p.is_file()) {
            // target/<profile>/<file>
            let profile_dir = p.parent().unwrap();
            let release = profile_dir
                .file_name()
                .map(|n| n == "release")
                .unwrap_or(false);
            if let Some(newer) = self.newer_source(p) {
                if std::env::var_os("MEMKIT_NO_REBUILD").is_none() {
                    eprintln!(
                        "memkit-tests: {} is older than {}; rebuilding it (set MEMKIT_NO_REBUILD=1 to skip)",
                        p.display(),
                        newer.display()
                    );
                    return self.build(profile_dir.parent().unwrap(), release);
                }
            }
            return p.canonicalize().unwrap();
        }
        eprintln!(
            "memkit-tests: {} not found (looked at {:?}); building it with `cargo build --release -p {}`",
            self.file, candidates, self.package
        );
        let target = exe_target_dir().unwrap_or_else(|| workspace_root().join("target"));
        self.build(&target, true)
    }

    /// A source file of the library's crates newer than `lib`, if any.
    fn newer_source(&self, lib: &Path) -> Option<PathBuf> {
        let built = fs::metadata(lib).and_then(|m| m.modified()).ok()?;
        fn walk(dir: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
            for e in fs::read_dir(dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if let Some(n) = walk(&p, built) {
                        return Some(n);
                    }
                } else if p
                    .extension()
                    .map(|x| x == "rs" || x == "toml")
                    .unwrap_or(false)
                    && fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .map(|m| m > built)
                        .unwrap_or(false)
                {
                    return Some(p);
                }
            }
            None
        }
        let crates = workspace_root().join("crates");
        self.crates
            .iter()
            .find_map(|c| walk(&crates.join(c), built))
    }

    /// Runs `cargo build [--release] -p <package>` in the workspace, into
    /// `target` (the target directory of this test executable, or the one
    /// the stale library was found in). Checked with cargo 1.95: `cargo
    /// test` does not hold the build-directory lock while tests run, so
    /// this nested cargo does not deadlock even on the same target
    /// directory; a timeout guards anyway.
    fn build(&self, target: &Path, release: bool) -> PathBuf {
        let cargo = std::env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(OsString::from))
            .unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(&cargo);
        cmd.arg("build");
        if release {
            cmd.arg("--release");
        }
        cmd.args(["-p", self.package])
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", target)
            .env_remove("LD_PRELOAD");
        let out = run(&mut cmd, Duration::from_secs(1200));
        if out.timed_out && out.stderr.contains("Blocking waiting for file lock") {
            panic!(
                "nested `cargo build` waited 20 minutes for the build-directory lock; build {} first \
                 (cargo build --release -p {}) or set {}\n{}",
                self.file,
                self.package,
                self.env,
                out.describe()
            );
        }
        out.assert_success(&format!("cargo build -p {}", self.package));
        let lib = target
            .join(if release { "release" } else { "debug" })
            .join(self.file);
        assert!(
            lib.is_file(),
            "cargo build succeeded but {} is missing",
            lib.display()
        );
        lib.canonicalize().unwrap()
    }
}

/// Runs `cargo build [--release] -p memkit-preload` into `target` (see
/// `Library::build`) and returns the libmemkit.so built.
pub fn build_lib(target: &Path, release: bool) -> PathBuf {
    MEMKIT.build(target, release)
}

// ---------------------------------------------------------------------------
// External programs
// ---------------------------------------------------------------------------

/// Full path of `program` found in PATH: the first regular file of that
/// name with an execute bit, as a shell would pick it. (Also the benchmark
/// runner's.)
pub fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn require_all() -> bool {
    let set = |k: &str| {
        std::env::var(k)
            .map(|v| !v.is_empty() && v != "0" && v != "false")
            .unwrap_or(false)
    };
    set("MEMKIT_TESTS_REQUIRE_ALL") || set("CI")
}

/// True when every program is in PATH. Otherwise prints `SKIP: <test>: ...`
/// to stderr and returns false, or panics when skipping is not allowed
/// (`CI` or `MEMKIT_TESTS_REQUIRE_ALL` set).
pub fn require(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| which(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: required program(s) not found in PATH: {}",
        missing.join(", ")
    );
    if require_all() {
        panic!("{msg} (CI / MEMKIT_TESTS_REQUIRE_ALL set: not skipping)");
    }
    eprintln!("SKIP: {msg}");
    false
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A temporary directory under `$TMPDIR/memkit-tests/`, removed on drop
/// unless the test is failing (then kept, and its path printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join("memkit-tests");
        fs::create_dir_all(&base).unwrap();
        let path = base.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("MEMKIT_TESTS_KEEP").is_some() {
            eprintln!("memkit-tests: keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Compiling test programs
// ---------------------------------------------------------------------------

/// Compiles `src` with `compiler` (gcc or g++) and [`CFLAGS`] plus `extra`
/// into `out`. The compiler runs without the preload. Panics on errors.
pub fn compile_with(compiler: &str, src: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut cmd = Command::new(compiler);
    cmd.args(CFLAGS)
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(out)
        .env_remove("LD_PRELOAD");
    let o = run(&mut cmd, Duration::from_secs(300));
    o.assert_success(&format!("compile {}", src.display()));
    out.to_path_buf()
}

/// Flags that build a C program against memkit's headers (`include/`) and
/// link it with the libmemkit.so at `lib` (found at run time through an
/// rpath), warnings as errors: for programs that call memkit's own exports.
///
/// libmemkit.so's soname is `libmemkit.so.0` (what the package installs);
/// the build tree has only `libmemkit.so`, so the program links and runs
/// against a directory beside it (`soname/`) holding both names as links
/// to `lib`.
pub fn memkit_link_flags(lib: &Path) -> Vec<String> {
    let dir = lib
        .parent()
        .expect("libmemkit.so in a directory")
        .join("soname");
    let _ = std::fs::create_dir_all(&dir);
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    for name in ["libmemkit.so".to_owned(), format!("libmemkit.so.{major}")] {
        let link = dir.join(&name);
        let _ = std::fs::remove_file(&link);
        // Another test may have made it meanwhile: either link is the same.
        let _ = std::os::unix::fs::symlink(lib, &link);
    }
    let libdir = dir.display();
    vec![
        "-Wall".into(),
        "-Wextra".into(),
        "-Werror".into(),
        format!("-I{}", workspace_root().join("include").display()),
        format!("-L{libdir}"),
        format!("-Wl,-rpath,{libdir}"),
        // compile_with puts these before the source: keep the library
        // although nothing before it needs it yet.
        "-Wl,--no-as-needed".into(),
        "-lmemkit".into(),
    ]
}

/// Compiles `c/<name>` with gcc into `dir/<stem>` (extra flags appended,
/// e.g. `-shared -fPIC` with `out_name` "libfoo.so").
pub fn compile_c(name: &str, dir: &Path, out_name: &str, extra: &[&str]) -> PathBuf {
    compile_with("gcc", &c_source(name), &dir.join(out_name), extra)
}

/// Compiles `rust/<name>` with `rustc -O -g` into `dir/<out_name>`.
pub fn compile_rust(name: &str, dir: &Path, out_name: &str) -> PathBuf {
    let out = dir.join(out_name);
    let mut cmd = Command::new("rustc");
    cmd.args(["-O", "-g", "-o"])
        .arg(&out)
        .arg(crate_dir().join("rust").join(name))
        .env_remove("LD_PRELOAD");
    run(&mut cmd, Duration::from_secs(300)).assert_success(&format!("rustc {name}"));
    out
}

/// Compiles `c/<name>` with g++ into `dir/<out_name>`.
pub fn compile_cxx(name: &str, dir: &Path, out_name: &str, extra: &[&str]) -> PathBuf {
    compile_with("g++", &c_source(name), &dir.join(out_name), extra)
}

/// A stand-in for libmemkit.so (`c/stand_in.c`): a shared object that
/// preloads as a no-op and carries memkit's version note for `version`
/// (none for `None`), built into `dir` (once; concurrent callers each
/// build a private copy and rename it into place).
pub fn stand_in_lib(dir: &Path, version: Option<&str>) -> PathBuf {
    let name = format!("libstand-in-{}.so", version.unwrap_or("none"));
    let out = dir.join(&name);
    if out.is_file() && newer_than(&out, &c_source("stand_in.c")) {
        return out;
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let private = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut flags = vec!["-shared".to_owned(), "-fPIC".to_owned()];
    if let Some(v) = version {
        flags.push(format!("-DSTAND_IN_VERSION=\"{v}\""));
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    compile_with("gcc", &c_source("stand_in.c"), &private, &flags);
    fs::rename(&private, &out).expect("rename the stand-in library into place");
    out
}

/// Whether `a` was modified after `b`.
fn newer_than(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a > b)
}

// ---------------------------------------------------------------------------
// Running programs
// ---------------------------------------------------------------------------

/// Sets `LD_PRELOAD=<libmemkit.so>` on `cmd`.
pub fn preload(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", lib_path())
}

/// A command with `LD_PRELOAD=<libmemkit.so>`.
pub fn preloaded(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    preload(&mut cmd);
    cmd
}

/// What a finished (or killed) command did.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
    /// A shell command line that reproduces the run.
    pub repro: String,
    /// `ps` listing of the process group at the time of a timeout.
    pub hang_info: String,
}

/// `s` as one word for a POSIX shell: unchanged when it holds only
/// characters no shell treats specially, else in single quotes. (Also the
/// benchmark runner's.)
pub fn shell_quote(s: impl AsRef<OsStr>) -> String {
    let s = s.as_ref().to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A shell command line equivalent to `cmd` (directory, environment
/// changes, program, arguments).
pub fn repro_line(cmd: &Command) -> String {
    let mut s = String::new();
    if let Some(d) = cmd.get_current_dir() {
        let _ = write!(s, "cd {} && ", shell_quote(d));
    }
    let mut envs: Vec<String> = Vec::new();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => envs.push(format!("{}={}", k.to_string_lossy(), shell_quote(v))),
            None => envs.push(format!("-u {}", k.to_string_lossy())),
        }
    }
    if !envs.is_empty() {
        s.push_str("env ");
        s.push_str(&envs.join(" "));
        s.push(' ');
    }
    s.push_str(&shell_quote(cmd.get_program()));
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Outcome {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.success()
    }

    /// "exit 1", "killed by signal 11 (SIGSEGV), core dumped", "TIMED OUT
    /// after ...".
    pub fn status_text(&self) -> String {
        if self.timed_out {
            return format!("TIMED OUT after {:.1?} (killed)", self.elapsed);
        }
        if let Some(c) = self.status.code() {
            return format!("exit {c}");
        }
        let sig = self.status.signal().unwrap_or(0);
        format!(
            "killed by {}{}",
            memkit_sys::signal::describe(sig),
            if self.status.core_dumped() {
                ", core dumped"
            } else {
                ""
            }
        )
    }

    /// A report of this run: status, time, repro command, output tails.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "status: {}\ntime: {:.2?}\nreproduce: {}\n",
            self.status_text(),
            self.elapsed,
            self.repro
        );
        if !self.hang_info.is_empty() {
            let _ = write!(s, "--- processes at timeout ---\n{}\n", self.hang_info);
        }
        let _ = write!(
            s,
            "--- stdout (last 6000 bytes) ---\n{}\n--- stderr (last 6000 bytes) ---\n{}\n",
            tail(&self.stdout, 6000),
            tail(&self.stderr, 6000)
        );
        s
    }

    /// Panics with [`Outcome::describe`] unless the command exited 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        if !self.success() {
            panic!("{what} failed\n{}", self.describe());
        }
        self
    }
}

/// Runs `cmd` (stdin from /dev/null, stdout/stderr captured through files) in
/// its own process group; after `timeout` the whole group is SIGKILLed.
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    let repro = repro_line(cmd);
    let tmp = TempDir::new("out");
    let out_path = tmp.join("stdout");
    let err_path = tmp.join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{repro}`: {e}"));
    let pid = child.id();
    let mut timed_out = false;
    let mut hang_info = String::new();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            if let Ok(o) = Command::new("ps")
                .args(["-e", "-o", "pgid,pid,ppid,stat,etime,wchan:24,args"])
                .env_remove("LD_PRELOAD")
                .output()
            {
                let text = String::from_utf8_lossy(&o.stdout);
                let pgid = pid.to_string();
                hang_info = text
                    .lines()
                    .enumerate()
                    .filter(|(i, l)| *i == 0 || l.split_whitespace().next() == Some(pgid.as_str()))
                    .map(|(_, l)| format!("{l}\n"))
                    .collect();
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .env_remove("LD_PRELOAD")
                .status();
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Outcome {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        elapsed,
        timed_out,
        repro,
        hang_info,
    }
}

/// Starts `cmd` with its stdout piped and returns it once it has printed
/// its first line (a server saying it is ready), with that line.
pub fn spawn_until_line(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read stdout");
    (child, line)
}

/// Runs `cmd` and asserts it exited 0. If it died from a signal and gdb is
/// installed, re-runs it once under gdb and adds the backtrace to the panic
/// message.
pub fn run_ok(cmd: &mut Command, timeout: Duration, what: &str) -> Outcome {
    let o = run(cmd, timeout);
    if !o.success() {
        let mut msg = format!("{what} failed\n{}", o.describe());
        if o.status.signal().is_some() && !o.timed_out {
            msg.push_str(&gdb_backtrace(cmd));
        }
        panic!("{msg}");
    }
    o
}

/// Re-runs `cmd` under `gdb -batch` and returns its backtrace (best effort).
pub fn gdb_backtrace(cmd: &Command) -> String {
    if which("gdb").is_none() {
        return "(gdb not installed: no backtrace)\n".into();
    }
    let mut g = Command::new("gdb");
    g.args([
        "-batch",
        "-nx",
        "-ex",
        "set pagination off",
        "-ex",
        "set confirm off",
    ]);
    // Pass the environment through `env` so gdb itself does not run preloaded.
    g.args([
        "-ex",
        "run",
        "-ex",
        "bt",
        "-ex",
        "thread apply all bt 30",
        "--args",
        "env",
    ]);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let mut kv = k.to_os_string();
            kv.push("=");
            kv.push(v);
            g.arg(kv);
        }
    }
    g.arg(cmd.get_program()).args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        g.current_dir(d);
    }
    g.env_remove("LD_PRELOAD");
    let o = run(&mut g, Duration::from_secs(180));
    format!(
        "--- gdb re-run: {} ---\n{}\n",
        o.repro,
        tail(&format!("{}\n{}", o.stdout, o.stderr), 12000)
    )
}

/// Limits the child of `cmd`: with `no_core`, no core file (for children
/// whose crash is the expected outcome); with `memlock`, the position of an
/// unprivileged process for memory locking: no `CAP_IPC_LOCK` (dropped from
/// the bounding set, so exec does not bring it back, even for root) and that
/// `RLIMIT_MEMLOCK`.
pub fn limit_child(cmd: &mut Command, no_core: bool, memlock: Option<u64>) -> &mut Command {
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            if no_core {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
            }
            if let Some(m) = memlock {
                const CAP_IPC_LOCK: libc::c_ulong = 14;
                // Fails harmlessly when the capability is gone already.
                libc::prctl(libc::PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
                let l = libc::rlimit {
                    rlim_cur: m,
                    rlim_max: m,
                };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// The VmFlags (`/proc/self/smaps`) of the mapping of this process that
/// contains `p`. Panics if no mapping does.
pub fn vm_flags(p: *const u8) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let a = p as usize;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&a);
                continue;
            }
        }
        if inside {
            if let Some(f) = line.strip_prefix("VmFlags:") {
                return f.split_whitespace().map(String::from).collect();
            }
        }
    }
    panic!("no mapping contains {p:p}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let mut c = Command::new("/bin/echo");
        c.arg("a b").arg("it's").env("X", "1");
        assert_eq!(repro_line(&c), r"env X=1 /bin/echo 'a b' 'it'\''s'");
    }
}

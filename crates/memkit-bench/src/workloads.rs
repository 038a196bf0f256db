//! The workloads: what each one runs, how it is prepared, and how a run is
//! checked. Sources live in `workloads/` and are embedded in the binary; C
//! programs are compiled into `<cache>/bin` on first use.

use crate::env::Allocator;
use crate::exec::{self, Launcher, Measured};
use memkit_tests::{shell_quote, which};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::catalog::all;

const COMMON_H: &str = include_str!("../workloads/common.h");

/// gcc flags for the C workloads. `-fno-builtin` keeps gcc from folding
/// malloc/free pairs away.
pub const CFLAGS: [&str; 4] = ["-O2", "-fno-builtin", "-pthread", "-Wall"];

/// How a workload runs.
pub enum Kind {
    /// A C program from `workloads/`, run with `full` or `quick` arguments.
    C {
        file: &'static str,
        source: &'static str,
        full: &'static [&'static str],
        quick: &'static [&'static str],
    },
    /// python3 with PYTHONMALLOC=malloc running `python_churn.py`.
    Python,
    /// ruby running `ruby_stress.rb` with `threads` threads and `full` or
    /// `quick` steps per thread.
    Ruby {
        threads: &'static str,
        full: &'static str,
        quick: &'static str,
    },
    /// The sqlite3 shell running `sqlite_bulk.sql` on a fresh database.
    Sqlite,
    /// g++ compiling `cxx_compile.cc`.
    Gxx,
    /// `git_ops.sh` on generated source trees.
    Git,
    /// redis-server under the allocator, driven by redis-benchmark.
    Redis,
}

pub struct Workload {
    pub name: &'static str,
    pub about: &'static str,
    pub kind: Kind,
}

/// Names of all workloads.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|w| w.name).collect()
}

/// Settings shared by every run.
pub struct Ctx {
    pub cache: PathBuf,
    pub quick: bool,
}

/// How to start one run of a prepared workload.
pub struct Prepared {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    stdin: Option<PathBuf>,
    /// Lines that must appear in stdout (trimmed, exact).
    expect_lines: Vec<String>,
    /// The program prints `allocator PATH` (the C workloads).
    reports_allocator: bool,
    /// A file the run must leave in its directory.
    expect_file: Option<&'static str>,
    redis: Option<RedisSetup>,
}

struct RedisSetup {
    benchmark: PathBuf,
    requests: u32,
}

/// Why a workload cannot be prepared.
pub enum NotReady {
    /// A program it needs is not installed: skipped, with a message.
    Skip(String),
    /// Something that should work did not (e.g. a compile error).
    Error(String),
}

/// The outcome of one run.
pub struct Outcome {
    pub m: Measured,
    pub metrics: BTreeMap<String, f64>,
    /// Why the run counts as failed, if it does.
    pub error: Option<String>,
}

fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.iter() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Writes `text` to `path` unless it already holds exactly that.
fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if fs::read_to_string(path).map(|t| t == text).unwrap_or(false) {
        return Ok(());
    }
    fs::write(path, text)
}

fn src_dir(ctx: &Ctx) -> Result<PathBuf, NotReady> {
    let d = ctx.cache.join("src");
    fs::create_dir_all(&d).map_err(|e| NotReady::Error(format!("{}: {e}", d.display())))?;
    Ok(d)
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> NotReady {
    move |e| NotReady::Error(format!("{what}: {e}"))
}

/// Compiles a C workload (cached by a hash of its sources and flags).
fn compile_c(ctx: &Ctx, file: &str, source: &str) -> Result<PathBuf, NotReady> {
    compile(&ctx.cache, file, source).map_err(NotReady::Error)
}

/// Compiles the launcher (see `exec`) into `cache/bin`.
pub fn build_launcher(cache: &Path) -> Result<PathBuf, String> {
    compile(cache, "launcher.c", include_str!("../launcher/launcher.c"))
}

/// Compiles `source` (which may include common.h) with [`CFLAGS`] into
/// `cache/bin/<stem>-<hash>`, unless that exists already.
fn compile(cache: &Path, file: &str, source: &str) -> Result<PathBuf, String> {
    // One compile at a time (tests build the launcher from several threads).
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gcc = which("gcc").ok_or_else(|| "gcc not found (apt-get install -y gcc)".to_string())?;
    let src = cache.join("src");
    let bin_dir = cache.join("bin");
    for d in [&src, &bin_dir] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let flags = CFLAGS.join(" ");
    let hash = fnv64(&[COMMON_H.as_bytes(), source.as_bytes(), flags.as_bytes()]);
    let stem = file.trim_end_matches(".c");
    let bin = bin_dir.join(format!("{stem}-{hash:016x}"));
    if bin.is_file() {
        return Ok(bin);
    }
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    let h = src.join("common.h");
    write_if_changed(&h, COMMON_H).map_err(io(&h))?;
    let c = src.join(file);
    write_if_changed(&c, source).map_err(io(&c))?;
    let tmp = bin_dir.join(format!(".{stem}-{hash:016x}.{}", std::process::id()));
    let out = Command::new(gcc)
        .args(CFLAGS)
        .arg("-o")
        .arg(&tmp)
        .arg(&c)
        .env_remove("LD_PRELOAD")
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc failed on {}:\n{}",
            c.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::rename(&tmp, &bin).map_err(io(&bin))?;
    Ok(bin)
}

fn python3() -> Option<PathBuf> {
    // Debian's interpreter rather than a version manager's shim script.
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        Some(system)
    } else {
        which("python3")
    }
}

fn need(prog: &str, pkg: &str) -> Result<PathBuf, NotReady> {
    which(prog)
        .ok_or_else(|| NotReady::Skip(format!("{prog} not installed (apt-get install -y {pkg})")))
}

impl Workload {
    /// Makes everything the runs need (compiled program, input files).
    pub fn prepare(&self, ctx: &Ctx) -> Result<Prepared, NotReady> {
        let base = Prepared {
            program: PathBuf::new(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            expect_lines: vec!["ok".into()],
            reports_allocator: false,
            expect_file: None,
            redis: None,
        };
        let q = ctx.quick;
        match &self.kind {
            Kind::C {
                file,
                source,
                full,
                quick,
            } => Ok(Prepared {
                program: compile_c(ctx, file, source)?,
                args: (if q { *quick } else { *full })
                    .iter()
                    .map(OsString::from)
                    .collect(),
                reports_allocator: true,
                ..base
            }),
            Kind::Python => {
                let py = python3().ok_or_else(|| {
                    NotReady::Skip("python3 not installed (apt-get install -y python3)".into())
                })?;
                let script = src_dir(ctx)?.join("python_churn.py");
                write_if_changed(&script, include_str!("../workloads/python_churn.py"))
                    .map_err(io_err(script.display()))?;
                Ok(Prepared {
                    program: py,
                    args: vec![
                        "-B".into(),
                        script.into(),
                        (if q { "1" } else { "20" }).into(),
                    ],
                    env: vec![
                        ("PYTHONMALLOC".into(), "malloc".into()),
                        ("PYTHONHASHSEED".into(), "0".into()),
                    ],
                    ..base
                })
            }
            Kind::Ruby {
                threads,
                full,
                quick,
            } => {
                let ruby = need("ruby", "ruby")?;
                let script = src_dir(ctx)?.join("ruby_stress.rb");
                write_if_changed(&script, include_str!("../workloads/ruby_stress.rb"))
                    .map_err(io_err(script.display()))?;
                Ok(Prepared {
                    program: ruby,
                    args: vec![
                        "--disable-gems".into(),
                        script.into(),
                        (*threads).into(),
                        (if q { *quick } else { *full }).into(),
                    ],
                    ..base
                })
            }
            Kind::Sqlite => {
                let sqlite = need("sqlite3", "sqlite3")?;
                let rows = if q { 5000 } else { 150_000 };
                let sql = src_dir(ctx)?.join(format!("sqlite_bulk_{rows}.sql"));
                let text = format!(
                    ".parameter set @rows {rows}\n{}",
                    include_str!("../workloads/sqlite_bulk.sql")
                );
                write_if_changed(&sql, &text).map_err(io_err(sql.display()))?;
                Ok(Prepared {
                    program: sqlite,
                    args: vec!["-batch".into(), "bench.db".into()],
                    stdin: Some(sql),
                    expect_lines: vec!["checks passed".into(), "ok".into()],
                    ..base
                })
            }
            Kind::Gxx => {
                let gxx = need("g++", "g++")?;
                let cc = src_dir(ctx)?.join("cxx_compile.cc");
                write_if_changed(&cc, include_str!("../workloads/cxx_compile.cc"))
                    .map_err(io_err(cc.display()))?;
                Ok(Prepared {
                    program: gxx,
                    args: vec![
                        (if q { "-O0" } else { "-O2" }).into(),
                        "-std=c++17".into(),
                        "-c".into(),
                        cc.into(),
                        "-o".into(),
                        "out.o".into(),
                    ],
                    expect_lines: Vec::new(),
                    expect_file: Some("out.o"),
                    ..base
                })
            }
            Kind::Git => {
                need("git", "git")?;
                let sh = which("sh").ok_or_else(|| NotReady::Error("sh not found".into()))?;
                let script = src_dir(ctx)?.join("git_ops.sh");
                write_if_changed(&script, include_str!("../workloads/git_ops.sh"))
                    .map_err(io_err(script.display()))?;
                let (files, snaps) = if q { (40, 2) } else { (300, 5) };
                let input = ctx.cache.join(format!("git-input-{files}x{snaps}"));
                generate_git_input(&input, files, snaps).map_err(io_err(input.display()))?;
                Ok(Prepared {
                    program: sh,
                    args: vec![script.into(), snaps.to_string().into(), input.into()],
                    ..base
                })
            }
            Kind::Redis => {
                let server = need("redis-server", "redis-server")?;
                let benchmark = need("redis-benchmark", "redis-tools")?;
                Ok(Prepared {
                    program: server,
                    expect_lines: Vec::new(),
                    redis: Some(RedisSetup {
                        benchmark,
                        requests: if q { 2000 } else { 100_000 },
                    }),
                    ..base
                })
            }
        }
    }
}

/// The LD_PRELOAD value for `alloc` running `program`: the allocator's
/// library, or nothing for glibc. Programs linked against another malloc
/// (Debian's redis-server links libjemalloc) get libc.so.6 preloaded for the
/// glibc column, so that glibc's malloc really is the one they use.
fn preload_for(alloc: &Allocator, linked_to_other_malloc: bool) -> Option<PathBuf> {
    match &alloc.lib {
        Some(lib) => Some(lib.clone()),
        None if linked_to_other_malloc => [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file()),
        None => None,
    }
}

/// The last `n` lines of `s`, for error messages.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn parse_metrics(stdout: &str, into: &mut BTreeMap<String, f64>) {
    for line in stdout.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("metric") {
            continue;
        }
        if let (Some(name), Some(value), unit) = (it.next(), it.next(), it.next()) {
            if let Ok(v) = value.parse::<f64>() {
                let key = match unit {
                    Some(u) => format!("{name} ({u})"),
                    None => name.to_string(),
                };
                into.insert(key, v);
            }
        }
    }
}

/// Checks that `path` (what dladdr said) is the allocator we preloaded.
fn check_allocator_line(stdout: &str, alloc: &Allocator) -> Option<String> {
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("allocator ")) else {
        return Some("the program did not report which malloc it used".into());
    };
    let got = Path::new(line.trim());
    let ok = match &alloc.lib {
        None => got
            .file_name()
            .map(|n| n.to_string_lossy().starts_with("libc.so"))
            .unwrap_or(false),
        Some(lib) => {
            let a = got.canonicalize().unwrap_or_else(|_| got.to_path_buf());
            let b = lib.canonicalize().unwrap_or_else(|_| lib.clone());
            a == b
        }
    };
    (!ok).then(|| {
        format!(
            "malloc bound to {} instead of {}'s",
            got.display(),
            alloc.name
        )
    })
}

/// Common checks on a finished run.
fn judge(
    m: &Measured,
    p: &Prepared,
    alloc: &Allocator,
    dir: &Path,
    timeout: Duration,
) -> Option<String> {
    if !m.success() {
        let mut msg = m.describe_status(timeout);
        let t = tail(&m.stderr, 8);
        if !t.is_empty() {
            let _ = write!(msg, "; stderr:\n{t}");
        }
        return Some(msg);
    }
    if m.stderr.contains("cannot be preloaded") {
        return Some(format!("LD_PRELOAD failed: {}", tail(&m.stderr, 3)));
    }
    if p.reports_allocator {
        if let Some(e) = check_allocator_line(&m.stdout, alloc) {
            return Some(e);
        }
    }
    for want in &p.expect_lines {
        if !m.stdout.lines().any(|l| l.trim() == want) {
            return Some(format!(
                "output check failed: no line '{want}' in stdout:\n{}",
                tail(&m.stdout, 8)
            ));
        }
    }
    if let Some(f) = p.expect_file {
        if !dir.join(f).is_file() {
            return Some(format!("{f} was not produced"));
        }
    }
    None
}

impl Prepared {
    /// A shell command line that reproduces one run under `alloc` (to be
    /// run in an empty directory).
    pub fn command_line(&self, alloc: &Allocator) -> String {
        let mut parts = Vec::new();
        if let Some(p) = preload_for(alloc, self.redis.is_some()) {
            parts.push(format!("LD_PRELOAD={}", shell_quote(&p)));
        }
        for (k, v) in &self.env {
            parts.push(format!("{k}={}", shell_quote(v)));
        }
        parts.push(shell_quote(&self.program));
        if let Some(r) = &self.redis {
            parts.push(format!(
                "--port 6390 --save '' --appendonly no   # then: redis-benchmark -p 6390 -q -n {} -P 16 -r 100000 -d 128 -t set,get,lpush,rpop,sadd,hset,zadd",
                r.requests
            ));
        }
        for a in &self.args {
            parts.push(shell_quote(a));
        }
        if let Some(input) = &self.stdin {
            parts.push(format!("< {}", shell_quote(input)));
        }
        parts.join(" ")
    }

    /// One run under `alloc` in the empty directory `dir`.
    pub fn run(
        &self,
        l: &Launcher,
        alloc: &Allocator,
        dir: &Path,
        timeout: Duration,
    ) -> std::io::Result<Outcome> {
        if let Some(r) = &self.redis {
            return run_redis(l, self, r, alloc, dir, timeout);
        }
        let mut cmd = l.command(&self.program, preload_for(alloc, false).as_deref(), dir);
        cmd.args(&self.args).current_dir(dir);
        for (k, v) in self.env.iter().chain(&alloc.env) {
            cmd.env(k, v);
        }
        if let Some(input) = &self.stdin {
            cmd.stdin(fs::File::open(input)?);
        } else {
            cmd.stdin(std::process::Stdio::null());
        }
        let m = exec::run(&mut cmd, dir, timeout)?;
        let mut metrics = BTreeMap::new();
        parse_metrics(&m.stdout, &mut metrics);
        let error = judge(&m, self, alloc, dir, timeout);
        Ok(Outcome { m, metrics, error })
    }
}

// ---------------------------------------------------------------------------
// redis
// ---------------------------------------------------------------------------

fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Sends one inline command and returns the first reply line.
fn redis_command(port: u16, command: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") && buf.len() < 4096 {
        if s.read(&mut byte)? == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

fn run_redis(
    l: &Launcher,
    p: &Prepared,
    r: &RedisSetup,
    alloc: &Allocator,
    dir: &Path,
    timeout: Duration,
) -> std::io::Result<Outcome> {
    let server_dir = dir.join("server");
    let client_dir = dir.join("client");
    fs::create_dir_all(&server_dir)?;
    fs::create_dir_all(&client_dir)?;
    let port = free_port()?;
    let mut cmd = l.command(&p.program, preload_for(alloc, true).as_deref(), &server_dir);
    cmd.envs(alloc.env.iter().map(|(k, v)| (k, v)));
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(["--daemonize", "no", "--databases", "1", "--dir"])
    .arg(&server_dir)
    .current_dir(&server_dir)
    .stdin(std::process::Stdio::null());
    let server = exec::start(&mut cmd, &server_dir)?;
    let mut metrics = BTreeMap::new();

    // Wait until it answers PING (or dies).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    while Instant::now() < deadline {
        if let Some(done) = server.try_finished() {
            let m = server.finished(done, &server_dir);
            let error = Some(format!(
                "redis-server ended before answering: {}; stderr:\n{}\n{}",
                m.describe_status(timeout),
                tail(&m.stdout, 5),
                tail(&m.stderr, 5)
            ));
            return Ok(Outcome { m, metrics, error });
        }
        if redis_command(port, "PING")
            .map(|l| l == "+PONG")
            .unwrap_or(false)
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = |server: exec::Started, sig: i32| {
        server.signal_group(sig);
        server.wait(Duration::from_secs(30), &server_dir)
    };
    if !ready {
        let m = stop(server, libc::SIGKILL);
        return Ok(Outcome {
            m,
            metrics,
            error: Some("redis-server did not answer PING within 20 s".into()),
        });
    }

    // The client runs under glibc: only the server is being measured.
    let mut bench = l.command(&r.benchmark, None, &client_dir);
    bench
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "--csv"])
        .args([
            "-n",
            &r.requests.to_string(),
            "-P",
            "16",
            "-r",
            "100000",
            "-d",
            "128",
        ])
        .args(["-t", "set,get,lpush,rpop,sadd,hset,zadd"])
        .current_dir(&client_dir)
        .stdin(std::process::Stdio::null());
    let client = exec::run(&mut bench, &client_dir, timeout);
    let mut error = None;
    match &client {
        Ok(c) if c.success() => {
            // --csv: "test","rps",...; a header line first.
            for line in c.stdout.lines() {
                let cols: Vec<&str> = line.split(',').map(|s| s.trim_matches('"')).collect();
                if cols.len() >= 2 {
                    if let Ok(rps) = cols[1].parse::<f64>() {
                        metrics.insert(format!("rps_{} (req/s)", cols[0]), rps);
                    }
                }
            }
            if metrics.len() < 7 {
                error = Some(format!(
                    "redis-benchmark printed {} results, expected 7:\n{}",
                    metrics.len(),
                    tail(&c.stdout, 10)
                ));
            }
            match redis_command(port, "DBSIZE") {
                Ok(l)
                    if l.strip_prefix(':')
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                        > 0 => {}
                Ok(l) => error = error.or(Some(format!("DBSIZE after the benchmark: {l}"))),
                Err(e) => error = error.or(Some(format!("DBSIZE after the benchmark: {e}"))),
            }
        }
        Ok(c) => {
            error = Some(format!(
                "redis-benchmark: {}; stderr:\n{}",
                c.describe_status(timeout),
                tail(&c.stderr, 8)
            ))
        }
        Err(e) => error = Some(format!("redis-benchmark: {e}")),
    }
    // SIGTERM: redis shuts down cleanly (nothing to save) and exits 0.
    let mut m = stop(server, libc::SIGTERM);
    if error.is_none() && !m.success() {
        error = Some(format!(
            "redis-server: {} at shutdown; log:\n{}",
            m.describe_status(Duration::from_secs(30)),
            tail(&m.stdout, 8)
        ));
    }
    if error.is_none() && m.stderr.contains("cannot be preloaded") {
        error = Some(format!("LD_PRELOAD failed: {}", tail(&m.stderr, 3)));
    }
    // Time is the client's wall time; CPU and RSS are the server's.
    if let Ok(c) = &client {
        m.wall_s = c.wall_s;
    }
    Ok(Outcome { m, metrics, error })
}

// ---------------------------------------------------------------------------
// git input
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 32] = [
    "alloc", "buffer", "chunk", "free", "heap", "page", "segment", "span", "thread", "cache",
    "arena", "block", "size", "class", "list", "node", "count", "index", "value", "result",
    "error", "state", "lock", "queue", "map", "slot", "limit", "offset", "align", "grow", "trim",
    "needle",
];

fn source_line(rng: &mut Rng, out: &mut String) {
    let indent = rng.below(4) as usize * 4;
    out.extend(std::iter::repeat_n(' ', indent));
    let n = 3 + rng.below(8);
    for i in 0..n {
        if i > 0 {
            out.push(if rng.below(5) == 0 { '_' } else { ' ' });
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out.push_str(match rng.below(4) {
        0 => " {\n",
        1 => ";\n",
        2 => "(x, y);\n",
        _ => " = 0;\n",
    });
}

fn source_file(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..40 + rng.below(200) {
        source_line(rng, &mut s);
    }
    s
}

/// Generates `snaps` versions of a `files`-file source tree under `dir`
/// (snap0, snap1, ...): each version edits about 15% of the files, adds a
/// few and deletes a few. Deterministic; skipped when already complete.
fn generate_git_input(dir: &Path, files: usize, snaps: usize) -> std::io::Result<()> {
    if dir.join("complete-v1").is_file() {
        return Ok(());
    }
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    // Built aside and renamed into place, so that concurrent harnesses
    // never see a half-written tree.
    let tmp = dir.with_extension(format!("tmp.{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    write_git_input(&tmp, files, snaps)?;
    if fs::rename(&tmp, dir).is_err() {
        // Another harness got there first.
        fs::remove_dir_all(&tmp)?;
    }
    Ok(())
}

fn write_git_input(dir: &Path, files: usize, snaps: usize) -> std::io::Result<()> {
    let marker = dir.join("complete-v1");
    let mut rng = Rng(12345);
    let mut tree: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..files {
        tree.insert(
            format!("src/mod{:02}/file{i:04}.c", i % 20),
            source_file(&mut rng),
        );
    }
    let mut next_id = files;
    for s in 0..snaps {
        if s > 0 {
            let keys: Vec<String> = tree.keys().cloned().collect();
            for k in &keys {
                match rng.below(100) {
                    0..=11 => {
                        // Edit: replace a run of lines and append some.
                        let text = tree.get_mut(k).expect("key");
                        let mut lines: Vec<String> =
                            text.lines().map(|l| format!("{l}\n")).collect();
                        let at = rng.below(lines.len() as u64) as usize;
                        let mut fresh = String::new();
                        for _ in 0..1 + rng.below(10) {
                            source_line(&mut rng, &mut fresh);
                        }
                        let end = (at + 1 + rng.below(6) as usize).min(lines.len());
                        lines.splice(at..end, std::iter::once(fresh));
                        *text = lines.concat();
                    }
                    12..=13 => {
                        tree.remove(k);
                    }
                    _ => {}
                }
            }
            for _ in 0..files / 50 + 1 {
                tree.insert(
                    format!("src/mod{:02}/file{next_id:04}.c", next_id % 20),
                    source_file(&mut rng),
                );
                next_id += 1;
            }
        }
        let root = dir.join(format!("snap{s}"));
        for (path, text) in &tree {
            let p = root.join(path);
            fs::create_dir_all(p.parent().expect("parent"))?;
            fs::write(p, text)?;
        }
    }
    fs::write(marker, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut n = names();
        let len = n.len();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), len);
    }

    #[test]
    fn metrics_are_parsed() {
        let mut m = BTreeMap::new();
        parse_metrics(
            "allocator x\nmetric ns_per_pair_16 12.5 ns\nmetric bad\nok\n",
            &mut m,
        );
        assert_eq!(m.get("ns_per_pair_16 (ns)"), Some(&12.5));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn allocator_line_is_checked() {
        let glibc = Allocator {
            name: "glibc".into(),
            lib: None,
            version: String::new(),
            env: Vec::new(),
        };
        assert!(
            check_allocator_line("allocator /lib/x86_64-linux-gnu/libc.so.6\n", &glibc).is_none()
        );
        assert!(check_allocator_line("allocator /x/libmemkit.so\n", &glibc).is_some());
        assert!(check_allocator_line("ok\n", &glibc).is_some());
    }

    #[test]
    fn git_input_is_deterministic() {
        let base = std::env::temp_dir().join(format!("memkit-bench-git-{}", std::process::id()));
        generate_git_input(&base.join("a"), 10, 3).unwrap();
        generate_git_input(&base.join("b"), 10, 3).unwrap();
        let a = fs::read_to_string(base.join("a/snap2/src/mod03/file0003.c")).ok();
        let b = fs::read_to_string(base.join("b/snap2/src/mod03/file0003.c")).ok();
        assert_eq!(a, b);
        assert!(base.join("a/snap0").is_dir() && base.join("a/complete-v1").is_file());
        fs::remove_dir_all(base).unwrap();
    }
}

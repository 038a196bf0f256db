//! `memkit check`: run a program (and everything it starts) on
//! libmemkit_check.so, memkit's checking allocator.
//!
//! The library prints each report on stderr as it happens and appends it,
//! as one JSON object per line, to `check.PID.jsonl` in a private
//! directory this command creates; at the end the command merges those
//! files into `--json FILE` (one JSON array) and exits with the program's
//! status when nothing was reported, else with `--error-exitcode`.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::error::CliError;
use crate::library;
use crate::run::{preloaded, spawn_error};

const OPTIONS_ENV: &str = "MEMKIT_CHECK_OPTIONS";

pub const LONG_HELP: &str = "\
Reports (each on stderr as it happens, ASan style; all of them as a JSON
array with --json): leak (direct, indirect), double-free, invalid-free,
heap-buffer-overflow, use-after-free, memcpy-param-overlap,
alloc-dealloc-mismatch, invalid-alignment, allocation-size-too-big,
calloc-overflow, reallocarray-overflow. What each is and when it is
detected: docs/CHECK.md.

Exit status: the program's own when nothing was reported, else
--error-exitcode (23, like LeakSanitizer). Each process the program starts
keeps its own exit status (so `make` goes on past a leaking compiler),
unless --fail-each-process.

Environment:
  MEMKIT_CHECK_LIB      libmemkit_check.so to preload (default: the one next
                        to the memkit executable)
  MEMKIT_CHECK_OPTIONS  the library's options (name=value pairs separated
                        by colons, see docs/CHECK.md): set it when
                        preloading libmemkit_check.so by hand, or for the
                        options without a flag here (alloc_fill, free_fill,
                        max_fill, free_check, guard_max); this command
                        passes it on with its own options after it (they
                        win)";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Write every report, of every process, to FILE as one JSON array
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Exit status when anything was reported
    #[arg(long, value_name = "N", default_value_t = 23)]
    error_exitcode: u8,
    /// Make every process that reported exit with --error-exitcode, as
    /// LeakSanitizer does (by default each keeps its own status, and this
    /// command's status says whether any process reported)
    #[arg(long)]
    fail_each_process: bool,
    /// Check for leaks at exit
    #[arg(long, value_name = "yes|no", default_value = "yes", value_parser = ["yes", "no"])]
    leaks: String,
    /// Also list blocks still reachable at exit (not counted as reports)
    #[arg(long)]
    show_reachable: bool,
    /// Suppressions: lines of `kind:pattern`, the pattern matching a
    /// function or object name in a report's stacks (`*` wildcards)
    #[arg(long, value_name = "FILE")]
    suppressions: Option<PathBuf>,
    /// Stop the program at the first report
    #[arg(long)]
    halt_on_error: bool,
    /// Write the text reports to PATH.PID instead of stderr
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Freed bytes held back from reuse, in MiB (default: twice the live
    /// heap, at least 4 MiB and at most 64 MiB)
    #[arg(long, value_name = "MIB")]
    quarantine_mb: Option<u64>,
    /// Frames kept per stack (1-64)
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=64))]
    stack_depth: u64,
    /// Guard pages: `none`, `all` (every block up to 1 MiB against a guard
    /// page, freed blocks inaccessible: overflow and use-after-free reads
    /// fault and are reported), or `sample[=N]` (one block in N, default 1000)
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = parse_guard)]
    guard: String,
    /// The program to check and its arguments
    #[arg(last = true, required = true, value_name = "PROG")]
    command: Vec<OsString>,
}

fn parse_guard(v: &str) -> Result<String, String> {
    match v {
        "none" => Ok("guard=none".into()),
        "all" => Ok("guard=all".into()),
        "sample" => Ok("guard=sample".into()),
        _ => match v.strip_prefix("sample=").map(str::parse::<u64>) {
            Some(Ok(n)) if n >= 1 => Ok(format!("guard=sample:guard_sample={n}")),
            _ => Err("expected none, all, sample or sample=N (N >= 1)".into()),
        },
    }
}

/// A private directory for the JSON report files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn create() -> Result<Self, CliError> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let p = base.join(format!("memkit-check.{}.{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(Dir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(CliError::new(format!(
                        "cannot create a report directory in {}: {}",
                        base.display(),
                        memkit::describe_io(&e)
                    )))
                }
            }
        }
        Err(CliError::new(format!(
            "cannot create a report directory in {}",
            base.display()
        )))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn options(args: &CheckArgs, dir: &Path) -> Result<String, CliError> {
    let mut o = vec![
        format!("json_dir={}", dir.display()),
        format!("error_exitcode={}", args.error_exitcode),
        format!("leaks={}", if args.leaks == "yes" { 1 } else { 0 }),
        format!("stack_depth={}", args.stack_depth),
    ];
    if let Some(mb) = args.quarantine_mb {
        o.push(format!("quarantine_mb={mb}"));
    }
    o.push(args.guard.clone());
    if !args.fail_each_process {
        o.push("keep_status=1".into());
    }
    if args.show_reachable {
        o.push("show_reachable=1".into());
    }
    if args.halt_on_error {
        o.push("halt_on_error=1".into());
    }
    if let Some(s) = &args.suppressions {
        if !s.is_file() {
            return Err(CliError::new(format!(
                "suppressions file {} does not exist",
                s.display()
            )));
        }
        check_suppressions(s)?;
        o.push(format!("suppressions={}", absolute(s).display()));
    }
    if let Some(l) = &args.log_file {
        o.push(format!("log_file={}", absolute(l).display()));
    }
    for v in o.iter().filter(|v| !v.starts_with("guard=")) {
        if v.contains(':') {
            return Err(CliError::new(format!(
                "`{v}`: paths given to memkit check cannot contain a colon"
            )));
        }
    }
    // The library options without a flag (alloc_fill, free_fill, max_fill,
    // free_check, guard_max) come from the caller's own
    // MEMKIT_CHECK_OPTIONS, first: the command's, after it, win (the
    // library takes the last value of a name). It used to be replaced.
    let mine = o.join(":");
    Ok(match std::env::var(OPTIONS_ENV) {
        Ok(user) if !user.trim_matches(':').is_empty() => format!("{user}:{mine}"),
        _ => mine,
    })
}

/// Report kinds a suppression may name (docs/CHECK.md; the library's
/// `report::KINDS`).
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
];

/// Refuses a suppressions file with a line that is not `kind:pattern` or
/// names no report kind (such a line would never match; LeakSanitizer
/// refuses them too), before the program runs.
fn check_suppressions(path: &Path) -> Result<(), CliError> {
    let text = fs::read_to_string(path).map_err(|e| {
        CliError::new(format!(
            "cannot read suppressions file {}: {}",
            path.display(),
            memkit::describe_io(&e)
        ))
    })?;
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':').map(|(k, p)| (k.trim(), p.trim())) {
            Some((k, p)) if !p.is_empty() && (k == "*" || KINDS.contains(&k)) => {}
            Some((k, p)) if !p.is_empty() => bad.push(format!(
                "{}:{}: `{k}` is no report kind",
                path.display(),
                n + 1
            )),
            _ => bad.push(format!(
                "{}:{}: `{line}` is not kind:pattern",
                path.display(),
                n + 1
            )),
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(CliError::new(format!(
        "{}\n(a line is kind:pattern, the kind one of {}, or *)",
        bad.join("\n"),
        KINDS.join(", ")
    )))
}

/// Every report the processes wrote, in the order of their files. Each
/// process on the library creates its file at start: none at all means
/// nothing ran on it.
fn collect(dir: &Path) -> (Vec<serde_json::Value>, Vec<String>) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut reports = Vec::new();
    let mut warnings = Vec::new();
    if files.is_empty() {
        warnings.push(format!(
            "no process ran on {} (statically linked, or LD_PRELOAD removed from \
             its environment?): nothing was checked",
            library::CHECK.file
        ));
    }
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            warnings.push(format!("cannot read {}", f.display()));
            continue;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => reports.push(v),
                // A process killed mid-write leaves a partial last line.
                Err(_) => {
                    warnings.push(format!("{}: an incomplete report was dropped", f.display()))
                }
            }
        }
    }
    (reports, warnings)
}

fn json_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::new(format!(
        "cannot write {}: {}",
        path.display(),
        memkit::describe_io(e)
    ))
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, CliError> {
    let (mut command, program_name) = preloaded(&args.command, "check", &library::CHECK)?;
    let dir = Dir::create()?;
    let opts = options(args, &dir.0)?;
    // Created before the program runs: a path that cannot be written is
    // said at once, not after a long run whose reports it then loses.
    let json = match &args.json {
        Some(path) => Some((
            path,
            fs::File::create(path).map_err(|e| json_error(path, &e))?,
        )),
        None => None,
    };
    let status = match command.env(OPTIONS_ENV, opts).status() {
        Ok(s) => s,
        Err(e) => {
            // Nothing ran: no report file, as before it was created early.
            if let Some((path, _)) = &json {
                let _ = fs::remove_file(path);
            }
            return Err(spawn_error(&program_name, &e));
        }
    };
    // The program's own status is passed on as a number (128 + N), so the
    // shell says nothing of a signal: memkit does, as `memkit run` does.
    // A program that crashed before any report (a pointer read from a
    // freed block, which holds the free fill 0xdfdf…) showed no sign of it.
    if let Some(sig) = status.signal() {
        eprintln!(
            "memkit check: {} killed by {}",
            program_name,
            memkit_sys::signal::describe(sig)
        );
    }
    let (reports, warnings) = collect(&dir.0);
    for w in &warnings {
        eprintln!("memkit check: {w}");
    }
    if let Some((path, mut file)) = json {
        let text = serde_json::to_string_pretty(&reports).unwrap_or_else(|_| "[]".into());
        file.write_all((text + "\n").as_bytes())
            .map_err(|e| json_error(path, &e))?;
    }
    // Still-reachable blocks are listed, not counted as reports.
    let counted: Vec<_> = reports
        .iter()
        .filter(|r| r.get("leak_kind").and_then(|k| k.as_str()) != Some("reachable"))
        .collect();
    let program_status = match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => (128 + s) as u8,
        _ => 1,
    };
    if !counted.is_empty() {
        let mut pids: Vec<_> = counted
            .iter()
            .filter_map(|r| r.get("pid").and_then(|p| p.as_u64()))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        eprintln!(
            "memkit check: {} report(s) from {} process(es); exit status {} (the \
             program's own: {program_status})",
            counted.len(),
            pids.len(),
            args.error_exitcode
        );
        Ok(ExitCode::from(args.error_exitcode))
    } else {
        Ok(ExitCode::from(program_status))
    }
}

//! `memkit run`: run a program with libmemkit.so preloaded and report on its
//! memory use when it exits.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use memkit::describe_io;

use crate::error::CliError;
use crate::report::{parse_reports, RunReport, Termination};

/// Environment variable naming the library to preload, overriding the copy
/// next to the memkit executable.
const LIB_ENV: &str = "MEMKIT_LIB";
const LIB_NAME: &str = "libmemkit.so";
/// Tells libmemkit.so where to append its exit report line.
const REPORT_FILE_ENV: &str = "MEMKIT_REPORT_FILE";
/// Makes libmemkit.so print its own malloc_stats-style summary at exit.
const SHOW_STATS_ENV: &str = "MEMKIT_SHOW_STATS";

/// Long help for `memkit run`, including the `--json` schema so scripts
/// have a contract to code against.
pub const LONG_HELP: &str = "\
The program's stdin, stdout and stderr are untouched; the report goes to
stderr after it exits. memkit exits with the program's status (128+N if it
was killed by signal N), 127 if it cannot be found, 126 if it cannot be
executed, and 125 if memkit itself fails.

Every process that runs on libmemkit.so (the program and any child it
starts) reports once, when it exits. Totals are summed over all of them;
peaks are those of the program itself. Processes killed by a signal, and
statically linked programs, do not report.

Environment:
  MEMKIT_LIB         libmemkit.so to preload (default: the one next to the
                     memkit executable)
  LD_PRELOAD         kept; libmemkit.so is put in front of it

--json prints a single line holding one JSON object, and nothing else:
  version            1 (bumped on incompatible changes)
  program            the program as given on the command line
  pid                its process id
  exit_code          exit code, or null if it was killed by a signal
  signal             the signal that killed it, or null
  signal_name        e.g. \"SIGSEGV\", or null
  status             memkit's own exit status (exit code or 128+signal)
  elapsed_seconds    wall-clock time (float)
  peak_rss_bytes     peak resident set size of the program (and of the
                     children it waited for), or null
  reported           true if any process sent a report
  main_reported      true if the program itself sent a report
  child_processes    number of reports from other processes
  peak_in_use        peak bytes in use (program's; the largest child's if
                     the program did not report); approximate
  peak_mapped        peak bytes mapped from the OS (same rule)
  totals             sums over all reports: allocs, frees, reallocs,
                     bytes_allocated, in_use (still allocated at exit),
                     mapped (at exit), unmapped, purged, threads
  processes          one object per report: pid, ppid, allocs, frees,
                     reallocs, bytes_allocated, in_use, peak_in_use, mapped,
                     peak_mapped, unmapped, purged, threads, exe
  warnings           malformed report lines that were ignored (strings)
All sizes are in bytes.";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Also have libmemkit.so print its own detailed statistics at exit
    /// (sets MEMKIT_SHOW_STATS=1)
    #[arg(long)]
    stats: bool,

    /// Print the report as one line of JSON instead of a table (schema in
    /// --help)
    #[arg(long)]
    json: bool,

    /// The program to run and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "PROG")]
    command: Vec<OsString>,
}

pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(CliError::new(
            "no program given (usage: memkit run -- PROG ARGS...)",
        ));
    };
    let program_name = program.to_string_lossy().into_owned();
    let library = find_library()?;
    let report_file = ReportFile::create()?;

    let mut command = Command::new(program);
    command
        .args(program_args)
        .env(
            "LD_PRELOAD",
            ld_preload(&library, std::env::var_os("LD_PRELOAD")),
        )
        .env(REPORT_FILE_ENV, &report_file.path);
    if args.stats {
        command.env(SHOW_STATS_ENV, "1");
    }

    install_signal_handlers()?;
    let start = Instant::now();
    let child = command
        .spawn()
        .map_err(|err| spawn_error(&program_name, &err))?;
    let pid = child.id();
    let pid_t = libc::pid_t::try_from(pid)
        .map_err(|_| CliError::new(format!("child pid {pid} out of range")))?;
    CHILD_PID.store(pid_t, Ordering::SeqCst);
    // A signal that arrived between spawn and the store above found no child
    // to forward to; pass it on now (the program may already be running).
    let pending = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: the child is unreaped, so its pid is still ours.
        unsafe { libc::kill(pid_t, pending) };
    }
    // From here on the child is reaped with wait4 (for its rusage), never
    // through `child`; dropping it neither waits nor kills.
    drop(child);

    let exit = wait_for_child(pid_t);
    let elapsed = start.elapsed();
    let (termination, peak_rss) = exit?;

    // The program has run; from here on nothing may hide its exit status,
    // so an unreadable report file is only a warning.
    let (processes, warnings) = match report_file.read() {
        Ok(bytes) => parse_reports(&String::from_utf8_lossy(&bytes)),
        Err(err) => (Vec::new(), vec![err.message]),
    };
    let report = RunReport {
        program: program_name,
        pid,
        termination,
        elapsed,
        peak_rss,
        processes,
        warnings,
    };
    print_report(&report, args.json);
    Ok(ExitCode::from(termination.shell_status()))
}

fn print_report(report: &RunReport, json: bool) {
    let mut text = String::new();
    if json {
        // Serialising a `Value` cannot fail; fall back to an empty object
        // rather than panicking just in case.
        text = serde_json::to_string(&report.to_json()).unwrap_or_else(|_| "{}".to_owned());
        text.push('\n');
    } else {
        if let Termination::Signaled(sig) = report.termination {
            text = format!(
                "memkit: {} killed by {}\n",
                report.program,
                memkit_sys::signal::describe(sig)
            );
        }
        text.push_str(&report.to_text());
    }
    // A closed or broken stderr must not turn into a panic; there is
    // nowhere left to report it anyway.
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Finds libmemkit.so: `MEMKIT_LIB` if set (an empty value counts as unset,
/// as usual for environment overrides), else the file next to the memkit
/// executable, which is where `cargo build --release` puts it.
fn find_library() -> Result<PathBuf, CliError> {
    let path = match std::env::var_os(LIB_ENV).filter(|v| !v.is_empty()) {
        Some(value) => {
            let path = PathBuf::from(&value);
            if !path.is_file() {
                let problem = if path.exists() {
                    "is not a regular file"
                } else {
                    "does not exist"
                };
                return Err(CliError::new(format!(
                    "{LIB_ENV}={} {problem}; point it at a built {LIB_NAME} or unset it",
                    path.display()
                )));
            }
            // Absolute, so child processes that change directory still
            // preload it.
            fs::canonicalize(&path).unwrap_or(path)
        }
        None => {
            let exe = std::env::current_exe().map_err(|err| {
                CliError::new(format!(
                    "cannot locate the memkit executable to find {LIB_NAME} next to it ({}); \
                     set {LIB_ENV}=/path/to/{LIB_NAME}",
                    describe_io(&err)
                ))
            })?;
            let dir = exe.parent().unwrap_or(Path::new("/"));
            let candidate = dir.join(LIB_NAME);
            if !candidate.is_file() {
                return Err(CliError::new(format!(
                    "cannot find {LIB_NAME} (looked in {}); build it with \
                     `cargo build --release` (it lands next to target/release/memkit) \
                     or set {LIB_ENV}=/path/to/{LIB_NAME}",
                    dir.display()
                )));
            }
            candidate
        }
    };
    // The dynamic loader splits LD_PRELOAD on spaces and colons, so such a
    // path would silently preload nothing.
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b' ' | b':'))
    {
        return Err(CliError::new(format!(
            "{} contains a space or colon, which LD_PRELOAD cannot express; \
             copy {LIB_NAME} elsewhere and set {LIB_ENV}",
            path.display()
        )));
    }
    Ok(path)
}

/// Puts the library first (so it wins symbol resolution) while keeping
/// whatever the user already preloads.
fn ld_preload(library: &Path, existing: Option<OsString>) -> OsString {
    let mut value = library.as_os_str().to_owned();
    if let Some(existing) = existing.filter(|e| !e.as_bytes().iter().all(u8::is_ascii_whitespace)) {
        value.push(":");
        value.push(existing);
    }
    value
}

/// Maps a failed spawn to the shell's conventions (127 not found, 126 found
/// but not runnable) so scripts see the same status with or without memkit.
fn spawn_error(program: &str, err: &io::Error) -> CliError {
    let status = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    CliError::with_status(
        status,
        format!("cannot run {program}: {}", describe_io(err)),
    )
}

/// The report file handed to the child. Created empty with O_EXCL and mode
/// 0600 under a unique name, so nobody else can pre-create or read it, and
/// removed on drop whatever path `run` leaves by.
struct ReportFile {
    path: PathBuf,
}

impl ReportFile {
    fn create() -> Result<Self, CliError> {
        let dir = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let mut last_error = None;
        for attempt in 0..100u32 {
            let path = dir.join(format!(
                "memkit-report-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(ReportFile { path }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_error = Some(err),
                Err(err) => {
                    last_error = Some(err);
                    break;
                }
            }
        }
        let reason = last_error.map_or_else(String::new, |err| describe_io(&err));
        Err(CliError::new(format!(
            "cannot create a report file in {}: {reason} (set TMPDIR to a writable directory)",
            dir.display()
        )))
    }

    fn read(&self) -> Result<Vec<u8>, CliError> {
        fs::read(&self.path).map_err(|err| {
            CliError::new(format!(
                "cannot read the report file {}: {}",
                self.path.display(),
                describe_io(&err)
            ))
        })
    }
}

impl Drop for ReportFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Pid of the running child for the signal handler; 0 when there is none.
static CHILD_PID: AtomicI32 = AtomicI32::new(0);
/// A signal to forward that arrived before CHILD_PID was known.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Keeps memkit alive until the child is gone, so the report is never lost.
///
/// Signals from the terminal (Ctrl-C, Ctrl-\, hangup) already reach the
/// child, which shares our process group; memkit just survives them and
/// lets the child decide. Signals sent to memkit alone by another process
/// (`kill <memkit pid>`) are passed on to the child, since the sender meant
/// to stop the program, not the wrapper. Handlers (not SIG_IGN) are used
/// because exec resets handlers but inherits ignored signals, which would
/// make the child immune to Ctrl-C. A signal memkit itself was started
/// with ignored (e.g. SIGINT for a background job of a script) is left
/// ignored, so the child inherits that just as it would without memkit.
fn install_signal_handlers() -> Result<(), CliError> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: sigaction is plain data; all-zero is a valid value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `old` is writable.
        let queried = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0;
        if queried && old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: sigaction is plain data; all-zero is a valid value that we
        // fill in before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised, the handler has the
        // SA_SIGINFO signature and only does async-signal-safe work.
        if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } != 0 {
            return Err(CliError::new(format!(
                "cannot install a handler for {}: {}",
                memkit_sys::signal::describe(sig),
                describe_io(&io::Error::last_os_error())
            )));
        }
    }
    Ok(())
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: errno is thread-local and always addressable; it is saved and
    // restored so the interrupted code never sees kill()'s errno.
    let errno = unsafe { *libc::__errno_location() };
    let child = CHILD_PID.load(Ordering::SeqCst);
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t to SA_SIGINFO handlers.
        let (code, sender) = unsafe { ((*info).si_code, (*info).si_pid()) };
        // si_code <= 0 means a process sent it (SI_USER, SI_QUEUE, SI_TKILL);
        // terminal signals carry SI_KERNEL and reached the child already.
        if code <= 0 && child == 0 {
            // The child is being spawned: run() forwards it once it knows the pid.
            PENDING_SIGNAL.store(sig, Ordering::SeqCst);
        } else if code <= 0 && sender != child {
            // SAFETY: kill is async-signal-safe; `child` is still unreaped
            // (CHILD_PID is cleared before wait4 reaps it), so the pid
            // cannot have been reused by another process.
            unsafe { libc::kill(child, sig) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Waits for the child to terminate and reaps it, returning how it ended
/// and its peak RSS in bytes.
///
/// Waiting happens in two steps so the signal handler can never forward a
/// signal to a recycled pid: waitid(WNOWAIT) leaves the child a zombie
/// (its pid stays reserved) while CHILD_PID is cleared, then wait4 reaps it
/// and collects its rusage.
fn wait_for_child(pid: libc::pid_t) -> Result<(Termination, Option<u64>), CliError> {
    let id = libc::id_t::try_from(pid).unwrap_or_default();
    loop {
        // SAFETY: siginfo_t is plain data and all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(CliError::new(format!(
                "cannot wait for the child: {}",
                describe_io(&err)
            )));
        }
    }
    CHILD_PID.store(0, Ordering::SeqCst);

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data and all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid and writable.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if rc != -1 || err.kind() != io::ErrorKind::Interrupted {
            return Err(CliError::new(format!(
                "cannot wait for the child: {}",
                describe_io(&err)
            )));
        }
    }

    let termination = if libc::WIFSIGNALED(status) {
        Termination::Signaled(libc::WTERMSIG(status))
    } else {
        Termination::Exited(libc::WEXITSTATUS(status))
    };
    // Linux reports ru_maxrss in KiB.
    let peak_rss = u64::try_from(usage.ru_maxrss)
        .ok()
        .filter(|&kib| kib > 0)
        .map(|kib| kib.saturating_mul(1024));
    Ok((termination, peak_rss))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn ld_preload_prepends_and_keeps_user_entries() {
        let lib = Path::new("/x/libmemkit.so");
        assert_eq!(ld_preload(lib, None), OsStr::new("/x/libmemkit.so"));
        assert_eq!(
            ld_preload(lib, Some(" ".into())),
            OsStr::new("/x/libmemkit.so")
        );
        assert_eq!(
            ld_preload(lib, Some("/a.so /b.so".into())),
            OsStr::new("/x/libmemkit.so:/a.so /b.so")
        );
    }

    #[test]
    fn spawn_errors_follow_shell_statuses() {
        let err = spawn_error("nope", &io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(err.status, 127);
        assert_eq!(err.message, "cannot run nope: No such file or directory");
        let err = spawn_error("/etc", &io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(err.status, 126);
        assert_eq!(err.message, "cannot run /etc: Permission denied");
    }

    #[test]
    fn report_file_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt as _;
        let file = ReportFile::create().unwrap();
        let path = file.path.clone();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(file.read().unwrap().is_empty());
        drop(file);
        assert!(!path.exists());
    }
}

//! `memkit run`: run a program with libmemkit.so preloaded and report on its
//! memory use, and that of every process it starts, when it exits.
//!
//! Each process on libmemkit.so keeps its record in a file of a private
//! directory (`report_dir`), up to date however it ends. memkit is the
//! subreaper of the program's descendants, so it also learns how orphans
//! ended; `ending` puts records and wait statuses together.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use clap::Args;

use memkit::describe_io;

use memkit_sys::report_file;

use crate::ending::Process;
use crate::error::CliError;
use crate::library;
use crate::report::{RunReport, Termination};
use crate::report_dir::{Collected, ReportDir};

/// Tells libmemkit.so where to keep the process's record.
const REPORT_DIR_ENV: &str = report_file::DIR_ENV;
/// Makes libmemkit.so print its own malloc_stats-style summary at exit.
const SHOW_STATS_ENV: &str = "MEMKIT_SHOW_STATS";

/// Long help for `memkit run`, including the `--json` schema so scripts
/// have a contract to code against.
pub const LONG_HELP: &str = "\
The program's stdin, stdout and stderr are untouched; the report goes to
stderr after it exits. memkit exits with the program's status (128+N if it
was killed by signal N), 127 if it cannot be found, 126 if it cannot be
executed, and 125 if memkit itself fails.

Every process that runs on libmemkit.so (the program and every process it
starts) is reported, however it ends. Each keeps its counters in a file of
a private directory (MEMKIT_REPORT_DIR): refreshed while it allocates and
final when its exit handlers run. A process that ends without them (_exit,
abort, a fatal signal, SIGKILL) shows the counters of its last refresh:
what it did after its last allocation slow path, and at most 10 ms before
it, is missing. Each process is marked with how it ended: the exit status
or signal where memkit saw it (the program, and orphans, which memkit
collects as their subreaper) or its record tells (the status passed to
exit), else \"ended without running exit handlers\". Totals are summed
over all processes; peaks are those of the program itself. Statically
linked programs do not run on libmemkit.so and are not reported.

libmemkit.so is found as memkit --help says (MEMKIT_LIB, beside the memkit
executable, the memkit package) and must be of memkit's own version. It is
put in front of any LD_PRELOAD the program already has. memkit env lists
the variables that configure it.

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
  processes          one object per process, in the order they started:
                     pid, ppid, allocs, frees, reallocs, bytes_allocated,
                     in_use, peak_in_use, mapped, peak_mapped, unmapped,
                     purged, threads, exe; then how it ended:
                     exit_handlers (true: the counters are those at exit;
                     false: of its last refresh), ended (\"exited\",
                     \"killed\", \"unknown\": ended without running exit
                     handlers, status not seen, or \"running\": still
                     running when memkit finished), exit_code, signal,
                     signal_name (null when not known or not applicable),
                     ending (the same in words, as in the text report)
  warnings           report files that were ignored, and why (strings)
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
    let library = library::find_checked(&library::MEMKIT)?;
    let report_dir = ReportDir::create()?;

    let mut command = Command::new(program);
    command
        .args(program_args)
        .env(
            "LD_PRELOAD",
            ld_preload(&library, std::env::var_os("LD_PRELOAD")),
        )
        .env(REPORT_DIR_ENV, report_dir.path());
    if args.stats {
        command.env(SHOW_STATS_ENV, "1");
    }

    install_signal_handlers()?;
    become_subreaper();
    let collector = report_dir.collect();
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

    let mut reaped = Vec::new();
    let exit = wait_for_child(pid_t, &mut reaped);
    let elapsed = start.elapsed();
    let (termination, peak_rss) = exit?;
    reap_orphans(&mut reaped);

    // The program has run; from here on nothing may hide its exit status,
    // so unreadable report files are only warnings.
    let collected = collector.finish();
    let (processes, warnings) = processes(collected, &reaped);
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

/// A process memkit reaped: the program, or an orphan of its descendants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reaped {
    pid: u32,
    /// Its start time, read while it was a zombie (None: unreadable).
    start: Option<u64>,
    termination: Termination,
}

/// Each record with how its process ended.
fn processes(collected: Collected, reaped: &[Reaped]) -> (Vec<Process>, Vec<String>) {
    let processes = collected
        .found
        .into_iter()
        .map(|found| {
            let pid = u32::try_from(found.record.pid).unwrap_or(0);
            // The same process: same pid and start time, or the same pid
            // when the start time could not be read.
            let waited = reaped
                .iter()
                .find(|r| r.pid == pid && r.start == Some(found.start))
                .or_else(|| reaped.iter().find(|r| r.pid == pid && r.start.is_none()))
                .map(|r| r.termination);
            let start = found.start;
            Process::new(found, waited, || alive(pid, start))
        })
        .collect();
    (processes, collected.warnings)
}

/// Whether process `pid` that started at `start` still runs (a zombie
/// does not).
fn alive(pid: u32, start: u64) -> bool {
    let Ok(stat) = fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let same = start == 0 || report_file::stat_start_time(&stat) == Some(start);
    same && !matches!(report_file::stat_state(&stat), Some(b'Z' | b'X') | None)
}

/// The start time of process `pid` (a zombie's too).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    report_file::stat_start_time(&stat)
}

/// Makes memkit the parent of every orphan among the program's
/// descendants, so that it learns how they ended. Best effort.
fn become_subreaper() {
    // SAFETY: prctl with these arguments changes only a process attribute.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
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

/// Puts the library first (so it wins symbol resolution) while keeping
/// whatever the user already preloads.
pub(crate) fn ld_preload(library: &Path, existing: Option<OsString>) -> OsString {
    let mut value = library.as_os_str().to_owned();
    if let Some(existing) = existing.filter(|e| !e.as_bytes().iter().all(u8::is_ascii_whitespace)) {
        value.push(":");
        value.push(existing);
    }
    value
}

/// Maps a failed spawn to the shell's conventions (127 not found, 126 found
/// but not runnable) so scripts see the same status with or without memkit.
pub(crate) fn spawn_error(program: &str, err: &io::Error) -> CliError {
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
/// and its peak RSS in bytes. Orphans that end meanwhile are reaped too,
/// into `reaped`, as is the child.
///
/// Waiting happens in two steps so the signal handler can never forward a
/// signal to a recycled pid: waitid(WNOWAIT) leaves the child a zombie
/// (its pid stays reserved) while CHILD_PID is cleared, then wait4 reaps it
/// and collects its rusage.
fn wait_for_child(
    pid: libc::pid_t,
    reaped: &mut Vec<Reaped>,
) -> Result<(Termination, Option<u64>), CliError> {
    loop {
        // SAFETY: siginfo_t is plain data and all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(CliError::new(format!(
                "cannot wait for the child: {}",
                describe_io(&err)
            )));
        }
        // SAFETY: waitid filled in a child's siginfo.
        let who = unsafe { info.si_pid() };
        if who == pid {
            break;
        }
        reap_orphan(&info, reaped);
    }
    CHILD_PID.store(0, Ordering::SeqCst);
    let start = start_time(pid as u32);

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
    reaped.push(Reaped {
        pid: pid as u32,
        start,
        termination,
    });
    // Linux reports ru_maxrss in KiB.
    let peak_rss = u64::try_from(usage.ru_maxrss)
        .ok()
        .filter(|&kib| kib > 0)
        .map(|kib| kib.saturating_mul(1024));
    Ok((termination, peak_rss))
}

/// Reaps the orphans that have ended by now (the program's children that
/// outlived it become memkit's); those still running are left alone.
fn reap_orphans(reaped: &mut Vec<Reaped>) {
    loop {
        // SAFETY: siginfo_t is plain data and all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        if rc != 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return; // ECHILD: no children left
        }
        // SAFETY: waitid filled in the siginfo (si_pid 0: nobody ended).
        if unsafe { info.si_pid() } == 0 {
            return;
        }
        reap_orphan(&info, reaped);
    }
}

/// Reaps the ended orphan `info` describes (left a zombie by WNOWAIT, so
/// that its start time could still be read).
fn reap_orphan(info: &libc::siginfo_t, reaped: &mut Vec<Reaped>) {
    // SAFETY: a siginfo filled in by waitid for a child that ended.
    let (who, code, value) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    let start = start_time(who as u32);
    let termination = if code == libc::CLD_EXITED {
        Termination::Exited(value)
    } else {
        Termination::Signaled(value)
    };
    loop {
        // SAFETY: a null status pointer is allowed.
        let rc = unsafe { libc::waitpid(who, std::ptr::null_mut(), 0) };
        if rc != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    reaped.push(Reaped {
        pid: who as u32,
        start,
        termination,
    });
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
    fn records_meet_the_wait_statuses_of_their_processes() {
        use crate::ending::Ending;
        use crate::report::ProcessReport;
        use crate::report_dir::Found;
        use memkit_sys::report_file::State;
        let found = |pid: u64, start: u64| Found {
            start,
            state: State::Running,
            status: None,
            record: ProcessReport {
                pid,
                ..ProcessReport::default()
            },
        };
        // This test process: alive. Pid 0: no such process.
        let me = std::process::id();
        let my_start = start_time(me).unwrap();
        assert!(alive(me, my_start));
        assert!(!alive(me, my_start + 1));
        let collected = Collected {
            found: vec![
                found(100, 5),
                found(100, 9),
                found(u64::from(me), my_start),
                found(0, 1),
            ],
            warnings: vec!["w".to_owned()],
        };
        let reaped = [
            Reaped {
                pid: 100,
                start: Some(9),
                termination: Termination::Signaled(9),
            },
            Reaped {
                pid: 100,
                start: None,
                termination: Termination::Exited(4),
            },
        ];
        let (processes, warnings) = processes(collected, &reaped);
        let endings: Vec<Ending> = processes.iter().map(|p| p.ending).collect();
        assert_eq!(
            endings,
            [
                // Same pid, another process: the reaped one with no start time.
                Ending::Exited(Some(4)),
                Ending::Signaled(9),
                Ending::Running,
                Ending::Unknown,
            ]
        );
        assert_eq!(warnings, ["w"]);
    }
}

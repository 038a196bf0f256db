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
use std::time::Instant;

use clap::Args;

use memkit::describe_io;

use memkit_sys::report_file;

use crate::ending::Process;
use crate::error::CliError;
use crate::library;
use crate::report::{RunReport, Termination};
use crate::report_dir::{Collected, ReportDir};
use crate::supervise::{self, Reaped};

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
    let (mut command, program_name) = preloaded(&args.command, "run", &library::MEMKIT)?;
    let report_dir = ReportDir::create()?;
    command.env(REPORT_DIR_ENV, report_dir.path());
    if args.stats {
        command.env(SHOW_STATS_ENV, "1");
    }

    supervise::prepare()?;
    let collector = report_dir.collect();
    let start = Instant::now();
    let pid_t = supervise::spawn(&mut command, &program_name)?;
    let pid = pid_t as u32;
    let mut reaped = Vec::new();
    let exit = supervise::wait_for_child(pid_t, &mut reaped);
    let elapsed = start.elapsed();
    let (termination, peak_rss) = exit?;
    supervise::reap_orphans(&mut reaped);

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

/// The program of `memkit SUBCOMMAND -- PROG ARGS…` with `lib` (found and
/// checked) in front of its `LD_PRELOAD`, and its name for messages.
pub(crate) fn preloaded(
    command: &[OsString],
    subcommand: &str,
    lib: &library::Library,
) -> Result<(Command, String), CliError> {
    let Some((program, program_args)) = command.split_first() else {
        return Err(CliError::new(format!(
            "no program given (usage: memkit {subcommand} -- PROG ARGS...)"
        )));
    };
    let library = library::find_checked(lib)?;
    let mut cmd = Command::new(program);
    cmd.args(program_args).env(
        "LD_PRELOAD",
        ld_preload(&library, std::env::var_os("LD_PRELOAD")),
    );
    Ok((cmd, program.to_string_lossy().into_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::start_time;
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

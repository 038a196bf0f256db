//! `memkit profile`: run a program (and what it starts) with
//! libmemkit_profile.so preloaded, then turn each process's raw record
//! into pprof profiles, a summary, an HTML report and a terminal summary.
//!
//! * `launcher`: the output directory, the preload, the raw files;
//! * `symbols`: stacks against the recorded module table, sites merged;
//! * `proto`: profile.proto's messages, reading pprof files;
//! * `pprof`: writing `profile.pb.gz` and `peak.pb.gz`;
//! * `summary`: `summary.json`;
//! * `html`: `report.html`;
//! * `terminal`: what is printed at the end;
//! * `diff`: `memkit profile diff A B`.

mod diff;
mod html;
mod launcher;
mod pprof;
mod proto;
mod summary;
mod symbols;
mod terminal;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use memkit::describe_io;
use memkit_profdata::Raw;

use crate::error::CliError;
use crate::library;
use crate::run::preloaded;
use crate::supervise;

pub use launcher::{DIR_ENV, OPTIONS_ENV};

pub const LONG_HELP: &str = "\
Every allocation and free of the program, and of every process it starts
(fork and exec), is counted by stack. When the program has exited, DIR
holds, for the program itself:
  profile.pb.gz   pprof (go tool pprof, speedscope, Parca, Pyroscope):
                  alloc_objects, alloc_space, inuse_objects, inuse_space,
                  in use = at exit (leaks)
  peak.pb.gz      the same, in use = at the peak of bytes in use
  summary.json    peak and when, totals, leaks, temporary allocations,
                  top sites (schema: docs/PROFILE.md)
  report.html     one self-contained page: timeline, flame graphs
                  (allocated / at peak / leaked), top sites, sizes, leaks
  raw/            the runtime's records, one per process
and the same files for each other process in DIR/PID/. A summary is
printed on stderr. memkit exits with the program's status.

memkit profile report RAWDIR writes the files from raw records made by
preloading libmemkit_profile.so by hand (MEMKIT_PROFILE_DIR, see
docs/PROFILE.md); memkit profile diff A B compares two profiles.

Environment:
  MEMKIT_PROFILE_LIB      libmemkit_profile.so to preload (default: the
                          one next to the memkit executable)
  MEMKIT_PROFILE_DIR,     what this command sets for the library: where
  MEMKIT_PROFILE_OPTIONS  the raw records go, and sample=BYTES,
                          stack_depth=N, interval_ms=N";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ProfileArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Write profiles from raw records (libmemkit_profile.so preloaded by
    /// hand with MEMKIT_PROFILE_DIR=RAWDIR)
    Report(ReportArgs),
    /// Compare two profiles: the sites that grew or shrank, at the peak,
    /// at exit and in total
    #[command(after_long_help = diff::LONG_HELP)]
    Diff(diff::DiffArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Directory to write into (new, or empty) [default: memkit-profile.PID]
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Sample one allocation per BYTES allocated on average (jemalloc
    /// style, unbiased estimates); 0 records every allocation
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    sample: u64,
    /// Frames kept per stack (1-64)
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    stack_depth: u64,
    /// Period of the timeline of bytes in use and RSS, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    interval_ms: u64,
    /// The program to profile and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "PROG")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The directory the processes wrote their records into
    #[arg(value_name = "RAWDIR")]
    raw: PathBuf,
    /// Directory to write into (new, or empty) [default: memkit-profile.PID]
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// The process whose files go at the top of DIR [default: the first
    /// process whose parent was not profiled]
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
}

pub fn run(args: &ProfileArgs) -> Result<ExitCode, CliError> {
    match &args.action {
        Some(Action::Report(r)) => report(r),
        Some(Action::Diff(d)) => diff::run(d),
        None => profile(&args.run),
    }
}

fn profile(args: &RunArgs) -> Result<ExitCode, CliError> {
    let (mut command, program_name) = preloaded(&args.command, "profile", &library::PROFILE)?;
    let out = launcher::OutDir::create(args.output.as_deref())?;
    command.env(DIR_ENV, out.raw()).env(
        OPTIONS_ENV,
        launcher::options(args.sample, args.stack_depth, args.interval_ms),
    );
    supervise::prepare()?;
    let pid = match supervise::spawn(&mut command, &program_name) {
        Ok(pid) => pid as u32,
        Err(e) => {
            out.discard();
            return Err(e);
        }
    };
    let mut reaped = Vec::new();
    let (termination, _) = supervise::wait_for_child(pid as libc::pid_t, &mut reaped)?;
    supervise::reap_orphans(&mut reaped);
    let dir = out.finish(pid)?;
    let (raws, mut warnings) = launcher::collect(&dir.join(launcher::RAW_DIR));
    // The program has run: a file that cannot be written is a warning,
    // its exit status is still memkit's.
    let written = write_all(&raws, Some(pid), &dir, &mut warnings);
    let text = terminal::render(&program_name, pid, termination, &dir, &written, &warnings);
    terminal::print(&text);
    Ok(ExitCode::from(termination.shell_status()))
}

fn report(args: &ReportArgs) -> Result<ExitCode, CliError> {
    if !args.raw.is_dir() {
        return Err(CliError::new(format!(
            "{} is not a directory of raw profiles",
            args.raw.display()
        )));
    }
    let (raws, mut warnings) = launcher::collect(&args.raw);
    if raws.is_empty() {
        let why = warnings.join("; ");
        return Err(CliError::new(format!(
            "no raw profile in {}{}{why}",
            args.raw.display(),
            if why.is_empty() { "" } else { ": " }
        )));
    }
    let main = match args.pid {
        Some(p) if raws.iter().any(|r| r.pid == p) => p,
        Some(p) => {
            return Err(CliError::new(format!(
                "no raw profile of pid {p} in {}",
                args.raw.display()
            )))
        }
        None => launcher::root(&raws),
    };
    let out = launcher::OutDir::create(args.output.as_deref())?;
    let dir = out.finish(main)?;
    let written = write_all(&raws, Some(main), &dir, &mut warnings);
    if written.is_empty() {
        return Err(CliError::new(warnings.join("; ")));
    }
    // As the record names it (its file name normally says the same).
    let (program, pid) = written
        .iter()
        .find(|w| w.main)
        .map_or((String::new(), main), |w| {
            (w.summary.command.join(" "), w.summary.pid)
        });
    let text = terminal::render_report(&program, pid, &dir, &written, &warnings);
    terminal::print(&text);
    Ok(ExitCode::SUCCESS)
}

/// One process's files, written.
pub struct Written {
    pub pid: u32,
    /// The main process's last profile (at the top of DIR).
    pub main: bool,
    pub dir: PathBuf,
    pub summary: summary::Summary,
}

/// Writes every process's files into `dir` (the main one's at the top),
/// the main process first, then the others in the order of their files.
/// Files that cannot be written are warnings: the others are still made.
fn write_all(
    raws: &[launcher::RawFile],
    main: Option<u32>,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Vec<Written> {
    // The main pid's last profile (after any exec) is the program's.
    let top = main.and_then(|m| {
        raws.iter()
            .enumerate()
            .filter(|(_, r)| r.pid == m)
            .max_by_key(|(_, r)| r.seq)
            .map(|(i, _)| i)
    });
    if let (Some(m), None) = (main, top) {
        warnings.push(format!(
            "process {m} (the program) left no profile: it may be statically linked, \
             or have ended without running its exit handlers (_exit, a fatal signal)"
        ));
    }
    let mut order: Vec<usize> = top.into_iter().collect();
    order.extend((0..raws.len()).filter(|&i| Some(i) != top));
    let mut out = Vec::new();
    for i in order {
        let r = &raws[i];
        let is_top = Some(i) == top;
        let pdir = if is_top {
            dir.to_path_buf()
        } else {
            dir.join(&r.stem)
        };
        let summary = match write_process(&r.raw, &pdir) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(e.message);
                continue;
            }
        };
        out.push(Written {
            pid: r.pid,
            main: is_top,
            dir: pdir,
            summary,
        });
    }
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    fs::write(path, bytes).map_err(|e| {
        CliError::new(format!(
            "cannot write {}: {}",
            path.display(),
            describe_io(&e)
        ))
    })
}

/// Writes one process's four files into `dir` (created when missing).
fn write_process(raw: &Raw, dir: &Path) -> Result<summary::Summary, CliError> {
    fs::create_dir_all(dir).map_err(|e| {
        CliError::new(format!(
            "cannot create {}: {}",
            dir.display(),
            describe_io(&e)
        ))
    })?;
    let model = symbols::symbolize(raw);
    let meta = pprof::Meta {
        pid: raw.pid,
        exe: &raw.exe,
        command: &raw.command,
        start_unix_ns: raw.start_unix_ns,
        duration_ns: raw.duration_ns,
        sample_bytes: raw.sample_bytes,
        peak_at_ns: raw.totals.peak_at_ns,
    };
    for (file, which) in [
        (summary::PROFILE_FILE, pprof::InUse::AtExit),
        (summary::PEAK_FILE, pprof::InUse::AtPeak),
    ] {
        let p = pprof::build(&model, &meta, which);
        write_file(&dir.join(file), &pprof::encode_gz(&p))?;
    }
    let summary = summary::build(raw, &model);
    let json = serde_json::to_string_pretty(&summary).unwrap_or_else(|_| "{}".into());
    write_file(&dir.join(summary::SUMMARY_FILE), (json + "\n").as_bytes())?;
    write_file(
        &dir.join(summary::REPORT_FILE),
        html::render(raw, &model, &summary).as_bytes(),
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests;

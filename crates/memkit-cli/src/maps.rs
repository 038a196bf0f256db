//! `memkit maps`: the memory layout of a process (text, data, bss, heap,
//! stacks, mappings) as a table, JSON or an SVG picture. The work is done by
//! `memkit::layout`; this module is the command line around it.

use std::fs;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;

use clap::{Args, ValueEnum};
use memkit::describe_io;
use memkit::layout::{self, LayoutError, Options, SortOrder, Target};

use crate::bounded;
use crate::error::CliError;

/// Exit status when the layout cannot be read or written.
const FAILURE: u8 = 1;

/// Long help for `memkit maps`.
pub const LONG_HELP: &str = "\
PID is a process id (1 to 2147483647), or `self` for the memkit process
itself. Reading another user's process needs root with CAP_SYS_PTRACE (the
kernel's ptrace access rules); in a container, root may lack it, and the
processes of the host are out of reach. SECS is from 0.1 to 86400.

Categories (the same names in the table and in JSON):
  text          read-only and executable segments of ELF objects
  data          their initialised writable data (PT_LOAD up to p_filesz)
  bss           their zero-initialised data (PT_LOAD beyond p_filesz)
  heap          the program-break region (brk/sbrk)
  stack         the main thread's stack
  thread_stack  other threads' stacks (found from their stack pointers)
  anon          other anonymous mappings (memkit's heap is labelled)
  file          other file mappings
  shm           POSIX/System V shared memory, memfd, shared anonymous
  other         vdso, vvar, vsyscall, guard pages, reservations

Sizes are KiB/MiB/GiB (K/M/G in the mapping rows). The overall totals are
the kernel's /proc/PID/smaps_rollup. --json prints one object: pid, command,
brk {start, current}, totals, categories {text, data, ...} (all ten),
mappings [...], objects, threads, memkit; the schema is in docs/MAPS.md.

Exit status: 0 on success, 1 if the process cannot be read (no such
process, permission denied, it exited) or the SVG cannot be written.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    /// By start address
    Addr,
    /// Largest first
    Size,
}

/// Show the memory layout of a process: text, data, bss, heap, stacks and
/// every mapping, grouped by category.
#[derive(Debug, Args)]
#[command(
    about = "Show the memory layout of a process: text, data, bss, heap, stacks, mappings",
    after_long_help = LONG_HELP
)]
pub struct MapsArgs {
    /// Process id, or `self`
    // Negative numbers reach our parser, which says what a pid may be.
    #[arg(value_name = "PID", allow_negative_numbers = true)]
    pub pid: String,

    /// Order of the mappings within each category
    #[arg(long, value_enum, default_value_t = Sort::Addr)]
    pub sort: Sort,

    /// Print one JSON object (schema in docs/MAPS.md) instead of the table
    #[arg(long)]
    pub json: bool,

    /// Also draw the address space as an SVG picture into FILE
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Read only /proc/PID/maps and smaps_rollup: no per-mapping RSS/PSS
    #[arg(long)]
    pub fast: bool,

    /// Show the layout again every SECS seconds (0.1 to 86400) until the
    /// process exits
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub watch: Option<String>,
}

/// The range of `--watch`: faster than 0.1 s the reads of /proc dominate
/// the machine; a day is the longest interval anyone means.
const WATCH_MIN: f64 = 0.1;
const WATCH_MAX: f64 = 86_400.0;

fn fail(message: impl Into<String>) -> CliError {
    CliError::with_status(FAILURE, message)
}

fn layout_error(e: &LayoutError) -> CliError {
    fail(format!("maps: {e}"))
}

/// Writes to stdout; a closed pipe (`memkit maps 1 | head`) ends quietly.
fn emit(text: &str) -> Result<bool, CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(fail(format!(
            "maps: cannot write to standard output: {}",
            describe_io(&e)
        ))),
    }
}

fn show(args: &MapsArgs, target: Target) -> Result<bool, LayoutErrorOr> {
    let l = layout::read(target, &Options { fast: args.fast }).map_err(LayoutErrorOr::Layout)?;
    if let Some(path) = &args.svg {
        fs::write(path, l.to_svg()).map_err(|e| {
            LayoutErrorOr::Cli(fail(format!(
                "maps: cannot write {}: {}",
                path.display(),
                describe_io(&e)
            )))
        })?;
    }
    let text = if args.json {
        let mut j = l.to_json();
        j.push('\n');
        j
    } else {
        let sort = match args.sort {
            Sort::Addr => SortOrder::Address,
            Sort::Size => SortOrder::Size,
        };
        l.render_table(sort)
    };
    emit(&text).map_err(LayoutErrorOr::Cli)
}

enum LayoutErrorOr {
    Layout(LayoutError),
    Cli(CliError),
}

/// Runs `memkit maps`.
pub fn run(args: &MapsArgs) -> Result<ExitCode, CliError> {
    let target: Target = args
        .pid
        .parse()
        .map_err(|e: String| fail(format!("maps: {e}")))?;
    let interval = args
        .watch
        .as_deref()
        .map(|text| bounded::seconds("--watch", text, WATCH_MIN, WATCH_MAX))
        .transpose()
        .map_err(|e| fail(format!("maps: {e}")))?;
    let Some(interval) = interval else {
        return match show(args, target) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(LayoutErrorOr::Layout(e)) => Err(layout_error(&e)),
            Err(LayoutErrorOr::Cli(e)) => Err(e),
        };
    };
    let mut shown = false;
    loop {
        match show(args, target) {
            Ok(true) => shown = true,
            Ok(false) => return Ok(ExitCode::SUCCESS),
            // The watched process ended: that ends the watch, not an error.
            Err(LayoutErrorOr::Layout(
                LayoutError::Exited { pid }
                | LayoutError::Zombie { pid }
                | LayoutError::NoSuchProcess { pid },
            )) if shown => {
                let _ = writeln!(io::stderr(), "memkit: maps: process {pid} has exited");
                return Ok(ExitCode::SUCCESS);
            }
            Err(LayoutErrorOr::Layout(e)) => return Err(layout_error(&e)),
            Err(LayoutErrorOr::Cli(e)) => return Err(e),
        }
        thread::sleep(interval);
        if !emit("\n")? {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

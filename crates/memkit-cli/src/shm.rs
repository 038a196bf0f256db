//! `memkit shm`: the shared-memory heaps in /dev/shm (`memkit shm ls`) and
//! their removal (`memkit shm rm NAME...`, `memkit shm rm --stale`).
//!
//! A heap is recognised by its header (memkit's magic, then a geometry
//! that matches its size), never by its name: other files in /dev/shm are
//! left alone. Heaps are read with `pread` (`memkit_shm::inspect`): not
//! mapped (a file truncated meanwhile cannot SIGBUS us), without the
//! heap's lock, and without taking a slot in its registry of attached
//! processes, so looking at a heap never changes what it shows.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use memkit::describe_io;
use memkit_shm::inspect::{self, Refusal, Summary};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::human;

/// Exit status when a heap cannot be listed or removed.
const FAILURE: u8 = 1;

/// Where POSIX shared-memory objects live (`shm_open`'s directory).
fn shm_dir() -> &'static Path {
    Path::new(OsStr::from_bytes(memkit_sys::shm::SHM_DIR))
}

pub const LONG_HELP: &str = "\
  memkit shm ls [--json] [--prefix PREFIX]
  memkit shm rm NAME...
  memkit shm rm --stale [--prefix PREFIX]

A memkit heap is recognised by its header (memkit's magic and a geometry
that matches the file's size), never by its name; other files in /dev/shm
are skipped, and `rm` refuses them. Heaps are read without being mapped,
without their lock and without registering as an attached process.

ATTACHED counts the processes in the heap's registry (each process with a
read-write handle; pid and start time, so a reused pid is not taken for
one): alive, and dead (killed without closing the heap; the next process
to open it reclaims what they held). A heap is `stale` when no attached
process is alive: nobody has it open read-write (read-only handles are not
registered). `rm --stale` removes those; `rm NAME` removes a heap whatever
its state: processes that have it open keep using it until they close it,
as with shm_unlink.

NAME is the object's name as shm_open and memkit_shm_open take it
(`/jobs`); `jobs` and `/dev/shm/jobs` mean the same.

Exit status: 0 on success, 1 if a heap could not be read or removed (the
others are still listed or removed), 2 for usage errors.";

#[derive(Debug, Args)]
#[command(
    about = "List and remove memkit's shared-memory heaps in /dev/shm",
    after_long_help = LONG_HELP
)]
pub struct ShmArgs {
    #[command(subcommand)]
    command: ShmCommand,
}

#[derive(Debug, Subcommand)]
enum ShmCommand {
    /// List the memkit heaps in /dev/shm: size, used, creator, attached
    /// processes (alive/dead), stale
    Ls(LsArgs),
    /// Remove memkit heaps by name, or every stale one
    Rm(RmArgs),
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Print one JSON object: {"dir", "heaps": [...], "refused": [...],
    /// "unreadable": [...]}
    #[arg(long)]
    json: bool,

    /// Only heaps whose name starts with PREFIX (e.g. `/myapp-`)
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Heaps to remove (`/NAME`, `NAME` or `/dev/shm/NAME`)
    #[arg(
        value_name = "NAME",
        required_unless_present = "stale",
        conflicts_with = "stale"
    )]
    names: Vec<OsString>,

    /// Remove every heap no live process is attached to
    #[arg(long)]
    stale: bool,

    /// With --stale: only heaps whose name starts with PREFIX
    #[arg(long, value_name = "PREFIX", requires = "stale")]
    prefix: Option<String>,
}

pub fn run(args: &ShmArgs) -> Result<ExitCode, CliError> {
    match &args.command {
        ShmCommand::Ls(a) => ls(a),
        ShmCommand::Rm(a) => rm(a),
    }
}

fn fail(message: impl Into<String>) -> CliError {
    CliError::with_status(FAILURE, message)
}

/// One-line complaint on stderr; the command goes on.
fn warn(message: &str) {
    let _ = writeln!(io::stderr().lock(), "memkit: shm: {message}");
}

/// Writes to stdout; a closed pipe ends quietly.
fn emit(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(fail(format!(
            "shm: cannot write to standard output: {}",
            describe_io(&e)
        ))),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------
// Reading /dev/shm
// ---------------------------------------------------------------------

/// What one file in /dev/shm turned out to be.
enum Look {
    /// Not a memkit heap (no magic, not a regular file, gone): skipped.
    NotMemkit,
    Heap(Box<Summary>, FileId),
    /// memkit's magic, but not readable as a heap of this version.
    Refused(Refusal),
    /// Could not be opened or read.
    Unreadable(io::Error),
}

/// The identity of a file, to check that the one removed is the one read.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn look(path: &Path) -> Look {
    match fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_file() => {}
        Ok(_) => return Look::NotMemkit,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::NotMemkit,
        Err(e) => return Look::Unreadable(e),
    }
    // O_NOFOLLOW: swapped for a symlink since; O_NONBLOCK: for a FIFO.
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::NotMemkit,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Look::NotMemkit,
        Err(e) => return Look::Unreadable(e),
    };
    let md = match file.metadata() {
        Ok(md) if md.file_type().is_file() => md,
        Ok(_) => return Look::NotMemkit,
        Err(e) => return Look::Unreadable(e),
    };
    let id = FileId {
        dev: md.dev(),
        ino: md.ino(),
    };
    let mut read_at = |off: u64, buf: &mut [u8]| file.read_exact_at(buf, off).is_ok();
    match inspect::inspect(md.len(), &mut read_at, &memkit_shm::registry::alive) {
        Ok(s) => Look::Heap(Box::new(s), id),
        Err(r) if r.is_memkit() => Look::Refused(r),
        Err(_) => Look::NotMemkit,
    }
}

/// A file of /dev/shm with its name as shm_open takes it (`/NAME`).
struct Entry {
    name: OsString,
    path: PathBuf,
    look: Look,
}

impl Entry {
    fn display_name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }
}

/// `/` + PREFIX unless it has one.
fn normalized_prefix(prefix: Option<&str>) -> Option<String> {
    prefix.map(|p| {
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("/{p}")
        }
    })
}

/// Every file of /dev/shm whose name starts with `prefix`, read, in name
/// order.
fn scan(prefix: Option<&str>) -> Result<Vec<Entry>, CliError> {
    let dir = shm_dir();
    let rd = fs::read_dir(dir).map_err(|e| {
        fail(format!(
            "shm: cannot list {}: {}",
            dir.display(),
            describe_io(&e)
        ))
    })?;
    let prefix = normalized_prefix(prefix);
    let mut out = Vec::new();
    for de in rd {
        let de = de.map_err(|e| {
            fail(format!(
                "shm: cannot list {}: {}",
                dir.display(),
                describe_io(&e)
            ))
        })?;
        let mut name = OsString::from("/");
        name.push(de.file_name());
        if prefix
            .as_deref()
            .is_some_and(|p| !name.as_bytes().starts_with(p.as_bytes()))
        {
            continue;
        }
        let path = de.path();
        let look = look(&path);
        out.push(Entry { name, path, look });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

// ---------------------------------------------------------------------
// ls
// ---------------------------------------------------------------------

fn ls(args: &LsArgs) -> Result<ExitCode, CliError> {
    let entries = scan(args.prefix.as_deref())?;
    let text = if args.json {
        let mut t = serde_json::to_string_pretty(&json_value(&entries)).unwrap_or_default();
        t.push('\n');
        t
    } else {
        for e in &entries {
            match &e.look {
                Look::Unreadable(err) => warn(&format!(
                    "{}: cannot read: {} (not listed: it may be a memkit heap)",
                    e.path.display(),
                    describe_io(err)
                )),
                Look::Refused(r) => warn(&format!("{}: {}", e.path.display(), r.message())),
                _ => {}
            }
        }
        table(&entries)
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `pid 1234 (shm), uid 0`.
fn creator(s: &Summary) -> String {
    format!(
        "pid {} ({}), uid {}",
        s.creator_pid,
        String::from_utf8_lossy(s.creator_comm()),
        s.creator_uid
    )
}

fn table(entries: &[Entry]) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "NAME".into(),
        "SIZE".into(),
        "USED".into(),
        "CREATOR".into(),
        "CREATED (UTC)".into(),
        "ATTACHED".into(),
        "STATE".into(),
    ]];
    for e in entries {
        let Look::Heap(s, _) = &e.look else {
            continue;
        };
        let (alive, dead) = s.alive_dead();
        rows.push([
            e.display_name(),
            human::bytes(s.size),
            human::bytes(s.used),
            creator(s),
            utc(s.created),
            format!("{alive} alive, {dead} dead"),
            if s.stale() { "stale" } else { "in use" }.into(),
        ]);
    }
    if rows.len() == 1 {
        return format!("no memkit heaps in {}\n", shm_dir().display());
    }
    let mut width = [0usize; 7];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            // Sizes right-aligned, the rest left.
            if i == 1 || i == 2 {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn json_value(entries: &[Entry]) -> Value {
    let mut heaps = Vec::new();
    let mut refused = Vec::new();
    let mut unreadable = Vec::new();
    for e in entries {
        let name = e.display_name();
        let path = e.path.display().to_string();
        match &e.look {
            Look::NotMemkit => {}
            Look::Heap(s, _) => {
                let (alive, dead) = s.alive_dead();
                let attached: Vec<Value> = s
                    .attached()
                    .iter()
                    .map(|a| json!({"pid": a.pid, "start": a.start, "alive": a.alive}))
                    .collect();
                heaps.push(json!({
                    "name": name,
                    "path": path,
                    "size": s.size,
                    "capacity": s.capacity,
                    "used": s.used,
                    "cached": s.cached,
                    "creator": {
                        "pid": s.creator_pid,
                        "uid": s.creator_uid,
                        "comm": String::from_utf8_lossy(s.creator_comm()),
                        "start": s.creator_start,
                    },
                    "created": s.created,
                    "repairs": s.repairs,
                    "attached": attached,
                    "alive": alive,
                    "dead": dead,
                    "stale": s.stale(),
                }));
            }
            Look::Refused(r) => {
                refused.push(json!({"name": name, "path": path, "problem": r.message()}))
            }
            Look::Unreadable(err) => {
                unreadable.push(json!({"name": name, "path": path, "error": describe_io(err)}))
            }
        }
    }
    json!({
        "schema_version": 1,
        "dir": shm_dir().display().to_string(),
        "heaps": heaps,
        "refused": refused,
        "unreadable": unreadable,
    })
}

/// `2026-12-02 12:00:00` for seconds since the epoch (days to a civil
/// date: the proleptic Gregorian calendar, as `date -u` prints it).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------
// rm
// ---------------------------------------------------------------------

/// The file of heap `name` (`/NAME`, `NAME` or `/dev/shm/NAME`), and its
/// name as shm_open takes it.
fn heap_path(name: &OsStr) -> Result<(OsString, PathBuf), String> {
    let b = name.as_bytes();
    let dir = memkit_sys::shm::SHM_DIR;
    let base = b
        .strip_prefix(dir)
        .filter(|r| r.starts_with(b"/"))
        .unwrap_or(b);
    let base = base.strip_prefix(b"/").unwrap_or(base);
    let shown = name.to_string_lossy();
    if base.is_empty() || base == b"." || base == b".." || base.contains(&b'/') {
        return Err(format!(
            "{shown:?} is not a shared-memory object name: expected /NAME (one leading slash, \
             no other), NAME or /dev/shm/NAME"
        ));
    }
    if base.len() > 255 {
        return Err(format!("{shown:?}: name longer than 255 bytes"));
    }
    let mut n = OsString::from("/");
    n.push(OsStr::from_bytes(base));
    Ok((n, shm_dir().join(OsStr::from_bytes(base))))
}

/// Removes the file of a heap read as `id`, if it is still that file.
fn unlink_checked(path: &Path, id: FileId) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.dev() != id.dev || md.ino() != id.ino {
        return Err(io::Error::other(
            "it was replaced by another file while being checked; not removed",
        ));
    }
    fs::remove_file(path)
}

fn rm(args: &RmArgs) -> Result<ExitCode, CliError> {
    if args.stale {
        return rm_stale(args.prefix.as_deref());
    }
    let mut failed = false;
    let mut out = String::new();
    for n in &args.names {
        match rm_one(n) {
            Ok(line) => out.push_str(&line),
            Err(message) => {
                warn(&format!("rm: {message}"));
                failed = true;
            }
        }
    }
    emit(&out)?;
    Ok(if failed {
        ExitCode::from(FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Removes one named heap; the line to print, or why not.
fn rm_one(name: &OsStr) -> Result<String, String> {
    let (name, path) = heap_path(name)?;
    let shown = name.to_string_lossy();
    if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Err(format!(
            "{shown}: no such shared-memory object ({} does not exist)",
            path.display()
        ));
    }
    match look(&path) {
        Look::Heap(s, id) => {
            unlink_checked(&path, id)
                .map_err(|e| format!("cannot remove {}: {}", path.display(), describe_io(&e)))?;
            let (alive, _) = s.alive_dead();
            Ok(if alive > 0 {
                format!(
                    "removed {shown} ({alive} attached process(es) keep using it until they close it)\n"
                )
            } else {
                format!("removed {shown}\n")
            })
        }
        Look::Refused(r) => {
            // memkit's magic is there: a heap of another version, or damaged.
            fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {}", path.display(), describe_io(&e)))?;
            Ok(format!("removed {shown} ({})\n", r.message()))
        }
        Look::NotMemkit => Err(format!(
            "refusing to remove {}: it is not a memkit heap",
            path.display()
        )),
        Look::Unreadable(e) => Err(format!(
            "cannot read {}: {}: refusing to remove what cannot be checked to be a memkit heap",
            path.display(),
            describe_io(&e)
        )),
    }
}

fn rm_stale(prefix: Option<&str>) -> Result<ExitCode, CliError> {
    let entries = scan(prefix)?;
    let mut failed = false;
    let mut out = String::new();
    for e in &entries {
        match &e.look {
            Look::Heap(s, _) if s.stale() => {}
            Look::Unreadable(err) => {
                warn(&format!(
                    "{}: cannot read: {} (cannot tell whether it is a stale memkit heap; left)",
                    e.path.display(),
                    describe_io(err)
                ));
                continue;
            }
            _ => continue,
        }
        // Looked at again just before the removal: a process may have
        // attached since the scan.
        let again = look(&e.path);
        let (s, id) = match &again {
            Look::Heap(s, id) if s.stale() => (s, *id),
            _ => continue,
        };
        match unlink_checked(&e.path, id) {
            Ok(()) => {
                let (_, dead) = s.alive_dead();
                out.push_str(&format!(
                    "removed {} (stale: {dead} dead attached process(es))\n",
                    e.display_name()
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                warn(&format!(
                    "rm: cannot remove {}: {}",
                    e.path.display(),
                    describe_io(&err)
                ));
                failed = true;
            }
        }
    }
    emit(&out)?;
    Ok(if failed {
        ExitCode::from(FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in ["/jobs", "jobs", "/dev/shm/jobs"] {
            let (name, path) = heap_path(OsStr::new(n)).unwrap();
            assert_eq!(name, "/jobs");
            assert_eq!(path, Path::new("/dev/shm/jobs"));
        }
        for bad in ["", "/", "/a/b", "..", "/..", "/dev/shm/", "/dev/shm/a/b"] {
            assert!(heap_path(OsStr::new(bad)).is_err(), "{bad:?}");
        }
        assert!(heap_path(OsStr::new(&"x".repeat(256))).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_212_800 + 3661), "2026-12-02 13:01:01");
    }
}

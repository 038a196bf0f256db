//! The directory `memkit run` hands to the processes it runs for their
//! report files (`MEMKIT_REPORT_DIR`; one file a process, layout and
//! protocol in `memkit_sys::report_file`). Created private (mode 0700)
//! under `$TMPDIR`, read while the program runs and once it has ended,
//! removed afterwards.
//!
//! While the program runs, a thread collects the records of processes that
//! have finished exiting (their record is final) and removes their files,
//! so that a run of many processes (a build) keeps only the files of
//! processes alive or ended abnormally. Once the program has ended, every
//! file left is read.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memkit::describe_io;
use memkit_sys::report_file::{self, State};

use crate::error::CliError;
use crate::report::{excerpt, parse_line, ProcessReport};

/// How often the collecting thread looks at the directory.
const COLLECT_EVERY: Duration = Duration::from_millis(500);

/// A record read from a report file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The process's start time (with the pid, who it was).
    pub start: u64,
    pub state: State,
    /// The status it passed to `exit`, when its record knows it.
    pub status: Option<u8>,
    pub record: ProcessReport,
}

impl Found {
    /// The process finished its exit handlers (the last one of them wrote
    /// the status): its record will not change again.
    fn is_final(&self) -> bool {
        self.state == State::Exited && self.status.is_some()
    }
}

/// Records read so far, and files that could not be read.
#[derive(Debug, Default)]
pub struct Collected {
    pub found: Vec<Found>,
    pub warnings: Vec<String>,
}

/// The directory; removed, with what is left in it, on drop.
pub struct ReportDir {
    path: PathBuf,
}

impl ReportDir {
    /// A new directory with a unique name under `$TMPDIR` (or `/tmp`),
    /// mode 0700: nobody else can read the records or plant files.
    pub fn create() -> Result<Self, CliError> {
        Self::create_in(&std::env::temp_dir())
    }

    fn create_in(base: &Path) -> Result<Self, CliError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let mut last_error = None;
        for attempt in 0..100u32 {
            let path = base.join(format!(
                "memkit-run-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ReportDir { path }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_error = Some(err),
                Err(err) => {
                    last_error = Some(err);
                    break;
                }
            }
        }
        let reason = last_error.map_or_else(String::new, |err| describe_io(&err));
        Err(CliError::new(format!(
            "cannot create a report directory in {}: {reason} (set TMPDIR to a writable directory)",
            base.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts collecting final records in the background.
    pub fn collect(&self) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = self.path.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("memkit-collect".to_owned())
            .spawn(move || {
                let mut collected = Collected::default();
                loop {
                    std::thread::park_timeout(COLLECT_EVERY);
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    scan(&dir, true, &mut collected);
                }
                collected
            })
            .ok();
        Collector {
            dir: self.path.clone(),
            stop,
            thread,
        }
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The collecting thread of [`ReportDir::collect`].
pub struct Collector {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    /// None if no thread could be started: everything is read at the end.
    thread: Option<JoinHandle<Collected>>,
}

impl Collector {
    /// Stops the thread and reads every file left: all records, sorted by
    /// start time (the order the processes started in, to the clock tick).
    pub fn finish(self) -> Collected {
        self.stop.store(true, Ordering::Release);
        let mut collected = match self.thread {
            Some(thread) => {
                thread.thread().unpark();
                thread.join().unwrap_or_default()
            }
            None => Collected::default(),
        };
        scan(&self.dir, false, &mut collected);
        // A file whose removal failed is read twice.
        let mut seen = HashSet::new();
        collected
            .found
            .retain(|f| seen.insert((f.record.pid, f.start)));
        collected.found.sort_by_key(|f| (f.start, f.record.pid));
        collected
    }
}

/// Reads the files of `dir`. With `final_only`, takes only final records
/// and removes their files, leaving the rest, unreadable ones included, for
/// later; otherwise takes every record and warns about every file that
/// holds none.
fn scan(dir: &Path, final_only: bool, out: &mut Collected) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            if !final_only {
                out.warnings.push(format!(
                    "cannot read the report directory {}: {}",
                    dir.display(),
                    describe_io(&err)
                ));
            }
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match read_report_file(&path) {
            Ok(found) if final_only => {
                if found.is_final() {
                    out.found.push(found);
                    let _ = fs::remove_file(&path);
                }
            }
            Ok(found) => out.found.push(found),
            Err(_) if final_only => {}
            Err(err) => out.warnings.push(format!(
                "ignoring report file {}: {err}",
                excerpt(&entry.file_name().to_string_lossy())
            )),
        }
    }
}

/// The record in one report file.
fn read_report_file(path: &Path) -> Result<Found, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| describe_io(&err))?;
    let meta = file.metadata().map_err(|err| describe_io(&err))?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let len = usize::try_from(meta.len()).map_err(|_| "too large".to_owned())?;
    if len < report_file::words_for(0) * 8 {
        return Err(report_file::ReadError::Incomplete.to_string());
    }
    let map = report_file::map_file(file.as_raw_fd(), len, false)
        .map_err(|e| describe_io(&io::Error::from_raw_os_error(e.0)))?;
    let mut text = vec![0u8; len];
    // SAFETY: mapped just above, unmapped just below. Writers never shrink
    // a report file (an exec replaces it), so no access is past its end.
    let snapshot = report_file::read(unsafe { map.words() }, &mut text);
    // SAFETY: our mapping, no longer used.
    unsafe { memkit_sys::unmap(map.addr, map.len) };
    let snapshot = snapshot.map_err(|e| e.to_string())?;
    let line = std::str::from_utf8(&text[..snapshot.len])
        .map_err(|_| "the record is not text".to_owned())?;
    let record = parse_line(line).map_err(|err| format!("{err}: {}", excerpt(line)))?;
    if record.pid != u64::from(snapshot.pid) {
        return Err(format!(
            "the record of pid {} is in the file of pid {}",
            record.pid, snapshot.pid
        ));
    }
    Ok(Found {
        start: snapshot.start,
        state: snapshot.state,
        status: snapshot.status,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    use memkit_sys::report::Record;
    use memkit_sys::report_file::Entry;

    fn line(pid: u32, allocs: u64) -> String {
        let mut buf = [0u8; memkit_sys::report::MAX_LEN];
        let record = Record {
            pid: u64::from(pid),
            allocs,
            exe: &b"/bin/x y"[..],
            ..Record::default()
        };
        let n = record.encode(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Writes a report file the way libmemkit.so does, through the shared
    /// mapping.
    fn write(dir: &ReportDir, pid: u32, start: u64, entries: &[Entry<'_>]) {
        let path = dir.path().join(format!("{pid}-{start}"));
        let words = report_file::words_for(600);
        let c = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let map = report_file::create(&c, pid, start, words).unwrap();
        assert!(path.is_file());
        // SAFETY: just mapped, unmapped below.
        let w = unsafe { map.words() };
        assert!(report_file::init(w, pid, start, &entries[0]));
        for e in &entries[1..] {
            assert!(report_file::publish(w, e));
        }
        // SAFETY: ours.
        unsafe { memkit_sys::unmap(map.addr, map.len) };
    }

    fn entry(text: &str, state: State, status: Option<u8>) -> Entry<'_> {
        Entry {
            state,
            status,
            text: text.as_bytes(),
        }
    }

    /// A directory of the test `name` alone: tests run in parallel, and
    /// each removes its own at the end.
    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("memkit-cli-unit-{}-{name}", std::process::id()));
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn private_directory_removed_on_drop() {
        let dir = ReportDir::create().unwrap();
        let path = dir.path().to_owned();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::write(path.join("left-over"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
        let err = ReportDir::create_in(Path::new("/nonexistent/dir"))
            .err()
            .unwrap();
        assert!(
            err.message
                .starts_with("cannot create a report directory in /nonexistent/dir: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn final_records_are_collected_early_the_rest_at_the_end() {
        let base = scratch("final");
        let dir = ReportDir::create_in(&base).unwrap();
        let (a, b, c) = (line(10, 1), line(11, 2), line(12, 3));
        write(&dir, 10, 500, &[entry(&a, State::Running, None)]);
        write(
            &dir,
            11,
            400,
            &[
                entry(&line(11, 0), State::Running, None),
                entry(&b, State::Exited, Some(0)),
            ],
        );
        // Exit handlers ran, the status is not written yet: not final.
        write(&dir, 12, 400, &[entry(&c, State::Exited, None)]);
        fs::write(dir.path().join("junk"), "not a report file at all").unwrap();
        fs::write(dir.path().join("short"), "x").unwrap();

        let mut early = Collected::default();
        scan(dir.path(), true, &mut early);
        assert_eq!(early.found.len(), 1);
        assert_eq!(early.found[0].record.pid, 11);
        assert_eq!(early.found[0].status, Some(0));
        assert!(early.warnings.is_empty());
        assert!(!dir.path().join("11-400").exists());

        let collector = dir.collect();
        let all = collector.finish();
        // The collector did not run yet (it waits COLLECT_EVERY first):
        // the end scan found the other two, in start order.
        let pids: Vec<u64> = all.found.iter().map(|f| f.record.pid).collect();
        assert_eq!(pids, [12, 10]);
        assert_eq!(all.found[0].state, State::Exited);
        assert_eq!(all.found[1].state, State::Running);
        assert_eq!(all.found[1].record.exe, "/bin/x y");
        let mut warnings = all.warnings.clone();
        warnings.sort();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("ignoring report file junk: incomplete"),
            "{warnings:?}"
        );
        assert!(warnings[1].starts_with("ignoring report file short: incomplete"));
        drop(dir);
        let _ = fs::remove_dir(&base);
    }

    #[test]
    fn bad_records_are_warnings() {
        let base = scratch("bad");
        let dir = ReportDir::create_in(&base).unwrap();
        write(
            &dir,
            20,
            1,
            &[entry("memkit-report v1 pid=20", State::Running, None)],
        );
        write(&dir, 21, 1, &[entry(&line(99, 1), State::Running, None)]);
        let all = dir.collect().finish();
        assert!(all.found.is_empty());
        let mut w = all.warnings;
        w.sort();
        assert_eq!(
            w[0],
            "ignoring report file 20-1: missing key `ppid` (is the library older than the CLI, \
             or the line cut short?): memkit-report v1 pid=20"
        );
        assert_eq!(
            w[1],
            "ignoring report file 21-1: the record of pid 99 is in the file of pid 21"
        );
        drop(dir);
        let _ = fs::remove_dir(&base);
    }
}

//! What `memkit profile` sets up around the program: the output
//! directory, the runtime's environment, and the raw records the
//! processes leave in `DIR/raw/` (`<pid>.json`, `<pid>.<n>.json` for the
//! n-th further profile of the same pid, after an exec).

use std::fs;
use std::path::{Path, PathBuf};

use memkit::describe_io;
use memkit_profdata::Raw;

use crate::error::CliError;

/// Where the runtime writes each process's record (absolute).
pub const DIR_ENV: &str = "MEMKIT_PROFILE_DIR";
/// The runtime's options: `sample=BYTES:stack_depth=N:interval_ms=N`.
pub const OPTIONS_ENV: &str = "MEMKIT_PROFILE_OPTIONS";
/// The raw records' directory inside DIR.
pub const RAW_DIR: &str = "raw";

/// The runtime's options, as `MEMKIT_PROFILE_OPTIONS` carries them.
pub fn options(sample: u64, stack_depth: u64, interval_ms: u64) -> String {
    format!("sample={sample}:stack_depth={stack_depth}:interval_ms={interval_ms}")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn io_error(what: &str, p: &Path, e: &std::io::Error) -> CliError {
    CliError::new(format!("cannot {what} {}: {}", p.display(), describe_io(e)))
}

/// The output directory while the program runs.
///
/// With `-o DIR`, DIR itself (new, or an existing empty directory). By
/// default the name carries the program's pid, which is known only once
/// it runs: the records go to a hidden directory in the current one,
/// renamed to `memkit-profile.<pid>` when the program has exited.
pub struct OutDir {
    /// Where files are written now (absolute).
    work: PathBuf,
    /// The directory is hidden and renamed by [`OutDir::finish`].
    staged: bool,
    /// This command made `work` (and may remove it).
    created: bool,
}

impl OutDir {
    pub fn create(output: Option<&Path>) -> Result<OutDir, CliError> {
        let (work, staged) = match output {
            Some(dir) => (absolute(dir), false),
            None => {
                let cwd = std::env::current_dir()
                    .map_err(|e| io_error("find", Path::new("the current directory"), &e))?;
                let name = format!(".memkit-profile.{}.tmp", std::process::id());
                (cwd.join(name), true)
            }
        };
        let mut created = true;
        match fs::symlink_metadata(&work) {
            Ok(m) if m.is_dir() => {
                let empty = fs::read_dir(&work)
                    .map_err(|e| io_error("read", &work, &e))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(CliError::new(format!(
                        "{} exists and is not empty: give -o a new or empty directory",
                        work.display()
                    )));
                }
                created = false;
            }
            Ok(_) => {
                return Err(CliError::new(format!(
                    "{} exists and is not a directory: give -o a new or empty directory",
                    work.display()
                )))
            }
            Err(_) => fs::create_dir_all(&work).map_err(|e| io_error("create", &work, &e))?,
        }
        let raw = work.join(RAW_DIR);
        fs::create_dir(&raw).map_err(|e| io_error("create", &raw, &e))?;
        Ok(OutDir {
            work,
            staged,
            created,
        })
    }

    /// The directory the processes write their records into.
    pub fn raw(&self) -> PathBuf {
        self.work.join(RAW_DIR)
    }

    /// Removes what was made (the program could not be started).
    pub fn discard(self) {
        let _ = fs::remove_dir(self.raw());
        if self.created {
            let _ = fs::remove_dir(&self.work);
        }
    }

    /// The final directory: the staged one renamed to
    /// `memkit-profile.<pid>` (`.1`, `.2`… when that exists).
    pub fn finish(self, pid: u32) -> Result<PathBuf, CliError> {
        if !self.staged {
            return Ok(self.work);
        }
        let parent = self.work.parent().unwrap_or(Path::new("/")).to_path_buf();
        for n in 0..1000u32 {
            let name = match n {
                0 => format!("memkit-profile.{pid}"),
                n => format!("memkit-profile.{pid}.{n}"),
            };
            let target = parent.join(name);
            if target.symlink_metadata().is_ok() {
                continue;
            }
            return match fs::rename(&self.work, &target) {
                Ok(()) => Ok(target),
                // The records are there all the same: use it as it is.
                Err(_) => Ok(self.work),
            };
        }
        Ok(self.work)
    }
}

/// One raw record found in the raw directory.
pub struct RawFile {
    pub pid: u32,
    /// 0 for `<pid>.json`, n for `<pid>.<n>.json`.
    pub seq: u32,
    /// The name without `.json`: the process's directory in DIR.
    pub stem: String,
    pub raw: Raw,
}

/// `(pid, seq)` of a record's file name; `None` for other files (the
/// runtime's temporary files among them).
fn parse_name(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_suffix(".json")?;
    let (pid, seq) = match stem.split_once('.') {
        Some((p, s)) => (p, s.parse().ok()?),
        None => (stem, 0),
    };
    Some((pid.parse().ok()?, seq))
}

/// Every record in `dir`, by pid then sequence; files that cannot be read
/// or parsed become warnings.
pub fn collect(dir: &Path) -> (Vec<RawFile>, Vec<String>) {
    let mut warnings = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) => {
            warnings.push(format!(
                "cannot read {}: {}",
                dir.display(),
                describe_io(&e)
            ));
            return (Vec::new(), warnings);
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((pid, seq)) = parse_name(&name) else {
            continue;
        };
        let path = e.path();
        match Raw::read(&path) {
            Ok(raw) => out.push(RawFile {
                pid,
                seq,
                stem: name.trim_end_matches(".json").to_owned(),
                raw,
            }),
            Err(err) => warnings.push(format!("{}: {err}", path.display())),
        }
    }
    out.sort_by_key(|r| (r.raw.start_unix_ns, r.pid, r.seq));
    (out, warnings)
}

/// The process a hand-made set of records is about: the first to start
/// among those whose parent was not profiled.
pub fn root(raws: &[RawFile]) -> u32 {
    raws.iter()
        .filter(|r| !raws.iter().any(|p| p.pid == r.raw.ppid && p.pid != r.pid))
        .min_by_key(|r| (r.raw.start_unix_ns, r.seq))
        .or(raws.first())
        .map_or(0, |r| r.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names() {
        assert_eq!(parse_name("123.json"), Some((123, 0)));
        assert_eq!(parse_name("123.2.json"), Some((123, 2)));
        assert_eq!(parse_name("123.json.tmp"), None);
        assert_eq!(parse_name(".123.json.XXXX"), None);
        assert_eq!(parse_name("x.json"), None);
        assert_eq!(parse_name("1.x.json"), None);
    }

    #[test]
    fn options_are_colon_separated() {
        assert_eq!(options(0, 64, 10), "sample=0:stack_depth=64:interval_ms=10");
    }
}

//! Reading and parsing `/proc/PID/{smaps,maps,smaps_rollup,stat,auxv}` and
//! the threads' `/proc/PID/task/TID/syscall`.
//!
//! The parsers work on strings so they can be unit-tested on captured text;
//! the readers turn I/O errors into [`LayoutError`]s that say what and why.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{LayoutError, Reader, Stats};
use crate::describe_io;

/// One entry of `/proc/PID/maps` or `/proc/PID/smaps`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawMapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub dev: String,
    pub inode: u64,
    /// The path or pseudo-path (`[heap]`, `[anon:NAME]`), empty for none.
    pub path: String,
    /// The smaps numbers; `None` when read from `maps`.
    pub stats: Option<Stats>,
    /// The `VmFlags:` line of smaps, e.g. `rd wr mr mw me ac nh`.
    pub vm_flags: Option<String>,
}

/// Parses one header line, `start-end perms offset dev inode [path]`.
fn parse_header(line: &str) -> Option<RawMapping> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if perms.len() != 4 || end < start {
        return None;
    }
    Some(RawMapping {
        start,
        end,
        perms: perms.to_owned(),
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: dev.to_owned(),
        inode: inode.parse().ok()?,
        path: rest.trim_start_matches(' ').to_owned(),
        stats: None,
        vm_flags: None,
    })
}

/// Adds one `Key: N kB` line to `stats`; false if the key is not a counter.
fn add_field(stats: &mut Stats, key: &str, value: &str) -> bool {
    let Some(n) = value
        .trim()
        .strip_suffix("kB")
        .and_then(|n| n.trim().parse::<u64>().ok())
    else {
        return false;
    };
    let slot = match key {
        "Size" => &mut stats.size_kib,
        "Rss" => &mut stats.rss_kib,
        "Pss" => &mut stats.pss_kib,
        "Shared_Clean" => &mut stats.shared_clean_kib,
        "Shared_Dirty" => &mut stats.shared_dirty_kib,
        "Private_Clean" => &mut stats.private_clean_kib,
        "Private_Dirty" => &mut stats.private_dirty_kib,
        "Referenced" => &mut stats.referenced_kib,
        "Anonymous" => &mut stats.anonymous_kib,
        "AnonHugePages" => &mut stats.anon_huge_kib,
        "Swap" => &mut stats.swap_kib,
        "SwapPss" => &mut stats.swap_pss_kib,
        "Locked" => &mut stats.locked_kib,
        _ => return true,
    };
    *slot = n;
    true
}

/// Parses the text of `/proc/PID/smaps` (or, with no field lines, `maps`).
pub fn parse_smaps(text: &str, with_stats: bool) -> Result<Vec<RawMapping>, String> {
    let mut out: Vec<RawMapping> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let first = line.split(' ').next().unwrap_or("");
        if let Some(key) = first.strip_suffix(':') {
            let Some(current) = out.last_mut() else {
                return Err(format!("a field before the first mapping: {line:?}"));
            };
            let value = &line[first.len()..];
            if key == "VmFlags" {
                current.vm_flags = Some(value.trim().to_owned());
            } else if let Some(stats) = current.stats.as_mut() {
                // Non-counter lines (THPeligible, ProtectionKey) are skipped.
                add_field(stats, key, value);
            }
        } else {
            let mut m =
                parse_header(line).ok_or_else(|| format!("not a mapping line: {line:?}"))?;
            if with_stats {
                m.stats = Some(Stats::default());
            }
            out.push(m);
        }
    }
    // smaps is read in pieces: a process that maps or unmaps meanwhile can make
    // an entry appear twice or overlap its neighbour. Keep the first of each.
    out.sort_by_key(|m| m.start);
    out.dedup_by(|later, earlier| later.start < earlier.end);
    Ok(out)
}

/// Parses `/proc/PID/smaps_rollup`: the header line then counters.
pub fn parse_rollup(text: &str) -> Result<Stats, String> {
    let mut stats = Stats::default();
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.contains("[rollup]") => {}
        Some(l) => return Err(format!("unexpected first line {l:?}")),
        // A process without an address space (a zombie) has an empty rollup.
        None => return Ok(stats),
    }
    for line in lines {
        if let Some((key, value)) = line.split_once(':') {
            add_field(&mut stats, key, value);
        }
    }
    Ok(stats)
}

/// What `/proc/PID/stat` tells about the layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub flags: u64,
    pub starttime: u64,
    pub start_stack: u64,
    pub start_brk: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
}

/// `PF_KTHREAD` in the stat flags: a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

pub fn parse_stat(text: &str) -> Option<Stat> {
    // comm is in parentheses and may itself hold spaces and ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let num = |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        flags: num(9),
        starttime: num(22),
        start_code: num(26),
        end_code: num(27),
        start_stack: num(28),
        start_data: num(45),
        end_data: num(46),
        start_brk: num(47),
    })
}

/// The stack pointer in `/proc/PID/task/TID/syscall`: `nr args... sp pc`, or
/// `-1 sp pc` when blocked outside a system call; `running` gives none.
pub fn parse_syscall_sp(text: &str) -> Option<u64> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = fields[fields.len() - 2];
    u64::from_str_radix(sp.strip_prefix("0x")?, 16)
        .ok()
        .filter(|&sp| sp != 0)
}

/// `AT_PAGESZ` from the auxiliary vector, which is native-endian u64 pairs.
pub fn parse_auxv_page_size(bytes: &[u8]) -> Option<u64> {
    const AT_PAGESZ: u64 = 6;
    bytes
        .chunks_exact(16)
        .map(|pair| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            (word(&pair[..8]), word(&pair[8..]))
        })
        .find(|&(key, _)| key == AT_PAGESZ)
        .map(|(_, v)| v)
        .filter(|v| v.is_power_of_two())
}

/// Accessors for one process's /proc directory, with error translation.
pub struct Proc {
    pub pid: u32,
    pub dir: PathBuf,
}

impl Proc {
    pub fn new(pid: u32) -> Self {
        Proc {
            pid,
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Turns an I/O error on `file` into the error a user should see.
    pub fn error(&self, file: &Path, err: &io::Error) -> LayoutError {
        // ESRCH: the task went away between open and read.
        const ESRCH: i32 = 3;
        let pid = self.pid;
        match err.kind() {
            io::ErrorKind::NotFound => LayoutError::Exited { pid },
            io::ErrorKind::PermissionDenied => LayoutError::PermissionDenied {
                pid,
                file: file.display().to_string(),
                owner: fs::metadata(&self.dir)
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::uid(&m)),
                reader: Reader::current(),
            },
            _ if err.raw_os_error() == Some(ESRCH) => LayoutError::Exited { pid },
            _ => LayoutError::Io {
                file: file.display().to_string(),
                message: describe_io(err),
            },
        }
    }

    pub fn read_string(&self, name: &str) -> Result<String, LayoutError> {
        let path = self.path(name);
        fs::read_to_string(&path).map_err(|e| self.error(&path, &e))
    }

    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>, LayoutError> {
        let path = self.path(name);
        fs::read(&path).map_err(|e| self.error(&path, &e))
    }

    pub fn stat(&self) -> Result<Stat, LayoutError> {
        let text = self.read_string("stat")?;
        parse_stat(&text).ok_or_else(|| LayoutError::Parse {
            file: self.path("stat").display().to_string(),
            message: "not in the format of proc(5)".into(),
        })
    }

    /// `/proc/PID/cmdline` with NULs as spaces; empty for kernel threads and
    /// zombies.
    pub fn cmdline(&self) -> String {
        let bytes = fs::read(self.path("cmdline")).unwrap_or_default();
        let args: Vec<String> = bytes
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.join(" ")
    }

    /// The threads' ids, sorted.
    pub fn tids(&self) -> Result<Vec<u32>, LayoutError> {
        let path = self.path("task");
        let dir = fs::read_dir(&path).map_err(|e| self.error(&path, &e))?;
        let mut tids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        Ok(tids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
555caf762000-555caf764000 r--p 00000000 fe:00 247030                     /usr/bin/cat
Size:                  8 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Pss:                   6 kB
Private_Clean:         8 kB
Swap:                  1 kB
THPeligible:           0
VmFlags: rd mr mw me 
7f0000000000-7f0000001000 rw-s 00000000 00:01 12                         /dev/shm/a name (deleted)
Size:                  4 kB
Rss:                   0 kB
7f0000002000-7f0000003000 rw-p 00000000 00:00 0 
Size:                  4 kB
";

    #[test]
    fn smaps_headers_and_fields() {
        let maps = parse_smaps(SMAPS, true).unwrap();
        assert_eq!(maps.len(), 3);
        let m = &maps[0];
        assert_eq!(
            (m.start, m.end, m.perms.as_str()),
            (0x555caf762000, 0x555caf764000, "r--p")
        );
        assert_eq!(
            (m.inode, m.dev.as_str(), m.path.as_str()),
            (247030, "fe:00", "/usr/bin/cat")
        );
        let s = m.stats.unwrap();
        assert_eq!(
            (
                s.size_kib,
                s.rss_kib,
                s.pss_kib,
                s.private_clean_kib,
                s.swap_kib
            ),
            (8, 8, 6, 8, 1)
        );
        assert_eq!(m.vm_flags.as_deref(), Some("rd mr mw me"));
        assert_eq!(maps[1].path, "/dev/shm/a name (deleted)");
        assert_eq!(maps[2].path, "");
    }

    #[test]
    fn maps_without_stats() {
        let maps = parse_smaps("00400000-00401000 r-xp 00000000 08:01 5 /bin/x\n", false).unwrap();
        assert_eq!(maps[0].stats, None);
        assert!(parse_smaps("garbage\n", false).is_err());
        assert!(parse_smaps("Rss: 4 kB\n", true).is_err());
    }

    #[test]
    fn overlapping_entries_are_dropped() {
        let text = "1000-3000 rw-p 0 00:00 0\n2000-4000 rw-p 0 00:00 0\n4000-5000 rw-p 0 00:00 0\n";
        let maps = parse_smaps(text, false).unwrap();
        assert_eq!(
            maps.iter().map(|m| m.start).collect::<Vec<_>>(),
            [0x1000, 0x4000]
        );
    }

    #[test]
    fn rollup() {
        let text = "5594babbc000-7ffe9feb1000 ---p 00000000 00:00 0   [rollup]\nRss:  1752 kB\nPss:   261 kB\nSwapPss: 3 kB\n";
        let s = parse_rollup(text).unwrap();
        assert_eq!((s.rss_kib, s.pss_kib, s.swap_pss_kib), (1752, 261, 3));
        assert_eq!(parse_rollup("").unwrap(), Stats::default());
    }

    #[test]
    fn stat_with_odd_comm() {
        let text = "9331 (a) b) R 9326 9326 24975 0 -1 4194304 102 0 0 0 0 0 0 0 20 0 1 0 96202 3133440 390 18446744073709551615 94670157246464 94670157266345 140723882364416 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94670157282352 94670157283968 94670181605376 140723882367715 140723882367735 140723882367735 140723882369003 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "a) b");
        assert_eq!(s.state, 'R');
        assert_eq!(s.starttime, 96202);
        assert_eq!(s.start_stack, 140723882364416);
        assert_eq!(s.start_brk, 94670181605376);
        assert_eq!(s.start_code, 94670157246464);
    }

    #[test]
    fn syscall_sp() {
        let t =
            "230 0x0 0x0 0x7ffc81c34610 0x7ffc81c34610 0x0 0x78 0x7ffc81c345d0 0x7f756033a545\n";
        assert_eq!(parse_syscall_sp(t), Some(0x7ffc81c345d0));
        assert_eq!(
            parse_syscall_sp("-1 0x7ffc81c345d0 0x4000\n"),
            Some(0x7ffc81c345d0)
        );
        assert_eq!(parse_syscall_sp("running\n"), None);
    }

    #[test]
    fn auxv_page_size() {
        let mut bytes = Vec::new();
        for (k, v) in [(33u64, 1u64), (6, 4096), (0, 0)] {
            bytes.extend_from_slice(&k.to_ne_bytes());
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv_page_size(&bytes), Some(4096));
        assert_eq!(parse_auxv_page_size(&[]), None);
    }
}

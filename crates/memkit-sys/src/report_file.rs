//! The report file of one process under `memkit run`: where libmemkit.so
//! keeps the process's latest record (the `memkit-report v1` line of
//! [`crate::report`]) so that `memkit run` can read it after the process is
//! gone, however it ended: `exit`, `_exit`, `abort`, a fatal signal, SIGKILL.
//!
//! `memkit run` creates a private directory and names it in [`DIR_ENV`].
//! Each process on libmemkit.so creates `PID-START` there at start
//! ([`create`]; START is the process's start time, field 22 of
//! `/proc/PID/stat`, which `exec` keeps and a reused pid does not), maps it
//! `MAP_SHARED` and publishes its record into it ([`init`], [`publish`]): at
//! start, periodically, and at exit with its state and status. `memkit run`
//! reads the files with [`read`]. Both ends use this module, so the layout
//! is defined once.
//!
//! # Layout: 64-bit little-endian words
//! | word | meaning |
//! |---|---|
//! | 0 | [`MAGIC`], stored last by [`init`]: until then the file is incomplete |
//! | 1 | [`LAYOUT`] |
//! | 2 | words per slot (the file holds [`HEADER_WORDS`] + 2 slots) |
//! | 3 | pid |
//! | 4 | start time (clock ticks since boot; 0 if `/proc` was unreadable) |
//! | 5 | generation: the published record is in slot `generation & 1` |
//! | 6, 7 | 0 (reserved) |
//! | 8 … | slot 0, then slot 1: [`State`], status (0 unknown, else 1 + the exit status), text length in bytes, then the text, 8 bytes a word |
//!
//! # Publishing: write one slot, then flip
//! [`publish`] writes the slot readers are *not* using (`(generation + 1) & 1`)
//! and only then increments the generation (a release store). A writer
//! stopped at any point (SIGKILL in the middle of an update) leaves the
//! previous record whole and still published: a reader never sees a torn
//! record as valid. A reader concurrent with a live writer loads the
//! generation, copies the slot it names, and loads the generation again;
//! if it changed, the writer may have started on that slot, so it retries
//! (a seqlock over two slots). One writer at a time: the library
//! serialises its threads.

use core::ffi::CStr;
use core::sync::atomic::{fence, AtomicU64, Ordering};

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::mm::{self, MapFlags, ProtFlags};

use crate::Errno;

/// The environment variable naming the directory (set by `memkit run`).
pub const DIR_ENV: &str = "MEMKIT_REPORT_DIR";

/// Word 0 of a complete file: `b"memkitRF"` read as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"memkitRF");
/// The version of this layout (word 1).
pub const LAYOUT: u64 = 1;
/// Words before slot 0.
pub const HEADER_WORDS: usize = 8;
/// Words of a slot before its text.
pub const SLOT_HEADER_WORDS: usize = 3;

const W_MAGIC: usize = 0;
const W_LAYOUT: usize = 1;
const W_SLOT_WORDS: usize = 2;
const W_PID: usize = 3;
const W_START: usize = 4;
const W_GENERATION: usize = 5;

/// How far the process got, as its last published record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Running: the record is from the last refresh; if the process is gone,
    /// it ended without running exit handlers.
    Running = 1,
    /// Its exit handlers ran: the counters are those at exit.
    Exited = 2,
}

impl State {
    fn from_word(w: u64) -> Option<State> {
        match w {
            1 => Some(State::Running),
            2 => Some(State::Exited),
            _ => None,
        }
    }
}

/// A record to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub state: State,
    /// The status passed to `exit`, when known.
    pub status: Option<u8>,
    /// The `memkit-report v1` line.
    pub text: &'a [u8],
}

/// Words a file needs for records of up to `text_capacity` bytes.
pub const fn words_for(text_capacity: usize) -> usize {
    HEADER_WORDS + 2 * (SLOT_HEADER_WORDS + text_capacity.div_ceil(8))
}

fn slot_base(slot_words: usize, generation: u64) -> usize {
    HEADER_WORDS + (generation & 1) as usize * slot_words
}

/// Turns a fresh file image (all zeros, [`words_for`] some capacity long)
/// into a complete one with `first` published. Returns false, leaving the
/// image incomplete, if the text does not fit.
pub fn init(words: &[AtomicU64], pid: u32, start: u64, first: &Entry<'_>) -> bool {
    if words.len() < words_for(0) {
        return false;
    }
    let slot_words = (words.len() - HEADER_WORDS) / 2;
    words[W_SLOT_WORDS].store(slot_words as u64, Ordering::Relaxed);
    words[W_PID].store(u64::from(pid), Ordering::Relaxed);
    words[W_START].store(start, Ordering::Relaxed);
    words[W_GENERATION].store(0, Ordering::Relaxed);
    if !publish(words, first) {
        return false;
    }
    words[W_LAYOUT].store(LAYOUT, Ordering::Relaxed);
    words[W_MAGIC].store(MAGIC, Ordering::Release);
    true
}

/// Publishes `entry` in a file set up by [`init`] (write, then flip; see
/// the module docs). Returns false, publishing nothing, if it does not fit.
/// Callers serialise: one writer at a time.
pub fn publish(words: &[AtomicU64], entry: &Entry<'_>) -> bool {
    publish_until(words, entry, &mut || true)
}

/// [`publish`] that stops, as a killed writer would, when `go_on` says no
/// before a store (for the tests of torn writes).
fn publish_until(words: &[AtomicU64], entry: &Entry<'_>, go_on: &mut dyn FnMut() -> bool) -> bool {
    let slot_words = words[W_SLOT_WORDS].load(Ordering::Relaxed) as usize;
    let capacity = slot_words.saturating_sub(SLOT_HEADER_WORDS) * 8;
    if entry.text.len() > capacity || HEADER_WORDS + 2 * slot_words > words.len() {
        return false;
    }
    let generation = words[W_GENERATION].load(Ordering::Relaxed);
    let slot = &words[slot_base(slot_words, generation + 1)..];
    // Readers of this slot (published two generations ago) must see the
    // generation change before any store below: see `read`.
    fence(Ordering::Release);
    let status = entry.status.map_or(0, |s| u64::from(s) + 1);
    let head = [entry.state as u64, status, entry.text.len() as u64];
    for (i, w) in head.into_iter().enumerate() {
        if !go_on() {
            return true;
        }
        slot[i].store(w, Ordering::Relaxed);
    }
    for (i, chunk) in entry.text.chunks(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        if !go_on() {
            return true;
        }
        slot[SLOT_HEADER_WORDS + i].store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
    if !go_on() {
        return true;
    }
    words[W_GENERATION].store(generation + 1, Ordering::Release);
    true
}

/// A record read back: what [`read`] found, the text in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub pid: u32,
    /// Start time of the process (see the module docs).
    pub start: u64,
    pub state: State,
    pub status: Option<u8>,
    /// Length of the text copied to the start of the buffer.
    pub len: usize,
}

/// Why [`read`] found no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// No [`MAGIC`] yet: the process was stopped while creating the file,
    /// or it is not a report file.
    Incomplete,
    /// Another [`LAYOUT`] (a newer library).
    UnsupportedLayout(u64),
    /// Header or slot values that no writer produces.
    Corrupt,
    /// The caller's buffer is shorter than the text.
    BufferTooSmall(usize),
    /// A live writer changed the record on every attempt.
    Busy,
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::Incomplete => f.write_str("incomplete (not a report file, or its process was stopped while creating it)"),
            ReadError::UnsupportedLayout(v) => write!(
                f,
                "unsupported report file layout {v} (this memkit reads {LAYOUT}; is the library newer than the CLI?)"
            ),
            ReadError::Corrupt => f.write_str("corrupt header or record"),
            ReadError::BufferTooSmall(n) => write!(f, "record of {n} bytes does not fit"),
            ReadError::Busy => f.write_str("its process kept updating it"),
        }
    }
}

/// Reads the published record of a report file (a mapping of it, or a copy)
/// into `text`. Safe against a concurrent writer (see the module docs):
/// a record is returned only if no publish overlapped the copy.
pub fn read(words: &[AtomicU64], text: &mut [u8]) -> Result<Snapshot, ReadError> {
    if words.len() < words_for(0) || words[W_MAGIC].load(Ordering::Acquire) != MAGIC {
        return Err(ReadError::Incomplete);
    }
    let layout = words[W_LAYOUT].load(Ordering::Relaxed);
    if layout != LAYOUT {
        return Err(ReadError::UnsupportedLayout(layout));
    }
    let slot_words = words[W_SLOT_WORDS].load(Ordering::Relaxed) as usize;
    let fits = slot_words
        .checked_mul(2)
        .and_then(|n| n.checked_add(HEADER_WORDS))
        .is_some_and(|n| n <= words.len());
    if slot_words < SLOT_HEADER_WORDS || !fits {
        return Err(ReadError::Corrupt);
    }
    let pid =
        u32::try_from(words[W_PID].load(Ordering::Relaxed)).map_err(|_| ReadError::Corrupt)?;
    let start = words[W_START].load(Ordering::Relaxed);
    let capacity = (slot_words - SLOT_HEADER_WORDS) * 8;
    for _ in 0..1000 {
        let generation = words[W_GENERATION].load(Ordering::Acquire);
        let slot = &words[slot_base(slot_words, generation)..];
        let state = slot[0].load(Ordering::Relaxed);
        let status = slot[1].load(Ordering::Relaxed);
        let len = slot[2].load(Ordering::Relaxed);
        // Bounded by the slot whatever a concurrent writer left in `len`.
        let copy = (len.min(capacity as u64) as usize).min(text.len());
        for (i, chunk) in text[..copy].chunks_mut(8).enumerate() {
            let w = slot[SLOT_HEADER_WORDS + i]
                .load(Ordering::Relaxed)
                .to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        // Pairs with the writer's release fence: if any load above saw a
        // store of a later publish, the generation below has moved on.
        fence(Ordering::Acquire);
        if words[W_GENERATION].load(Ordering::Relaxed) != generation {
            crate::yield_now();
            continue;
        }
        if generation == 0 {
            return Err(ReadError::Corrupt);
        }
        let len = usize::try_from(len).map_err(|_| ReadError::Corrupt)?;
        if len > capacity {
            return Err(ReadError::Corrupt);
        }
        if len > text.len() {
            return Err(ReadError::BufferTooSmall(len));
        }
        let state = State::from_word(state).ok_or(ReadError::Corrupt)?;
        let status = match status {
            0 => None,
            1..=256 => Some((status - 1) as u8),
            _ => return Err(ReadError::Corrupt),
        };
        return Ok(Snapshot {
            pid,
            start,
            state,
            status,
            len,
        });
    }
    Err(ReadError::Busy)
}

/// Longest file name [`file_name`] writes, its NUL included.
pub const NAME_MAX: usize = 10 + 1 + 20 + 1;

/// `PID-START`, NUL-terminated, into `buf`.
pub fn file_name(pid: u32, start: u64, buf: &mut [u8; NAME_MAX]) -> &CStr {
    let mut n = put_decimal(buf, 0, u64::from(pid));
    buf[n] = b'-';
    n = put_decimal(buf, n + 1, start);
    buf[n] = 0;
    // The bytes are digits, a dash and one NUL at the end.
    CStr::from_bytes_with_nul(&buf[..=n]).unwrap_or(c"0-0")
}

/// Writes `v` in decimal at `buf[at..]`; returns the index after it.
fn put_decimal(buf: &mut [u8], at: usize, v: u64) -> usize {
    let mut digits = [0u8; 20];
    let d = crate::text::decimal(v, &mut digits);
    buf[at..at + d.len()].copy_from_slice(d);
    at + d.len()
}

/// The start time of a process from its `/proc/PID/stat` text: field 22,
/// counted after the `)` that ends the command name (which may itself hold
/// spaces and parentheses).
pub fn stat_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    // Fields 3 (state) to 22 (starttime) follow the name.
    let field = stat[close + 1..]
        .split(|c| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(22 - 3)?;
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) || field.len() > 19 {
        return None;
    }
    Some(
        field
            .iter()
            .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0')),
    )
}

/// The state letter of a process from its `/proc/PID/stat` text (field 3:
/// `R`, `S`, `Z` for a zombie, …).
pub fn stat_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    stat[close + 1..]
        .iter()
        .copied()
        .find(|c| !c.is_ascii_whitespace())
}

/// This process's start time (see [`stat_start_time`]), read from
/// `/proc/self/stat` into a stack buffer; 0 when it cannot be read.
pub fn self_start_time() -> u64 {
    // The line is at most ~700 bytes (52 numbers and a 16-byte name).
    let mut buf = [0u8; 1024];
    match crate::read_file(c"/proc/self/stat", &mut buf) {
        Ok(n) => stat_start_time(&buf[..n]).unwrap_or(0),
        Err(_) => 0,
    }
}

/// A file mapped by [`create`] or [`map_file`]: unmapped by the owner with
/// [`crate::unmap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub addr: *mut u8,
    pub len: usize,
}

impl Mapping {
    /// The mapping as words.
    ///
    /// # Safety
    /// The mapping must still be mapped, for as long as the slice is used.
    pub unsafe fn words<'a>(self) -> &'a [AtomicU64] {
        // SAFETY: page-aligned, `len` bytes mapped (per the contract);
        // AtomicU64 has no invalid bit patterns.
        unsafe { core::slice::from_raw_parts(self.addr.cast::<AtomicU64>(), self.len / 8) }
    }
}

/// Creates this process's report file `dir/PID-START`, `words * 8` bytes of
/// zeros, and maps it shared and writable. A file of that name (left by the
/// image this one replaced with `exec`) is replaced. The directory must
/// belong to the effective user and be writable by nobody else (EPERM
/// otherwise), so that another user cannot read the records or pick where
/// they go.
///
/// Raw system calls only: safe in a constructor and a `fork` child handler.
pub fn create(dir: &CStr, pid: u32, start: u64, words: usize) -> Result<Mapping, Errno> {
    let len = words.checked_mul(8).ok_or(Errno(crate::protect::EINVAL))?;
    let dirfd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&dirfd)?;
    if st.st_uid != crate::euid() || st.st_mode & 0o022 != 0 {
        return Err(Errno(crate::protect::EPERM));
    }
    let mut name = [0u8; NAME_MAX];
    let name = file_name(pid, start, &mut name);
    // The image before an exec left a file of this name: start over.
    let _ = rustix::fs::unlinkat(&dirfd, name, AtFlags::empty());
    let fd = rustix::fs::openat(
        &dirfd,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    map_fd(fd.as_fd(), len, true)
}

/// Maps `len` bytes of the open file `fd` shared, read-only or writable
/// (how `memkit run` reads report files).
pub fn map_file(fd: i32, len: usize, writable: bool) -> Result<Mapping, Errno> {
    // SAFETY: borrowed for this call only; the caller names an open fd.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    map_fd(fd, len, writable)
}

fn map_fd(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<Mapping, Errno> {
    let prot = if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    };
    // SAFETY: a new mapping at an address the kernel picks aliases nothing
    // of ours; the file outlives the descriptor through the mapping.
    let addr = unsafe { mm::mmap(core::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }?;
    Ok(Mapping {
        addr: addr.cast(),
        len,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    fn image(capacity: usize) -> Vec<AtomicU64> {
        (0..words_for(capacity))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    fn entry(text: &[u8], state: State, status: Option<u8>) -> Entry<'_> {
        Entry {
            state,
            status,
            text,
        }
    }

    fn read_back(words: &[AtomicU64]) -> Result<(Snapshot, Vec<u8>), ReadError> {
        let mut buf = [0u8; 512];
        let s = read(words, &mut buf)?;
        Ok((s, buf[..s.len].to_vec()))
    }

    #[test]
    fn init_publish_read() {
        let words = image(100);
        assert_eq!(read_back(&words), Err(ReadError::Incomplete));
        assert!(init(
            &words,
            42,
            777,
            &entry(b"first", State::Running, None)
        ));
        let (s, text) = read_back(&words).unwrap();
        assert_eq!(
            (s.pid, s.start, s.state, s.status),
            (42, 777, State::Running, None)
        );
        assert_eq!(text, b"first");
        for (i, t) in [&b"second record"[..], &b""[..], b"x".repeat(100).as_slice()]
            .iter()
            .enumerate()
        {
            let status = Some(i as u8 * 100);
            assert!(publish(&words, &entry(t, State::Exited, status)));
            let (s, text) = read_back(&words).unwrap();
            assert_eq!((s.state, s.status), (State::Exited, status));
            assert_eq!(&text, t);
        }
        // Too long for the slot (100 rounded up to words): refused, the last
        // record stays.
        assert!(!publish(&words, &entry(&[b'y'; 105], State::Running, None)));
        assert_eq!(read_back(&words).unwrap().1, b"x".repeat(100));
        assert!(publish(&words, &entry(b"255", State::Exited, Some(255))));
        assert_eq!(read_back(&words).unwrap().0.status, Some(255));
    }

    /// A writer killed before any store of a publish, between any two, or
    /// before the flip leaves the previous record; after the flip, the new one.
    #[test]
    fn a_writer_killed_mid_update_never_leaves_a_torn_record() {
        let old: Vec<u8> = b"memkit-report v1 pid=1 allocs=111 exe=/old/program".to_vec();
        let new: Vec<u8> = b"memkit-report v1 pid=1 allocs=222222 exe=/new".to_vec();
        let mut stores = 0;
        {
            let words = image(64);
            init(&words, 1, 2, &entry(&old, State::Running, None));
            publish_until(&words, &entry(&new, State::Exited, Some(3)), &mut || {
                stores += 1;
                true
            });
        }
        assert_eq!(stores, SLOT_HEADER_WORDS + new.len().div_ceil(8) + 1);
        // Two rounds: stopping in the slot that once held a record, too.
        for round in 0..2 {
            for allowed in 0..=stores {
                let words = image(64);
                init(&words, 1, 2, &entry(b"zero", State::Running, None));
                if round == 1 {
                    publish(
                        &words,
                        &entry(b"junk junk junk junk junk junk", State::Exited, Some(9)),
                    );
                }
                publish(&words, &entry(&old, State::Running, None));
                let mut left = allowed;
                publish_until(&words, &entry(&new, State::Exited, Some(3)), &mut || {
                    left = left.wrapping_sub(1);
                    left != usize::MAX
                });
                let (s, text) = read_back(&words).unwrap();
                if allowed == stores {
                    assert_eq!((s.state, s.status, &text), (State::Exited, Some(3), &new));
                } else {
                    assert_eq!(
                        (s.state, s.status, &text),
                        (State::Running, None, &old),
                        "{allowed}"
                    );
                }
            }
        }
    }

    /// A reader racing a live writer only ever returns whole records: each
    /// text repeats its generation, and state and status follow it.
    #[test]
    fn concurrent_reader_sees_whole_records() {
        use std::string::String;
        fn text(g: u64) -> String {
            let n = (g % 7) as usize + 1;
            std::format!("g={g} ").repeat(n)
        }
        let words = image(256);
        init(
            &words,
            5,
            6,
            &entry(text(0).as_bytes(), State::Running, None),
        );
        let done = core::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for g in 1..200_000u64 {
                    let t = text(g);
                    let state = if g.is_multiple_of(2) {
                        State::Exited
                    } else {
                        State::Running
                    };
                    publish(&words, &entry(t.as_bytes(), state, Some((g % 256) as u8)));
                }
                done.store(true, Ordering::Relaxed);
            });
            let mut reads = 0u64;
            let mut buf = [0u8; 256];
            while !done.load(Ordering::Relaxed) || reads == 0 {
                let Ok(s) = read(&words, &mut buf) else {
                    continue;
                };
                let t = core::str::from_utf8(&buf[..s.len]).unwrap();
                let g: u64 = t[2..t.find(' ').unwrap()].parse().unwrap();
                assert_eq!(t, text(g));
                if g > 0 {
                    assert_eq!(s.status, Some((g % 256) as u8));
                    assert_eq!(s.state == State::Exited, g.is_multiple_of(2));
                }
                reads += 1;
            }
        });
    }

    #[test]
    fn bad_files_are_errors() {
        let words = image(16);
        init(&words, 1, 1, &entry(b"ok", State::Running, None));
        let set = |i: usize, v: u64| {
            let keep = words[i].load(Ordering::Relaxed);
            words[i].store(v, Ordering::Relaxed);
            let r = read_back(&words).map(|_| ());
            words[i].store(keep, Ordering::Relaxed);
            r
        };
        assert_eq!(set(W_MAGIC, 0), Err(ReadError::Incomplete));
        assert_eq!(set(W_LAYOUT, 2), Err(ReadError::UnsupportedLayout(2)));
        assert_eq!(set(W_SLOT_WORDS, 1 << 40), Err(ReadError::Corrupt));
        assert_eq!(set(W_SLOT_WORDS, u64::MAX), Err(ReadError::Corrupt));
        assert_eq!(set(W_PID, 1 << 40), Err(ReadError::Corrupt));
        assert_eq!(set(W_GENERATION, 0), Err(ReadError::Corrupt));
        let slot = slot_base((words.len() - HEADER_WORDS) / 2, 1);
        assert_eq!(set(slot, 7), Err(ReadError::Corrupt));
        assert_eq!(set(slot + 1, 300), Err(ReadError::Corrupt));
        assert_eq!(set(slot + 2, 17), Err(ReadError::Corrupt));
        assert_eq!(set(slot + 2, u64::MAX), Err(ReadError::Corrupt));
        assert!(read(&words[..words.len() - 1], &mut [0; 64]).is_err());
        assert_eq!(read(&words, &mut [0; 1]), Err(ReadError::BufferTooSmall(2)));
        assert!(read(&words[..3], &mut [0; 64]).is_err());
        assert!(!init(
            &image(0)[..5],
            1,
            1,
            &entry(b"", State::Running, None)
        ));
    }

    #[test]
    fn names_and_stat_fields() {
        let mut buf = [0u8; NAME_MAX];
        assert_eq!(file_name(1234, 5678, &mut buf).to_bytes(), b"1234-5678");
        assert_eq!(
            file_name(u32::MAX, u64::MAX, &mut buf).to_bytes(),
            b"4294967295-18446744073709551615"
        );
        let stat = b"4321 (a (b) c) S 1 4321 4321 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 12345 67 18446744073709551615\n";
        assert_eq!(stat_start_time(stat), Some(987654));
        assert_eq!(stat_state(stat), Some(b'S'));
        assert_eq!(stat_start_time(b"1 (x) Z 1 2 3"), None);
        assert_eq!(stat_start_time(b"no parens"), None);
        assert!(self_start_time() > 0);
    }
}

//! Options, read once from the environment without allocating.
//!
//! `environ` is scanned directly (no `getenv` copy, no `String`). Unknown or
//! malformed values print one warning line on stderr and keep the default.
//! Options live in atomics so the slow paths can read them without locks;
//! nothing on a fast path reads them.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::util::BufWriter;

/// How free memory goes back to the OS and how transparent huge pages are used.
pub struct Options {
    /// `MEMKIT_PURGE_DELAY_MS`: how long free pages stay resident before
    /// `MADV_DONTNEED` (and cached segments/huge blocks before `munmap`).
    pub purge_delay_ns: AtomicU64,
    /// `MEMKIT_VERBOSE=1`: a line on stderr for unusual events.
    pub verbose: AtomicBool,
    /// `MEMKIT_THP=default|always|never`.
    pub thp: AtomicU8,
    /// `MEMKIT_SHOW_STATS=1`: print `malloc_stats` at exit (read by the preload).
    pub show_stats: AtomicBool,
    /// `MEMKIT_HUGE_CACHE_MB`: most bytes of freed huge blocks kept for reuse.
    pub huge_cache_bytes: AtomicU64,
    /// `MEMKIT_SEGMENT_CACHE`: most free 4 MiB segments kept for reuse.
    pub segment_cache: AtomicU64,
    /// The process locked its future memory (`mlockall(MCL_FUTURE)`): decay
    /// neither purges nor unmaps, so a real-time process never has to fault
    /// or re-lock memory on an allocation path. `malloc_trim` still releases.
    pub memory_locked: AtomicBool,
}

pub const THP_DEFAULT: u8 = 0;
pub const THP_ALWAYS: u8 = 1;
pub const THP_NEVER: u8 = 2;

pub static OPTIONS: Options = Options {
    purge_delay_ns: AtomicU64::new(250_000_000),
    verbose: AtomicBool::new(false),
    thp: AtomicU8::new(THP_DEFAULT),
    show_stats: AtomicBool::new(false),
    huge_cache_bytes: AtomicU64::new(64 << 20),
    segment_cache: AtomicU64::new(8),
    memory_locked: AtomicBool::new(false),
};

static LOADED: AtomicBool = AtomicBool::new(false);

/// Looks `name` up in the environment (see [`memkit_sys::env::var`]).
pub fn env(name: &[u8]) -> Option<&'static [u8]> {
    memkit_sys::env::var(name)
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut r = 0u64;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        r = r * 10 + (c - b'0') as u64;
    }
    Some(r)
}

fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"yes" | b"true" | b"on" => Some(true),
        b"0" | b"no" | b"false" | b"off" | b"" => Some(false),
        _ => None,
    }
}

pub(crate) fn warn(name: &[u8], value: &[u8], expected: &str) {
    let mut w = BufWriter::<256>::new();
    w.put(b"memkit: ignoring ");
    w.put(name);
    w.put(b"=");
    w.put(&value[..value.len().min(64)]);
    w.put(b" (expected ");
    w.put(expected.as_bytes());
    w.put(b"); keeping the default\n");
    w.flush_to(2);
}

/// Reads every `MEMKIT_*` option once. Called on the first slow path.
pub fn load() {
    if LOADED.swap(true, Relaxed) {
        return;
    }
    let o = &OPTIONS;
    if let Some(v) = env(b"MEMKIT_PURGE_DELAY_MS") {
        match parse_u64(v) {
            Some(ms) if ms <= 3_600_000 => o.purge_delay_ns.store(ms * 1_000_000, Relaxed),
            _ => warn(b"MEMKIT_PURGE_DELAY_MS", v, "milliseconds, 0 to 3600000"),
        }
    }
    if let Some(v) = env(b"MEMKIT_VERBOSE") {
        match parse_bool(v) {
            Some(b) => o.verbose.store(b, Relaxed),
            None => warn(b"MEMKIT_VERBOSE", v, "0 or 1"),
        }
    }
    if let Some(v) = env(b"MEMKIT_SHOW_STATS") {
        match parse_bool(v) {
            Some(b) => o.show_stats.store(b, Relaxed),
            None => warn(b"MEMKIT_SHOW_STATS", v, "0 or 1"),
        }
    }
    if let Some(v) = env(b"MEMKIT_THP") {
        match v {
            b"default" => o.thp.store(THP_DEFAULT, Relaxed),
            b"always" => o.thp.store(THP_ALWAYS, Relaxed),
            b"never" => o.thp.store(THP_NEVER, Relaxed),
            _ => warn(b"MEMKIT_THP", v, "default, always or never"),
        }
    }
    if let Some(v) = env(b"MEMKIT_HUGE_CACHE_MB") {
        match parse_u64(v) {
            Some(mb) if mb <= 1 << 20 => o.huge_cache_bytes.store(mb << 20, Relaxed),
            _ => warn(b"MEMKIT_HUGE_CACHE_MB", v, "MiB, 0 to 1048576"),
        }
    }
    if let Some(v) = env(b"MEMKIT_SEGMENT_CACHE") {
        match parse_u64(v) {
            Some(n) if n <= 4096 => o.segment_cache.store(n, Relaxed),
            _ => warn(
                b"MEMKIT_SEGMENT_CACHE",
                v,
                "a count of 4 MiB segments, 0 to 4096",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_booleans_strictly() {
        assert_eq!(parse_u64(b"250"), Some(250));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12ms"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
        assert_eq!(parse_bool(b"1"), Some(true));
        assert_eq!(parse_bool(b"maybe"), None);
    }

    /// The defaults `memkit env`, the man pages and the README show
    /// (memkit_sys::env::VARS) are the ones in force.
    #[test]
    fn defaults_are_those_of_the_table() {
        let default = |name: &str| -> Option<u64> {
            if env(name.as_bytes()).is_some() {
                return None; // set here: OPTIONS holds the value given
            }
            let v = memkit_sys::env::lookup(name).expect("in VARS").default;
            Some(match v {
                "default" => u64::from(THP_DEFAULT),
                _ => v.parse().expect("a number"),
            })
        };
        let o = &OPTIONS;
        let cases = [
            (
                "MEMKIT_PURGE_DELAY_MS",
                o.purge_delay_ns.load(Relaxed) / 1_000_000,
            ),
            (
                "MEMKIT_HUGE_CACHE_MB",
                o.huge_cache_bytes.load(Relaxed) >> 20,
            ),
            ("MEMKIT_SEGMENT_CACHE", o.segment_cache.load(Relaxed)),
            ("MEMKIT_THP", u64::from(o.thp.load(Relaxed))),
            ("MEMKIT_VERBOSE", u64::from(o.verbose.load(Relaxed))),
            ("MEMKIT_SHOW_STATS", u64::from(o.show_stats.load(Relaxed))),
        ];
        for (name, in_force) in cases {
            if let Some(d) = default(name) {
                assert_eq!(in_force, d, "{name}");
            }
        }
    }
}

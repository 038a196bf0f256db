//! `MEMKIT_CHECK_OPTIONS`: colon-separated `name=value` pairs, like
//! `ASAN_OPTIONS` (`memkit check` sets it from its command line; people who
//! preload libmemkit_check.so by hand set it themselves). Unknown names and
//! bad values are reported once on stderr and otherwise ignored.

use std::sync::OnceLock;

/// The environment variable read at the first allocation.
pub const ENV: &str = "MEMKIT_CHECK_OPTIONS";

#[derive(Clone, Debug)]
pub struct Options {
    /// Leak check at exit (`leaks=0` turns it off).
    pub leaks: bool,
    /// List still-reachable blocks too (Valgrind's "still reachable").
    pub show_reachable: bool,
    /// The leak check also scans the program's anonymous mappings (its own
    /// `mmap`ed memory, as Valgrind does; `scan_mmap=0`: LeakSanitizer's
    /// roots only).
    pub scan_mmap: bool,
    /// Stop at the first report (exit with `error_exitcode`).
    pub halt_on_error: bool,
    /// The exit status when anything was reported.
    pub error_exitcode: i32,
    /// At its end, a process that reported keeps its own exit status
    /// (`memkit check` sets it: its own status then says whether any
    /// process reported, and `make` is not stopped by a leaking `cc1`).
    /// `halt_on_error` still exits with `error_exitcode`.
    pub keep_status: bool,
    /// Text reports go here instead of stderr (`.PID` appended).
    pub log_file: Option<String>,
    /// Where each process writes `check.PID.jsonl` (one report per line).
    pub json_dir: Option<String>,
    /// Suppressions file (`kind:pattern` lines).
    pub suppressions: Option<String>,
    /// Bytes of freed blocks held back before reuse: at most this many.
    pub quarantine_bytes: usize,
    /// Whether `quarantine_bytes` was asked for (`quarantine_mb=N`): then
    /// it is the bound; by default the bound follows the live heap
    /// ([`QUARANTINE_LIVE_TIMES`] its bytes, at least [`QUARANTINE_MIN`]).
    pub quarantine_fixed: bool,
    /// Bytes a new block is filled with (`malloc`, `new`; never `calloc`).
    pub alloc_fill: u8,
    /// Bytes a freed block is filled with while in quarantine.
    pub free_fill: u8,
    /// At most this many bytes of a block are filled (and checked).
    pub max_fill: usize,
    /// When a block leaves quarantine, its first and last `free_check`
    /// bytes are checked for the free pattern (all of it at exit).
    pub free_check: usize,
    /// Frames kept per stack.
    pub stack_depth: usize,
    /// Guard pages: none, every block, or one block in N.
    pub guard: Guard,
    /// Blocks larger than this are never guarded.
    pub guard_max: usize,
}

/// Which blocks get a guard page (`guard=all`, `guard=sample` with
/// `guard_sample=N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    None,
    All,
    Sample(u64),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            leaks: true,
            show_reachable: false,
            scan_mmap: true,
            halt_on_error: false,
            error_exitcode: 23,
            keep_status: false,
            log_file: None,
            json_dir: None,
            suppressions: None,
            quarantine_bytes: 64 << 20,
            quarantine_fixed: false,
            alloc_fill: 0xbe,
            free_fill: 0xdf,
            max_fill: 64 << 10,
            free_check: 64,
            stack_depth: 30,
            guard: Guard::None,
            guard_max: 1 << 20,
        }
    }
}

/// The default quarantine bound is this many times the live heap's bytes…
pub const QUARANTINE_LIVE_TIMES: usize = 2;
/// …and at least this (64 MiB at most: `quarantine_bytes`' default).
pub const QUARANTINE_MIN: usize = 4 << 20;

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// The options (parsed from the environment on first use).
pub fn get() -> &'static Options {
    OPTIONS.get_or_init(|| {
        let (o, errors) = parse(std::env::var(ENV).ok().as_deref().unwrap_or(""));
        for e in errors {
            crate::report::warn(&format!("{ENV}: {e}"));
        }
        o
    })
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "1" | "yes" | "true" => Some(true),
        "0" | "no" | "false" => Some(false),
        _ => None,
    }
}

fn number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Parses an options string; returns the options and what was wrong.
pub fn parse(s: &str) -> (Options, Vec<String>) {
    let mut o = Options::default();
    let mut errors = Vec::new();
    let mut sample = 1000;
    let mut guard = "none".to_owned();
    for item in s.split(':').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            errors.push(format!("`{item}` is not name=value"));
            continue;
        };
        let ok = match k {
            "leaks" => flag(v).map(|b| o.leaks = b),
            "show_reachable" => flag(v).map(|b| o.show_reachable = b),
            "scan_mmap" => flag(v).map(|b| o.scan_mmap = b),
            "halt_on_error" => flag(v).map(|b| o.halt_on_error = b),
            "error_exitcode" => v.parse().ok().map(|n| o.error_exitcode = n),
            "keep_status" => flag(v).map(|b| o.keep_status = b),
            "log_file" => {
                o.log_file = Some(v.to_owned());
                Some(())
            }
            "json_dir" => {
                o.json_dir = Some(v.to_owned());
                Some(())
            }
            "suppressions" => {
                o.suppressions = Some(v.to_owned());
                Some(())
            }
            "quarantine_mb" => number(v).map(|n| {
                o.quarantine_bytes = (n as usize) << 20;
                o.quarantine_fixed = true;
            }),
            "alloc_fill" => number(v)
                .filter(|&n| n < 256)
                .map(|n| o.alloc_fill = n as u8),
            "free_fill" => number(v)
                .filter(|&n| n < 256)
                .map(|n| o.free_fill = n as u8),
            "max_fill" => number(v).map(|n| o.max_fill = n as usize),
            "free_check" => number(v).map(|n| o.free_check = n as usize),
            "stack_depth" => number(v)
                .filter(|&n| (1..=memkit_trace::unwind::MAX_FRAMES as u64).contains(&n))
                .map(|n| o.stack_depth = n as usize),
            "guard" => matches!(v, "none" | "all" | "sample").then(|| guard = v.to_owned()),
            "guard_sample" => number(v).filter(|&n| n >= 1).map(|n| sample = n),
            "guard_max" => number(v).map(|n| o.guard_max = n as usize),
            _ => {
                errors.push(format!("unknown option `{k}`"));
                continue;
            }
        };
        if ok.is_none() {
            errors.push(format!("bad value `{v}` for `{k}`"));
        }
    }
    o.guard = match guard.as_str() {
        "all" => Guard::All,
        "sample" => Guard::Sample(sample),
        _ => Guard::None,
    };
    (o, errors)
}

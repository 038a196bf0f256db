//! `MEMKIT_PROFILE_OPTIONS` (colon-separated `name=value`, set by `memkit
//! profile` from its command line) and `MEMKIT_PROFILE_DIR` (where each
//! process writes its raw profile). Unknown names and bad values are
//! reported once on stderr and otherwise ignored.

use std::sync::OnceLock;

pub const ENV: &str = "MEMKIT_PROFILE_OPTIONS";
pub const DIR_ENV: &str = "MEMKIT_PROFILE_DIR";

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// 0: record every allocation; else sample one allocation per this
    /// many bytes on average (jemalloc's `lg_prof_sample` idea).
    pub sample_bytes: u64,
    /// Frames kept per stack.
    pub stack_depth: usize,
    /// Timeline period.
    pub interval_ns: u64,
    /// Where raw profiles go (`.` when unset).
    pub dir: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sample_bytes: 0,
            stack_depth: memkit_trace::unwind::MAX_FRAMES,
            interval_ns: 10_000_000,
            dir: ".".into(),
        }
    }
}

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// The options (parsed from the environment on first use).
pub fn get() -> &'static Options {
    OPTIONS.get_or_init(|| {
        let (mut o, errors) = parse(std::env::var(ENV).ok().as_deref().unwrap_or(""));
        for e in errors {
            crate::warn(&format!("{ENV}: {e}"));
        }
        if let Ok(d) = std::env::var(DIR_ENV) {
            if !d.is_empty() {
                o.dir = d;
            }
        }
        o
    })
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
    for item in s.split(':').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            errors.push(format!("`{item}` is not name=value"));
            continue;
        };
        let ok = match k {
            "sample" => number(v).map(|n| o.sample_bytes = n),
            "stack_depth" => number(v)
                .filter(|&n| (1..=memkit_trace::unwind::MAX_FRAMES as u64).contains(&n))
                .map(|n| o.stack_depth = n as usize),
            "interval_ms" => number(v)
                .filter(|&n| (1..=3_600_000).contains(&n))
                .map(|n| o.interval_ns = n * 1_000_000),
            _ => {
                errors.push(format!("unknown option `{k}`"));
                continue;
            }
        };
        if ok.is_none() {
            errors.push(format!("bad value `{v}` for `{k}`"));
        }
    }
    (o, errors)
}

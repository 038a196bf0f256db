//! `summary.json`: one process's figures, versioned (`version`, bumped on
//! incompatible changes; new fields may be added), documented in
//! docs/PROFILE.md. Sizes in bytes, times in seconds.

use serde::Serialize;

use memkit_profdata::Raw;

use super::pprof::objects;
use super::symbols::{Site, Symbolized};

pub const FORMAT: &str = "memkit-profile-summary";
pub const VERSION: u32 = 1;
/// Sites listed in each `top_*` list.
pub const TOP: usize = 10;

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Summary {
    pub format: &'static str,
    pub version: u32,
    pub pid: u32,
    pub ppid: u32,
    pub command: Vec<String>,
    pub exe: String,
    /// Profiling start, seconds since the Unix epoch.
    pub start_unix_seconds: f64,
    pub duration_seconds: f64,
    /// How the process ended, as the runtime recorded it (`exit`).
    pub end: String,
    /// 0: every allocation recorded (exact); else the mean sampling period.
    pub sample_bytes: u64,
    pub exact: bool,
    pub peak_bytes: u64,
    pub peak_allocs: u64,
    pub peak_at_seconds: f64,
    /// Exact in both modes.
    pub total_allocs: u64,
    pub total_bytes: u64,
    pub total_frees: u64,
    /// In use when the process ended (this, the peak and the temporary
    /// count are estimates in sampled mode).
    pub leaked_bytes: u64,
    pub leaked_allocs: u64,
    /// Freed by the same thread with no allocation of that thread between.
    pub temporary_allocs: u64,
    /// Frees of blocks the parent allocated before `fork`.
    pub inherited_frees: u64,
    /// Distinct stacks after symbolization.
    pub sites: usize,
    pub peak_rss_bytes: u64,
    pub overhead: Overhead,
    pub top_at_peak: Vec<TopSite>,
    pub top_leaks: Vec<TopSite>,
    pub top_allocated: Vec<TopSite>,
    pub top_temporary: Vec<TopSite>,
    /// The other files of the directory.
    pub files: Files,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Overhead {
    pub stack_bytes: u64,
    pub site_bytes: u64,
    pub header_bytes_at_peak: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TopSite {
    /// The value the list is ordered by (bytes; allocations for
    /// `top_temporary`).
    pub value: u64,
    pub bytes: u64,
    pub objects: u64,
    /// Short name: the first frame past the allocator and two callers.
    pub site: String,
    /// `function (file:line)`, innermost first.
    pub stack: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Files {
    pub profile: &'static str,
    pub peak: &'static str,
    pub report: &'static str,
}

pub const PROFILE_FILE: &str = "profile.pb.gz";
pub const PEAK_FILE: &str = "peak.pb.gz";
pub const SUMMARY_FILE: &str = "summary.json";
pub const REPORT_FILE: &str = "report.html";

/// The `TOP` sites with the largest `key`, as (site, value, bytes, objects).
pub fn top(
    model: &Symbolized,
    key: impl Fn(&Site) -> (u64, u64, u64),
) -> Vec<(&Site, u64, u64, u64)> {
    let mut v: Vec<_> = model
        .sites
        .iter()
        .map(|s| {
            let (value, bytes, objs) = key(s);
            (s, value, bytes, objs)
        })
        .filter(|t| t.1 > 0)
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.1));
    v.truncate(TOP);
    v
}

fn top_sites(model: &Symbolized, key: impl Fn(&Site) -> (u64, u64, u64)) -> Vec<TopSite> {
    let unit = model.object_unit;
    top(model, key)
        .into_iter()
        .map(|(s, value, bytes, objs)| {
            let stack = model.labels(s);
            TopSite {
                value,
                bytes,
                objects: objects(objs, unit),
                site: model.label(s),
                stack,
            }
        })
        .collect()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub fn build(raw: &Raw, model: &Symbolized) -> Summary {
    let t = &raw.totals;
    let unit = model.object_unit;
    Summary {
        format: FORMAT,
        version: VERSION,
        pid: raw.pid,
        ppid: raw.ppid,
        command: raw.command.clone(),
        exe: raw.exe.clone(),
        start_unix_seconds: seconds(raw.start_unix_ns),
        duration_seconds: seconds(raw.duration_ns),
        end: raw.end.clone(),
        sample_bytes: raw.sample_bytes,
        exact: raw.sample_bytes == 0,
        peak_bytes: t.peak_bytes,
        peak_allocs: t.peak_allocs,
        peak_at_seconds: seconds(t.peak_at_ns),
        total_allocs: t.allocs,
        total_bytes: t.bytes,
        total_frees: t.frees,
        leaked_bytes: t.inuse_bytes,
        leaked_allocs: t.inuse_allocs,
        temporary_allocs: t.temporary_allocs,
        inherited_frees: t.inherited_frees,
        sites: model.sites.len(),
        peak_rss_bytes: raw.overhead.peak_rss_bytes,
        overhead: Overhead {
            stack_bytes: raw.overhead.stack_bytes,
            site_bytes: raw.overhead.site_bytes,
            header_bytes_at_peak: raw.overhead.header_bytes_at_peak,
        },
        top_at_peak: top_sites(model, |s| (s.peak_bytes, s.peak_bytes, s.peak_objects)),
        top_leaks: top_sites(model, |s| (s.inuse_bytes, s.inuse_bytes, s.inuse_objects)),
        top_allocated: top_sites(model, |s| (s.alloc_bytes, s.alloc_bytes, s.alloc_objects)),
        // Per-site temporary counts are object counts (units of
        // 1/object_unit, like the others).
        top_temporary: top_sites(model, |s| {
            (objects(s.temporary, unit), s.alloc_bytes, s.alloc_objects)
        }),
        files: Files {
            profile: PROFILE_FILE,
            peak: PEAK_FILE,
            report: REPORT_FILE,
        },
    }
}

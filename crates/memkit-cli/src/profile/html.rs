//! `report.html`: one self-contained page (no network: the script, the
//! style and the data are inline) with the timeline of bytes in use and
//! RSS, a flame graph switchable between allocated, at peak and leaked,
//! the top sites, the size histogram and the leaks with their stacks.
//!
//! The page is `report.html` beside this file with the data put in as one
//! JSON object. Its size follows the sites, not the allocations: at most
//! [`MAX_SITES`] sites (the rest summed as one), the timeline thinned to
//! at most [`MAX_POINTS`] points (keeping each stretch's highest).

use std::collections::HashMap;

use serde::Serialize;

use memkit_profdata::{Point, Raw};

use super::pprof::objects;
use super::summary::Summary;
use super::symbols::Symbolized;

const TEMPLATE: &str = include_str!("report.html");
const DATA_MARK: &str = "/*REPORT_DATA*/null";

pub const MAX_SITES: usize = 3000;
pub const MAX_POINTS: usize = 2000;

#[derive(Serialize)]
struct Data<'a> {
    title: String,
    pid: u32,
    duration: f64,
    sample_bytes: u64,
    peak_bytes: u64,
    peak_allocs: u64,
    peak_at: f64,
    total_allocs: u64,
    total_bytes: u64,
    leaked_bytes: u64,
    leaked_allocs: u64,
    temporary_allocs: u64,
    peak_rss: u64,
    /// `[seconds, bytes in use, rss]`.
    timeline: Vec<(f64, u64, u64)>,
    /// `[largest size, allocations, bytes]`.
    hist: Vec<(u64, u64, u64)>,
    /// Frame labels, referred to by index.
    names: Vec<&'a str>,
    sites: Vec<SiteRow>,
    /// Sites left out (summed into the last row), 0 when none.
    omitted: usize,
}

/// `[stack (root first), label, allocated bytes, allocations, bytes at
/// peak, blocks at peak, leaked bytes, leaked blocks, temporary]`.
#[derive(Serialize)]
struct SiteRow(Vec<u32>, String, u64, u64, u64, u64, u64, u64, u64);

/// At most `max` points: the highest of each run of bytes in use.
fn thin(points: &[Point], max: usize) -> Vec<(f64, u64, u64)> {
    let step = points.len().div_ceil(max.max(1)).max(1);
    points
        .chunks(step)
        .filter_map(|c| c.iter().max_by_key(|p| p.inuse_bytes))
        .map(|p| (p.t_ns as f64 / 1e9, p.inuse_bytes, p.rss_bytes))
        .collect()
}

pub fn render(raw: &Raw, model: &Symbolized, summary: &Summary) -> String {
    let unit = model.object_unit;
    let labels: Vec<Vec<String>> = model.sites.iter().map(|s| model.labels(s)).collect();
    let mut names: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::new();

    // The sites that matter most for any view come first.
    let t = &raw.totals;
    let share = |v: u64, whole: u64| v as f64 / whole.max(1) as f64;
    let mut order: Vec<usize> = (0..model.sites.len()).collect();
    let score = |i: usize| {
        let s = &model.sites[i];
        share(s.alloc_bytes, t.bytes)
            .max(share(s.peak_bytes, t.peak_bytes))
            .max(share(s.inuse_bytes, t.inuse_bytes))
    };
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
    let omitted = order.len().saturating_sub(MAX_SITES);
    let mut rows = Vec::new();
    for &i in order.iter().take(MAX_SITES) {
        let s = &model.sites[i];
        let stack: Vec<u32> = labels[i]
            .iter()
            .rev()
            .map(|l| {
                *index.entry(l.as_str()).or_insert_with(|| {
                    names.push(l.as_str());
                    names.len() as u32 - 1
                })
            })
            .collect();
        rows.push(SiteRow(
            stack,
            model.label(s),
            s.alloc_bytes,
            objects(s.alloc_objects, unit),
            s.peak_bytes,
            objects(s.peak_objects, unit),
            s.inuse_bytes,
            objects(s.inuse_objects, unit),
            objects(s.temporary, unit),
        ));
    }
    if omitted > 0 {
        let mut rest = SiteRow(
            Vec::new(),
            format!("({omitted} smaller sites)"),
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        );
        for &i in order.iter().skip(MAX_SITES) {
            let s = &model.sites[i];
            rest.2 += s.alloc_bytes;
            rest.3 += objects(s.alloc_objects, unit);
            rest.4 += s.peak_bytes;
            rest.5 += objects(s.peak_objects, unit);
            rest.6 += s.inuse_bytes;
            rest.7 += objects(s.inuse_objects, unit);
            rest.8 += objects(s.temporary, unit);
        }
        rows.push(rest);
    }
    let data = Data {
        title: summary.command.join(" "),
        pid: summary.pid,
        duration: summary.duration_seconds,
        sample_bytes: summary.sample_bytes,
        peak_bytes: summary.peak_bytes,
        peak_allocs: summary.peak_allocs,
        peak_at: summary.peak_at_seconds,
        total_allocs: summary.total_allocs,
        total_bytes: summary.total_bytes,
        leaked_bytes: summary.leaked_bytes,
        leaked_allocs: summary.leaked_allocs,
        temporary_allocs: summary.temporary_allocs,
        peak_rss: summary.peak_rss_bytes,
        timeline: thin(&raw.timeline, MAX_POINTS),
        hist: raw
            .histogram
            .iter()
            .map(|b| (b.max_size, b.allocs, b.bytes))
            .collect(),
        names,
        sites: rows,
        omitted,
    };
    // `<` only occurs inside JSON strings, where \u003c means the same:
    // no `</script>` or `<!--` in the data can end the script early.
    let json = serde_json::to_string(&data)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    TEMPLATE.replacen(DATA_MARK, &json, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_keeps_each_stretch_highest() {
        let pts: Vec<Point> = (0..10)
            .map(|i| Point {
                t_ns: i * 1_000_000_000,
                inuse_bytes: if i == 7 { 100 } else { i },
                rss_bytes: 0,
            })
            .collect();
        let t = thin(&pts, 3);
        assert_eq!(t.len(), 3);
        assert!(t.iter().any(|p| p.1 == 100));
        assert_eq!(thin(&pts, 100).len(), 10);
        assert!(thin(&[], 10).is_empty());
    }
}

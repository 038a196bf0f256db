//! Statistics over the runs, and the markdown and JSON reports.

use crate::env::{Allocator, Machine};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run of one workload under one allocator.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub round: usize,
    pub allocator: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_kib: u64,
    pub metrics: BTreeMap<String, f64>,
}

/// Medians of one allocator's successful runs of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub runs: usize,
    pub failures: usize,
    pub wall_s: Option<f64>,
    /// Fastest and slowest successful run.
    pub wall_min_s: Option<f64>,
    pub wall_max_s: Option<f64>,
    /// user + sys.
    pub cpu_s: Option<f64>,
    pub max_rss_mib: Option<f64>,
    pub time_vs_glibc: Option<f64>,
    pub cpu_vs_glibc: Option<f64>,
    pub rss_vs_glibc: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// memkit's median over the best median of the other allocators.
#[derive(Debug, Clone, Serialize)]
pub struct VsBest {
    pub best: String,
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub about: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub cells: BTreeMap<String, Cell>,
    pub memkit_time_vs_best: Option<VsBest>,
    pub memkit_rss_vs_best: Option<VsBest>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Geomean {
    pub time_vs_glibc: f64,
    pub cpu_vs_glibc: f64,
    pub rss_vs_glibc: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub started_utc: String,
    pub duration_s: f64,
    pub command: String,
    pub quick: bool,
    pub rounds: usize,
    pub machine: Machine,
    pub allocators: Vec<Allocator>,
    pub skipped_allocators: Vec<Skipped>,
    pub rows: Vec<Row>,
    /// Workloads in the geometric means: those where every allocator has a
    /// result.
    pub geomean_workloads: Vec<String>,
    pub geomean: BTreeMap<String, Geomean>,
    pub geomean_memkit_time_vs_best: Option<f64>,
    pub geomean_memkit_rss_vs_best: Option<f64>,
    pub failures: Vec<String>,
}

pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub fn geomean(v: &[f64]) -> Option<f64> {
    if v.is_empty() || v.iter().any(|x| *x <= 0.0) {
        return None;
    }
    Some((v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// memkit's value over the smallest value among the other allocators.
fn vs_best(cells: &BTreeMap<String, Cell>, f: &dyn Fn(&Cell) -> Option<f64>) -> Option<VsBest> {
    let m = f(cells.get("memkit")?)?;
    let (best, v) = cells
        .iter()
        .filter(|(n, _)| !n.starts_with("memkit"))
        .filter_map(|(n, c)| f(c).map(|v| (n.clone(), v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    (v > 0.0).then(|| VsBest { best, ratio: m / v })
}

/// Builds a row's cells from its samples.
pub fn summarize(
    workload: &str,
    about: &str,
    skipped: Option<String>,
    samples: Vec<Sample>,
    allocators: &[Allocator],
) -> Row {
    let mut cells = BTreeMap::new();
    for a in allocators {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.allocator == a.name).collect();
        if mine.is_empty() {
            continue;
        }
        let ok: Vec<&&Sample> = mine.iter().filter(|s| s.ok).collect();
        let failures = mine.len() - ok.len();
        let med = |f: &dyn Fn(&Sample) -> f64| {
            if failures > 0 {
                return None;
            }
            median(&mut ok.iter().map(|s| f(s)).collect::<Vec<_>>())
        };
        let mut metric_names: Vec<&String> = ok.iter().flat_map(|s| s.metrics.keys()).collect();
        metric_names.sort();
        metric_names.dedup();
        let metrics = metric_names
            .into_iter()
            .filter_map(|k| {
                let mut v: Vec<f64> = ok
                    .iter()
                    .filter_map(|s| s.metrics.get(k).copied())
                    .collect();
                median(&mut v).map(|m| (k.clone(), m))
            })
            .collect();
        cells.insert(
            a.name.clone(),
            Cell {
                runs: mine.len(),
                failures,
                wall_s: med(&|s| s.wall_s),
                wall_min_s: ok.iter().map(|s| s.wall_s).min_by(f64::total_cmp),
                wall_max_s: ok.iter().map(|s| s.wall_s).max_by(f64::total_cmp),
                cpu_s: med(&|s| s.user_s + s.sys_s),
                max_rss_mib: med(&|s| s.max_rss_kib as f64 / 1024.0),
                time_vs_glibc: None,
                cpu_vs_glibc: None,
                rss_vs_glibc: None,
                metrics,
            },
        );
    }
    if let Some(g) = cells.get("glibc").cloned() {
        for c in cells.values_mut() {
            c.time_vs_glibc = ratio(c.wall_s, g.wall_s);
            c.cpu_vs_glibc = ratio(c.cpu_s, g.cpu_s);
            c.rss_vs_glibc = ratio(c.max_rss_mib, g.max_rss_mib);
        }
    }
    let memkit_time_vs_best = vs_best(&cells, &|c| c.wall_s);
    let memkit_rss_vs_best = vs_best(&cells, &|c| c.max_rss_mib);
    Row {
        workload: workload.to_string(),
        about: about.to_string(),
        skipped,
        cells,
        memkit_time_vs_best,
        memkit_rss_vs_best,
        samples,
    }
}

/// Fills the geometric means of `r` from its rows.
pub fn finish(r: &mut Report) {
    let names: Vec<String> = r.allocators.iter().map(|a| a.name.clone()).collect();
    let complete: Vec<&Row> = r
        .rows
        .iter()
        .filter(|row| {
            row.skipped.is_none()
                && names.iter().all(|n| {
                    row.cells
                        .get(n)
                        .map(|c| c.wall_s.is_some() && c.max_rss_mib.is_some())
                        .unwrap_or(false)
                })
        })
        .collect();
    r.geomean_workloads = complete.iter().map(|row| row.workload.clone()).collect();
    r.geomean.clear();
    if names.iter().any(|n| n == "glibc") {
        for n in &names {
            let pick = |f: &dyn Fn(&Cell) -> Option<f64>| {
                geomean(
                    &complete
                        .iter()
                        .filter_map(|row| f(&row.cells[n]))
                        .collect::<Vec<_>>(),
                )
            };
            if let (Some(t), Some(c), Some(m)) = (
                pick(&|c| c.time_vs_glibc),
                pick(&|c| c.cpu_vs_glibc),
                pick(&|c| c.rss_vs_glibc),
            ) {
                r.geomean.insert(
                    n.clone(),
                    Geomean {
                        time_vs_glibc: t,
                        cpu_vs_glibc: c,
                        rss_vs_glibc: m,
                    },
                );
            }
        }
    }
    let best = |f: &dyn Fn(&Row) -> Option<f64>| {
        geomean(&complete.iter().filter_map(|row| f(row)).collect::<Vec<_>>())
    };
    r.geomean_memkit_time_vs_best = best(&|row| row.memkit_time_vs_best.as_ref().map(|b| b.ratio));
    r.geomean_memkit_rss_vs_best = best(&|row| row.memkit_rss_vs_best.as_ref().map(|b| b.ratio));
}

/// A number with about three significant digits.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Which measure a table shows.
#[derive(Clone, Copy)]
enum Measure {
    Time,
    Cpu,
    Rss,
}

impl Measure {
    fn value(self, c: &Cell) -> Option<f64> {
        match self {
            Measure::Time => c.wall_s,
            Measure::Cpu => c.cpu_s,
            Measure::Rss => c.max_rss_mib,
        }
    }
    fn ratio(self, c: &Cell) -> Option<f64> {
        match self {
            Measure::Time => c.time_vs_glibc,
            Measure::Cpu => c.cpu_vs_glibc,
            Measure::Rss => c.rss_vs_glibc,
        }
    }
    fn geo(self, g: &Geomean) -> f64 {
        match self {
            Measure::Time => g.time_vs_glibc,
            Measure::Cpu => g.cpu_vs_glibc,
            Measure::Rss => g.rss_vs_glibc,
        }
    }
}

fn cell_text(c: Option<&Cell>, m: Measure, is_glibc: bool) -> String {
    let Some(c) = c else {
        return "–".into();
    };
    if c.failures > 0 {
        return format!("**FAIL** ({}/{})", c.failures, c.runs);
    }
    match (m.value(c), m.ratio(c)) {
        (Some(v), Some(r)) if !is_glibc => format!("{} ({:.2})", num(v), r),
        (Some(v), _) => num(v),
        _ => "–".into(),
    }
}

fn table(r: &Report, m: Measure, title: &str, out: &mut String) {
    let has_memkit = r.allocators.iter().any(|a| a.name == "memkit");
    let _ = writeln!(out, "### {title}\n");
    let mut head = String::from("| workload |");
    let mut rule = String::from("|:--|");
    for a in &r.allocators {
        let _ = write!(head, " {} |", a.name);
        rule.push_str("--:|");
    }
    if has_memkit {
        head.push_str(" memkit ÷ best other |");
        rule.push_str(":--|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for row in &r.rows {
        if row.skipped.is_some() {
            continue;
        }
        let _ = write!(out, "| {} |", row.workload);
        for a in &r.allocators {
            let _ = write!(
                out,
                " {} |",
                cell_text(row.cells.get(&a.name), m, a.is_glibc())
            );
        }
        if has_memkit {
            let vs = match vs_best(&row.cells, &|c| m.value(c)) {
                Some(b) => format!("{:.2} ({})", b.ratio, b.best),
                None => "–".into(),
            };
            let _ = write!(out, " {vs} |");
        }
        out.push('\n');
    }
    if !r.geomean.is_empty() {
        let _ = write!(out, "| **geomean ÷ glibc** |");
        for a in &r.allocators {
            match r.geomean.get(&a.name) {
                Some(g) => {
                    let _ = write!(out, " **{:.2}** |", m.geo(g));
                }
                None => out.push_str(" – |"),
            }
        }
        if has_memkit {
            let g = match m {
                Measure::Time => r.geomean_memkit_time_vs_best,
                Measure::Rss => r.geomean_memkit_rss_vs_best,
                Measure::Cpu => None,
            };
            match g {
                Some(g) => {
                    let _ = write!(out, " **{g:.2}** |");
                }
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
}

/// The markdown report (also printed on stdout).
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## memkit-bench results\n");
    let m = &r.machine;
    let _ = writeln!(
        o,
        "- started {} UTC, took {:.0} s; `{}`",
        r.started_utc, r.duration_s, r.command
    );
    let _ = writeln!(
        o,
        "- {}: {} round(s), figures are medians{}",
        if r.quick {
            "QUICK mode (small scale: a functional check, not a measurement)"
        } else {
            "full scale"
        },
        r.rounds,
        if r.rounds > 1 { "" } else { " of a single run" }
    );
    let _ = writeln!(
        o,
        "- machine: {} CPUs ({}), {} GiB, Linux {}, glibc {}, {}; load average at start {}",
        m.nproc, m.cpu_model, m.mem_total_gib, m.kernel, m.glibc, m.gcc, m.loadavg_at_start
    );
    for a in &r.allocators {
        let _ = writeln!(
            o,
            "- {}: {}{}",
            a.name,
            a.version,
            a.lib
                .as_ref()
                .map(|l| format!(" — `{}`", l.display()))
                .unwrap_or_else(|| " — no preload".into())
        );
    }
    for s in &r.skipped_allocators {
        let _ = writeln!(o, "- {}: **skipped**: {}", s.name, s.reason);
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Each cell: median; in parentheses the ratio to glibc (below 1 is better). \
         Last column: memkit's median divided by the best median among the other \
         allocators (glibc included), and which one that is. Geometric means cover the \
         {} workload(s) where every allocator has a result.\n",
        r.geomean_workloads.len()
    );
    table(r, Measure::Time, "Wall time (s)", &mut o);
    table(r, Measure::Rss, "Peak RSS (MiB)", &mut o);
    table(r, Measure::Cpu, "CPU time, user+sys (s)", &mut o);
    extra_metrics(r, &mut o);
    spread(r, &mut o);
    gaps(r, &mut o);
    let skipped: Vec<&Row> = r.rows.iter().filter(|row| row.skipped.is_some()).collect();
    if !skipped.is_empty() {
        let _ = writeln!(o, "### Skipped workloads\n");
        for row in skipped {
            let _ = writeln!(
                o,
                "- {}: {}",
                row.workload,
                row.skipped.as_deref().unwrap_or("")
            );
        }
        o.push('\n');
    }
    if r.failures.is_empty() {
        let _ = writeln!(o, "All runs passed their checks.");
    } else {
        let _ = writeln!(o, "### Failures\n");
        for f in &r.failures {
            let _ = writeln!(o, "- {}", f.replace('\n', "\n  "));
        }
    }
    o
}

fn extra_metrics(r: &Report, o: &mut String) {
    let mut lines = Vec::new();
    for row in &r.rows {
        let mut keys: Vec<&String> = row.cells.values().flat_map(|c| c.metrics.keys()).collect();
        keys.sort_by_key(|k| natural_key(k));
        keys.dedup();
        for k in keys {
            let mut line = format!("| {} {} |", row.workload, k);
            for a in &r.allocators {
                match row.cells.get(&a.name).and_then(|c| c.metrics.get(k)) {
                    Some(v) => {
                        let _ = write!(line, " {} |", num(*v));
                    }
                    None => line.push_str(" – |"),
                }
            }
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "### Extra metrics (medians, as the workloads report them; for /s units higher is better)\n"
    );
    let mut head = String::from("| metric |");
    let mut rule = String::from("|:--|");
    for a in &r.allocators {
        let _ = write!(head, " {} |", a.name);
        rule.push_str("--:|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    for l in lines {
        let _ = writeln!(o, "{l}");
    }
    o.push('\n');
}

/// How far apart the fastest and slowest rounds were: the noise level.
fn spread(r: &Report, o: &mut String) {
    if r.rounds < 2 {
        return;
    }
    let _ = writeln!(
        o,
        "### Run-to-run spread of wall time (slowest ÷ fastest of the {} rounds)\n",
        r.rounds
    );
    let mut head = String::from("| workload |");
    let mut rule = String::from("|:--|");
    for a in &r.allocators {
        let _ = write!(head, " {} |", a.name);
        rule.push_str("--:|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    for row in r.rows.iter().filter(|row| row.skipped.is_none()) {
        let _ = write!(o, "| {} |", row.workload);
        for a in &r.allocators {
            match row
                .cells
                .get(&a.name)
                .and_then(|c| ratio(c.wall_max_s, c.wall_min_s))
            {
                Some(v) => {
                    let _ = write!(o, " {v:.2} |");
                }
                None => o.push_str(" – |"),
            }
        }
        o.push('\n');
    }
    o.push('\n');
}

/// Sort key that orders embedded numbers by value (`x_64` before `x_256`).
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}

/// The rows where memkit is furthest behind the best other allocator.
fn gaps(r: &Report, o: &mut String) {
    for (what, pick) in [
        (
            "time",
            (|row: &Row| row.memkit_time_vs_best.clone()) as fn(&Row) -> Option<VsBest>,
        ),
        ("peak RSS", |row: &Row| row.memkit_rss_vs_best.clone()),
    ] {
        let mut v: Vec<(String, VsBest)> = r
            .rows
            .iter()
            .filter_map(|row| pick(row).map(|b| (row.workload.clone(), b)))
            .filter(|(_, b)| b.ratio > 1.0)
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(|a, b| b.1.ratio.total_cmp(&a.1.ratio));
        let _ = writeln!(
            o,
            "### Where memkit trails the best other allocator ({what})\n"
        );
        for (w, b) in v.iter().take(5) {
            let _ = writeln!(o, "- {w}: {:.2}× {}", b.ratio, b.best);
        }
        o.push('\n');
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn alloc(name: &str) -> Allocator {
        Allocator {
            name: name.into(),
            lib: (name != "glibc").then(|| PathBuf::from(format!("/x/{name}.so"))),
            version: "1".into(),
            env: Vec::new(),
        }
    }

    fn sample(a: &str, wall: f64, rss_kib: u64, ok: bool) -> Sample {
        Sample {
            round: 0,
            allocator: a.into(),
            ok,
            error: None,
            wall_s: wall,
            user_s: wall / 2.0,
            sys_s: 0.0,
            max_rss_kib: rss_kib,
            metrics: BTreeMap::from([("m (ns)".to_string(), wall * 10.0)]),
        }
    }

    #[test]
    fn medians_and_means() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn rows_ratios_and_geomeans() {
        let allocs = vec![alloc("glibc"), alloc("jemalloc"), alloc("memkit")];
        let row1 = summarize(
            "a",
            "",
            None,
            vec![
                sample("glibc", 2.0, 2048, true),
                sample("glibc", 4.0, 2048, true),
                sample("glibc", 3.0, 2048, true),
                sample("jemalloc", 1.5, 4096, true),
                sample("memkit", 3.0, 1024, true),
            ],
            &allocs,
        );
        let g = &row1.cells["glibc"];
        assert_eq!(g.wall_s, Some(3.0));
        assert_eq!(g.max_rss_mib, Some(2.0));
        assert_eq!(row1.cells["jemalloc"].time_vs_glibc, Some(0.5));
        let b = row1.memkit_time_vs_best.as_ref().unwrap();
        assert_eq!((b.best.as_str(), b.ratio), ("jemalloc", 2.0));
        let b = row1.memkit_rss_vs_best.as_ref().unwrap();
        assert_eq!((b.best.as_str(), b.ratio), ("glibc", 0.5));
        let row2 = summarize(
            "b",
            "",
            None,
            vec![
                sample("glibc", 1.0, 1024, true),
                sample("jemalloc", 2.0, 1024, true),
                sample("memkit", 1.0, 1024, false),
            ],
            &allocs,
        );
        assert_eq!(row2.cells["memkit"].failures, 1);
        assert_eq!(row2.cells["memkit"].wall_s, None);
        let mut r = Report {
            tool: "t".into(),
            started_utc: String::new(),
            duration_s: 0.0,
            command: String::new(),
            quick: false,
            rounds: 3,
            machine: crate::env::machine(),
            allocators: allocs,
            skipped_allocators: Vec::new(),
            rows: vec![row1, row2],
            geomean_workloads: Vec::new(),
            geomean: BTreeMap::new(),
            geomean_memkit_time_vs_best: None,
            geomean_memkit_rss_vs_best: None,
            failures: vec!["b under memkit: exit 1".into()],
        };
        finish(&mut r);
        // Row b has a failure, so only row a counts.
        assert_eq!(r.geomean_workloads, ["a"]);
        assert!((r.geomean["jemalloc"].time_vs_glibc - 0.5).abs() < 1e-12);
        assert!((r.geomean["memkit"].rss_vs_glibc - 0.5).abs() < 1e-12);
        let md = markdown(&r);
        assert!(
            md.contains("| a | 3.000 | 1.500 (0.50) | 3.000 (1.00) | 2.00 (jemalloc) |"),
            "{md}"
        );
        assert!(md.contains("**FAIL** (1/1)"), "{md}");
        assert!(md.contains("### Failures"), "{md}");
        assert!(md.contains("| a m (ns) | 30.00 | 15.00 | 30.00 |"), "{md}");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"time_vs_glibc\""));
    }
}

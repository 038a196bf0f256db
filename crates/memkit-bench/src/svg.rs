//! Bar charts as hand-written SVG (rects, lines and text; no fonts or
//! system libraries needed): one group of horizontal bars per workload, one
//! bar per allocator, on a log2 axis centred on 1 (= glibc).

use crate::report::Report;
use std::fmt::Write as _;

/// Bar colour of each allocator.
fn colour(name: &str) -> &'static str {
    match name {
        "jemalloc" => "#4e79a7",
        "mimalloc" => "#f28e2b",
        "tcmalloc" => "#59a14f",
        "memkit" => "#e15759",
        _ => "#9c9c9c",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A workload's label and each allocator's ratio (`None`: failed/missing).
type Group<'a> = (String, Vec<(&'a str, Option<f64>)>);

/// Which ratio a chart shows.
#[derive(Clone, Copy)]
pub enum Chart {
    Time,
    Rss,
}

/// A chart of every allocator's ratio to glibc for each workload, plus the
/// geometric mean. `None` if there is no glibc column to compare with.
pub fn chart(r: &Report, which: Chart) -> Option<String> {
    if !r.allocators.iter().any(|a| a.is_glibc()) {
        return None;
    }
    let allocs: Vec<&str> = r
        .allocators
        .iter()
        .filter(|a| !a.is_glibc())
        .map(|a| a.name.as_str())
        .collect();
    if allocs.is_empty() {
        return None;
    }
    let mut groups: Vec<Group> = Vec::new();
    for row in r.rows.iter().filter(|row| row.skipped.is_none()) {
        let bars = allocs
            .iter()
            .map(|a| {
                let v = row.cells.get(*a).and_then(|c| match which {
                    Chart::Time => c.time_vs_glibc,
                    Chart::Rss => c.rss_vs_glibc,
                });
                (*a, v)
            })
            .collect();
        groups.push((row.workload.clone(), bars));
    }
    if !r.geomean.is_empty() {
        let bars = allocs
            .iter()
            .map(|a| {
                let v = r.geomean.get(*a).map(|g| match which {
                    Chart::Time => g.time_vs_glibc,
                    Chart::Rss => g.rss_vs_glibc,
                });
                (*a, v)
            })
            .collect();
        groups.push(("geomean".into(), bars));
    }
    let (title, what) = match which {
        Chart::Time => ("Wall time relative to glibc", "time"),
        Chart::Rss => ("Peak RSS relative to glibc", "peak RSS"),
    };

    // Axis range: powers of two covering every ratio, at least 1/4..4.
    let all: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.1.iter().filter_map(|b| b.1))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all
        .iter()
        .fold(0.25f64, |m, v| m.min(*v))
        .log2()
        .floor()
        .max(-6.0);
    let hi = all
        .iter()
        .fold(4.0f64, |m, v| m.max(*v))
        .log2()
        .ceil()
        .min(6.0);

    let label_w = 150.0;
    let plot_w = 600.0;
    let right = 60.0;
    let top = 70.0;
    let bar_h = 10.0;
    let gap = 10.0;
    let group_h = bar_h * allocs.len() as f64 + gap;
    let width = label_w + plot_w + right;
    let height = top + group_h * groups.len() as f64 + 50.0;
    let x = |v: f64| label_w + (v.log2().clamp(lo, hi) - lo) / (hi - lo) * plot_w;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="11">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="20" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"##,
        width / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="36" text-anchor="middle" fill="#555">median {what} ÷ glibc's median, log scale; left of 1 is better ({} round(s){})</text>"##,
        width / 2.0,
        r.rounds,
        if r.quick {
            ", QUICK mode: not a measurement"
        } else {
            ""
        }
    );
    // Legend.
    let mut lx = label_w;
    for a in &allocs {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="46" width="12" height="10" fill="{}"/><text x="{}" y="55">{}</text>"##,
            colour(a),
            lx + 16.0,
            esc(a)
        );
        lx += 30.0 + 7.0 * a.len() as f64;
    }
    // Grid.
    let plot_top = top;
    let plot_bottom = top + group_h * groups.len() as f64;
    let mut e = lo as i32;
    while e <= hi as i32 {
        let v = 2f64.powi(e);
        let gx = x(v);
        let (stroke, w) = if e == 0 { ("#333", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{plot_top}" x2="{gx:.1}" y2="{plot_bottom}" stroke="{stroke}" stroke-width="{w}"/>"##
        );
        let label = if e >= 0 {
            format!("{}×", v as u64)
        } else {
            format!("1/{}×", 2u64.pow((-e) as u32))
        };
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{}" text-anchor="middle" fill="#555">{label}</text>"##,
            plot_bottom + 14.0
        );
        e += 1;
    }
    // Bars.
    for (i, (label, bars)) in groups.iter().enumerate() {
        let gy = top + group_h * i as f64;
        if label == "geomean" {
            let _ = writeln!(
                s,
                r##"<line x1="10" y1="{gy}" x2="{}" y2="{gy}" stroke="#999" stroke-dasharray="3,3"/>"##,
                width - 10.0
            );
        }
        let weight = if label == "geomean" { "bold" } else { "normal" };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" font-weight="{weight}">{}</text>"##,
            label_w - 8.0,
            gy + (group_h - gap) / 2.0 + 4.0,
            esc(label)
        );
        for (j, (a, v)) in bars.iter().enumerate() {
            let by = gy + gap / 2.0 + bar_h * j as f64;
            match v {
                Some(v) if *v > 0.0 => {
                    let x0 = x(1.0);
                    let x1 = x(*v);
                    let (bx, bw) = if x1 >= x0 {
                        (x0, x1 - x0)
                    } else {
                        (x1, x0 - x1)
                    };
                    let _ = writeln!(
                        s,
                        r##"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {:.3}</title></rect>"##,
                        bw.max(0.5),
                        bar_h - 1.0,
                        colour(a),
                        esc(label),
                        esc(a),
                        v
                    );
                    let (tx, anchor) = if x1 >= x0 {
                        (x1 + 3.0, "start")
                    } else {
                        (x1 - 3.0, "end")
                    };
                    let _ = writeln!(
                        s,
                        r##"<text x="{tx:.1}" y="{:.1}" font-size="8" text-anchor="{anchor}" fill="#333">{v:.2}</text>"##,
                        by + bar_h - 2.0
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" font-size="8" fill="#c00">{} failed</text>"##,
                        x(1.0) + 3.0,
                        by + bar_h - 2.0,
                        esc(a)
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

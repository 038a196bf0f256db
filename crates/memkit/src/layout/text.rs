//! The human table: a header, the mappings grouped by category, the totals.

use std::fmt::Write as _;

use super::{Category, Layout, Mapping, Stats};

/// How mappings are ordered inside each category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// By start address, ascending.
    #[default]
    Address,
    /// By size, largest first (then by address).
    Size,
}

/// A size in KiB as `0`, `12 KiB`, `1.5 MiB`, `3.0 GiB`, `2.0 TiB`.
pub fn human_kib(kib: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if kib == 0 {
        return "0".into();
    }
    let mut v = kib as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{kib} KiB")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The same, compact for the wide mapping rows: `0`, `12K`, `1.5M`, `3.0G`.
fn compact_kib(kib: u64) -> String {
    let h = human_kib(kib);
    match h.split_once(' ') {
        Some((n, unit)) => format!("{n}{}", &unit[..1]),
        None => h,
    }
}

fn hex(addr: u64) -> String {
    format!("{addr:x}")
}

/// What the last column shows: object or path, then the label.
fn describe(m: &Mapping) -> String {
    let mut s = m
        .object
        .clone()
        .or_else(|| m.path.clone())
        .unwrap_or_default();
    if let Some(label) = &m.label {
        if !s.is_empty() {
            s.push_str("  ");
        }
        let _ = write!(s, "({label})");
    }
    s
}

const COLUMNS: [&str; 11] = [
    "SIZE", "RSS", "PSS", "SH_CLEAN", "SH_DIRTY", "PR_CLEAN", "PR_DIRTY", "SWAP", "LOCKED",
    "ANON_THP", "ANON",
];

fn columns(s: Option<&Stats>, size_kib: u64) -> [String; 11] {
    let dash = || "-".to_owned();
    match s {
        None => [
            compact_kib(size_kib),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
        ],
        Some(s) => [
            compact_kib(size_kib),
            compact_kib(s.rss_kib),
            compact_kib(s.pss_kib),
            compact_kib(s.shared_clean_kib),
            compact_kib(s.shared_dirty_kib),
            compact_kib(s.private_clean_kib),
            compact_kib(s.private_dirty_kib),
            compact_kib(s.swap_kib),
            compact_kib(s.locked_kib),
            compact_kib(s.anon_huge_kib),
            compact_kib(s.anonymous_kib),
        ],
    }
}

pub fn render(l: &Layout, sort: SortOrder) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "pid {} ({}): {}", l.pid, l.comm, l.command);
    if let Some(exe) = &l.exe {
        let _ = writeln!(o, "program        {exe}");
    }
    let heap_kib = l.brk.current.saturating_sub(l.brk.start) / 1024;
    let _ = writeln!(
        o,
        "program break  start {:#x}, current {:#x} (heap {})",
        l.brk.start,
        l.brk.current,
        human_kib(heap_kib)
    );
    let found = l.threads.iter().filter(|t| t.stack.is_some()).count();
    let _ = writeln!(
        o,
        "threads        {} ({} with a stack pointer read from /proc/{}/task/TID/syscall)",
        l.threads.len(),
        found,
        l.pid
    );
    match &l.memkit {
        None => {
            let _ = writeln!(o, "memkit         not in use (libmemkit.so is not mapped)");
        }
        Some(mk) => {
            let _ = writeln!(
                o,
                "memkit         runs on {}: {} region(s) labelled",
                mk.library.as_deref().unwrap_or("libmemkit.so"),
                mk.regions
            );
        }
    }
    if l.fast {
        let _ = writeln!(
            o,
            "(--fast: sizes from /proc/{}/maps, totals from smaps_rollup, no per-mapping RSS)",
            l.pid
        );
    }

    let addr_width = l
        .mappings
        .iter()
        .map(|m| hex(m.end).len())
        .max()
        .unwrap_or(12);
    for c in Category::ALL {
        let mut maps: Vec<&Mapping> = l.mappings_of(c).collect();
        if maps.is_empty() {
            continue;
        }
        if sort == SortOrder::Size {
            maps.sort_by_key(|m| (std::cmp::Reverse(m.end - m.start), m.start));
        }
        let t = l.category(c);
        let _ = write!(
            o,
            "\n{} — {} mapping(s), size {}",
            c.name(),
            t.mappings,
            human_kib(t.stats.size_kib)
        );
        if !l.fast {
            let _ = write!(
                o,
                ", RSS {}, PSS {}",
                human_kib(t.stats.rss_kib),
                human_kib(t.stats.pss_kib)
            );
        }
        let _ = writeln!(o);
        let rows: Vec<(String, String, String, [String; 11], String)> = maps
            .iter()
            .map(|m| {
                (
                    hex(m.start),
                    hex(m.end),
                    m.perms.clone(),
                    columns(m.stats.as_ref(), m.size_kib()),
                    describe(m),
                )
            })
            .collect();
        let mut widths = COLUMNS.map(str::len);
        for r in &rows {
            for (w, v) in widths.iter_mut().zip(&r.3) {
                *w = (*w).max(v.len());
            }
        }
        let _ = write!(
            o,
            "  {:>aw$}  {:>aw$}  PERM",
            "START",
            "END",
            aw = addr_width
        );
        for (name, w) in COLUMNS.iter().zip(widths) {
            let _ = write!(o, "  {name:>w$}");
        }
        let _ = writeln!(o, "  OBJECT / PATH");
        for (start, end, perms, cols, what) in rows {
            let _ = write!(o, "  {start:>aw$}  {end:>aw$}  {perms}", aw = addr_width);
            for (v, w) in cols.iter().zip(widths) {
                let _ = write!(o, "  {v:>w$}");
            }
            if what.is_empty() {
                let _ = writeln!(o);
            } else {
                let _ = writeln!(o, "  {what}");
            }
        }
    }

    // Totals per category, then overall.
    let _ = writeln!(o, "\ntotals");
    let head = [
        "MAPS",
        "SIZE",
        "RSS",
        "PSS",
        "PRIV_DIRTY",
        "SWAP",
        "ANON_THP",
    ];
    let mut table: Vec<(String, [String; 7])> = Vec::new();
    let fmt_row = |maps: u64, s: &Stats, fast: bool| -> [String; 7] {
        let r = |v: u64| if fast { "-".to_owned() } else { human_kib(v) };
        [
            maps.to_string(),
            human_kib(s.size_kib),
            r(s.rss_kib),
            r(s.pss_kib),
            r(s.private_dirty_kib),
            r(s.swap_kib),
            r(s.anon_huge_kib),
        ]
    };
    for c in Category::ALL {
        let t = l.category(c);
        table.push((c.name().to_owned(), fmt_row(t.mappings, &t.stats, l.fast)));
    }
    table.push((
        "all (smaps_rollup)".into(),
        fmt_row(l.totals.mappings, &l.totals.stats, false),
    ));
    let name_w = table.iter().map(|r| r.0.len()).max().unwrap_or(8);
    let mut widths = head.map(str::len);
    for (_, cols) in &table {
        for (w, v) in widths.iter_mut().zip(cols) {
            *w = (*w).max(v.len());
        }
    }
    let _ = write!(o, "  {:<name_w$}", "CATEGORY");
    for (h, w) in head.iter().zip(widths) {
        let _ = write!(o, "  {h:>w$}");
    }
    let _ = writeln!(o);
    let last = table.len() - 1;
    for (i, (name, cols)) in table.iter().enumerate() {
        if i == last {
            let rule: usize = name_w + widths.iter().map(|w| w + 2).sum::<usize>();
            let _ = writeln!(o, "  {}", "-".repeat(rule));
        }
        let _ = write!(o, "  {name:<name_w$}");
        for (v, w) in cols.iter().zip(widths) {
            let _ = write!(o, "  {v:>w$}");
        }
        let _ = writeln!(o);
    }
    if !l.consistent {
        let _ = writeln!(
            o,
            "  (the process changed while being read: categories may not add up to the rollup)"
        );
    }
    for obj in l.objects.iter().filter(|x| x.main_program) {
        if let Some((text, data, bss)) = obj.elf_sizes {
            let _ = writeln!(
                o,
                "\nprogram's PT_LOAD segments (as `size` splits them): text {text}, data {data}, bss {bss} bytes"
            );
        }
    }
    if let Some(mk) = &l.memkit {
        let _ = writeln!(o, "\nmemkit regions: {}", mk.method);
    }
    for n in &l.notes {
        let _ = writeln!(o, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_kib(0), "0");
        assert_eq!(human_kib(4), "4 KiB");
        assert_eq!(human_kib(1023), "1023 KiB");
        assert_eq!(human_kib(1536), "1.5 MiB");
        assert_eq!(human_kib(3 << 20), "3.0 GiB");
        assert_eq!(human_kib(5 << 30), "5.0 TiB");
        assert_eq!(human_kib(16 << 50), "16.0 EiB");
        assert_eq!(compact_kib(1536), "1.5M");
        assert_eq!(compact_kib(8), "8K");
        assert_eq!(compact_kib(0), "0");
    }
}

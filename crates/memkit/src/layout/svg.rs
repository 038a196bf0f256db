//! A picture of the address space: high addresses at the top, as in the
//! textbook diagram. Adjacent mappings of the same object and category are
//! drawn as one block; block heights grow with the logarithm of the size
//! (a compressed scale: 4 KiB and 4 GiB both stay readable); unmapped gaps
//! are drawn as short dashed bands labelled with their size.

use std::fmt::Write as _;

use super::text::human_kib;
use super::{Category, Layout, Mapping, Stats};

/// At most this many blocks; the smallest are folded into summary rows.
const MAX_BLOCKS: usize = 80;
const WIDTH: u32 = 1080;
const BOX_X: u32 = 150;
const BOX_W: u32 = 380;
const DETAIL_X: u32 = 560;
const LEGEND_X: u32 = 800;
const TOP: u32 = 92;
/// The top of user space with 4-level paging (47 bits); only the vsyscall
/// page lies above it.
const USER_END: u64 = 0x0000_8000_0000_0000;

fn colour(c: Category) -> (&'static str, &'static str) {
    // (fill, text colour that reads on it)
    match c {
        Category::Text => ("#4e79a7", "#ffffff"),
        Category::Data => ("#59a14f", "#ffffff"),
        Category::Bss => ("#a6d98f", "#111111"),
        Category::Heap => ("#e15759", "#ffffff"),
        Category::Stack => ("#f28e2b", "#111111"),
        Category::ThreadStack => ("#ffc685", "#111111"),
        Category::Anon => ("#b07aa1", "#ffffff"),
        Category::File => ("#9c755f", "#ffffff"),
        Category::Shm => ("#76b7b2", "#111111"),
        Category::Other => ("#d3ceca", "#111111"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// One drawn block: a run of adjacent mappings.
struct Block {
    start: u64,
    end: u64,
    category: Category,
    title: String,
    perms: String,
    count: usize,
    stats: Option<Stats>,
    /// Folded from several small blocks of different categories.
    mixed: bool,
}

impl Block {
    fn size_kib(&self) -> u64 {
        (self.end - self.start) / 1024
    }
}

fn title_of(m: &Mapping) -> String {
    match (&m.object, &m.label, &m.path) {
        (Some(o), _, _) => format!("{} {}", basename(o), m.category.name()),
        (None, Some(l), _) => format!("{}: {l}", m.category.name()),
        (None, None, Some(p)) if p == "[heap]" || p == "[stack]" => m.category.name().to_owned(),
        (None, None, Some(p)) => format!("{} {}", m.category.name(), basename(p)),
        (None, None, None) => m.category.name().to_owned(),
    }
}

fn add_stats(a: Option<Stats>, b: Option<Stats>) -> Option<Stats> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.add(&b);
            Some(a)
        }
        _ => None,
    }
}

fn blocks(l: &Layout) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for m in &l.mappings {
        let title = title_of(m);
        if let Some(b) = out.last_mut() {
            if b.end == m.start && b.category == m.category && b.title == title {
                b.end = m.end;
                b.count += 1;
                b.stats = add_stats(b.stats, m.stats);
                if !b.perms.contains(&m.perms) {
                    b.perms = format!("{},{}", b.perms, m.perms);
                }
                continue;
            }
        }
        out.push(Block {
            start: m.start,
            end: m.end,
            category: m.category,
            title,
            perms: m.perms.clone(),
            count: 1,
            stats: m.stats,
            mixed: false,
        });
    }
    if out.len() <= MAX_BLOCKS {
        return out;
    }
    // Keep the largest blocks (and the landmarks); fold runs of the others.
    let mut by_size: Vec<usize> = (0..out.len()).collect();
    by_size.sort_by_key(|&i| {
        let landmark = matches!(out[i].category, Category::Heap | Category::Stack);
        (!landmark, std::cmp::Reverse(out[i].end - out[i].start))
    });
    let mut keep = vec![false; out.len()];
    for &i in by_size.iter().take(MAX_BLOCKS / 2) {
        keep[i] = true;
    }
    let mut folded: Vec<Block> = Vec::new();
    for (i, b) in out.into_iter().enumerate() {
        if keep[i] {
            folded.push(b);
            continue;
        }
        match folded.last_mut() {
            Some(f) if f.mixed => {
                f.end = b.end;
                f.count += b.count;
                f.stats = add_stats(f.stats, b.stats);
                f.title = format!("{} small mappings (not to scale)", f.count);
            }
            _ => folded.push(Block {
                title: format!("{} small mapping(s)", b.count),
                category: Category::Other,
                perms: String::new(),
                mixed: true,
                ..b
            }),
        }
    }
    folded
}

/// Height of a block: 16 px for a page, 4 px more per doubling, at most 96.
fn height(size_kib: u64) -> u32 {
    let pages = (size_kib / 4).max(1) as f64;
    (16.0 + 4.0 * pages.log2()).clamp(16.0, 96.0) as u32
}

pub fn render(l: &Layout) -> String {
    let blocks = blocks(l);
    // Rows from the top (highest address) down, with gaps between blocks.
    enum Row<'a> {
        Block(&'a Block),
        Gap(u64),
        KernelHole,
    }
    let mut rows: Vec<Row<'_>> = Vec::new();
    for (i, b) in blocks.iter().enumerate().rev() {
        rows.push(Row::Block(b));
        if i > 0 {
            let below = blocks[i - 1].end;
            if below <= USER_END && b.start > USER_END {
                // Between user space and the vsyscall page.
                rows.push(Row::KernelHole);
            } else if b.start > below {
                rows.push(Row::Gap(b.start - below));
            }
        }
    }
    let row_h = |r: &Row<'_>| match r {
        Row::Block(b) => height(b.size_kib()),
        Row::Gap(g) if *g >= 1 << 20 => 18,
        Row::Gap(_) => 5,
        Row::KernelHole => 18,
    };
    let body: u32 = rows.iter().map(row_h).sum();
    let legend_h = 60 + 22 * 12;
    let total_h = (TOP + body + 40).max(TOP + legend_h);

    let mut s = String::new();
    let o = &mut s;
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_h}" viewBox="0 0 {WIDTH} {total_h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        o,
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>"##
    );
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        o,
        r##"<text x="16" y="28" font-size="18" font-weight="bold">Memory layout of pid {} ({})</text>"##,
        l.pid,
        esc(&l.comm)
    );
    let t = &l.totals.stats;
    let _ = writeln!(
        o,
        r##"<text x="16" y="50" font-size="12" fill="#333">{} mappings, {} mapped, RSS {}, PSS {}, swap {} (smaps_rollup). Program break {:#x} → {:#x}.</text>"##,
        l.totals.mappings,
        human_kib(t.size_kib),
        human_kib(t.rss_kib),
        human_kib(t.pss_kib),
        human_kib(t.swap_kib),
        l.brk.start,
        l.brk.current
    );
    let _ = writeln!(
        o,
        r##"<text x="16" y="68" font-size="11" fill="#666">High addresses at the top. Heights are logarithmic in size (not to scale); dashed bands are unmapped gaps.</text>"##
    );
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" font-size="11" fill="#666">start address</text>"##,
        16,
        TOP - 6
    );

    let mut y = TOP;
    for r in &rows {
        let h = row_h(r);
        match r {
            Row::KernelHole => {
                let mid = y + h / 2;
                let _ = writeln!(
                    o,
                    r##"<line x1="{BOX_X}" y1="{mid}" x2="{}" y2="{mid}" stroke="#999" stroke-dasharray="2 3"/><text x="{}" y="{}" font-size="10" fill="#888" text-anchor="middle">end of user space (kernel above)</text>"##,
                    BOX_X + BOX_W,
                    BOX_X + BOX_W / 2,
                    mid - 2
                );
            }
            Row::Gap(g) => {
                if *g >= 1 << 20 {
                    let mid = y + h / 2;
                    let _ = writeln!(
                        o,
                        r##"<line x1="{BOX_X}" y1="{mid}" x2="{}" y2="{mid}" stroke="#999" stroke-dasharray="4 4"/><text x="{}" y="{}" font-size="10" fill="#888" text-anchor="middle">unmapped {}</text>"##,
                        BOX_X + BOX_W,
                        BOX_X + BOX_W / 2,
                        mid - 2,
                        human_kib(g / 1024)
                    );
                }
            }
            Row::Block(b) => {
                let (fill, ink) = if b.mixed {
                    ("#eeeeee", "#333333")
                } else {
                    colour(b.category)
                };
                let _ = writeln!(
                    o,
                    r##"<rect x="{BOX_X}" y="{y}" width="{BOX_W}" height="{h}" fill="{fill}" stroke="#ffffff" stroke-width="1"><title>{}</title></rect>"##,
                    esc(&format!(
                        "{:#x}-{:#x} {} ({} mappings)",
                        b.start, b.end, b.title, b.count
                    ))
                );
                let ty = y + h / 2 + 4;
                let mut title = b.title.clone();
                if title.chars().count() > 44 {
                    title = title.chars().take(43).collect::<String>() + "…";
                }
                let _ = writeln!(
                    o,
                    r##"<text x="{}" y="{ty}" font-size="11" fill="{ink}">{}</text><text x="{}" y="{ty}" font-size="11" fill="{ink}" text-anchor="end">{}</text>"##,
                    BOX_X + 6,
                    esc(&title),
                    BOX_X + BOX_W - 6,
                    human_kib(b.size_kib())
                );
                let _ = writeln!(
                    o,
                    r##"<text x="{}" y="{}" font-size="10" fill="#555" font-family="DejaVu Sans Mono, monospace" text-anchor="end">{:x}</text>"##,
                    BOX_X - 6,
                    y + h - 3,
                    b.start
                );
                let growth = match b.category {
                    Category::Heap if !b.mixed => " · grows up ↑ (brk)",
                    Category::Stack | Category::ThreadStack if !b.mixed => " · grows down ↓",
                    _ => "",
                };
                let detail = match &b.stats {
                    Some(st) => format!(
                        "RSS {} · PSS {}{} · {}",
                        human_kib(st.rss_kib),
                        human_kib(st.pss_kib),
                        if st.swap_kib > 0 {
                            format!(" · swap {}", human_kib(st.swap_kib))
                        } else {
                            String::new()
                        },
                        b.perms
                    ),
                    None => b.perms.clone(),
                } + growth;
                let _ = writeln!(
                    o,
                    r##"<text x="{DETAIL_X}" y="{ty}" font-size="10" fill="#444">{}</text>"##,
                    esc(&detail)
                );
                // Growth directions: an arrow beside the box.
                let ax = BOX_X + BOX_W + 12;
                let (from, to) = match b.category {
                    Category::Heap if !b.mixed => (y + h, y.saturating_sub(8)),
                    Category::Stack | Category::ThreadStack if !b.mixed => (y, y + h + 8),
                    _ => (0, 0),
                };
                if from != to {
                    let _ = writeln!(
                        o,
                        r##"<line x1="{ax}" y1="{from}" x2="{ax}" y2="{to}" stroke="#333" stroke-width="2" marker-end="url(#arrow)"/>"##
                    );
                }
            }
        }
        y += h;
    }
    // Legend with the totals per category.
    let lx = LEGEND_X;
    let mut ly = TOP;
    let _ = writeln!(
        o,
        r##"<text x="{lx}" y="{ly}" font-size="13" font-weight="bold">Categories</text>"##
    );
    ly += 8;
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" font-size="10" fill="#666">size / RSS</text>"##,
        lx + 24,
        ly + 10
    );
    ly += 16;
    for c in Category::ALL {
        let (fill, _) = colour(c);
        let tot = l.category(c);
        let rss = if l.fast {
            "-".to_owned()
        } else {
            human_kib(tot.stats.rss_kib)
        };
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="{ly}" width="16" height="16" fill="{fill}" stroke="#888" stroke-width="0.5"/><text x="{}" y="{}" font-size="12">{}</text><text x="{}" y="{}" font-size="10" fill="#444">{} / {}</text>"##,
            lx + 24,
            ly + 12,
            c.name(),
            lx + 120,
            ly + 12,
            human_kib(tot.stats.size_kib),
            rss
        );
        ly += 22;
    }
    let _ = writeln!(
        o,
        r##"<text x="{lx}" y="{}" font-size="11" font-weight="bold">total {} / {}</text>"##,
        ly + 12,
        human_kib(l.totals.stats.size_kib),
        human_kib(l.totals.stats.rss_kib)
    );
    let _ = writeln!(o, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_are_compressed() {
        assert_eq!(height(4), 16);
        assert_eq!(height(1024), 48);
        assert_eq!(height(1 << 30), 96);
        assert_eq!(height(0), 16);
    }

    #[test]
    fn escapes() {
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;&quot;c");
    }
}

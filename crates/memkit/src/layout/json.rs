//! The `--json` schema (version 1; documented in docs/MAPS.md). Addresses
//! are hex strings (`"0x7f12..."`) since some exceed 2^53; sizes are KiB
//! numbers; counters that were not read (`--fast`) are `null`.

use serde::Serialize;

use super::{Category, Layout, Stats, Totals};

/// Bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

#[derive(Serialize)]
struct Counters {
    mappings: u64,
    size_kib: u64,
    rss_kib: Option<u64>,
    pss_kib: Option<u64>,
    shared_clean_kib: Option<u64>,
    shared_dirty_kib: Option<u64>,
    private_clean_kib: Option<u64>,
    private_dirty_kib: Option<u64>,
    referenced_kib: Option<u64>,
    anonymous_kib: Option<u64>,
    anon_huge_kib: Option<u64>,
    swap_kib: Option<u64>,
    swap_pss_kib: Option<u64>,
    locked_kib: Option<u64>,
}

impl Counters {
    fn new(mappings: u64, s: &Stats, known: bool) -> Self {
        let k = |v: u64| known.then_some(v);
        Counters {
            mappings,
            size_kib: s.size_kib,
            rss_kib: k(s.rss_kib),
            pss_kib: k(s.pss_kib),
            shared_clean_kib: k(s.shared_clean_kib),
            shared_dirty_kib: k(s.shared_dirty_kib),
            private_clean_kib: k(s.private_clean_kib),
            private_dirty_kib: k(s.private_dirty_kib),
            referenced_kib: k(s.referenced_kib),
            anonymous_kib: k(s.anonymous_kib),
            anon_huge_kib: k(s.anon_huge_kib),
            swap_kib: k(s.swap_kib),
            swap_pss_kib: k(s.swap_pss_kib),
            locked_kib: k(s.locked_kib),
        }
    }

    fn of(t: &Totals, known: bool) -> Self {
        Counters::new(t.mappings, &t.stats, known)
    }
}

#[derive(Serialize)]
struct Brk {
    start: String,
    current: String,
    size_kib: u64,
}

#[derive(Serialize)]
struct Categories {
    text: Counters,
    data: Counters,
    bss: Counters,
    heap: Counters,
    stack: Counters,
    thread_stack: Counters,
    anon: Counters,
    file: Counters,
    shm: Counters,
    other: Counters,
}

#[derive(Serialize)]
struct Mapping<'a> {
    start: String,
    end: String,
    perms: &'a str,
    offset: u64,
    dev: &'a str,
    inode: u64,
    path: Option<&'a str>,
    object: Option<&'a str>,
    category: &'static str,
    label: Option<&'a str>,
    #[serde(flatten)]
    counters: Counters,
    vm_flags: Option<&'a str>,
}

#[derive(Serialize)]
struct Object<'a> {
    path: &'a str,
    base: String,
    main_program: bool,
    text_bytes: Option<u64>,
    data_bytes: Option<u64>,
    bss_bytes: Option<u64>,
    #[serde(flatten)]
    counters: Counters,
}

#[derive(Serialize)]
struct Thread<'a> {
    tid: u32,
    name: &'a str,
    sp: Option<String>,
    stack_start: Option<String>,
    stack_end: Option<String>,
}

#[derive(Serialize)]
struct Memkit<'a> {
    runs_on_memkit: bool,
    library: Option<&'a str>,
    regions: u64,
    method: Option<&'a str>,
}

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    pid: u32,
    command: &'a str,
    comm: &'a str,
    exe: Option<&'a str>,
    fast: bool,
    page_size: u64,
    brk: Brk,
    start_stack: String,
    totals: Counters,
    mappings_sum: Option<Counters>,
    consistent: bool,
    categories: Categories,
    mappings: Vec<Mapping<'a>>,
    objects: Vec<Object<'a>>,
    threads: Vec<Thread<'a>>,
    memkit: Memkit<'a>,
    notes: &'a [String],
}

pub fn to_string(l: &Layout) -> String {
    let known = !l.fast;
    let cat = |c: Category| Counters::of(l.category(c), known);
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        pid: l.pid,
        command: &l.command,
        comm: &l.comm,
        exe: l.exe.as_deref(),
        fast: l.fast,
        page_size: l.page_size,
        brk: Brk {
            start: hex(l.brk.start),
            current: hex(l.brk.current),
            size_kib: l.brk.current.saturating_sub(l.brk.start) / 1024,
        },
        start_stack: hex(l.start_stack),
        // The overall counters are smaps_rollup's, read in both modes.
        totals: Counters::of(&l.totals, true),
        mappings_sum: l
            .mappings_sum
            .as_ref()
            .map(|s| Counters::new(l.totals.mappings, s, true)),
        consistent: l.consistent,
        categories: Categories {
            text: cat(Category::Text),
            data: cat(Category::Data),
            bss: cat(Category::Bss),
            heap: cat(Category::Heap),
            stack: cat(Category::Stack),
            thread_stack: cat(Category::ThreadStack),
            anon: cat(Category::Anon),
            file: cat(Category::File),
            shm: cat(Category::Shm),
            other: cat(Category::Other),
        },
        mappings: l
            .mappings
            .iter()
            .map(|m| Mapping {
                start: hex(m.start),
                end: hex(m.end),
                perms: &m.perms,
                offset: m.offset,
                dev: &m.dev,
                inode: m.inode,
                path: m.path.as_deref(),
                object: m.object.as_deref(),
                category: m.category.name(),
                label: m.label.as_deref(),
                counters: Counters::new(
                    1,
                    &m.stats.unwrap_or(Stats {
                        size_kib: m.size_kib(),
                        ..Stats::default()
                    }),
                    m.stats.is_some(),
                ),
                vm_flags: m.vm_flags.as_deref(),
            })
            .collect(),
        objects: l
            .objects
            .iter()
            .map(|o| Object {
                path: &o.path,
                base: hex(o.base),
                main_program: o.main_program,
                text_bytes: o.elf_sizes.map(|s| s.0),
                data_bytes: o.elf_sizes.map(|s| s.1),
                bss_bytes: o.elf_sizes.map(|s| s.2),
                counters: Counters::of(&o.totals, known),
            })
            .collect(),
        threads: l
            .threads
            .iter()
            .map(|t| Thread {
                tid: t.tid,
                name: &t.name,
                sp: t.sp.map(hex),
                stack_start: t.stack.map(|s| hex(s.0)),
                stack_end: t.stack.map(|s| hex(s.1)),
            })
            .collect(),
        memkit: Memkit {
            runs_on_memkit: l.memkit.is_some(),
            library: l.memkit.as_ref().and_then(|m| m.library.as_deref()),
            regions: l.memkit.as_ref().map_or(0, |m| m.regions),
            method: l.memkit.as_ref().map(|m| m.method.as_str()),
        },
        notes: &l.notes,
    };
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

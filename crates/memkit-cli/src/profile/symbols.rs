//! A raw profile's sites with their stacks symbolized against the module
//! table recorded in the profiled process (memkit-trace's symbolizer, the
//! one check mode uses), and sites whose symbolized stacks are equal
//! merged into one.
//!
//! Each distinct frame becomes a [`Location`] (function, file and line;
//! several lines when calls were inlined there); locations with the same
//! object and lines are one, so two sites that differ only in return
//! addresses inside the same line merge.

use std::collections::HashMap;

use memkit_profdata::Raw;
use memkit_trace::modules::ModuleInfo;
use memkit_trace::symbolize;

/// One line of a location: the innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    /// Demangled; `0x…` (the offset in the object) when unknown.
    pub function: String,
    /// "" when unknown.
    pub file: String,
    /// 0 when unknown.
    pub line: u32,
}

/// One frame of one or more stacks.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// The object's path ("" when unknown).
    pub object: String,
    /// The runtime address in the profiled process (a return address for
    /// callers' frames).
    pub address: u64,
    /// The object's load bias there.
    pub bias: u64,
    /// Empty when nothing is known about the address.
    pub lines: Vec<Line>,
}

impl Location {
    /// Every line as `function (file:line)`, innermost first.
    pub fn labels(&self) -> Vec<String> {
        if self.lines.is_empty() {
            let object = basename(&self.object);
            return vec![if object.is_empty() {
                format!("{:#x}", self.address)
            } else {
                format!("{:#x} ({object})", self.address)
            }];
        }
        self.lines.iter().map(line_label).collect()
    }
}

/// `function (file:line)`, the file by its last component.
pub fn line_label(l: &Line) -> String {
    match (l.file.as_str(), l.line) {
        ("", _) => l.function.clone(),
        (f, 0) => format!("{} ({})", l.function, basename(f)),
        (f, n) => format!("{} ({}:{n})", l.function, basename(f)),
    }
}

/// The last component of a path.
pub fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Everything allocated from one symbolized stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Site {
    /// Indices into [`Symbolized::locations`], innermost first.
    pub stack: Vec<usize>,
    /// Object counts in units of `1 / object_unit`, as in the raw record.
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    pub peak_objects: u64,
    pub peak_bytes: u64,
    pub temporary: u64,
}

impl Site {
    fn add(&mut self, s: &memkit_profdata::Site) {
        self.alloc_objects += s.alloc_objects;
        self.alloc_bytes += s.alloc_bytes;
        self.inuse_objects += s.inuse_objects;
        self.inuse_bytes += s.inuse_bytes;
        self.peak_objects += s.peak_objects;
        self.peak_bytes += s.peak_bytes;
        self.temporary += s.temporary;
    }
}

/// A process's sites, symbolized and merged.
#[derive(Clone, Debug, Default)]
pub struct Symbolized {
    pub locations: Vec<Location>,
    pub sites: Vec<Site>,
    pub object_unit: u64,
}

impl Symbolized {
    /// A site's short name ([`site_label`]) past its first frame, the
    /// entry point the program called.
    pub fn label(&self, site: &Site) -> String {
        let callers = site.stack.get(1..).filter(|c| !c.is_empty());
        let labels: Vec<String> = callers
            .unwrap_or(&site.stack)
            .iter()
            .flat_map(|&l| self.locations[l].labels())
            .collect();
        site_label(&labels)
    }

    /// A site's frames as `function (file:line)`, innermost first, inlined
    /// calls expanded.
    pub fn labels(&self, site: &Site) -> Vec<String> {
        site.stack
            .iter()
            .flat_map(|&l| self.locations[l].labels())
            .collect()
    }
}

/// The file name of the profiling runtime: its frames (the entry points)
/// show only the function the program called.
const RUNTIME_FILE: &str = "libmemkit_profile.so";

/// Symbolizes and merges `raw`'s sites.
pub fn symbolize(raw: &Raw) -> Symbolized {
    let table: HashMap<u16, ModuleInfo> = raw
        .modules
        .iter()
        .map(|m| {
            (
                m.index,
                ModuleInfo {
                    path: m.path.clone(),
                    bias: m.bias as usize,
                    alive: true,
                },
            )
        })
        .collect();
    let lookup = |i: u16| table.get(&i).cloned();
    let collapse = raw
        .modules
        .iter()
        .find(|m| basename(&m.path).starts_with(RUNTIME_FILE))
        .map_or(0, |m| m.index);

    let mut out = Symbolized {
        object_unit: raw.object_unit.max(1),
        ..Symbolized::default()
    };
    // Frame word (and whether it is a return address) to location, and
    // location contents to location: each frame is symbolized once.
    let mut by_frame: HashMap<(u64, bool), usize> = HashMap::new();
    let mut by_lines: HashMap<(String, Vec<Line>, u64), usize> = HashMap::new();
    let mut by_stack: HashMap<Vec<usize>, usize> = HashMap::new();
    for site in &raw.sites {
        let mut stack = Vec::with_capacity(site.frames.len());
        for (i, &f) in site.frames.iter().enumerate() {
            let key = (f, i > 0);
            let loc = match by_frame.get(&key) {
                Some(&l) => l,
                None => {
                    let loc = location(f, i > 0, collapse, &lookup, &table);
                    // Unknown addresses stay apart (keyed by address).
                    let unknown = if loc.lines.is_empty() { loc.address } else { 0 };
                    let content = (loc.object.clone(), loc.lines.clone(), unknown);
                    let n = out.locations.len();
                    let l = *by_lines.entry(content).or_insert(n);
                    if l == n {
                        out.locations.push(loc);
                    }
                    by_frame.insert(key, l);
                    l
                }
            };
            stack.push(loc);
        }
        let n = out.sites.len();
        let i = *by_stack.entry(stack.clone()).or_insert(n);
        if i == n {
            out.sites.push(Site {
                stack,
                ..Site::default()
            });
        }
        out.sites[i].add(site);
    }
    out
}

fn location(
    f: u64,
    return_address: bool,
    collapse: u16,
    lookup: &symbolize::Lookup<'_>,
    table: &HashMap<u16, ModuleInfo>,
) -> Location {
    let (module, offset) = memkit_profdata::split_frame(f);
    let symbols = symbolize::frame_in(f, return_address, collapse, lookup);
    let bias = table.get(&module).map_or(0, |m| m.bias as u64);
    let address = symbols.first().map_or(offset, |s| s.address as u64);
    let object = symbols
        .first()
        .map(|s| s.object.clone())
        .unwrap_or_default();
    let known = symbols
        .iter()
        .any(|s| s.function.is_some() || s.file.is_some());
    let lines = if known {
        symbols
            .into_iter()
            .map(|s| Line {
                function: s.function.unwrap_or_else(|| format!("{offset:#x}")),
                file: s.file.unwrap_or_default(),
                line: s.line.unwrap_or(0),
            })
            .collect()
    } else {
        Vec::new()
    };
    Location {
        object,
        address,
        bias,
        lines,
    }
}

/// Functions a program calls to allocate: a site is named by its first
/// frame that is none of these.
const ALLOCATORS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "aligned_alloc",
    "posix_memalign",
    "memalign",
    "valloc",
    "pvalloc",
    "strdup",
    "strndup",
    "operator new",
    "operator new[]",
];

/// Whether `name` is an allocation entry point (`operator new(unsigned
/// long)` and its other forms included).
pub fn is_allocator(name: &str) -> bool {
    let base = name.split('(').next().unwrap_or(name).trim();
    ALLOCATORS.contains(&base)
}

/// A short name for a stack given innermost first: the first frame that
/// is not an allocation entry point and up to two callers,
/// `f (a.c:3) < g (a.c:9) < main (a.c:20)`.
pub fn site_label(labels: &[String]) -> String {
    let first = labels.iter().position(|l| !is_allocator(l)).unwrap_or(0);
    let shown: Vec<&str> = labels
        .iter()
        .skip(first)
        .take(3)
        .map(String::as_str)
        .collect();
    let mut s = shown.join(" < ");
    if labels.len() > first + 3 {
        s.push_str(" < …");
    }
    if s.is_empty() {
        s.push_str("(no stack)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocators_are_recognised_in_every_spelling() {
        assert!(is_allocator("malloc"));
        assert!(is_allocator("operator new(unsigned long)"));
        assert!(is_allocator(
            "operator new[](unsigned long, std::nothrow_t const&)"
        ));
        assert!(!is_allocator("make_list"));
        assert!(!is_allocator("mallocish"));
    }

    #[test]
    fn labels_skip_the_entry_point() {
        let l = |s: &str| s.to_owned();
        assert_eq!(
            site_label(&[
                l("malloc"),
                l("f (a.c:3)"),
                l("g (a.c:9)"),
                l("main (a.c:20)"),
                l("_start")
            ]),
            "f (a.c:3) < g (a.c:9) < main (a.c:20) < …"
        );
        assert_eq!(site_label(&[l("malloc")]), "malloc");
        assert_eq!(site_label(&[]), "(no stack)");
        let line = Line {
            function: "f".into(),
            file: "/src/x/a.c".into(),
            line: 7,
        };
        assert_eq!(line_label(&line), "f (a.c:7)");
    }
}

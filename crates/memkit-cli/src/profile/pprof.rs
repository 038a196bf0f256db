//! The writer of `profile.pb.gz` and `peak.pb.gz` (the messages and the
//! reader are `proto.rs`).
//!
//! The rules the format sets and the writer keeps: string 0 is "", every
//! id is non-zero and unique in its table, a sample's locations are leaf
//! first, a location's lines innermost first (the last is the function the
//! others were inlined into), `default_sample_type` indexes the string
//! table.

use std::collections::HashMap;
use std::io::Write as _;

use prost::Message as _;

pub use super::proto::*;
use super::symbols::Symbolized;

/// The sample types of both files, in this order (the order `go tool
/// pprof -sample_index` numbers them).
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// What the `inuse_*` values of a file are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InUse {
    /// Live when the process ended (`profile.pb.gz`).
    AtExit,
    /// Live at the process's peak of bytes in use (`peak.pb.gz`).
    AtPeak,
}

/// What a profile says about its process, beside the sites.
pub struct Meta<'a> {
    pub pid: u32,
    /// The executable's path, as the module table names it.
    pub exe: &'a str,
    pub command: &'a [String],
    pub start_unix_ns: u64,
    pub duration_ns: u64,
    pub sample_bytes: u64,
    pub peak_at_ns: u64,
}

/// Interns strings: index 0 is always "".
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Object counts of the raw record are in units of `1 / unit`: whole
/// objects, rounded to nearest.
pub fn objects(count: u64, unit: u64) -> u64 {
    let unit = unit.max(1);
    count / unit + u64::from(count % unit >= unit.div_ceil(2) && unit > 1)
}

/// The profile of `model`, `inuse_*` as `which` says.
pub fn build(model: &Symbolized, meta: &Meta<'_>, which: InUse) -> Profile {
    let mut strings = Strings::new();
    let mut p = Profile {
        sample_type: SAMPLE_TYPES
            .iter()
            .map(|(t, u)| ValueType {
                r#type: strings.get(t),
                unit: strings.get(u),
            })
            .collect(),
        ..Profile::default()
    };
    p.default_sample_type = strings.get("inuse_space");
    p.period_type = Some(ValueType {
        r#type: strings.get("space"),
        unit: strings.get("bytes"),
    });
    p.period = clamp(meta.sample_bytes.max(1));
    p.time_nanos = clamp(meta.start_unix_ns);
    p.duration_nanos = clamp(meta.duration_ns);
    let when = match which {
        InUse::AtExit => "inuse_* = live at exit".to_owned(),
        InUse::AtPeak => format!(
            "inuse_* = live at the peak of bytes in use, {:.3} s after start",
            meta.peak_at_ns as f64 / 1e9
        ),
    };
    let mode = if meta.sample_bytes == 0 {
        "every allocation recorded".to_owned()
    } else {
        format!(
            "sampled every {} bytes on average; values are unbiased estimates",
            meta.sample_bytes
        )
    };
    for c in [
        format!(
            "memkit profile of pid {}: {}",
            meta.pid,
            meta.command.join(" ")
        ),
        when,
        mode,
    ] {
        p.comment.push(strings.get(&c));
    }

    // Mappings: one per object, covering the addresses seen in it; the
    // executable first (pprof takes the first mapping for the main
    // binary).
    let mut mapping_of: HashMap<&str, usize> = HashMap::new();
    let exe_first = model
        .locations
        .iter()
        .filter(|l| l.object == meta.exe)
        .chain(model.locations.iter().filter(|l| l.object != meta.exe));
    for loc in exe_first {
        if loc.object.is_empty() {
            continue;
        }
        let n = mapping_of.len();
        let i = *mapping_of.entry(loc.object.as_str()).or_insert(n);
        if i == p.mapping.len() {
            p.mapping.push(Mapping {
                id: i as u64 + 1,
                memory_start: loc.address,
                memory_limit: loc.address + 1,
                file_offset: 0,
                filename: strings.get(&loc.object),
                ..Mapping::default()
            });
        }
        let m = &mut p.mapping[i];
        m.memory_start = m.memory_start.min(loc.address);
        m.memory_limit = m.memory_limit.max(loc.address + 1);
        if !loc.lines.is_empty() {
            m.has_functions = true;
        }
        if loc.lines.iter().any(|l| !l.file.is_empty()) {
            m.has_filenames = true;
        }
        if loc.lines.iter().any(|l| l.line != 0) {
            m.has_line_numbers = true;
        }
        if loc.lines.len() > 1 {
            m.has_inline_frames = true;
        }
    }
    // Whole pages, as the objects were mapped: a symbolizer that trusts
    // memory_start - file_offset as the load address finds the same bias
    // for page-aligned segments (text's offset equals its address mod
    // the page size in every ELF a linker makes).
    for (m, bias) in p.mapping.iter_mut().zip(mapping_bias(model, &mapping_of)) {
        m.memory_start &= !0xfff;
        m.memory_limit = (m.memory_limit + 0xfff) & !0xfff;
        m.file_offset = m.memory_start.wrapping_sub(bias);
    }

    let mut functions: HashMap<(i64, i64), u64> = HashMap::new();
    for (i, loc) in model.locations.iter().enumerate() {
        let mut lines = Vec::with_capacity(loc.lines.len());
        for l in &loc.lines {
            let name = strings.get(&l.function);
            let file = strings.get(&l.file);
            let next = functions.len() as u64 + 1;
            let id = *functions.entry((name, file)).or_insert_with(|| {
                p.function.push(Function {
                    id: next,
                    name,
                    system_name: name,
                    filename: file,
                    start_line: 0,
                });
                next
            });
            lines.push(Line {
                function_id: id,
                line: i64::from(l.line),
                column: 0,
            });
        }
        p.location.push(Location {
            id: i as u64 + 1,
            mapping_id: mapping_of
                .get(loc.object.as_str())
                .map_or(0, |&m| m as u64 + 1),
            address: loc.address,
            line: lines,
            is_folded: false,
        });
    }

    let unit = model.object_unit;
    for site in &model.sites {
        let (objs, bytes) = match which {
            InUse::AtExit => (site.inuse_objects, site.inuse_bytes),
            InUse::AtPeak => (site.peak_objects, site.peak_bytes),
        };
        let value = [
            objects(site.alloc_objects, unit),
            site.alloc_bytes,
            objects(objs, unit),
            bytes,
        ];
        if value.iter().all(|&v| v == 0) {
            continue;
        }
        p.sample.push(Sample {
            location_id: site.stack.iter().map(|&l| l as u64 + 1).collect(),
            value: value.into_iter().map(clamp).collect(),
            label: Vec::new(),
        });
    }
    p.string_table = strings.table;
    p
}

/// Each mapping's load bias (from the first location in it).
fn mapping_bias(model: &Symbolized, mapping_of: &HashMap<&str, usize>) -> Vec<u64> {
    let mut out = vec![0u64; mapping_of.len()];
    for loc in &model.locations {
        if let Some(&i) = mapping_of.get(loc.object.as_str()) {
            out[i] = loc.bias;
        }
    }
    out
}

/// `profile` encoded and gzipped, as pprof files are.
pub fn encode_gz(profile: &Profile) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&profile.encode_to_vec());
    gz.finish().unwrap_or_default()
}

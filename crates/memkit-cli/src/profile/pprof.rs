//! google/pprof's `profile.proto`: the messages (written here from the
//! public field numbers, decoded and encoded by prost), the writer of
//! `profile.pb.gz` and `peak.pb.gz`, and a reader for any gzipped or plain
//! pprof file (`memkit profile diff`).
//!
//! The rules the format sets and the writer keeps: string 0 is "", every
//! id is non-zero and unique in its table, a sample's locations are leaf
//! first, a location's lines innermost first (the last is the function the
//! others were inlined into), `default_sample_type` indexes the string
//! table.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};

use prost::Message as _;

use super::symbols::Symbolized;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

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

    // Mappings: one per object, covering the addresses seen in it.
    let mut mapping_of: HashMap<&str, usize> = HashMap::new();
    for loc in &model.locations {
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

/// Decodes a pprof file, gzipped or not.
pub fn decode(bytes: &[u8]) -> Result<Profile, String> {
    let plain;
    let data = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("not a gzip file: {e}"))?;
        plain = out;
        &plain[..]
    } else {
        bytes
    };
    let p = Profile::decode(data).map_err(|e| format!("not a pprof profile: {e}"))?;
    if p.string_table.first().is_some_and(|s| !s.is_empty()) {
        return Err("not a pprof profile: string 0 is not empty".into());
    }
    Ok(p)
}

impl Profile {
    /// The string at `i` ("" when out of range).
    pub fn str(&self, i: i64) -> &str {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// The index of the sample type named `name`.
    pub fn type_index(&self, name: &str) -> Option<usize> {
        self.sample_type
            .iter()
            .position(|t| self.str(t.r#type) == name)
    }

    /// Each sample's stack as function names, root first (inlined
    /// functions expanded), for matching sites across profiles.
    pub fn stacks(&self) -> Vec<Vec<String>> {
        let functions: HashMap<u64, &Function> = self.function.iter().map(|f| (f.id, f)).collect();
        let locations: HashMap<u64, &Location> = self.location.iter().map(|l| (l.id, l)).collect();
        self.sample
            .iter()
            .map(|s| {
                let mut names = Vec::new();
                for id in s.location_id.iter().rev() {
                    let Some(loc) = locations.get(id) else {
                        names.push("?".to_owned());
                        continue;
                    };
                    if loc.line.is_empty() {
                        names.push(format!("{:#x}", loc.address));
                    }
                    for l in loc.line.iter().rev() {
                        let name = functions
                            .get(&l.function_id)
                            .map_or("?", |f| self.str(f.name));
                        names.push(name.to_owned());
                    }
                }
                names
            })
            .collect()
    }
}

//! google/pprof's `profile.proto`, written here from its public field
//! numbers (prost derives the encoding; no code generation), and the
//! reading side: any pprof file, gzipped or plain, with the lookups
//! `memkit profile diff` and the tests need. The writer is `pprof.rs`.
//!
//! Kept free of the rest of the CLI, so that the integration tests
//! decode what the command wrote with this very file
//! (`#[path = "…/proto.rs"] mod proto;`).

use std::collections::HashMap;
use std::io::Read as _;

use prost::Message as _;

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

    /// The values of every sample with a frame whose function name
    /// satisfies `name` (for the tests, unit and integration).
    #[cfg(test)]
    pub fn values_where(&self, name: impl Fn(&str) -> bool) -> Vec<Vec<i64>> {
        self.stacks()
            .into_iter()
            .zip(&self.sample)
            .filter(|(names, _)| names.iter().any(|n| name(n)))
            .map(|(_, s)| s.value.clone())
            .collect()
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

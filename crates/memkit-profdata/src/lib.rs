//! The raw profile: what libmemkit_profile.so writes for each profiled
//! process (one JSON object, `<pid>.json` in `MEMKIT_PROFILE_DIR`) and what
//! `memkit profile` turns into pprof, `summary.json` and `report.html`.
//!
//! Defined once, used by both sides: the writer (the profiling library,
//! at process exit) and the reader (the CLI). Stacks are not symbolized
//! here: frames are (module, offset) words, and the modules table gives
//! each module's path and load bias as recorded while the process ran, so
//! the reader resolves them even for libraries unloaded since.
//!
//! Every count is exact unless `sample_bytes` is non-zero. In sampled mode
//! the per-site figures are unbiased estimates: each sampled allocation of
//! `s` bytes stands for `1 / (1 - exp(-s / sample_bytes))` allocations of
//! that size; object counts are then kept in units of `1 / object_unit`
//! (bytes are rounded to whole bytes per sample). [`Totals`] are plain
//! numbers in both modes: `allocs`, `bytes` and `frees` always exact; in
//! sampled mode the in-use, peak and temporary totals are estimates.

use serde::{Deserialize, Serialize};

/// `format` of every raw profile.
pub const FORMAT: &str = "memkit-profile-raw";
/// The version this crate reads and writes.
pub const VERSION: u32 = 1;
/// `object_unit` in sampled mode (exact mode: 1).
pub const SAMPLED_OBJECT_UNIT: u64 = 1 << 16;

/// One process's profile.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Raw {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for what this crate writes.
    pub version: u32,
    pub pid: u32,
    pub ppid: u32,
    /// The process's arguments (`/proc/self/cmdline`), `argv[0]` first.
    pub command: Vec<String>,
    /// The executable (`/proc/self/exe`).
    pub exe: String,
    /// Wall-clock time profiling started (nanoseconds since the Unix epoch).
    pub start_unix_ns: u64,
    /// From profiling start to the profile being written (monotonic).
    pub duration_ns: u64,
    /// 0: every allocation recorded; else the mean bytes between samples.
    pub sample_bytes: u64,
    /// Per-site object counts are in units of `1 / object_unit`.
    pub object_unit: u64,
    /// Why the profile was written: `"exit"` (`exit` or a return from
    /// `main`), `"_exit"` (`_exit` or `_Exit`), or `"signal SIGINT"`,
    /// `"signal SIGTERM"`, `"signal SIGHUP"` (the process then died of it).
    pub end: String,
    pub totals: Totals,
    pub modules: Vec<Module>,
    /// Written compactly (see [`compact`]); read in either form.
    #[serde(with = "compact")]
    pub sites: Vec<Site>,
    /// Bytes in use and resident set over time, oldest first.
    pub timeline: Vec<Point>,
    /// Allocation sizes: bucket `k` counts sizes in `(2^(k-1), 2^k]`
    /// (bucket 0: sizes 0 and 1); trailing empty buckets are left out.
    pub histogram: Vec<Bucket>,
    pub overhead: Overhead,
}

/// Process-wide totals (plain counts; see the crate doc for sampled mode).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Allocations made (malloc, calloc, realloc, aligned forms, new).
    pub allocs: u64,
    /// Bytes requested by them.
    pub bytes: u64,
    /// Frees of blocks this process allocated (free, delete, realloc's).
    pub frees: u64,
    /// Allocations freed by the same thread with no allocation of that
    /// thread in between (heaptrack's rule).
    pub temporary_allocs: u64,
    /// The most bytes in use at once (requested sizes) and when.
    pub peak_bytes: u64,
    pub peak_allocs: u64,
    pub peak_at_ns: u64,
    /// In use when the profile was written (not freed: "leaked").
    pub inuse_bytes: u64,
    pub inuse_allocs: u64,
    /// Frees of blocks allocated before a `fork` by the parent (not counted
    /// against this process's sites).
    pub inherited_frees: u64,
}

/// A loaded object frames point into.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Module {
    /// The index frames carry in their top 16 bits.
    pub index: u16,
    pub path: String,
    /// Load bias: runtime address = bias + offset.
    pub bias: u64,
}

/// Everything allocated from one stack.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Site {
    /// Innermost first: the entry point the program called (`malloc`,
    /// `operator new`…), then its callers. Each word is
    /// `module << 48 | offset` (module 0: an unknown raw address).
    /// Frames after the first are return addresses.
    pub frames: Vec<u64>,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
    /// Live when the profile was written.
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    /// Live at the moment of the process's peak of bytes in use.
    pub peak_objects: u64,
    pub peak_bytes: u64,
    /// Temporary allocations from this site (see [`Totals::temporary_allocs`]).
    pub temporary: u64,
}

/// One timeline sample.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Since profiling start.
    pub t_ns: u64,
    pub inuse_bytes: u64,
    pub rss_bytes: u64,
}

/// One size-histogram bucket.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// Largest size counted here (`2^k`).
    pub max_size: u64,
    pub allocs: u64,
    pub bytes: u64,
}

/// What profiling cost the process in memory.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Overhead {
    /// The stack depot's records.
    pub stack_bytes: u64,
    /// The per-site table.
    pub site_bytes: u64,
    /// Per-block headers of blocks live at the peak.
    pub header_bytes_at_peak: u64,
    /// The process's peak resident set (VmHWM).
    pub peak_rss_bytes: u64,
}

/// Histogram buckets (sizes up to `2^64`).
pub const BUCKETS: usize = 65;

/// The histogram bucket of an allocation of `size` bytes: `k` such that
/// `size` is in `(2^(k-1), 2^k]` (0 for sizes 0 and 1).
pub fn bucket_of(size: usize) -> usize {
    if size <= 1 {
        0
    } else {
        (usize::BITS - (size - 1).leading_zeros()) as usize
    }
}

/// The written form of the sites. A process with a deep call tree (a
/// compiler) has 10^5 distinct stacks that share most of their callers:
/// written out in full they would take tens of MiB. So each distinct frame
/// word is written once (`frames`), stacks as a tree of callers (`nodes`:
/// `[parent, frame index]`, node ids from 1, parent 0 the root, the
/// outermost caller nearest the root), and each site as one array `[node,
/// alloc_objects, alloc_bytes, inuse_objects, inuse_bytes, peak_objects,
/// peak_bytes, temporary]` whose node is its innermost frame. Reading also
/// accepts the plain form (an array of [`Site`] objects).
pub mod compact {
    use super::Site;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;

    #[derive(Serialize, Deserialize)]
    struct Compact {
        frames: Vec<u64>,
        nodes: Vec<[u32; 2]>,
        sites: Vec<[u64; 8]>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Plain(Vec<Site>),
        Compact(Compact),
    }

    pub fn serialize<S: Serializer>(sites: &[Site], ser: S) -> Result<S::Ok, S::Error> {
        let mut frame_ix: HashMap<u64, u32> = HashMap::new();
        let mut frames = Vec::new();
        let mut node_ix: HashMap<(u32, u32), u32> = HashMap::new();
        let mut nodes: Vec<[u32; 2]> = Vec::new();
        let mut out = Vec::with_capacity(sites.len());
        for s in sites {
            let mut node = 0u32;
            for &f in s.frames.iter().rev() {
                let fi = *frame_ix.entry(f).or_insert_with(|| {
                    frames.push(f);
                    frames.len() as u32 - 1
                });
                node = *node_ix.entry((node, fi)).or_insert_with(|| {
                    nodes.push([node, fi]);
                    nodes.len() as u32
                });
            }
            out.push([
                node as u64,
                s.alloc_objects,
                s.alloc_bytes,
                s.inuse_objects,
                s.inuse_bytes,
                s.peak_objects,
                s.peak_bytes,
                s.temporary,
            ]);
        }
        Compact {
            frames,
            nodes,
            sites: out,
        }
        .serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Site>, D::Error> {
        use serde::de::Error;
        let c = match Either::deserialize(de)? {
            Either::Plain(v) => return Ok(v),
            Either::Compact(c) => c,
        };
        let mut sites = Vec::with_capacity(c.sites.len());
        for s in &c.sites {
            let mut frames = Vec::new();
            let mut node = s[0] as usize;
            while node != 0 {
                let Some(&[parent, fi]) = c.nodes.get(node - 1) else {
                    return Err(D::Error::custom(format!("site node {node} out of range")));
                };
                // Parents come before their children: no cycle.
                if parent as usize >= node {
                    return Err(D::Error::custom(format!("node {node} has parent {parent}")));
                }
                let Some(&f) = c.frames.get(fi as usize) else {
                    return Err(D::Error::custom(format!("frame {fi} out of range")));
                };
                frames.push(f);
                node = parent as usize;
            }
            sites.push(Site {
                frames,
                alloc_objects: s[1],
                alloc_bytes: s[2],
                inuse_objects: s[3],
                inuse_bytes: s[4],
                peak_objects: s[5],
                peak_bytes: s[6],
                temporary: s[7],
            });
        }
        Ok(sites)
    }
}

/// Splits a frame word into (module, offset).
pub fn split_frame(f: u64) -> (u16, u64) {
    ((f >> 48) as u16, f & 0xffff_ffff_ffff)
}

/// Why a raw profile could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Json(serde_json::Error),
    /// Not a raw profile, or a version this build does not read.
    Format(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Json(e) => write!(f, "not a memkit raw profile: {e}"),
            ReadError::Format(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ReadError {}

impl Raw {
    /// Parses a raw profile, refusing other formats and versions.
    pub fn from_slice(bytes: &[u8]) -> Result<Raw, ReadError> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(ReadError::Json)?;
        if raw.format != FORMAT {
            return Err(ReadError::Format(format!(
                "not a memkit raw profile (format {:?})",
                raw.format
            )));
        }
        if raw.version != VERSION {
            return Err(ReadError::Format(format!(
                "raw profile version {} (this memkit reads version {VERSION})",
                raw.version
            )));
        }
        if raw.object_unit == 0 {
            return Err(ReadError::Format("raw profile with object_unit 0".into()));
        }
        Ok(raw)
    }

    /// Reads a raw profile file.
    pub fn read(path: &std::path::Path) -> Result<Raw, ReadError> {
        let bytes = std::fs::read(path).map_err(ReadError::Io)?;
        Raw::from_slice(&bytes)
    }

    /// The JSON text of this profile.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let raw = Raw {
            format: FORMAT.into(),
            version: VERSION,
            pid: 7,
            ppid: 1,
            command: vec!["/bin/a prog".into(), "x\ty\"z".into()],
            exe: "/opt/with space/prog".into(),
            start_unix_ns: 1,
            duration_ns: 2,
            sample_bytes: 0,
            object_unit: 1,
            end: "exit".into(),
            totals: Totals {
                allocs: 3,
                bytes: 4,
                frees: 5,
                temporary_allocs: 6,
                peak_bytes: 7,
                peak_allocs: 8,
                peak_at_ns: 9,
                inuse_bytes: 10,
                inuse_allocs: 11,
                inherited_frees: 12,
            },
            modules: vec![Module {
                index: 1,
                path: "/lib/ü.so".into(),
                bias: 1 << 40,
            }],
            sites: vec![Site {
                frames: vec![1 << 48 | 0x1234, 0x5678],
                alloc_objects: 1,
                alloc_bytes: 2,
                inuse_objects: 3,
                inuse_bytes: 4,
                peak_objects: 5,
                peak_bytes: 6,
                temporary: 7,
            }],
            timeline: vec![Point {
                t_ns: 1,
                inuse_bytes: 2,
                rss_bytes: 3,
            }],
            histogram: vec![Bucket {
                max_size: 1,
                allocs: 2,
                bytes: 2,
            }],
            overhead: Overhead {
                stack_bytes: 1,
                site_bytes: 2,
                header_bytes_at_peak: 3,
                peak_rss_bytes: 4,
            },
        };
        let back = Raw::from_slice(raw.to_json().as_bytes()).unwrap();
        assert_eq!(back, raw);
        // The plain form of the sites reads too.
        let mut v: serde_json::Value = serde_json::from_str(&raw.to_json()).unwrap();
        v["sites"] = serde_json::to_value(
            raw.sites
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "frames": s.frames, "alloc_objects": s.alloc_objects,
                        "alloc_bytes": s.alloc_bytes, "inuse_objects": s.inuse_objects,
                        "inuse_bytes": s.inuse_bytes, "peak_objects": s.peak_objects,
                        "peak_bytes": s.peak_bytes, "temporary": s.temporary,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(Raw::from_slice(v.to_string().as_bytes()).unwrap(), raw);
        assert_eq!(split_frame(raw.sites[0].frames[0]), (1, 0x1234));
    }

    #[test]
    fn stacks_share_their_callers() {
        let site = |frames: Vec<u64>, n| Site {
            frames,
            alloc_objects: n,
            ..Site::default()
        };
        let raw = Raw {
            format: FORMAT.into(),
            version: VERSION,
            object_unit: 1,
            sites: vec![
                site(vec![1, 2, 3, 4], 1),
                site(vec![5, 2, 3, 4], 2),
                site(vec![3, 4], 3),
                site(vec![], 4),
                site(vec![4, 4, 4], 5),
            ],
            ..Raw::default()
        };
        let text = raw.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["sites"]["frames"].as_array().unwrap().len(), 5);
        // 4, 4>3, 4>3>2, 4>3>2>1, 4>3>2>5, 4>4, 4>4>4.
        assert_eq!(v["sites"]["nodes"].as_array().unwrap().len(), 7);
        assert_eq!(Raw::from_slice(text.as_bytes()).unwrap(), raw);
        // A node naming a later parent (a cycle) is refused, not looped on.
        let bad = text.replacen("\"nodes\":[[0,", "\"nodes\":[[1,", 1);
        assert!(Raw::from_slice(bad.as_bytes()).is_err());
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 2);
        assert_eq!(bucket_of(5), 3);
        assert_eq!(bucket_of(1 << 20), 20);
        assert_eq!(bucket_of((1 << 20) + 1), 21);
        assert_eq!(bucket_of(usize::MAX), BUCKETS - 1);
    }

    #[test]
    fn refuses_other_formats_and_versions() {
        let mut raw = Raw {
            format: FORMAT.into(),
            version: VERSION,
            object_unit: 1,
            ..Raw::default()
        };
        assert!(Raw::from_slice(raw.to_json().as_bytes()).is_ok());
        raw.version = 99;
        let e = Raw::from_slice(raw.to_json().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
        raw.version = VERSION;
        raw.format = "x".into();
        assert!(Raw::from_slice(raw.to_json().as_bytes()).is_err());
        assert!(Raw::from_slice(b"{").is_err());
        assert!(Raw::from_slice(b"[]").is_err());
    }
}

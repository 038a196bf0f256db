//! The raw profile (memkit-profdata) of this process, written once at exit
//! into `MEMKIT_PROFILE_DIR` as `<pid>.json` (`<pid>.<n>.json` when a profile
//! with that pid exists: the same pid after `exec`), through a temporary
//! file and a hard link, so a reader never sees half a file and no profile
//! replaces another.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use memkit_profdata::{Bucket, Module, Overhead, Point, Raw, Site, Totals, FORMAT, VERSION};

use crate::record::{ALLOCS, BYTES, FREES, INHERITED_FREES};
use crate::sites::{self, STATE};
use crate::{options, rss_bytes, since_start, START_UNIX_NS};
use core::sync::atomic::Ordering::Relaxed;

fn command() -> Vec<String> {
    std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Collects the profile (under the state's lock: a consistent snapshot).
pub fn collect(end: &str) -> Raw {
    let o = options::get();
    let sampled = o.sample_bytes != 0;
    let unit = if sampled {
        memkit_profdata::SAMPLED_OBJECT_UNIT
    } else {
        1
    };
    let rss = rss_bytes();
    let (state_totals, peak_epoch, site_copy, timeline, hist, peak_objects) = {
        let mut st = STATE.lock(crate::tls::id());
        st.clock_ns = since_start();
        st.add_point(rss);
        let totals = Totals {
            allocs: st.allocs,
            bytes: st.bytes,
            frees: st.frees,
            temporary_allocs: st.temporary.div_ceil(unit),
            peak_bytes: st.peak_bytes,
            peak_allocs: st.peak_objects / unit,
            peak_at_ns: st.peak_at_ns,
            inuse_bytes: st.inuse_bytes,
            inuse_allocs: st.inuse_objects / unit,
            inherited_frees: INHERITED_FREES.load(Relaxed),
        };
        let timeline: Vec<Point> = st.timeline[..st.points]
            .iter()
            .map(|p| Point {
                t_ns: p.t_ns,
                inuse_bytes: p.inuse_bytes,
                rss_bytes: p.rss_bytes,
            })
            .collect();
        let last = st.hist.iter().rposition(|b| b.0 != 0).map_or(0, |i| i + 1);
        let hist: Vec<Bucket> = st.hist[..last]
            .iter()
            .enumerate()
            .map(|(k, b)| Bucket {
                max_size: if k == 64 { u64::MAX } else { 1u64 << k },
                allocs: b.0 / unit,
                bytes: b.1,
            })
            .collect();
        (
            totals,
            st.epoch,
            sites::snapshot_sites(&st),
            timeline,
            hist,
            st.peak_objects,
        )
    };
    let mut totals = state_totals;
    if sampled {
        totals.allocs = ALLOCS.load(Relaxed);
        totals.bytes = BYTES.load(Relaxed);
        totals.frees = FREES.load(Relaxed);
    }
    let mut out_sites = Vec::new();
    for (serial, s) in site_copy.iter().enumerate() {
        if s.alloc_objects == 0 {
            continue;
        }
        let frames = memkit_trace::depot::frames_of_serial(serial as u32);
        let (po, pb) = s.at_peak(peak_epoch);
        out_sites.push(Site {
            frames: frames.to_vec(),
            alloc_objects: s.alloc_objects,
            alloc_bytes: s.alloc_bytes,
            inuse_objects: s.live_objects,
            inuse_bytes: s.live_bytes,
            peak_objects: po,
            peak_bytes: pb,
            temporary: s.temporary,
        });
    }
    let modules = (1..memkit_trace::modules::MAX_MODULES as u16)
        .filter_map(|i| {
            memkit_trace::modules::info(i).map(|m| Module {
                index: i,
                path: m.path,
                bias: m.bias as u64,
            })
        })
        .collect();
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Raw {
        format: FORMAT.into(),
        version: VERSION,
        pid: memkit_sys::pid(),
        ppid: memkit_sys::ppid(),
        command: command(),
        exe,
        start_unix_ns: START_UNIX_NS.load(Relaxed),
        duration_ns: since_start(),
        sample_bytes: o.sample_bytes,
        object_unit: unit,
        end: end.into(),
        totals,
        modules,
        sites: out_sites,
        timeline,
        histogram: hist,
        overhead: Overhead {
            stack_bytes: memkit_trace::depot::bytes() as u64,
            site_bytes: (site_copy.len() * core::mem::size_of::<sites::Site>()) as u64,
            header_bytes_at_peak: peak_objects / unit * crate::block::HDR as u64,
            peak_rss_bytes: memkit_sys::protect::proc_status_bytes(b"VmHWM").unwrap_or(0),
        },
    }
}

/// Writes `raw` into `dir` under a name no other profile has.
pub fn write(dir: &Path, raw: &Raw) -> std::io::Result<PathBuf> {
    let pid = raw.pid;
    let tmp = dir.join(format!(".{pid}.{}.tmp", memkit_sys::now_ns()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(raw.to_json().as_bytes())?;
        f.write_all(b"\n")?;
    }
    let mut n = 0u32;
    let result = loop {
        let name = if n == 0 {
            format!("{pid}.json")
        } else {
            format!("{pid}.{n}.json")
        };
        let path = dir.join(name);
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => break Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
            Err(e) => break Err(e),
        }
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

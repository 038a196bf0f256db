//! The files of one process, from a raw record whose frames point into
//! this test executable (a table with its real path and load bias, as the
//! runtime records it): pprof round trip, peak profile, summary, HTML (and
//! the HTML in headless chromium), diff.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use memkit_profdata::{Bucket, Module, Point, Raw, Site, Totals, FORMAT, VERSION};
use memkit_tests::TempDir;
use memkit_trace::modules;

use super::pprof::{self, Profile};
use super::*;

#[inline(never)]
fn entry_point() -> usize {
    entry_point as *const () as usize
}
#[inline(never)]
fn temp_site() -> usize {
    temp_site as *const () as usize
}
#[inline(never)]
fn hold_site() -> usize {
    hold_site as *const () as usize
}
#[inline(never)]
fn leak_site() -> usize {
    leak_site as *const () as usize
}
#[inline(never)]
fn thread_site() -> usize {
    thread_site as *const () as usize
}
/// Its first instruction is black_box's, inlined: one location, two lines.
#[inline(never)]
fn inlining_site() -> usize {
    black_box(inlining_site as *const () as usize)
}
#[inline(never)]
fn caller() -> usize {
    caller as *const () as usize
}

const MIB: u64 = 1 << 20;

/// (module 1 index, bias, path) of this executable.
fn this_object() -> (u64, String) {
    let pc = hold_site();
    let m = modules::module_of(pc);
    assert_ne!(m, 0);
    let info = modules::info(m).unwrap();
    (info.bias as u64, info.path)
}

/// Frame words into module `m` of the fixture: the entry point at its own
/// address, callers as return addresses (one byte into the function).
fn stack(m: u64, fns: &[usize]) -> Vec<u64> {
    let (bias, _) = this_object();
    let mut v = vec![m << 48 | (entry_point() as u64 - bias)];
    v.extend(fns.iter().map(|&f| m << 48 | (f as u64 - bias + 1)));
    v
}

fn site(
    frames: Vec<u64>,
    alloc: (u64, u64),
    inuse: (u64, u64),
    peak: (u64, u64),
    temp: u64,
) -> Site {
    Site {
        frames,
        alloc_objects: alloc.0,
        alloc_bytes: alloc.1,
        inuse_objects: inuse.0,
        inuse_bytes: inuse.1,
        peak_objects: peak.0,
        peak_bytes: peak.1,
        temporary: temp,
    }
}

/// A process with a churn site (1000 temporary 64-byte blocks), a site
/// holding 1 MiB at the peak, a leaking site reached through two module
/// indices of the same object (they merge), and a second thread's site.
fn fixture(hold: u64) -> Raw {
    let (bias, path) = this_object();
    let (t, h, l, th, c) = (
        temp_site(),
        hold_site(),
        leak_site(),
        thread_site(),
        caller(),
    );
    let inl = inlining_site();
    Raw {
        format: FORMAT.into(),
        version: VERSION,
        pid: 4242,
        ppid: 1,
        command: vec!["./prog".into(), "--x".into()],
        exe: "/bin/prog".into(),
        start_unix_ns: 1_700_000_000_000_000_000,
        duration_ns: 2_000_000_000,
        sample_bytes: 0,
        object_unit: 1,
        end: "exit".into(),
        totals: Totals {
            allocs: 1019,
            bytes: 64_000 + hold + 4000 + 500 + 800 + 16,
            frees: 1006,
            temporary_allocs: 1001,
            peak_bytes: hold + 4800 + 500,
            peak_allocs: 18,
            peak_at_ns: 500_000_000,
            inuse_bytes: 4800,
            inuse_allocs: 12,
            inherited_frees: 0,
        },
        modules: vec![
            Module {
                index: 1,
                path: path.clone(),
                bias,
            },
            Module {
                index: 2,
                path,
                bias,
            },
        ],
        sites: vec![
            site(stack(1, &[t, c]), (1000, 64_000), (0, 0), (0, 0), 1000),
            site(stack(1, &[h, c]), (1, hold), (0, 0), (1, hold), 0),
            site(stack(1, &[l, c]), (10, 4000), (10, 4000), (10, 4000), 0),
            site(stack(1, &[th]), (5, 500), (0, 0), (5, 500), 0),
            site(stack(2, &[l, c]), (2, 800), (2, 800), (2, 800), 0),
            site(stack(1, &[inl, c]), (1, 16), (0, 0), (0, 0), 1),
        ],
        timeline: (0..200)
            .map(|i| Point {
                t_ns: i * 10_000_000,
                inuse_bytes: if i < 50 {
                    i * hold / 50
                } else {
                    4800 + (200 - i) * 100
                },
                rss_bytes: 3 * MIB + i * 4096,
            })
            .collect(),
        histogram: vec![
            Bucket {
                max_size: 64,
                allocs: 1000,
                bytes: 64_000,
            },
            Bucket {
                max_size: 128,
                allocs: 5,
                bytes: 500,
            },
            Bucket {
                max_size: 512,
                allocs: 12,
                bytes: 4800,
            },
            Bucket {
                max_size: MIB,
                allocs: 1,
                bytes: hold,
            },
        ],
        overhead: memkit_profdata::Overhead {
            stack_bytes: 100,
            site_bytes: 200,
            header_bytes_at_peak: 300,
            peak_rss_bytes: 5 * MIB,
        },
    }
}

fn load(dir: &Path, file: &str) -> Profile {
    pprof::decode(&fs::read(dir.join(file)).unwrap()).unwrap()
}

/// The values of the sample whose stack names `function`.
fn values(p: &Profile, function: &str) -> Vec<i64> {
    let hits = p.values_where(|n| n.ends_with(function));
    assert_eq!(hits.len(), 1, "one sample names {function}: {hits:?}");
    hits[0].clone()
}

#[test]
fn pprof_round_trip() {
    let dir = TempDir::new("profile-pprof");
    write_process(&fixture(MIB), dir.path()).unwrap();
    let p = load(dir.path(), summary::PROFILE_FILE);
    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (p.str(t.r#type), p.str(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    assert_eq!(p.str(p.default_sample_type), "inuse_space");
    let period = p.period_type.as_ref().unwrap();
    assert_eq!(
        (p.str(period.r#type), p.str(period.unit)),
        ("space", "bytes")
    );
    // Six raw sites, two of them with equal symbolized stacks.
    assert_eq!(p.sample.len(), 5);
    assert_eq!(values(&p, "temp_site"), [1000, 64_000, 0, 0]);
    assert_eq!(values(&p, "hold_site"), [1, MIB as i64, 0, 0]);
    assert_eq!(values(&p, "leak_site"), [12, 4800, 12, 4800]);
    assert_eq!(values(&p, "thread_site"), [5, 500, 0, 0]);
    // Ids are 1-based and every reference resolves; lines name this file.
    let (_, exe) = this_object();
    assert_eq!(p.mapping.len(), 1, "both module indices are one object");
    assert_eq!(p.str(p.mapping[0].filename), exe);
    assert!(p.mapping[0].has_functions && p.mapping[0].has_line_numbers);
    for (i, l) in p.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
        assert_eq!(l.mapping_id, 1);
        assert!(!l.line.is_empty());
    }
    for s in &p.sample {
        assert!(s
            .location_id
            .iter()
            .all(|&id| id >= 1 && id as usize <= p.location.len()));
    }
    let hold = p
        .function
        .iter()
        .find(|f| p.str(f.name).ends_with("hold_site"))
        .expect("a function named hold_site");
    assert!(
        p.str(hold.filename).ends_with("tests.rs"),
        "{}",
        p.str(hold.filename)
    );
    let line = p
        .location
        .iter()
        .flat_map(|l| &l.line)
        .find(|l| l.function_id == hold.id)
        .unwrap();
    assert!(line.line > 0);
    // Inlined calls: one location with the inlined function first, the
    // function it was inlined into last.
    let name = |id: u64| p.str(p.function.iter().find(|f| f.id == id).unwrap().name);
    let inlined = p
        .location
        .iter()
        .find(|l| {
            l.line
                .last()
                .is_some_and(|x| name(x.function_id).ends_with("inlining_site"))
        })
        .unwrap();
    assert!(inlined.line.len() >= 2);
    assert!(name(inlined.line[0].function_id).ends_with("black_box"));
    // Leaf first: each sample's first location is the entry point.
    let entry = p
        .stacks()
        .iter()
        .map(|s| s.last().cloned())
        .collect::<Vec<_>>();
    assert!(entry
        .iter()
        .all(|n| n.as_deref().is_some_and(|n| n.ends_with("entry_point"))));
}

#[test]
fn peak_profile_has_what_was_live_at_the_peak() {
    let dir = TempDir::new("profile-peak");
    write_process(&fixture(MIB), dir.path()).unwrap();
    let p = load(dir.path(), summary::PEAK_FILE);
    assert_eq!(p.sample_type.len(), 4);
    assert_eq!(p.str(p.sample_type[3].r#type), "inuse_space");
    assert_eq!(values(&p, "hold_site"), [1, MIB as i64, 1, MIB as i64]);
    assert_eq!(values(&p, "leak_site"), [12, 4800, 12, 4800]);
    assert_eq!(values(&p, "thread_site"), [5, 500, 5, 500]);
    assert_eq!(values(&p, "temp_site"), [1000, 64_000, 0, 0]);
    let comments: Vec<&str> = p.comment.iter().map(|&c| p.str(c)).collect();
    assert!(comments.iter().any(|c| c.contains("peak")), "{comments:?}");
}

#[test]
fn sampled_counts_are_whole_objects() {
    let mut raw = fixture(MIB);
    raw.sample_bytes = 512 * 1024;
    raw.object_unit = memkit_profdata::SAMPLED_OBJECT_UNIT;
    let u = raw.object_unit;
    for s in &mut raw.sites {
        s.alloc_objects *= u;
        s.inuse_objects *= u;
        s.peak_objects *= u;
    }
    // 1.61 objects: rounds to 2.
    raw.sites[1].alloc_objects = u + u * 61 / 100;
    let dir = TempDir::new("profile-sampled");
    write_process(&raw, dir.path()).unwrap();
    let p = load(dir.path(), summary::PROFILE_FILE);
    assert_eq!(values(&p, "hold_site")[0], 2);
    assert_eq!(values(&p, "leak_site"), [12, 4800, 12, 4800]);
    assert_eq!(p.period, 512 * 1024);
    assert_eq!(pprof::objects(u / 2 - 1, u), 0);
    assert_eq!(pprof::objects(u / 2, u), 1);
    assert_eq!(pprof::objects(7, 1), 7);
}

#[test]
fn summary_fields() {
    let dir = TempDir::new("profile-summary");
    write_process(&fixture(MIB), dir.path()).unwrap();
    let text = fs::read_to_string(dir.join(summary::SUMMARY_FILE)).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["format"], "memkit-profile-summary");
    assert_eq!(s["version"], 1);
    assert_eq!(s["pid"], 4242);
    assert_eq!(s["command"], serde_json::json!(["./prog", "--x"]));
    assert_eq!(s["peak_bytes"], MIB + 5300);
    assert_eq!(s["peak_at_seconds"], 0.5);
    assert_eq!(s["total_allocs"], 1019);
    assert_eq!(s["total_bytes"], 64_000 + MIB + 5316);
    assert_eq!(s["leaked_bytes"], 4800);
    assert_eq!(s["leaked_allocs"], 12);
    assert_eq!(s["temporary_allocs"], 1001);
    assert_eq!(s["duration_seconds"], 2.0);
    assert_eq!(s["exact"], true);
    assert_eq!(s["sites"], 5);
    let top = &s["top_at_peak"][0];
    assert_eq!(top["bytes"], MIB);
    assert!(top["site"].as_str().unwrap().contains("hold_site"), "{top}");
    assert!(
        !top["site"].as_str().unwrap().contains("entry_point"),
        "{top}"
    );
    assert_eq!(s["top_leaks"][0]["objects"], 12);
    assert_eq!(s["top_temporary"][0]["value"], 1000);
    assert_eq!(s["top_leaks"].as_array().unwrap().len(), 1);
}

#[test]
fn html_is_self_contained() {
    let mut raw = fixture(MIB);
    raw.command = vec![
        "sh".into(),
        "-c".into(),
        "echo '</script><script>x()</script>'".into(),
    ];
    let dir = TempDir::new("profile-html");
    write_process(&raw, dir.path()).unwrap();
    let html = fs::read_to_string(dir.join(summary::REPORT_FILE)).unwrap();
    for bad in ["http://", "https://", " src=", "<link", "@import", "url("] {
        assert!(!html.contains(bad), "report.html contains {bad:?}");
    }
    assert_eq!(html.matches("<script").count(), 1);
    assert_eq!(html.matches("</script>").count(), 1);
    assert!(html.contains("hold_site") && html.contains("leak_site"));
    assert!(!html.contains("/*REPORT_DATA*/"), "the data was put in");
}

/// A screenshot of `page` (and its DOM after the scripts ran).
fn chromium(page: &Path, png: &Path) -> String {
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,2000",
    ])
    .arg(format!("--screenshot={}", png.display()))
    .arg(format!("file://{}", page.display()));
    let o = memkit_tests::run(&mut cmd, Duration::from_secs(120));
    assert!(png.is_file(), "no screenshot: {}", o.stderr);
    let mut cmd = std::process::Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()));
    let o = memkit_tests::run(&mut cmd, Duration::from_secs(120));
    o.stdout
}

#[test]
fn html_renders_in_chromium() {
    if !memkit_tests::require("html_renders_in_chromium", &["chromium"]) {
        return;
    }
    let dir = TempDir::new("profile-chromium");
    write_process(&fixture(MIB), dir.path()).unwrap();
    let page = dir.join(summary::REPORT_FILE);
    let shot = dir.join("report.png");
    let dom = chromium(&page, &shot);
    // The scripts ran: the flame graph has frames, the table has rows,
    // the leaks their stacks.
    assert!(
        dom.matches("<div title=").count() >= 5,
        "flame graph frames"
    );
    assert!(
        dom.contains("class=\"site\"") && dom.contains("hold_site"),
        "site table"
    );
    assert!(dom.contains("<details>"), "leaks");
    let png = fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2000));
    // A blank page of the same size compresses to a fraction of a page
    // with charts, a flame graph and tables.
    let blank = dir.join("blank.html");
    fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_png = dir.join("blank.png");
    chromium(&blank, &blank_png);
    let blank_len = fs::metadata(&blank_png).unwrap().len();
    assert!(
        png.len() as u64 > 4 * blank_len,
        "report screenshot {} bytes, blank page {blank_len}",
        png.len()
    );
    if let Some(keep) = std::env::var_os("MEMKIT_PROFILE_SCREENSHOT") {
        fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn diff_names_the_sites_that_grew() {
    let a = TempDir::new("profile-diff-a");
    let b = TempDir::new("profile-diff-b");
    write_process(&fixture(MIB), a.path()).unwrap();
    write_process(&fixture(3 * MIB), b.path()).unwrap();
    let text = diff::render_for_test(a.path(), b.path(), 5).unwrap();
    let peak = text
        .lines()
        .skip_while(|l| !l.starts_with("in use at the peak"))
        .nth(1)
        .unwrap();
    assert!(
        peak.contains("+2.0 MiB") && peak.contains("hold_site"),
        "{text}"
    );
    let total = text
        .lines()
        .skip_while(|l| !l.starts_with("allocated in total"))
        .nth(1)
        .unwrap();
    assert!(
        total.contains("+2.0 MiB") && total.contains("hold_site"),
        "{text}"
    );
    assert!(
        text.contains("in use at exit") && text.contains("no site changed"),
        "{text}"
    );
    // Files compare too; the same profile against itself changes nothing.
    let f = a.join(summary::PROFILE_FILE);
    let same = diff::render_for_test(&f, &f, 5).unwrap();
    assert!(
        same.contains("no site changed") && !same.contains('+'),
        "{same}"
    );
    // Not a profile: a clear error.
    let junk = a.join("junk.pb.gz");
    fs::write(&junk, b"\x1f\x8bnot really").unwrap();
    let err = diff::render_for_test(&junk, &f, 5).unwrap_err();
    assert!(err.message.contains("junk.pb.gz"), "{}", err.message);
}

#[test]
fn output_directories_are_new_or_empty() {
    let t = TempDir::new("profile-outdir");
    fs::write(t.join("file"), "x").unwrap();
    let e = launcher::OutDir::create(Some(t.path())).err().unwrap();
    assert!(e.message.contains("is not empty"), "{}", e.message);
    let e = launcher::OutDir::create(Some(&t.join("file")))
        .err()
        .unwrap();
    assert!(e.message.contains("not a directory"), "{}", e.message);
    let out = launcher::OutDir::create(Some(&t.join("new/dir"))).unwrap();
    assert!(out.raw().ends_with("new/dir/raw") && out.raw().is_dir());
    // Unreadable records are warnings, not failures.
    fs::write(out.raw().join("77.json"), "{").unwrap();
    fs::write(out.raw().join("78.json"), fixture(MIB).to_json()).unwrap();
    fs::write(out.raw().join("78.json.tmp"), "junk").unwrap();
    let (raws, warnings) = launcher::collect(&out.raw());
    assert_eq!(raws.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("77.json"), "{warnings:?}");
}

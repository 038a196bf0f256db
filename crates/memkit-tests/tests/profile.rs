//! libmemkit_profile.so's raw profiles, exact: c/profile/sites.c has
//! allocation sites with known figures (allocated, live at the peak, live
//! at exit, temporary); run preloaded with MEMKIT_PROFILE_DIR, each process
//! must write one raw profile whose sites carry exactly those figures.
//! (What `memkit profile` makes of the raw profiles is tested with the CLI.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use memkit_profdata::{split_frame, Raw, Site};
use memkit_tests::*;

fn program(dir: &TempDir) -> PathBuf {
    compile_c("profile/sites.c", dir.path(), "sites", &["-O0"])
}

/// Runs `prog args` under the profiler with raw profiles into `out`.
fn profiled(prog: &Path, args: &[&str], out: &Path, options: &str) -> Outcome {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env("LD_PRELOAD", profile_lib_path())
        .env("MEMKIT_PROFILE_DIR", out)
        .env("MEMKIT_PROFILE_OPTIONS", options);
    run(&mut cmd, Duration::from_secs(120))
}

/// Every raw profile in `dir`, by file name.
fn raws(dir: &Path) -> Vec<(String, Raw)> {
    let mut v: Vec<(String, Raw)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".json").then(|| {
                let raw = Raw::read(&e.path()).unwrap_or_else(|err| panic!("{name}: {err}"));
                (name, raw)
            })
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The sites whose blocks all have `size` bytes (the test program gives
/// each site its own size).
fn sites_of_size(raw: &Raw, size: u64) -> Vec<&Site> {
    raw.sites
        .iter()
        .filter(|s| {
            s.alloc_objects > 0 && s.alloc_bytes * raw.object_unit == size * s.alloc_objects
        })
        .collect()
}

fn one_site(raw: &Raw, size: u64) -> &Site {
    let v = sites_of_size(raw, size);
    assert_eq!(v.len(), 1, "sites of {size} B: {v:#?}");
    v[0]
}

fn module_path(raw: &Raw, frame: u64) -> &str {
    let (m, _) = split_frame(frame);
    raw.modules
        .iter()
        .find(|x| x.index == m)
        .map_or("", |x| x.path.as_str())
}

#[test]
fn sites_come_out_exact() {
    if !require("sites_come_out_exact", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-sites");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let o = profiled(&prog, &["sites"], &out, "");
    o.assert_success("sites");
    assert!(o.stdout.contains("END sites"), "{}", o.describe());
    let raws = raws(&out);
    assert_eq!(raws.len(), 1, "one process, one profile: {raws:?}");
    let (name, raw) = &raws[0];
    assert_eq!(name, &format!("{}.json", raw.pid));
    assert_eq!(raw.object_unit, 1);
    assert_eq!(raw.sample_bytes, 0);
    assert_eq!(raw.end, "exit");
    assert!(raw.exe.ends_with("/sites"), "{}", raw.exe);
    assert_eq!(raw.command.get(1).map(String::as_str), Some("sites"));

    let temp = one_site(raw, 64);
    assert_eq!((temp.alloc_objects, temp.alloc_bytes), (1000, 64_000));
    assert_eq!(temp.temporary, 1000);
    assert_eq!((temp.peak_objects, temp.peak_bytes), (0, 0));
    assert_eq!((temp.inuse_objects, temp.inuse_bytes), (0, 0));

    let thread = one_site(raw, 777);
    assert_eq!(thread.alloc_objects, 5);
    assert_eq!((thread.peak_objects, thread.peak_bytes), (5, 3885));
    assert_eq!((thread.inuse_objects, thread.inuse_bytes), (0, 0));
    assert_eq!(thread.temporary, 0);

    let peak = one_site(raw, 100_000);
    assert_eq!(peak.alloc_objects, 10);
    assert_eq!((peak.peak_objects, peak.peak_bytes), (10, 1_000_000));
    assert_eq!((peak.inuse_objects, peak.inuse_bytes), (0, 0));

    let leak = one_site(raw, 1000);
    assert_eq!(leak.alloc_objects, 3);
    assert_eq!((leak.peak_objects, leak.peak_bytes), (0, 0));
    assert_eq!((leak.inuse_objects, leak.inuse_bytes), (3, 3000));

    let t = &raw.totals;
    // The peak: the ten peak blocks and the thread's five, plus whatever
    // libc keeps live meanwhile (a few KiB at most).
    assert!(
        t.peak_bytes >= 1_003_885 && t.peak_bytes < 1_003_885 + 16384,
        "{t:?}"
    );
    let live_at_peak: u64 = raw.sites.iter().map(|s| s.peak_bytes).sum();
    assert_eq!(live_at_peak, t.peak_bytes, "sites at the peak add up to it");
    let live_at_exit: u64 = raw.sites.iter().map(|s| s.inuse_bytes).sum();
    assert_eq!(live_at_exit, t.inuse_bytes);
    let allocated: u64 = raw.sites.iter().map(|s| s.alloc_bytes).sum();
    assert_eq!(allocated, t.bytes);
    assert!(t.allocs >= 1018, "{t:?}");
    assert!(t.temporary_allocs >= 1000, "{t:?}");
    assert!(t.peak_at_ns > 0 && t.peak_at_ns <= raw.duration_ns, "{t:?}");
    assert!(t.inuse_bytes >= 3000, "{t:?}");

    // Stacks: the entry point in the profiler, then the site's function
    // in the program.
    for s in [temp, thread, peak, leak] {
        assert!(s.frames.len() >= 3, "{s:?}");
        assert!(
            module_path(raw, s.frames[0]).ends_with("libmemkit_profile.so"),
            "{}",
            module_path(raw, s.frames[0])
        );
        assert!(module_path(raw, s.frames[1]).ends_with("/sites"));
    }
    // The histogram counts every allocation once.
    let hist: u64 = raw.histogram.iter().map(|b| b.allocs).sum();
    assert_eq!(hist, t.allocs);
    let b64 = raw.histogram.iter().find(|b| b.max_size == 64).unwrap();
    assert!(b64.allocs >= 1000);
    assert!(!raw.timeline.is_empty());
    assert!(raw.timeline.iter().all(|p| p.t_ns <= raw.duration_ns));
    assert!(raw.overhead.stack_bytes > 0 && raw.overhead.peak_rss_bytes > 0);
}

/// Blocks aligned to 16 B … 64 MiB by posix_memalign, aligned_alloc and
/// memalign are the profiler's blocks to `malloc_usable_size`, `realloc`
/// and `free`: from 8 MiB on, the header in front of the user's bytes lies
/// beyond the first chunk of the core's huge block, and such blocks used
/// to pass for pointers memkit never handed out (usable size 0, realloc
/// null, free ignored: a leak of the whole block).
#[test]
fn blocks_of_every_alignment_are_ours() {
    if !require("blocks_of_every_alignment_are_ours", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-aligned");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let o = profiled(&prog, &["aligned"], &out, "");
    o.assert_success("sites aligned");
    assert!(o.stdout.contains("END aligned"), "{}", o.describe());
    let raws = raws(&out);
    assert_eq!(raws.len(), 1, "{raws:?}");
    let raw = &raws[0].1;
    // One site per entry point (posix_memalign, aligned_alloc, memalign).
    let sites = sites_of_size(raw, 4242);
    assert_eq!(sites.len(), 3, "{sites:#?}");
    for s in sites {
        assert_eq!(s.alloc_objects, 23, "{s:?}");
        assert_eq!((s.inuse_objects, s.inuse_bytes), (0, 0), "{s:?}");
    }
    let copies: Vec<_> = sites_of_size(raw, 5000);
    let n: u64 = copies.iter().map(|s| s.alloc_objects).sum();
    assert_eq!(n, 3 * 23, "{copies:#?}");
    assert!(copies.iter().all(|s| s.inuse_objects == 0), "{copies:#?}");
}

/// Threads recording at once, the first of them holding the state's lock
/// biased when the others come (each revokes it or waits for it): not an
/// event lost or counted twice, and the sites at the peak add up to it.
#[test]
fn concurrent_threads_count_exactly() {
    if !require("concurrent_threads_count_exactly", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-race");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let o = profiled(&prog, &["race"], &out, "");
    o.assert_success("race");
    assert!(o.stdout.contains("END race"), "{}", o.describe());
    let raws = raws(&out);
    assert_eq!(raws.len(), 1, "{raws:?}");
    let raw = &raws[0].1;
    // Each size comes from several stacks (race_main called by main and
    // by a thread's start): their sums.
    let sum = |size: u64| {
        let v = sites_of_size(raw, size);
        assert!(!v.is_empty(), "no site of {size} B");
        let f = |g: fn(&Site) -> u64| v.iter().map(|s| g(s)).sum::<u64>();
        (
            f(|s| s.alloc_objects),
            f(|s| s.alloc_bytes),
            f(|s| s.inuse_objects),
            f(|s| s.peak_objects),
            f(|s| s.temporary),
        )
    };
    assert_eq!(sum(48), (800_001, 800_001 * 48, 0, sum(48).3, 800_001));
    assert!(
        sum(48).3 <= 4,
        "at most one temporary block per thread at the peak"
    );
    assert_eq!(
        sum(2000),
        (28, 56_000, 0, 28, 0),
        "all kept blocks live at the peak"
    );
    let t = &raw.totals;
    let live_at_peak: u64 = raw.sites.iter().map(|s| s.peak_bytes).sum();
    assert_eq!(live_at_peak, t.peak_bytes, "sites at the peak add up to it");
    let live_at_exit: u64 = raw.sites.iter().map(|s| s.inuse_bytes).sum();
    assert_eq!(live_at_exit, t.inuse_bytes);
    let allocated: u64 = raw.sites.iter().map(|s| s.alloc_bytes).sum();
    assert_eq!(allocated, t.bytes);
    let allocs: u64 = raw.sites.iter().map(|s| s.alloc_objects).sum();
    assert_eq!(allocs, t.allocs);
    assert_eq!(t.allocs - t.frees, t.inuse_allocs, "{t:?}");
    assert!(t.peak_bytes >= 56_000 + 48, "{t:?}");
}

/// A fork child writes its own profile: what it allocated, not its
/// parent's sites; the blocks it inherited and freed are counted apart.
#[test]
fn fork_child_profiles_itself() {
    if !require("fork_child_profiles_itself", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-fork");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let o = profiled(&prog, &["fork"], &out, "");
    o.assert_success("fork");
    let raws = raws(&out);
    assert_eq!(raws.len(), 2, "{raws:?}");
    let child_pid: u32 = o
        .stdout
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{}", o.describe()));
    let child = &raws.iter().find(|r| r.1.pid == child_pid).unwrap().1;
    let parent = &raws.iter().find(|r| r.1.pid != child_pid).unwrap().1;
    assert_eq!(child.ppid, parent.pid);

    let p333 = one_site(parent, 333);
    assert_eq!((p333.alloc_objects, p333.inuse_objects), (4, 4));
    assert!(sites_of_size(parent, 555).is_empty());

    assert!(sites_of_size(child, 333).is_empty(), "{:#?}", child.sites);
    let c555 = one_site(child, 555);
    assert_eq!((c555.alloc_objects, c555.inuse_bytes), (2, 1110));
    assert_eq!(child.totals.inherited_frees, 2);
    assert_eq!(parent.totals.inherited_frees, 0);
}

/// An image that replaces itself with `exec` writes no profile (it never
/// exits); the image that finally exits writes one under the same pid.
#[test]
fn exec_profiles_the_image_that_exits() {
    if !require("exec_profiles_the_image_that_exits", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-exec");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let p = prog.to_str().unwrap();
    // The first image execs the second, which execs `sites sites`.
    let o = profiled(&prog, &["exec", p, "exec", p, "sites"], &out, "");
    o.assert_success("exec");
    let raws = raws(&out);
    assert_eq!(raws.len(), 1, "{raws:?}");
    let raw = &raws[0].1;
    assert_eq!(raw.command.get(1).map(String::as_str), Some("sites"));
    assert_eq!(one_site(raw, 100_000).peak_bytes, 1_000_000);
    assert!(
        sites_of_size(raw, 4242).is_empty(),
        "the exec'd images' sites are theirs"
    );
}

/// Sampled mode: per-site figures are unbiased estimates (within a few
/// percent over thousands of samples); totals stay exact.
#[test]
fn sampled_estimates_are_close() {
    if !require("sampled_estimates_are_close", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-sampled");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let o = profiled(&prog, &["sites"], &out, "sample=4096");
    o.assert_success("sites");
    let raws = raws(&out);
    let raw = &raws[0].1;
    assert_eq!(raw.sample_bytes, 4096);
    assert_eq!(raw.object_unit, memkit_profdata::SAMPLED_OBJECT_UNIT);
    assert!(raw.totals.allocs >= 1018);
    assert!(raw.totals.frees <= raw.totals.allocs, "{:?}", raw.totals);
    assert!(raw.totals.bytes >= 1_000_000 + 64_000 + 3885 + 3000);
    // Blocks far larger than the interval are always sampled, at weight 1.
    let peak = one_site(raw, 100_000);
    assert_eq!(peak.alloc_objects, 10 * raw.object_unit);
    assert_eq!(peak.peak_bytes, 1_000_000);
    // 64 000 bytes of 64-byte blocks: ~16 samples, each standing for
    // ~64.5 blocks; the estimate is a whole number of samples.
    let unit = raw.object_unit as f64;
    let w = 1.0 / -(-64.0f64 / 4096.0).exp_m1();
    for s in raw.sites.iter().filter(|s| s.alloc_objects > 0) {
        let samples = s.alloc_objects as f64 / unit / w;
        let per_block = s.alloc_bytes as f64 / (s.alloc_objects as f64 / unit);
        if (per_block - 64.0).abs() < 0.5 {
            assert!((samples - samples.round()).abs() < 0.01, "{s:?}");
            assert!(
                samples >= 1.0 && samples < 60.0,
                "{samples} samples of 64 B"
            );
        }
    }
}

/// A shell ends with `_exit` (no `.fini_array`): it still writes its
/// profile, and so does each program it starts.
#[test]
fn shells_and_their_children_write_profiles() {
    if !require("shells_and_their_children_write_profiles", &["gcc", "sh"]) {
        return;
    }
    let dir = TempDir::new("profile-sh");
    let prog = program(&dir);
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let script = format!("x=1; echo $x; {} sites; true", prog.display());
    let sh = which("sh").unwrap();
    let o = profiled(&sh, &["-c", &script], &out, "");
    o.assert_success("sh");
    assert!(o.stdout.contains("END sites"), "{}", o.describe());
    let raws = raws(&out);
    assert_eq!(raws.len(), 2, "{raws:?}");
    let with_peak: Vec<_> = raws
        .iter()
        .filter(|(_, r)| !sites_of_size(r, 100_000).is_empty())
        .collect();
    assert_eq!(with_peak.len(), 1);
    assert!(with_peak[0].1.exe.ends_with("/sites"));
    assert_eq!(with_peak[0].1.end, "exit");
    // The shell ends with _exit (dash) or exit (bash): either is written.
    let shell = raws
        .iter()
        .find(|(_, r)| !r.exe.ends_with("/sites"))
        .unwrap();
    assert!(
        ["exit", "_exit"].contains(&shell.1.end.as_str()),
        "{}",
        shell.1.end
    );
}

/// A server stopped with SIGTERM (or Ctrl-C's SIGINT) leaves its profile
/// and still dies of the signal.
#[test]
fn a_terminated_server_leaves_its_profile() {
    use std::os::unix::process::ExitStatusExt;
    if !require("a_terminated_server_leaves_its_profile", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-signal");
    let prog = program(&dir);
    for (sig, name) in [(libc::SIGTERM, "TERM"), (libc::SIGINT, "INT")] {
        let out = dir.join(name);
        std::fs::create_dir(&out).unwrap();
        let (mut child, line) = spawn_until_line(
            Command::new(&prog)
                .arg("serve")
                .env("LD_PRELOAD", profile_lib_path())
                .env("MEMKIT_PROFILE_DIR", &out),
        );
        assert_eq!(line.trim(), "READY");
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        let raws = raws(&out);
        assert_eq!(raws.len(), 1, "SIG{name}: {raws:?}");
        let raw = &raws[0].1;
        assert_eq!(raw.end, format!("signal SIG{name}"));
        let leak = one_site(raw, 2500);
        assert_eq!((leak.inuse_objects, leak.inuse_bytes), (6, 15_000));
        assert!(one_site(raw, 64).alloc_objects > 0);
    }
}

/// A stack through a library that was dlclosed before exit keeps naming
/// it: the module table holds the library's path and load bias as they
/// were when the stack was captured.
#[test]
fn stacks_through_a_dlclosed_library() {
    if !require("stacks_through_a_dlclosed_library", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-dlclose");
    let lib = compile_c(
        "check/dlclose_leak.c",
        dir.path(),
        "libdlleak.so",
        &["-DLIB", "-shared", "-fPIC"],
    );
    let prog = compile_c(
        "check/dlclose_leak.c",
        dir.path(),
        "dlclose_leak",
        &["-ldl"],
    );
    let out = dir.join("raw");
    std::fs::create_dir(&out).unwrap();
    let o = profiled(&prog, &[lib.to_str().unwrap()], &out, "");
    o.assert_success("dlclose_leak");
    assert!(o.stdout.contains("END dlclose"), "{}", o.describe());
    let raws = raws(&out);
    let raw = &raws[0].1;
    // (dlopen itself allocates 72-byte blocks too.)
    let through: Vec<_> = sites_of_size(raw, 72)
        .into_iter()
        .filter(|s| module_path(raw, s.frames[1]).ends_with("/libdlleak.so"))
        .collect();
    assert_eq!(through.len(), 1, "{:#?} {:#?}", raw.sites, raw.modules);
    assert_eq!(through[0].inuse_objects, 1);
    assert!(module_path(raw, through[0].frames[2]).ends_with("/dlclose_leak"));
}

/// glibc's introspection under the profiler is the core's, as under
/// libmemkit.so (before, the profiler exported only `malloc_trim`, and
/// glibc's `mallinfo2`, `malloc_stats` and `malloc_info` answered for a
/// heap the program never used: zeros).
#[test]
fn introspection_is_the_cores() {
    if !require("introspection_is_the_cores", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("profile-introspect");
    let prog = compile_c(
        "check/introspect.c",
        dir.path(),
        "introspect",
        &["-O2", "-Wno-deprecated-declarations"],
    );
    let out = dir.path().join("raw");
    std::fs::create_dir_all(&out).unwrap();
    let o = profiled(&prog, &[], &out, "");
    assert!(o.status.success(), "{}", o.describe());
    let live: u64 = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("LIVE_DELTA "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no LIVE_DELTA line\n{}", o.describe()));
    // Block sizes: 1000 blocks of 100 bytes take at least 100,000.
    assert!((100_000..200_000).contains(&live), "{}", o.describe());
    for line in [
        "AFTER_FREE 0",
        "MALLOPT 1 0",
        "INFO 0",
        "INFO_INUSE 1",
        "INFO_BAD -1",
    ] {
        assert!(o.stdout.contains(line), "{line}\n{}", o.describe());
    }
    assert!(o.stderr.contains(" malloc_stats (pid "), "{}", o.describe());
}

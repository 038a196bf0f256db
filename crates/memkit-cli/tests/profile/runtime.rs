//! `memkit profile` with the real runtime (libmemkit_profile.so) on
//! programs with known allocation sites (crates/memkit-tests/c/profile/
//! sites.c: a temporary churn site, a site holding 1,000,000 bytes at the
//! peak, a leaking site, a site in a second thread): the pprof profiles,
//! decoded again with the CLI's own profile.proto messages, and the
//! summary must carry exactly those figures under the functions' names;
//! a fork child gets its own directory, an exec'd image is the program;
//! C++ and Rust names are demangled; a library dlclosed before exit still
//! names its functions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use memkit_tests::{compile_c, compile_with, profile_lib_path, require, run, TempDir};

use super::proto::{self, Profile};
use super::summary;

fn memkit(cwd: &Path) -> Command {
    super::memkit(cwd, profile_lib_path())
}

/// `memkit profile -o DIR -- args`, which must exit with `status`.
fn profile(t: &TempDir, dir: &str, args: &[&str], status: i32) -> (PathBuf, String) {
    let out = t.join(dir);
    let mut cmd = memkit(t.path());
    cmd.args(["profile", "-o"]).arg(&out).arg("--").args(args);
    let o = run(&mut cmd, Duration::from_secs(120));
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert_eq!(o.status.code(), Some(status), "{}\n{}", o.repro, o.stderr);
    (out, o.stderr)
}

fn load(path: &Path) -> Profile {
    proto::decode(&fs::read(path).unwrap()).unwrap()
}

/// The values of the one sample whose stack names `function`.
fn values(p: &Profile, function: &str) -> Vec<i64> {
    let hits = p.values_where(|n| n == function);
    assert_eq!(hits.len(), 1, "samples naming {function}: {hits:?}");
    hits[0].clone()
}

#[test]
fn known_sites_come_out_exact() {
    if !require("known_sites_come_out_exact", &["gcc"]) {
        return;
    }
    let t = TempDir::new("profile-rt-sites");
    let prog = compile_c("profile/sites.c", t.path(), "sites", &["-O0"]);
    let (out, stderr) = profile(&t, "out", &[prog.to_str().unwrap()], 0);

    let exit = load(&out.join("profile.pb.gz"));
    let types: Vec<&str> = exit
        .sample_type
        .iter()
        .map(|v| exit.str(v.r#type))
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(exit.string_table[0], "");
    // [allocated, bytes, in use at exit, bytes]
    assert_eq!(values(&exit, "temp_site"), [1000, 64_000, 0, 0]);
    assert_eq!(values(&exit, "thread_site"), [5, 3885, 0, 0]);
    assert_eq!(values(&exit, "peak_site"), [10, 1_000_000, 0, 0]);
    assert_eq!(values(&exit, "leak_site"), [3, 3000, 3, 3000]);
    // The same, in use = at the peak.
    let peak = load(&out.join("peak.pb.gz"));
    assert_eq!(values(&peak, "temp_site"), [1000, 64_000, 0, 0]);
    assert_eq!(values(&peak, "thread_site"), [5, 3885, 5, 3885]);
    assert_eq!(values(&peak, "peak_site"), [10, 1_000_000, 10, 1_000_000]);
    assert_eq!(values(&peak, "leak_site"), [3, 3000, 0, 0]);
    // Function, file and line; the leaf is the entry point, malloc; the
    // executable is the first mapping (pprof's main binary).
    let f = exit
        .function
        .iter()
        .find(|f| exit.str(f.name) == "peak_site")
        .unwrap();
    assert!(exit.str(f.filename).ends_with("sites.c"));
    let line = exit
        .location
        .iter()
        .flat_map(|l| &l.line)
        .find(|l| l.function_id == f.id)
        .unwrap();
    assert!(line.line > 0);
    for (names, s) in exit.stacks().iter().zip(&exit.sample) {
        if names.iter().any(|n| n.ends_with("_site")) {
            assert_eq!(
                names.last().map(String::as_str),
                Some("malloc"),
                "{names:?}"
            );
            assert!(s.location_id.len() >= 3);
        }
    }
    assert_eq!(exit.str(exit.mapping[0].filename), prog.to_str().unwrap());

    let s = summary(&out);
    assert_eq!(s["top_at_peak"][0]["bytes"], 1_000_000);
    assert_eq!(s["top_at_peak"][0]["objects"], 10);
    assert!(
        s["top_at_peak"][0]["site"]
            .as_str()
            .unwrap()
            .starts_with("peak_site (sites.c:"),
        "{s}"
    );
    assert!(s["temporary_allocs"].as_u64().unwrap() >= 1000);
    assert!(s["peak_bytes"].as_u64().unwrap() >= 1_003_885);
    let leaks = s["top_leaks"].as_array().unwrap();
    let leak = leaks
        .iter()
        .find(|l| l["site"].as_str().unwrap().starts_with("leak_site"))
        .unwrap();
    assert_eq!(
        (leak["bytes"].as_u64(), leak["objects"].as_u64()),
        (Some(3000), Some(3))
    );
    assert!(stderr.contains("peak_site (sites.c:"), "{stderr}");
}

#[test]
fn a_fork_child_and_an_exec_get_their_own_profiles() {
    if !require("fork and exec profiles", &["gcc"]) {
        return;
    }
    let t = TempDir::new("profile-rt-fork");
    let prog = compile_c("profile/sites.c", t.path(), "sites", &["-O0"]);
    let p = prog.to_str().unwrap();
    let (out, stderr) = profile(&t, "fork", &[p, "fork"], 0);
    let child: Vec<PathBuf> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.is_dir() && d.file_name().unwrap() != "raw")
        .collect();
    assert_eq!(child.len(), 1, "{child:?}");
    let c = load(&child[0].join("profile.pb.gz"));
    assert_eq!(values(&c, "thread_site"), [2, 1110, 2, 1110]);
    let parent = load(&out.join("profile.pb.gz"));
    assert_eq!(values(&parent, "leak_site"), [4, 1332, 4, 1332]);
    assert!(stderr.contains("other processes profiled:"), "{stderr}");
    assert!(stderr.contains(&child[0].display().to_string()), "{stderr}");

    // exec: the image that exits is the program's profile (the runtime
    // writes none for the images an exec replaced).
    let (out, _) = profile(&t, "exec", &[p, "exec", p, "sites"], 0);
    let top = load(&out.join("profile.pb.gz"));
    assert_eq!(values(&top, "peak_site"), [10, 1_000_000, 0, 0]);
    assert_eq!(summary(&out)["command"][1], "sites");
    let dirs = fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, 1, "raw/ only");
}

#[test]
fn a_shell_and_its_children() {
    if !require("profile sh -c", &["gcc", "sh"]) {
        return;
    }
    let t = TempDir::new("profile-rt-sh");
    let prog = compile_c("profile/sites.c", t.path(), "sites", &["-O0"]);
    let script = format!("{} sites; {} fork", prog.display(), prog.display());
    let (out, stderr) = profile(&t, "out", &["sh", "-c", &script], 0);
    // sh at the top; each sites process (and the fork child) apart.
    let dirs: Vec<PathBuf> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.is_dir() && d.file_name().unwrap() != "raw")
        .collect();
    assert!(dirs.len() >= 3, "{dirs:?}\n{stderr}");
    let peaks = dirs
        .iter()
        .filter(|d| {
            let p = load(&d.join("peak.pb.gz"));
            p.stacks()
                .iter()
                .any(|s| s.iter().any(|n| n == "peak_site"))
        })
        .count();
    assert_eq!(peaks, 1);
    assert!(summary(&out)["exe"].as_str().unwrap().ends_with("sh"));
}

#[test]
fn cxx_names_are_demangled_and_dlclosed_libraries_named() {
    if !require("profile C++ and dlclose", &["gcc", "g++"]) {
        return;
    }
    let t = TempDir::new("profile-rt-cxx");
    let lib_src = t.join("plugin.c");
    fs::write(
        &lib_src,
        "#include <stdlib.h>\n\
         __attribute__((noipa)) void *plugin_site(void) { return malloc(5151); }\n",
    )
    .unwrap();
    let lib = compile_with(
        "gcc",
        &lib_src,
        &t.join("libplugin.so"),
        &["-shared", "-fPIC", "-O0"],
    );
    let src = t.join("shapes.cc");
    fs::write(
        &src,
        format!(
            "#include <dlfcn.h>\n#include <cstdio>\n\
             namespace shapes {{ struct Widget {{ int v[8]; }};\n\
             __attribute__((noipa)) Widget *make(int n) {{ return new Widget[n]; }} }}\n\
             int main() {{\n\
               shapes::Widget *w = shapes::make(3); (void)w;\n\
               void *h = dlopen(\"{}\", RTLD_NOW); if (!h) return 3;\n\
               void *(*site)(void) = (void *(*)(void))dlsym(h, \"plugin_site\");\n\
               void *p = site(); (void)p;\n\
               dlclose(h); std::puts(\"done\"); return 0; }}\n",
            lib.display()
        ),
    )
    .unwrap();
    let prog = compile_with("g++", &src, &t.join("shapes"), &["-O0", "-ldl"]);
    let (out, _) = profile(&t, "out", &[prog.to_str().unwrap()], 0);
    let p = load(&out.join("profile.pb.gz"));
    assert_eq!(values(&p, "shapes::make(int)"), [1, 96, 1, 96]);
    let stack = p
        .stacks()
        .into_iter()
        .find(|s| s.iter().any(|n| n == "shapes::make(int)"))
        .unwrap();
    // libstdc++'s operator new[] reaches malloc through operator new.
    assert!(
        stack.iter().any(|n| n == "operator new(unsigned long)"),
        "{stack:?}"
    );
    let s = summary(&out);
    let site = s["top_leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["bytes"] == 96)
        .unwrap();
    assert!(
        site["site"]
            .as_str()
            .unwrap()
            .starts_with("shapes::make(int) (shapes.cc:"),
        "{site}"
    );
    assert_eq!(values(&p, "plugin_site"), [1, 5151, 1, 5151]);
    let plugin = p
        .mapping
        .iter()
        .any(|m| p.str(m.filename).ends_with("libplugin.so"));
    assert!(plugin, "the unloaded library is a mapping");
}

/// Also: a Rust program runs at all. Its runtime start calls
/// pthread_getattr_np, which allocates while holding the thread's lock;
/// the profiler used to ask it for the stack's end from that allocation
/// and hung forever.
#[test]
fn rust_names_are_demangled() {
    if !require("profile Rust names", &["rustc"]) {
        return;
    }
    let t = TempDir::new("profile-rt-rust");
    let prog = memkit_tests::compile_rust("rsites.rs", t.path(), "rsites");
    let (out, _) = profile(&t, "out", &[prog.to_str().unwrap()], 0);
    let p = load(&out.join("profile.pb.gz"));
    // Legacy or v0 mangling alike: the path without the hash, as rustc's
    // own panics print it.
    let hits = p.values_where(|n| n == "rsites::shapes::keep_bytes");
    assert_eq!(hits, [vec![1, 4242, 1, 4242]], "{:?}", p.stacks());
    // A spawned thread (std asks pthread_getattr_np for its stack too).
    let hits = p.values_where(|n| n == "rsites::shapes::churn");
    assert_eq!(hits, [vec![1, 1234, 0, 0]], "{:?}", p.stacks());
    for stack in p.stacks() {
        for name in stack {
            assert!(
                !name.starts_with("_ZN") && !name.starts_with("_R"),
                "mangled name left: {name}"
            );
        }
    }
}

#[test]
fn a_server_stopped_by_a_signal_to_memkit_keeps_its_profile() {
    if !require("profile a stopped server", &["gcc"]) {
        return;
    }
    let t = TempDir::new("profile-rt-serve");
    let prog = compile_c("profile/sites.c", t.path(), "sites", &["-O0"]);
    let out = t.join("out");
    let (child, line) = memkit_tests::spawn_until_line(
        memkit(t.path())
            .args(["profile", "-o"])
            .arg(&out)
            .arg("--")
            .arg(&prog)
            .arg("serve")
            .stderr(std::process::Stdio::piped()),
    );
    assert_eq!(line, "READY\n");
    // Sent to memkit alone: passed on to the program, whose runtime writes
    // its profile before the signal ends it; memkit makes the files.
    // SAFETY: kill with a pid of our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("killed by signal 15 (SIGTERM)"), "{stderr}");
    let p = load(&out.join("profile.pb.gz"));
    assert_eq!(values(&p, "leak_site"), [6, 15_000, 6, 15_000]);
    assert!(summary(&out)["total_allocs"].as_u64().unwrap() >= 6);
}

#[test]
fn the_signal_handlers_are_not_the_programs_to_see() {
    if !require("profile signal actions", &["gcc"]) {
        return;
    }
    let t = TempDir::new("profile-rt-sigactions");
    let prog = compile_c("profile/signal_actions.c", t.path(), "sigactions", &["-O0"]);
    let out = t.join("out");
    let mut cmd = memkit(t.path());
    cmd.args(["profile", "-o"]).arg(&out).arg("--").arg(&prog);
    let o = run(&mut cmd, Duration::from_secs(120));
    assert_eq!(o.stdout, "all default\n", "{}\n{}", o.repro, o.stderr);
    // SIG_DFL set back by the program is still the profiler's handler
    // underneath: the profile is written, and SIGTERM ends the program.
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{}", o.stderr);
    let p = load(&out.join("profile.pb.gz"));
    assert_eq!(values(&p, "leak_site"), [2, 2468, 2, 2468]);
}

//! `memkit shm ls/rm` and the shared-heap labels of `memkit maps`, end to
//! end: heaps made by `crates/memkit-tests/c/shm.c` (linked with
//! libmemkit.so) in processes that stay alive, exit without closing, or
//! are SIGKILLed. Every heap and file is named after the test and the pid,
//! every command is limited with `--prefix` to them (other tests and
//! other users' heaps in /dev/shm are never touched), and all are removed
//! at the end.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use memkit_tests::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

fn memkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memkit"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memkit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn program(dir: &TempDir) -> PathBuf {
    let flags = memkit_link_flags(lib_path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    compile_c("shm.c", dir.path(), "shm", &flags)
}

/// The prefix of this test's objects, and a cleanup of them.
struct Prefix(String);

impl Prefix {
    fn new(tag: &str) -> Prefix {
        Prefix(format!("/memkit-clitest-{tag}-{}-", std::process::id()))
    }
    fn name(&self, n: &str) -> String {
        format!("{}{n}", self.0)
    }
    fn path(&self, n: &str) -> PathBuf {
        PathBuf::from(format!("/dev/shm{}", self.name(n)))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let base = &self.0[1..];
        for e in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(base) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn ok(prog: &Path, args: &[&str]) {
    run_ok(
        Command::new(prog).args(args),
        T,
        &format!("shm {}", args.join(" ")),
    );
}

/// A program mode that prints "ready" and stays.
fn start(prog: &Path, args: &[&str]) -> Child {
    let (child, line) = spawn_until_line(Command::new(prog).args(args).stderr(Stdio::inherit()));
    assert_eq!(line.trim(), "ready", "shm {args:?}");
    child
}

fn kill9(mut c: Child) {
    // SAFETY: kill of our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    assert_eq!(c.wait().unwrap().signal(), Some(libc::SIGKILL));
}

fn ls_json(prefix: &Prefix) -> Value {
    let o = memkit(&["shm", "ls", "--json", "--prefix", &prefix.0]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

fn heap<'a>(j: &'a Value, name: &str) -> Option<&'a Value> {
    j["heaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
}

/// A heap whose only attacher was SIGKILLed is listed as stale (0 alive,
/// 1 dead) and `rm --stale` removes it; a heap a live process holds open
/// is `in use` and stays; a file that is not a heap is neither listed nor
/// removed, and `rm NAME` refuses it.
#[test]
fn stale_heaps_are_listed_and_removed_live_ones_and_other_files_stay() {
    if !require("stale_heaps_are_listed_and_removed", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("cli-shm-stale");
    let prog = program(&dir);
    let p = Prefix::new("stale");
    let (dead, live) = (p.name("dead"), p.name("live"));
    ok(&prog, &["create", &dead, "1048576"]);
    ok(&prog, &["create", &live, "4194304"]);
    // Attached, then killed without closing: its slot stays, dead.
    kill9(start(&prog, &["churn", &dead, "1"]));
    let holder = start(&prog, &["hold", &live]);
    let holder_pid = holder.id();
    let plain = p.path("plain");
    std::fs::write(&plain, vec![0x5au8; 8192]).unwrap();
    // Memkit's magic but nothing else: refused, listed as such.
    let mut fake = b"MEMKITSH".to_vec();
    fake.resize(1 << 20, 0);
    std::fs::write(p.path("fake"), &fake).unwrap();

    let j = ls_json(&p);
    let d = heap(&j, &dead).unwrap_or_else(|| panic!("{dead} listed: {j}"));
    assert_eq!(
        (d["alive"].as_u64(), d["dead"].as_u64()),
        (Some(0), Some(1)),
        "{d}"
    );
    assert_eq!(d["stale"], true);
    assert_eq!(d["size"], 1048576);
    let l = heap(&j, &live).unwrap();
    assert_eq!(l["alive"], 1, "{l}");
    assert_eq!(l["stale"], false);
    assert_eq!(l["attached"][0]["pid"], holder_pid);
    assert_eq!(l["creator"]["comm"], "shm");
    let names: Vec<&str> = j["heaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [dead.as_str(), live.as_str()], "only the heaps: {j}");
    assert_eq!(j["refused"][0]["name"], p.name("fake").as_str(), "{j}");

    // The table says the same.
    let o = memkit(&["shm", "ls", "--prefix", &p.0]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    let row = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{n} in {out}"))
            .to_owned()
    };
    assert!(row(&dead).contains("0 alive, 1 dead") && row(&dead).ends_with("stale"));
    assert!(row(&live).contains("1 alive, 0 dead") && row(&live).ends_with("in use"));
    assert!(row(&live).contains("4.0 MiB"), "{}", row(&live));
    assert!(!out.contains("plain"), "{out}");

    // Looking registered nothing: the live heap still has one attacher.
    assert_eq!(
        heap(&ls_json(&p), &live).unwrap()["attached"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let o = memkit(&["shm", "rm", "--stale", "--prefix", &p.0]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!("removed {dead} (stale: 1 dead attached process(es))\n")
    );
    assert!(!p.path("dead").exists());
    assert!(p.path("live").exists(), "a heap in use is not stale");
    assert!(plain.exists(), "a file that is not a heap is left");
    assert_eq!(std::fs::read(&plain).unwrap(), vec![0x5au8; 8192]);

    // By name: a file that is not a heap is refused, exit 1.
    let o = memkit(&["shm", "rm", &p.name("plain")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!(
            "memkit: shm: rm: refusing to remove {}: it is not a memkit heap\n",
            plain.display()
        )
    );
    assert!(plain.exists());
    // Missing and bad names: one line each, exit 1, the good one removed.
    let o = memkit(&["shm", "rm", &p.name("nothing"), "a/b", &live]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.contains("no such shared-memory object"), "{err}");
    assert!(
        err.contains("\"a/b\" is not a shared-memory object name"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    assert_eq!(
        text(&o.stdout),
        format!("removed {live} (1 attached process(es) keep using it until they close it)\n")
    );
    assert!(!p.path("live").exists());
    kill9(holder);
}

/// Usage errors are clap's (status 2): rm without names or --stale, names
/// with --stale.
#[test]
fn rm_usage_errors() {
    let o = memkit(&["shm", "rm"]);
    assert_eq!(o.status.code(), Some(2));
    let o = memkit(&["shm", "rm", "--stale", "/x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = memkit(&["shm", "ls", "--prefix", "/memkit-clitest-none-"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "no memkit heaps in /dev/shm\n");
}

/// `memkit maps` labels a process's heap mappings by their header: by
/// name, read-only, anonymous (memfd), and as removed once the name is
/// unlinked.
#[test]
fn maps_labels_shared_heaps() {
    if !require("maps_labels_shared_heaps", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("cli-shm-maps");
    let prog = program(&dir);
    let p = Prefix::new("maps");
    let name = p.name("heap");
    ok(&prog, &["create", &name, "2097152"]);
    let holder = start(&prog, &["hold", &name]);
    let pid = holder.id().to_string();
    let o = memkit(&["maps", &pid, "--json", "--fast"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = j["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"].as_str().is_some_and(|p| p.ends_with(&name)))
        .unwrap_or_else(|| panic!("{name} mapped: {j}"));
    assert_eq!(m["category"], "shm");
    assert_eq!(m["label"], format!("memkit shared heap {name}"));
    assert_eq!(m["size_kib"], 2048);

    // A read-only handle and an anonymous heap, in another process.
    let viewer = start(&prog, &["views", &name]);
    let o = memkit(&["maps", &viewer.id().to_string(), "--json", "--fast"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let labels: Vec<&str> = j["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["category"] == "shm")
        .filter_map(|m| m["label"].as_str())
        .collect();
    assert!(
        labels.contains(&format!("memkit shared heap {name}, read-only").as_str()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"memkit shared heap, anonymous (memfd)"),
        "{labels:?}"
    );
    kill9(viewer);

    // Unlinked while mapped.
    std::fs::remove_file(p.path("heap")).unwrap();
    let o = memkit(&["maps", &pid]);
    assert!(
        text(&o.stdout).contains(&format!("(memkit shared heap {name}, removed)")),
        "{}",
        text(&o.stdout)
    );
    kill9(holder);
}

/// A heap another user cannot read is reported on stderr and not listed,
/// and `ls` still succeeds; `rm` of it by that user is refused (it cannot
/// be checked to be a heap) and leaves it. Needs root to become uid 65534.
#[test]
fn unreadable_heaps_are_reported_without_failing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("unreadable_heaps_are_reported_without_failing: not root; not checked");
        return;
    }
    if !require("unreadable_heaps_are_reported_without_failing", &["gcc"]) {
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let dir = TempDir::new("cli-shm-unreadable");
    let prog = program(&dir);
    let p = Prefix::new("unreadable");
    let name = p.name("private");
    ok(&prog, &["create", &name, "1048576"]);
    let as_nobody = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_memkit"))
            .args(args)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
    };
    let o = match as_nobody(&["shm", "ls", "--prefix", &p.0]) {
        Ok(o) if o.status.code() != Some(126) => o,
        _ => {
            eprintln!(
                "unreadable_heaps_are_reported_without_failing: memkit not executable by uid 65534"
            );
            return;
        }
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "no memkit heaps in /dev/shm\n");
    assert_eq!(
        text(&o.stderr),
        format!(
            "memkit: shm: {}: cannot read: Permission denied (not listed: it may be a memkit heap)\n",
            p.path("private").display()
        )
    );
    let o = as_nobody(&["shm", "rm", &name]).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("refusing to remove what cannot be checked"),
        "{}",
        text(&o.stderr)
    );
    assert!(p.path("private").exists());
    // Root reads it: listed, stale (its creator closed it).
    let j = ls_json(&p);
    assert_eq!(heap(&j, &name).unwrap()["stale"], true, "{j}");
}

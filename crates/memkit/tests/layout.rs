//! memkit::layout against processes with a known layout: a C program that
//! creates one region of each kind (tests/layout-fixtures/known_layout.c),
//! checked category by category; totals against smaps_rollup; bad inputs.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use memkit::layout::{self, Category, LayoutError, Options, Target};

const KIB: u64 = 1024;

fn tmp_dir() -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("layout-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d
}

/// Compiles a fixture once per test run.
fn compile(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/layout-fixtures")
        .join(format!("{name}.c"));
    let out = tmp_dir().join(name);
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc must be installed to build the layout fixtures");
    assert!(status.success(), "gcc failed on {}", src.display());
    built.insert(name.to_owned(), out.clone());
    out
}

/// A running fixture: killed and reaped on drop.
struct Fixture {
    child: Child,
    stdin: Option<ChildStdin>,
    values: HashMap<String, u64>,
}

impl Fixture {
    fn start(mut cmd: Command) -> Fixture {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fixture");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready "), "fixture said {line:?}");
        let values = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let n = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => v.parse(),
                };
                (
                    k.to_owned(),
                    n.unwrap_or_else(|_| panic!("bad value {k}={v}")),
                )
            })
            .collect();
        Fixture {
            child,
            stdin,
            values,
        }
    }

    fn known_layout() -> Fixture {
        let exe = compile("known_layout");
        // One file per fixture: tests run in parallel, and truncating a file
        // another fixture has mapped would kill it with SIGBUS.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = tmp_dir().join(format!("mapped-file-{}-{n}", std::process::id()));
        let mut cmd = Command::new(exe);
        cmd.arg(file);
        Fixture::start(cmd)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get(&self, key: &str) -> u64 {
        self.values[key]
    }

    /// Lets the fixture exit normally and waits for it.
    fn finish(mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"exit\n");
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "fixture exited with {status}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rollup(pid: u32) -> HashMap<String, u64> {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((
                k.to_owned(),
                v.trim().strip_suffix("kB")?.trim().parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn known_layout_category_by_category() {
    let fx = Fixture::known_layout();
    let l = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
    let exe = l.exe.clone().expect("exe link readable");
    let at = |key: &str| {
        let addr = fx.get(key);
        l.mapping_at(addr)
            .unwrap_or_else(|| panic!("no mapping holds {key} = {addr:#x}"))
    };
    let dump = || l.render_table(layout::SortOrder::Address);

    // data: the initialised array, in the executable's data.
    let m = at("init");
    assert_eq!(m.category, Category::Data, "{m:?}\n{}", dump());
    assert_eq!(m.object.as_deref(), Some(exe.as_str()));
    assert!(l.category(Category::Data).stats.size_kib * KIB >= fx.get("init_size"));
    assert!(l.category(Category::Data).stats.rss_kib * KIB >= fx.get("init_size"));

    // bss: the zeroed array; the middle of it is in the anonymous mapping.
    let m = at("zero");
    assert!(
        matches!(m.category, Category::Bss | Category::Data),
        "{m:?}"
    );
    let m = l
        .mapping_at(fx.get("zero") + fx.get("zero_size") / 2)
        .unwrap();
    assert_eq!(m.category, Category::Bss, "{m:?}\n{}", dump());
    assert_eq!(m.object.as_deref(), Some(exe.as_str()));
    let bss = l.category(Category::Bss).stats;
    assert!(
        bss.size_kib * KIB >= fx.get("zero_size") - 4096,
        "bss {bss:?}"
    );
    assert!(
        bss.rss_kib * KIB >= fx.get("zero_size") - 4096,
        "bss {bss:?}"
    );

    // The program's ELF sizes, as `size` would report them.
    let obj = l
        .objects
        .iter()
        .find(|o| o.main_program)
        .expect("main program object");
    let (text, data, bss_bytes) = obj.elf_sizes.expect("ELF headers read");
    assert!(text > 0);
    assert!(data >= fx.get("init_size"), "data {data}");
    assert!(bss_bytes >= fx.get("zero_size"), "bss {bss_bytes}");

    // heap: the sbrk memory, and the program break around it.
    assert_eq!(at("sbrk").category, Category::Heap);
    assert!(l.category(Category::Heap).stats.size_kib * KIB >= fx.get("sbrk_size"));
    assert!(l.brk.start <= fx.get("sbrk"));
    assert!(l.brk.current >= fx.get("sbrk") + fx.get("sbrk_size"));

    // anon, file, shm.
    let m = at("anon");
    assert_eq!(m.category, Category::Anon, "{m:?}");
    assert!(m.size_kib() * KIB >= fx.get("anon_size"));
    let m = at("file");
    assert_eq!(m.category, Category::File, "{m:?}");
    assert!(m.path.as_deref().unwrap().contains("mapped-file-"), "{m:?}");
    assert_eq!(m.size_kib() * KIB, fx.get("file_size"));
    let m = at("shm");
    assert_eq!(m.category, Category::Shm, "{m:?}");
    assert!(
        m.path
            .as_deref()
            .unwrap()
            .starts_with("/dev/shm/memkit-layout-test-"),
        "{m:?}"
    );
    assert_eq!(m.size_kib() * KIB, fx.get("shm_size"));

    // thread_stack: exactly the size given to pthread_attr_setstacksize,
    // found from the thread's stack pointer.
    let m = at("thread_local");
    assert_eq!(m.category, Category::ThreadStack, "{m:?}\n{}", dump());
    assert_eq!(m.size_kib() * KIB, fx.get("stack_size"), "{m:?}");
    assert_eq!(l.threads.len(), 2);
    let t = &l.threads[1];
    assert_eq!(t.stack, Some((m.start, m.end)), "{t:?}");
    assert!(
        m.label
            .as_deref()
            .unwrap()
            .contains(&format!("thread {}", t.tid)),
        "{m:?}"
    );
    // Its guard page, below it.
    let guard = l.mapping_at(m.start - 1).unwrap();
    assert_eq!(
        (guard.category, guard.perms.as_str()),
        (Category::Other, "---p"),
        "{guard:?}"
    );

    // stack: the main thread's, and the rest of the categories.
    let stacks: Vec<_> = l.mappings_of(Category::Stack).collect();
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].path.as_deref(), Some("[stack]"));
    assert!(stacks[0].contains(l.start_stack));
    assert_eq!(l.threads[0].tid, fx.pid());
    assert!(l
        .mappings_of(Category::Text)
        .any(|m| m.object.as_deref() == Some(exe.as_str())));
    assert!(l
        .mappings_of(Category::Text)
        .any(|m| m.object.as_deref().is_some_and(|o| o.contains("libc"))));
    assert!(l
        .mappings_of(Category::Other)
        .any(|m| m.path.as_deref() == Some("[vdso]")));
    assert!(l.memkit.is_none());
    fx.finish();
}

#[test]
fn totals_match_smaps_rollup() {
    let fx = Fixture::known_layout();
    // PSS of shared pages changes whenever another process maps or unmaps
    // them (other tests start fixtures in parallel): compare a layout with
    // the rollup read just before and after it, once those two agree.
    let mut tries = 0;
    let (l, r) = loop {
        let before = rollup(fx.pid());
        let l = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
        let after = rollup(fx.pid());
        tries += 1;
        if before == after || tries == 50 {
            break (l, after);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(l.consistent, "{:?}", l.notes);
    assert_eq!(l.totals.stats.rss_kib, r["Rss"]);
    assert_eq!(l.totals.stats.pss_kib, r["Pss"]);
    assert_eq!(l.totals.stats.swap_kib, r["Swap"]);
    assert_eq!(l.totals.stats.private_dirty_kib, r["Private_Dirty"]);
    let sum = l.mappings_sum.unwrap();
    assert_eq!(sum.rss_kib, r["Rss"]);
    // The kernel rounds each mapping's PSS down to a KiB, the rollup once.
    assert!(
        sum.pss_kib <= r["Pss"] && r["Pss"] - sum.pss_kib <= l.totals.mappings,
        "{sum:?} vs {r:?}"
    );
    // The categories add up to the mappings.
    let (mut maps, mut size, mut rss) = (0, 0, 0);
    for c in Category::ALL {
        let t = l.category(c);
        maps += t.mappings;
        size += t.stats.size_kib;
        rss += t.stats.rss_kib;
    }
    assert_eq!(
        (maps, size, rss),
        (l.totals.mappings, l.totals.stats.size_kib, sum.rss_kib)
    );
    assert_eq!(size, l.mappings.iter().map(|m| m.size_kib()).sum::<u64>());
}

#[test]
fn fast_mode_has_sizes_but_no_per_mapping_residency() {
    let fx = Fixture::known_layout();
    let full = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
    let fast = layout::read(Target::Pid(fx.pid()), &Options { fast: true }).unwrap();
    assert!(fast.fast && fast.mappings_sum.is_none());
    assert!(fast.mappings.iter().all(|m| m.stats.is_none()));
    assert_eq!(fast.mappings.len(), full.mappings.len());
    for c in Category::ALL {
        assert_eq!(
            fast.category(c).stats.size_kib,
            full.category(c).stats.size_kib,
            "{c}"
        );
        assert_eq!(fast.category(c).stats.rss_kib, 0, "{c}");
    }
    assert_eq!(fast.totals.stats.rss_kib, rollup(fx.pid())["Rss"]);
    let j: serde_json::Value = serde_json::from_str(&fast.to_json()).unwrap();
    assert!(j["mappings"][0]["rss_kib"].is_null());
    assert!(j["categories"]["data"]["rss_kib"].is_null());
    assert!(j["totals"]["rss_kib"].is_u64());
}

#[test]
fn json_schema() {
    let fx = Fixture::known_layout();
    let l = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
    let j: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["pid"], fx.pid());
    assert!(j["command"].as_str().unwrap().contains("known_layout"));
    for k in ["start", "current"] {
        assert!(j["brk"][k].as_str().unwrap().starts_with("0x"));
    }
    let cats = j["categories"].as_object().unwrap();
    let names: Vec<&str> = cats.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = Category::ALL.iter().map(|c| c.name()).collect();
    expected.sort_unstable();
    let mut names_sorted = names.clone();
    names_sorted.sort_unstable();
    assert_eq!(names_sorted, expected);
    for (name, c) in cats {
        for k in ["size_kib", "rss_kib", "pss_kib", "swap_kib", "mappings"] {
            assert!(c[k].is_u64(), "categories.{name}.{k}");
        }
    }
    for k in [
        "size_kib",
        "rss_kib",
        "pss_kib",
        "swap_kib",
        "private_dirty_kib",
        "locked_kib",
    ] {
        assert!(j["totals"][k].is_u64(), "totals.{k}");
    }
    let maps = j["mappings"].as_array().unwrap();
    assert_eq!(maps.len(), l.mappings.len());
    for m in maps {
        for k in ["start", "end", "perms", "category"] {
            assert!(m[k].is_string(), "{k} in {m}");
        }
        for k in [
            "size_kib",
            "rss_kib",
            "pss_kib",
            "swap_kib",
            "shared_clean_kib",
            "private_dirty_kib",
        ] {
            assert!(m[k].is_u64(), "{k} in {m}");
        }
        assert!(m["path"].is_string() || m["path"].is_null());
        assert!(m["object"].is_string() || m["object"].is_null());
        assert!(cats.contains_key(m["category"].as_str().unwrap()));
    }
    let shm = maps.iter().find(|m| m["category"] == "shm").unwrap();
    assert!(shm["path"].as_str().unwrap().contains("/dev/shm/"));
    assert_eq!(j["threads"].as_array().unwrap().len(), 2);
    assert_eq!(j["memkit"]["runs_on_memkit"], false);
}

#[test]
fn svg_picture() {
    let fx = Fixture::known_layout();
    let l = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
    let svg = l.to_svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for c in Category::ALL {
        assert!(
            svg.contains(&format!(">{}</text>", c.name())),
            "legend lacks {c}"
        );
    }
    assert!(svg.contains("grows up ↑ (brk)") && svg.contains("grows down ↓"));
    assert!(svg.contains("known_layout data"));
    // Balanced elements (a cheap well-formedness check).
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    fs::write(tmp_dir().join("known_layout.svg"), svg).unwrap();
}

#[test]
fn read_self() {
    let l = layout::read(Target::SelfProcess, &Options::default()).unwrap();
    assert_eq!(l.pid, std::process::id());
    assert!(!l.threads.is_empty() && l.threads[0].tid == l.pid);
    // libtest runs each test on a thread of its own: this stack is a
    // thread_stack (or the main stack when run on the main thread).
    let local = 0u8;
    let here = l.mapping_at(&local as *const u8 as u64).unwrap();
    assert!(
        matches!(here.category, Category::ThreadStack | Category::Stack),
        "{here:?}"
    );
    assert!(l.category(Category::Text).mappings > 0);
}

#[test]
fn no_such_process() {
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let err = layout::read(Target::Pid(pid_max + 1), &Options::default()).unwrap_err();
    assert_eq!(err, LayoutError::NoSuchProcess { pid: pid_max + 1 });
    assert_eq!(
        err.to_string(),
        format!("no process with pid {}", pid_max + 1)
    );
    // A process that has come and gone.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let err = layout::read(Target::Pid(pid), &Options::default()).unwrap_err();
    assert!(matches!(err, LayoutError::NoSuchProcess { .. }), "{err}");
}

#[test]
fn zombie() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat.rsplit_once(") ").unwrap().1.starts_with('Z') {
            break;
        }
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = layout::read(Target::Pid(pid), &Options::default()).unwrap_err();
    assert_eq!(err, LayoutError::Zombie { pid });
    assert!(err.to_string().contains("has exited"), "{err}");
    child.wait().unwrap();
}

#[test]
fn kernel_thread() {
    // Any process with PF_KTHREAD in its stat flags (field 9).
    let kthread = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(e.path().join("stat")).ok()?;
        let flags: u64 = stat
            .rsplit_once(") ")?
            .1
            .split_whitespace()
            .nth(6)?
            .parse()
            .ok()?;
        (flags & 0x0020_0000 != 0).then_some(pid)
    });
    let Some(pid) = kthread else {
        eprintln!("no kernel thread visible in /proc (a container?): nothing to check");
        return;
    };
    let err = layout::read(Target::Pid(pid), &Options::default()).unwrap_err();
    assert!(matches!(err, LayoutError::KernelThread { .. }), "{err}");
}

/// Processes that exit while being read give a clean error, never a panic
/// or a half-read layout.
#[test]
fn process_exiting_while_read() {
    let mut outcomes = HashMap::<&str, u32>::new();
    for i in 0..40 {
        // Exits after a few hundred microseconds to a few milliseconds.
        let mut child = Command::new("sh")
            .args([
                "-c",
                &format!("i=0; while [ $i -lt {} ]; do i=$((i+1)); done", i * 300),
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        loop {
            match layout::read(Target::Pid(pid), &Options::default()) {
                Ok(l) => {
                    assert_eq!(l.pid, pid);
                    *outcomes.entry("ok").or_default() += 1;
                }
                Err(
                    e @ (LayoutError::Exited { .. }
                    | LayoutError::Zombie { .. }
                    | LayoutError::NoSuchProcess { .. }),
                ) => {
                    assert!(!e.to_string().contains('\n'));
                    *outcomes
                        .entry(match e {
                            LayoutError::Exited { .. } => "exited",
                            LayoutError::Zombie { .. } => "zombie",
                            _ => "gone",
                        })
                        .or_default() += 1;
                    break;
                }
                Err(e) => panic!("unexpected error for an exiting process: {e}"),
            }
        }
        child.wait().unwrap();
    }
    eprintln!("outcomes: {outcomes:?}");
}

#[test]
fn memkit_regions_are_named() {
    let lib = memkit_tests::lib_path();
    let exe = compile("memkit_heap");
    let mut cmd = Command::new(exe);
    cmd.env("LD_PRELOAD", lib);
    let fx = Fixture::start(cmd);
    let l = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
    let mk = l.memkit.as_ref().expect("libmemkit.so is mapped");
    assert!(mk.library.as_deref().unwrap().ends_with("libmemkit.so"));
    assert!(mk.regions >= 1, "{mk:?}");
    for key in ["small", "huge"] {
        let m = l.mapping_at(fx.get(key)).unwrap();
        assert_eq!(m.category, Category::Anon, "{m:?}");
        let label = m.label.as_deref().unwrap_or("");
        assert!(
            label.starts_with("memkit"),
            "{key}: {m:?}\n{}",
            l.render_table(layout::SortOrder::Address)
        );
        assert_eq!(m.start % (4 << 20), 0);
    }
    // Without the preload the same program has no memkit regions.
    let mut cmd = Command::new(compile("memkit_heap"));
    cmd.env_remove("LD_PRELOAD");
    let fx = Fixture::start(cmd);
    let l = layout::read(Target::Pid(fx.pid()), &Options::default()).unwrap();
    assert!(l.memkit.is_none());
    assert!(l
        .mappings
        .iter()
        .all(|m| !m.label.as_deref().unwrap_or("").starts_with("memkit")));
}

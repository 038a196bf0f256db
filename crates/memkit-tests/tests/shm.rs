//! Shared-memory heaps from C: `c/shm.c` (include/memkit-shm.h), linked
//! with libmemkit.so, run as separate exec'd processes (so each maps the
//! heap at its own address) that build one linked list through offsets,
//! are SIGKILLed at random moments of their alloc/free loops or while
//! holding the lock, and hit the heap's limits. Heaps are named after the
//! test and the pid, and removed at the end (also when a test fails).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use memkit_tests::*;

const T: Duration = Duration::from_secs(120);

fn program(dir: &TempDir) -> std::path::PathBuf {
    let flags = memkit_link_flags(lib_path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    compile_c("shm.c", dir.path(), "shm", &flags)
}

/// A heap name of this test run, unlinked when dropped.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        let n = Name(format!("/memkit-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(n.path());
        n
    }
    fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

fn ok(prog: &std::path::Path, args: &[&str]) -> Outcome {
    run_ok(
        Command::new(prog).args(args),
        T,
        &format!("shm {}", args.join(" ")),
    )
}

/// Starts a program mode that prints "ready" once it is under way.
fn start(prog: &std::path::Path, args: &[&str]) -> Child {
    let (child, line) = spawn_until_line(Command::new(prog).args(args).stderr(Stdio::inherit()));
    assert_eq!(line.trim(), "ready", "shm {args:?}");
    child
}

fn kill9(mut c: Child) {
    // SAFETY: kill of our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    let st = c.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
}

/// Four exec'd writers push 2000 nodes each onto one list (nodes
/// allocated by one process, linked by others, read by a fifth through a
/// writable and a read-only handle).
#[test]
fn processes_share_a_linked_list_through_offsets() {
    if !require("processes_share_a_linked_list_through_offsets", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-list");
    let prog = program(&dir);
    let name = Name::new("list");
    ok(&prog, &["create", &name.0, "16777216"]);
    let writers: Vec<_> = (1..=4)
        .map(|w| {
            let mut c = Command::new(&prog);
            c.args(["push", &name.0, &w.to_string(), "2000"]);
            c.spawn().unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let o = ok(&prog, &["verify", &name.0, "4", "2000"]);
    assert!(o.stdout.contains("ok verify 8000"), "{}", o.describe());
    ok(&prog, &["verify", &name.0, "4", "2000", "ro"]);
}

/// Workers in alloc/free loops (mixed sizes: cached small blocks, locked
/// medium ones, large runs; a lock taken every 64 steps) are SIGKILLed at
/// random moments, 30 times; after each round and at the end the heap
/// checks clean, and it is still usable: a last worker runs to its end,
/// and the caches of the dead are reclaimed.
#[test]
fn sigkill_at_random_moments_leaves_the_heap_consistent() {
    if !require(
        "sigkill_at_random_moments_leaves_the_heap_consistent",
        &["gcc"],
    ) {
        return;
    }
    let dir = TempDir::new("shm-kill");
    let prog = program(&dir);
    let name = Name::new("kill");
    ok(&prog, &["create", &name.0, "33554432"]);
    let mut seed = std::process::id() as u64 | 1;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..30 {
        let a = start(&prog, &["churn", &name.0, &format!("{}", 2 * round + 1)]);
        let b = start(&prog, &["churn", &name.0, &format!("{}", 2 * round + 2)]);
        std::thread::sleep(Duration::from_micros(2000 + rnd(40_000)));
        kill9(a);
        std::thread::sleep(Duration::from_micros(rnd(10_000)));
        kill9(b);
        if round % 10 == 9 {
            ok(&prog, &["check", &name.0]);
        }
    }
    ok(&prog, &["check", &name.0]);
    ok(&prog, &["churn", &name.0, "999", "200000"]);
    let h = memkit_shm::Heap::open(name.0.as_bytes(), true).expect("open");
    h.check().expect("consistent");
    let st = h.stats().unwrap();
    assert_eq!(st.cached, 0, "caches of dead processes reclaimed: {st:?}");
    assert_eq!(h.attached(), (1, 0), "only this process is attached");
    eprintln!(
        "repairs after a holder of the allocator's lock died: {}",
        h.repairs()
    );
}

/// Deaths in the middle of every kind of change: workers kill
/// themselves at their Nth crash point (`MEMKIT_SHM_CRASH=N`, N random;
/// the points sit between two stores of a change: a block's bit and its
/// span's count, a run's bitmap and its head, a list's two links, a
/// cache refill or flush and its count, a named object's commit). After
/// each death the next process to take the lock repairs the heap and
/// `memkit_shm_check` finds it consistent.
#[test]
fn deaths_inside_every_kind_of_change_are_repaired() {
    if !require("deaths_inside_every_kind_of_change_are_repaired", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-crash");
    let prog = program(&dir);
    let name = Name::new("crash");
    ok(&prog, &["create", &name.0, "16777216"]);
    let mut seed = std::process::id() as u64 * 2654435761 | 1;
    for round in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = 1 + seed % 4000;
        let o = run(
            Command::new(&prog)
                .args(["churn", &name.0, &round.to_string(), "1000000"])
                .env("MEMKIT_SHM_CRASH", n.to_string()),
            T,
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGKILL),
            "crash point {n}: {}",
            o.describe()
        );
        ok(&prog, &["check", &name.0]);
    }
    let h = memkit_shm::Heap::open(name.0.as_bytes(), true).expect("open");
    h.check().expect("consistent");
    assert!(
        h.repairs() >= 20,
        "only {} of 40 deaths were under the lock",
        h.repairs()
    );
    drop(h);
    ok(&prog, &["churn", &name.0, "77", "100000"]);
}

/// A process killed holding the user's lock: the next locker gets
/// MEMKIT_SHM_OWNER_DIED, and the lock works normally afterwards.
#[test]
fn a_holder_dying_with_the_lock() {
    if !require("a_holder_dying_with_the_lock", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-lock");
    let prog = program(&dir);
    let name = Name::new("lock");
    ok(&prog, &["create", &name.0, "1048576"]);
    kill9(start(&prog, &["hold", &name.0]));
    ok(&prog, &["owner-died", &name.0]);
}

/// Allocations until ENOMEM, at three sizes, then recovery after frees.
#[test]
fn exhaustion_and_recovery() {
    if !require("exhaustion_and_recovery", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-full");
    let prog = program(&dir);
    let name = Name::new("full");
    ok(&prog, &["create", &name.0, "4194304"]);
    let o = ok(&prog, &["full", &name.0]);
    assert_eq!(o.stdout.matches("ok full").count(), 3, "{}", o.describe());
}

/// Foreign and interior pointers are ignored by free; each misuse has its
/// errno; a plain shared-memory object is not taken for a heap.
#[test]
fn foreign_pointers_and_errors() {
    if !require("foreign_pointers_and_errors", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-foreign");
    let prog = program(&dir);
    let name = Name::new("foreign");
    ok(&prog, &["create", &name.0, "1048576"]);
    ok(&prog, &["foreign", &name.0]);
    ok(&prog, &["errors", &name.0]);
}

/// Another user (uid 65534) cannot open a 0600 heap, read-write or
/// read-only; a 0644 heap's file has exactly that mode.
#[test]
fn another_user_is_denied() {
    if !require("another_user_is_denied", &["gcc"]) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("another_user_is_denied: skipped (needs root to become uid 65534)");
        return;
    }
    let dir = TempDir::new("shm-denied");
    let prog = program(&dir);
    let name = Name::new("denied");
    ok(&prog, &["create", &name.0, "1048576"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(name.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(&prog, &["denied", &name.0]);
    let shared = Name::new("mode");
    ok(&prog, &["create", &shared.0, "1048576", "0644"]);
    let mode = std::fs::metadata(shared.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "the mode asked for, whatever the umask"
    );
}

/// A heap larger than /dev/shm is refused at creation (not a SIGBUS
/// later), and leaves no object behind.
#[test]
fn a_heap_larger_than_dev_shm_is_refused() {
    if !require("a_heap_larger_than_dev_shm_is_refused", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-large");
    let prog = program(&dir);
    let name = Name::new("large");
    // SAFETY: statvfs of a path, into a zeroed struct.
    let total = unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c"/dev/shm".as_ptr(), &mut s), 0);
        s.f_blocks * s.f_frsize
    };
    let size = total + (1 << 30);
    if size > 64 << 30 {
        eprintln!("a_heap_larger_than_dev_shm_is_refused: /dev/shm is above memkit's 64 GiB limit");
    }
    let o = ok(&prog, &["too-large", &name.0, &size.to_string()]);
    assert!(o.stdout.contains("ok too-large"), "{}", o.describe());
    assert!(!std::path::Path::new(&name.path()).exists());
}

/// An anonymous (memfd) heap used by a forked child through the handle
/// and by an exec'd program through the fd; iteration over named objects.
#[test]
fn anonymous_heap_for_children() {
    if !require("anonymous_heap_for_children", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("shm-anon");
    let prog = program(&dir);
    ok(&prog, &["anon"]);
}

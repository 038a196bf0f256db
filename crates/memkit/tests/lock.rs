//! memkit::lock: mlockall, prefaulting, the status and its errors.
//!
//! Locking is process-wide, so each test locks inside a child process: this
//! test binary re-run on one test (`MEMKIT_TEST_CHILD=<test name>`).

use std::process::{Command, Output};

use memkit::lock::{self, LockFlags, MemlockLimit};

const CHILD: &str = "MEMKIT_TEST_CHILD";

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Runs test `name` alone in a child; with `memlock`, without CAP_IPC_LOCK
/// and under that RLIMIT_MEMLOCK.
fn run_child(name: &str, memlock: Option<u64>) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name);
    memkit_tests::limit_child(&mut c, false, memlock);
    c.output().unwrap()
}

fn assert_passed(o: &Output) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("1 passed"),
        "child failed: {:?}\n--- stdout\n{out}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Resident bytes (second field of /proc/self/statm, in pages).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

fn minor_faults() -> i64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: ru is a valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    // SAFETY: getrusage filled it (or it stays zeroed).
    unsafe { ru.assume_init() }.ru_minflt
}

#[test]
fn lock_current_and_future_memory() {
    if is_child("lock_current_and_future_memory") {
        assert_eq!(lock::locked_bytes().unwrap(), 0);
        lock::lock_all(LockFlags::CURRENT | LockFlags::FUTURE).unwrap();
        let before = lock::locked_bytes().unwrap();
        assert!(before > 0);
        let s = lock::status();
        assert_eq!(s.locked, before);
        assert!(s.mapped >= s.locked && s.cap_ipc_lock, "{s:?}");
        // A new mapping is locked (and populated) as it is made.
        let v = std::hint::black_box(vec![1u8; 32 << 20]);
        assert!(lock::locked_bytes().unwrap() >= before + (32 << 20));
        drop(v);
        lock::unlock_all().unwrap();
        assert_eq!(lock::locked_bytes().unwrap(), 0);
        return;
    }
    assert_passed(&run_child("lock_current_and_future_memory", None));
}

#[test]
fn on_fault_locks_only_touched_pages() {
    if is_child("on_fault_locks_only_touched_pages") {
        lock::lock_all(LockFlags::CURRENT | LockFlags::FUTURE | LockFlags::ON_FAULT).unwrap();
        // VmLck counts locked mappings whole, faulted in or not: watch RSS.
        let before = rss();
        let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(64 << 20));
        let untouched = rss();
        assert!(
            untouched < before + (8 << 20),
            "populated at once: {before} -> {untouched}"
        );
        assert!(
            lock::locked_bytes().unwrap() >= 64 << 20,
            "the mapping is locked"
        );
        v.resize(16 << 20, 1);
        std::hint::black_box(&mut v);
        assert!(rss() >= untouched + (16 << 20));
        return;
    }
    assert_passed(&run_child("on_fault_locks_only_touched_pages", None));
}

#[test]
fn over_the_limit_the_error_names_it_and_the_fix() {
    if is_child("over_the_limit_the_error_names_it_and_the_fix") {
        let e = lock::lock_all(LockFlags::CURRENT | LockFlags::FUTURE).unwrap_err();
        let s = e.status();
        let limit = s.limit.soft.unwrap();
        let msg = e.to_string();
        if limit == 0 {
            assert_eq!(e.raw_os_error(), libc::EPERM);
            assert!(msg.contains("RLIMIT_MEMLOCK is 0"), "{msg}");
        } else {
            assert_eq!(e.raw_os_error(), libc::ENOMEM);
            let shown = format!("RLIMIT_MEMLOCK is {} KiB", limit / 1024);
            assert!(msg.contains(&shown) && msg.contains("VmSize"), "{msg}");
        }
        for needle in [
            "mlockall(MCL_CURRENT|MCL_FUTURE)",
            "ulimit -l",
            "LimitMEMLOCK",
            "CAP_IPC_LOCK",
        ] {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
        assert!(!s.cap_ipc_lock);
        // A failed mlockall changes nothing; the program goes on.
        assert_eq!(lock::locked_bytes().unwrap(), 0);
        let v = std::hint::black_box(vec![0u8; 1 << 20]);
        assert_eq!(lock::locked_bytes().unwrap(), 0);
        drop(v);
        let io: std::io::Error = e.into();
        assert!(io.to_string().contains("RLIMIT_MEMLOCK"));
        return;
    }
    for limit in [64 * 1024, 0] {
        assert_passed(&run_child(
            "over_the_limit_the_error_names_it_and_the_fix",
            Some(limit),
        ));
    }
}

#[test]
fn prefaulted_stack_and_heap_do_not_fault() {
    if is_child("prefaulted_stack_and_heap_do_not_fault") {
        lock::lock_all(LockFlags::CURRENT | LockFlags::FUTURE).unwrap();
        lock::prefault_stack(256 * 1024);
        let f0 = minor_faults();
        lock::prefault_stack(256 * 1024);
        let stack_faults = minor_faults() - f0;
        assert!(
            stack_faults < 8,
            "{stack_faults} faults on a prefaulted stack"
        );

        lock::reserve_heap(32 << 20);
        let f0 = minor_faults();
        let v = std::hint::black_box(vec![7u8; 16 << 20]);
        let heap_faults = minor_faults() - f0;
        println!("faults: stack {stack_faults}, 16 MiB from the reserve {heap_faults}");
        // Fresh pages would cost 4096 faults.
        assert!(
            heap_faults < 64,
            "{heap_faults} faults in the reserved heap"
        );
        drop(v);
        return;
    }
    assert_passed(&run_child("prefaulted_stack_and_heap_do_not_fault", None));
}

#[test]
fn limit_can_be_read_and_lowered() {
    if is_child("limit_can_be_read_and_lowered") {
        let l = lock::limit();
        assert!(l.soft <= l.hard || l.hard.is_none(), "{l:?}");
        lock::set_limit(MemlockLimit {
            soft: Some(1 << 20),
            hard: l.hard,
        })
        .unwrap();
        assert_eq!(lock::limit().soft, Some(1 << 20));
        return;
    }
    assert_passed(&run_child("limit_can_be_read_and_lowered", None));
}

#[test]
fn flags_are_the_kernel_values() {
    assert_eq!(LockFlags::CURRENT.bits(), 1);
    assert_eq!(LockFlags::FUTURE.bits(), 2);
    assert_eq!(LockFlags::ON_FAULT.bits(), 4);
    assert_eq!((LockFlags::CURRENT | LockFlags::FUTURE).bits(), 3);
    let e = lock::lock_all(LockFlags::ON_FAULT).unwrap_err();
    assert_eq!(e.raw_os_error(), libc::EINVAL);
    assert!(e.to_string().contains("MCL_ONFAULT needs"), "{e}");
}

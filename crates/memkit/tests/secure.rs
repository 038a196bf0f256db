//! memkit::secure: SecretBox and SecretVec, their protections, and the
//! faults they turn bugs into.
//!
//! A test whose expected outcome is a crash (or that changes process-wide
//! limits) re-runs this test binary on itself alone in a child process
//! (`MEMKIT_TEST_CHILD=<test name>`) and checks how the child ended.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::Arc;

use memkit::secure::{self, Access, ErrorKind, LockPolicy, Options, SecretBox, SecretVec};
use zeroize::Zeroize;

const CHILD: &str = "MEMKIT_TEST_CHILD";

/// Whether this process is the child run for test `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Runs test `name` alone in a child process: no core files, and with
/// `memlock` set, no CAP_IPC_LOCK and that RLIMIT_MEMLOCK (as an
/// unprivileged process has).
fn run_child(name: &str, memlock: Option<u64>, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env_remove("MEMKIT_SECURE_MLOCK")
        .envs(env.iter().copied());
    memkit_tests::limit_child(&mut c, true, memlock);
    c.output().unwrap()
}

fn describe(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_signal(o: &Output, sig: i32) {
    assert_eq!(
        o.status.signal(),
        Some(sig),
        "expected signal {sig}\n{}",
        describe(o)
    );
}

fn assert_passed(o: &Output) {
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1 passed"),
        "child failed\n{}",
        describe(o)
    );
}

fn count_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn vmlck_kib() -> u64 {
    memkit::lock::locked_bytes().unwrap() / 1024
}

#[test]
fn secret_box_round_trip_and_protection() {
    let mut key = SecretBox::<[u8; 32]>::init_with(|k| k.fill(7)).unwrap();
    assert_eq!(*key.borrow(), [7; 32]);
    key.borrow_mut()[31] = 9;
    assert_eq!(key.borrow()[31], 9);
    let p = key.protection();
    assert!(
        p.locked && p.dontdump && p.wipeonfork && p.guarded && p.canary,
        "{p:?}"
    );
    assert!(!p.packed && !p.secretmem);
    assert_eq!(p.size, 32);
    assert_eq!(p.access, Access::NoAccess, "closed between borrows");
    {
        let _r = key.borrow();
        assert_eq!(key.protection().access, Access::ReadOnly);
    }
    assert_eq!(key.protection().access, Access::NoAccess);
    key.zeroize();
    assert_eq!(*key.borrow(), [0; 32]);

    let moved = SecretBox::new(0x1234_5678_u64).unwrap();
    assert_eq!(*moved.borrow(), 0x1234_5678);
}

#[test]
fn debug_never_prints_the_secret() {
    let b = SecretBox::<[u8; 4]>::new(*b"pw42").unwrap();
    let v = SecretVec::from_slice(b"hunter2").unwrap();
    let shown = format!("{b:?} {v:?} {:?} {:?}", b.borrow(), v.borrow());
    assert!(shown.contains("REDACTED"), "{shown}");
    for leak in ["pw42", "hunter2", "112", "104"] {
        assert!(!shown.contains(leak), "{shown}");
    }
}

#[test]
fn alignment_is_honoured_for_every_size() {
    #[repr(align(64))]
    struct Wide([u8; 80]);
    // SAFETY: an array of bytes.
    unsafe impl secure::Zeroable for Wide {}
    impl Zeroize for Wide {
        fn zeroize(&mut self) {
            self.0.zeroize();
        }
    }
    let w = SecretBox::<Wide>::init_with(|w| w.0[0] = 1).unwrap();
    assert_eq!(w.as_ptr() as usize % 64, 0);
    for n in [1, 3, 15, 17, 100, 4095, 4097] {
        for opts in [Options::new(), Options::new().packed()] {
            let mut v = SecretVec::with_options(opts);
            v.resize(n, 1).unwrap();
            assert_eq!(v.as_ptr() as usize % 16, 0, "size {n}");
        }
    }
}

#[test]
fn concurrent_readers_share_one_opening() {
    let b = Arc::new(SecretBox::<[u64; 4]>::new([1, 2, 3, 4]).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let r = b.borrow();
                    assert_eq!(*r, [1, 2, 3, 4]);
                    let r2 = b.borrow();
                    assert_eq!(r2[3], 4);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.protection().access, Access::NoAccess);
}

#[test]
fn secret_vec_grows_shrinks_and_wipes() {
    let mut v = SecretVec::new();
    assert!(v.is_empty() && v.protection().is_none());
    for i in 0..5000u32 {
        v.push(i as u8).unwrap();
    }
    assert_eq!(v.len(), 5000);
    assert!(v.borrow().iter().enumerate().all(|(i, &b)| b == i as u8));
    v.truncate(10);
    assert_eq!(&*v.borrow(), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(v.ct_eq(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert!(!v.ct_eq(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 8]));
    let c = v.try_clone().unwrap();
    assert!(c.ct_eq(&v.borrow()));
    v.zeroize();
    assert!(v.is_empty());

    let mut src = *b"correct horse";
    let t = SecretVec::take_from(&mut src).unwrap();
    assert_eq!(src, [0; 13]);
    assert!(t.ct_eq(b"correct horse"));
}

#[test]
fn growing_a_packed_vec_wipes_the_old_copy() {
    // Alone in a child: another test's packed secret could take the freed
    // slot before it is read back.
    if !is_child("growing_a_packed_vec_wipes_the_old_copy") {
        assert_passed(&run_child(
            "growing_a_packed_vec_wipes_the_old_copy",
            None,
            &[],
        ));
        return;
    }
    let mut v = SecretVec::with_options(Options::new().packed().idle_access(Access::ReadWrite));
    v.extend_from_slice(&[0xAA; 20]).unwrap();
    let old = v.as_ptr();
    v.extend_from_slice(&[0xBB; 200]).unwrap();
    assert_ne!(old, v.as_ptr());
    // The old slot is free again, its page still mapped: it reads zeros.
    let left: Vec<u8> = (0..20)
        // SAFETY: the old slot lies in a mapped, readable slab page.
        .map(|i| unsafe { old.add(i).read_volatile() })
        .collect();
    assert_eq!(left, [0; 20]);
    assert_eq!(&v.borrow()[..20], &[0xAA; 20]);
    assert!(v.protection().unwrap().packed);
}

#[test]
fn smaps_flags_show_locked_dontdump_wipeonfork() {
    for opts in [Options::new(), Options::new().packed()] {
        let b = SecretBox::<[u8; 48]>::init_with_options(&opts, |_| {}).unwrap();
        let f = memkit_tests::vm_flags(b.as_ptr());
        for want in ["lo", "dd", "wf"] {
            assert!(f.iter().any(|x| x == want), "{want} missing: {f:?}");
        }
    }
}

#[test]
fn forked_child_reads_zeros() {
    for opts in [Options::new(), Options::new().packed()] {
        let b =
            SecretBox::<[u8; 64]>::init_with_options(&opts.idle_access(Access::ReadWrite), |k| {
                k.fill(0xAB)
            })
            .unwrap();
        let p = b.as_ptr();
        // SAFETY: the child only reads memory and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: p..p+64 is mapped read-write in the child too.
            let all_zero = (0..64).all(|i| unsafe { p.add(i).read_volatile() } == 0);
            // SAFETY: leaving the child without running the harness.
            unsafe { libc::_exit(if all_zero { 0 } else { 1 }) };
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "child saw the secret"
        );
        assert_eq!(*b.borrow(), [0xAB; 64]);
    }
}

#[test]
fn reading_a_closed_secret_faults() {
    if is_child("reading_a_closed_secret_faults") {
        let b = SecretBox::new([1u8; 32]).unwrap();
        // SAFETY: deliberately reads a PROT_NONE secret: must fault.
        let v = unsafe { b.as_ptr().read_volatile() };
        println!("survived with {v}");
        return;
    }
    assert_signal(
        &run_child("reading_a_closed_secret_faults", None, &[]),
        libc::SIGSEGV,
    );
}

#[test]
fn writing_through_a_read_borrow_faults() {
    if is_child("writing_through_a_read_borrow_faults") {
        let b = SecretBox::new([1u8; 32]).unwrap();
        let r = b.borrow();
        // SAFETY: deliberately writes a read-only secret: must fault.
        unsafe { (r.as_ptr() as *mut u8).write_volatile(2) };
        println!("survived");
        return;
    }
    assert_signal(
        &run_child("writing_through_a_read_borrow_faults", None, &[]),
        libc::SIGSEGV,
    );
}

#[test]
fn one_byte_overflow_faults() {
    if is_child("one_byte_overflow_faults") {
        let mut v = SecretVec::zeroed(32).unwrap();
        assert_eq!(v.capacity(), 32);
        let mut w = v.borrow_mut();
        let p = w.as_mut_ptr();
        // SAFETY: deliberately writes one byte past the end: must fault.
        unsafe { p.add(32).write_volatile(1) };
        println!("survived");
        return;
    }
    assert_signal(
        &run_child("one_byte_overflow_faults", None, &[]),
        libc::SIGSEGV,
    );
}

#[test]
fn underflow_into_the_canary_aborts_on_drop() {
    if is_child("underflow_into_the_canary_aborts_on_drop") {
        let mut v = SecretVec::zeroed(32).unwrap();
        {
            let mut w = v.borrow_mut();
            // SAFETY: deliberately damages the canary right before the data.
            // The canary is random: a fixed value would match it one run in
            // 256 and damage nothing; its complement never does.
            unsafe {
                let c = w.as_mut_ptr().sub(1);
                c.write_volatile(!c.read_volatile());
            }
        }
        drop(v);
        println!("survived");
        return;
    }
    let o = run_child("underflow_into_the_canary_aborts_on_drop", None, &[]);
    assert_signal(&o, libc::SIGABRT);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("canary"),
        "{}",
        describe(&o)
    );
}

#[test]
fn lowered_memlock_limit_is_refused_with_the_fix() {
    if is_child("lowered_memlock_limit_is_refused_with_the_fix") {
        let limit = memkit::lock::limit().soft.unwrap();
        let e = SecretVec::with_capacity(1 << 20).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lock);
        let errno = if limit == 0 {
            libc::EPERM
        } else {
            libc::ENOMEM
        };
        assert_eq!(e.raw_os_error(), errno);
        assert_eq!(e.memlock_limit(), Some((limit, limit)));
        let msg = e.to_string();
        let shown = if limit == 0 {
            "0 bytes".to_string()
        } else {
            format!("{} KiB", limit / 1024)
        };
        for needle in [
            "RLIMIT_MEMLOCK",
            &format!("is {shown}"),
            "ulimit -l",
            "CAP_IPC_LOCK",
        ] {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
        let io: std::io::Error = e.into();
        assert_eq!(io.raw_os_error(), None);
        assert!(io.to_string().contains("RLIMIT_MEMLOCK"));
        // Best effort: allocated, unlocked, reported.
        let mut v = SecretVec::with_options(Options::new().lock_policy(LockPolicy::BestEffort));
        v.resize(1 << 20, 1).unwrap();
        let p = v.protection().unwrap();
        assert!(!p.locked && p.dontdump && p.wipeonfork, "{p:?}");
        secure::set_lock_policy(LockPolicy::Off);
        let b = SecretBox::new([0u8; 4096]).unwrap();
        assert!(!b.protection().locked);
        return;
    }
    for limit in [64 * 1024, 0] {
        let o = run_child(
            "lowered_memlock_limit_is_refused_with_the_fix",
            Some(limit),
            &[],
        );
        assert_passed(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.matches("not locked").count(),
            1,
            "warned once\n{}",
            describe(&o)
        );
    }
}

#[test]
fn policy_from_the_environment() {
    if is_child("policy_from_the_environment") {
        assert_eq!(secure::lock_policy(), LockPolicy::BestEffort);
        secure::set_lock_policy(LockPolicy::Require);
        assert_eq!(secure::lock_policy(), LockPolicy::Require);
        return;
    }
    let o = run_child(
        "policy_from_the_environment",
        None,
        &[("MEMKIT_SECURE_MLOCK", "best-effort")],
    );
    assert_passed(&o);
}

#[test]
fn hundred_thousand_packed_secrets() {
    if is_child("hundred_thousand_packed_secrets") {
        let maps0 = count_maps();
        let lck0 = vmlck_kib();
        let opts = Options::new().packed();
        let secrets: Vec<SecretBox<[u8; 32]>> = (0..100_000u32)
            .map(|i| {
                SecretBox::init_with_options(&opts, |k: &mut [u8; 32]| k.fill(i as u8)).unwrap()
            })
            .collect();
        let maps = count_maps() - maps0;
        let lck = vmlck_kib() - lck0;
        println!("100k packed secrets: +{maps} mappings, {lck} KiB locked");
        assert!(maps < 1000, "{maps} mappings");
        assert!(lck < 6 * 1024, "{lck} KiB locked");
        for (i, s) in secrets.iter().enumerate().step_by(97) {
            assert_eq!(*s.borrow(), [i as u8; 32]);
        }
        drop(secrets);
        assert!(vmlck_kib() - lck0 <= 64 * 2, "slabs released");
        return;
    }
    // As an unprivileged process under the default 8 MiB limit.
    let o = run_child("hundred_thousand_packed_secrets", Some(8 << 20), &[]);
    assert_passed(&o);
    eprint!("{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn secretmem_backing_when_available() {
    let b =
        SecretBox::<[u8; 32]>::init_with_options(&Options::new().secretmem(true), |k| k.fill(3))
            .unwrap();
    let p = b.protection();
    assert!(p.locked && p.dontdump, "{p:?}");
    if p.secretmem {
        assert!(p.dontfork && !p.wipeonfork);
    }
    assert_eq!(*b.borrow(), [3; 32]);
}

#[test]
fn memzero_and_io_error() {
    let mut buf = [9u8; 100];
    secure::memzero(&mut buf);
    assert_eq!(buf, [0; 100]);
}

#[test]
fn threads_allocate_and_free_concurrently() {
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut live: Vec<SecretVec> = Vec::new();
                for i in 0..1500usize {
                    let opts = if i % 3 == 0 {
                        Options::new()
                    } else {
                        Options::new().packed()
                    };
                    let mut v = SecretVec::with_options(opts);
                    v.resize(1 + (i * 7 + t as usize) % 300, t ^ i as u8)
                        .unwrap();
                    live.push(v);
                    if i % 2 == 1 {
                        let v = live.swap_remove((i * 31) % live.len());
                        let want = v.borrow()[0];
                        assert!(v.borrow().iter().all(|&b| b == want));
                    }
                }
                for (k, v) in live.iter().enumerate() {
                    let b = v.borrow();
                    assert!(b.iter().all(|&x| x == b[0]), "thread {t} secret {k}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// fork while another thread holds memkit-secure's lock: the child must
/// not deadlock (the lock records its holder's pid; a child takes over a
/// lock held in its parent).
#[test]
fn fork_while_another_thread_allocates() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let opts = Options::new().packed().idle_access(Access::ReadWrite);
            while !stop.load(Ordering::Relaxed) {
                let v = SecretBox::<[u8; 24]>::init_with_options(&opts, |k| k[0] = 1).unwrap();
                drop(v);
            }
        })
    };
    for _ in 0..100 {
        // SAFETY: the child uses only secure memory (no heap allocation:
        // SecretBox keeps its state inline) and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain system calls in the child.
            unsafe { libc::alarm(10) };
            let opts = Options::new().idle_access(Access::ReadWrite);
            let ok = SecretBox::<[u8; 32]>::init_with_options(&opts, |k| k[0] = 2).is_ok()
                && SecretBox::<[u8; 32]>::init_with_options(&opts.packed(), |k| k[0] = 2).is_ok();
            // SAFETY: leaving the child without running the harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "child status {st:#x} (SIGALRM = deadlock)"
        );
    }
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
}

//! memkit::shm: the Rust API over the shared-memory heap, across handles,
//! forked and exec'd processes.
//!
//! Exec'd processes are this test binary re-run on one test
//! (`MEMKIT_TEST_CHILD=<test name>`, the heap's name in `MEMKIT_TEST_SHM`).

use std::io::ErrorKind;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memkit::shm::{LockError, SharedHeap, ShmBox, ShmPtr, ShmSafe};

const CHILD: &str = "MEMKIT_TEST_CHILD";
const SHM: &str = "MEMKIT_TEST_SHM";

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// A name no other test (or run) uses; unlinked when dropped.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Name(format!("/memkit-rs-{tag}-{}-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = SharedHeap::unlink(&self.0);
    }
}

/// A node of a list built by several processes.
#[repr(C)]
struct Node {
    value: u64,
    next: ShmPtr<Node>,
}
// SAFETY: two u64s; any bits are valid.
unsafe impl ShmSafe for Node {}

/// The list's head and length, a named object.
#[repr(C)]
struct List {
    head: ShmPtr<Node>,
    len: u64,
}
// SAFETY: two u64s.
unsafe impl ShmSafe for List {}

/// Pushes `values` onto the heap's list "list", under the heap's lock.
fn push(heap: &SharedHeap, values: impl Iterator<Item = u64>) {
    let (list, _) = heap.named::<List>("list").unwrap();
    for value in values {
        let _g = heap.lock().unwrap();
        // SAFETY: the list is only changed under the lock, which we hold.
        let l = unsafe { heap.deref_mut(list) }.unwrap();
        let node = ShmBox::new_in(
            heap,
            Node {
                value,
                next: l.head,
            },
        )
        .unwrap();
        l.head = ShmBox::into_ptr(node);
        l.len += 1;
    }
}

/// The values on the list, newest first.
fn walk(heap: &SharedHeap) -> Vec<u64> {
    let (list, _) = heap.named::<List>("list").unwrap();
    let _g = heap.lock().unwrap();
    // SAFETY: read under the lock every writer takes.
    let l = unsafe { heap.deref(list) }.unwrap();
    let mut out = Vec::new();
    let mut p = l.head;
    while !p.is_null() {
        // SAFETY: as above.
        let n = unsafe { heap.deref(p) }.expect("a list pointer resolves");
        out.push(n.value);
        p = n.next;
        assert!(
            out.len() as u64 <= l.len,
            "the list is longer than its count"
        );
    }
    assert_eq!(out.len() as u64, l.len);
    out
}

#[test]
fn exec_child_builds_list() {
    if is_child("exec_child_builds_list") {
        let heap = SharedHeap::open(&std::env::var(SHM).unwrap()).unwrap();
        push(&heap, 1000..1500);
        return;
    }
    let name = Name::new("exec");
    let heap = SharedHeap::create(&name.0, 4 << 20).unwrap();
    push(&heap, 0..500);
    // Two exec'd processes (their own address-space layouts) at once.
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["exec_child_builds_list", "--exact", "--test-threads=1"])
                .env(CHILD, "exec_child_builds_list")
                .env(SHM, &name.0)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let mut values = walk(&heap);
    assert_eq!(values.len(), 1500);
    values.sort_unstable();
    let mut expected: Vec<u64> = (0..500).chain(1000..1500).chain(1000..1500).collect();
    expected.sort_unstable();
    assert_eq!(values, expected);
    heap.check().unwrap();

    // Frees every node from this process, whoever allocated it.
    let used = heap.stats().unwrap().used;
    let (list, _) = heap.named::<List>("list").unwrap();
    {
        let _g = heap.lock().unwrap();
        // SAFETY: under the lock; the children are gone.
        let l = unsafe { heap.deref_mut(list) }.unwrap();
        while !l.head.is_null() {
            // SAFETY: each node was given up by into_ptr and is owned by
            // nobody else now.
            let node = unsafe { ShmBox::from_ptr(&heap, l.head) }.unwrap();
            l.head = node.next;
            l.len -= 1;
        }
    }
    heap.check().unwrap();
    let after = heap.stats().unwrap().used;
    assert!(
        after + 1500 * 16 <= used,
        "freeing 1500 nodes: {used} -> {after} bytes used"
    );
}

#[test]
fn two_handles_agree_on_offsets_and_names() {
    let name = Name::new("handles");
    let a = SharedHeap::create(&name.0, 1 << 20).unwrap();
    let b = SharedHeap::open(&name.0).unwrap();
    assert_eq!(a.size(), 1 << 20);
    assert_eq!(a.creator().pid, std::process::id());

    let (ca, created_a) = a.named::<AtomicU64>("counter").unwrap();
    let (cb, created_b) = b.named::<AtomicU64>("counter").unwrap();
    assert!(created_a && !created_b);
    assert_eq!(ca, cb);
    a.get(ca).unwrap().fetch_add(5, Ordering::Relaxed);
    assert_eq!(b.get(cb).unwrap().load(Ordering::Relaxed), 5);

    let boxed = ShmBox::new_in(&a, [7u32; 10]).unwrap();
    let p = ShmBox::ptr(&boxed);
    assert_ne!(a.resolve(p), b.resolve(p), "two mappings, two addresses");
    // SAFETY: nobody writes it while we read.
    assert_eq!(unsafe { b.deref(p) }.unwrap(), &[7u32; 10]);
    assert_eq!(a.offset_of(&*boxed as *const _), p.offset());

    let names = b.named_objects();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].key, "counter");
    assert_eq!(names[0].offset, ca.offset());
    assert_eq!(names[0].size, 8);
    b.remove_named("counter").unwrap();
    assert!(a.named_objects().is_empty());
    assert_eq!(
        a.remove_named("counter").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    drop(boxed);
    a.check().unwrap();
    b.check().unwrap();
}

#[test]
fn resolve_refuses_what_is_outside_or_misaligned() {
    let name = Name::new("resolve");
    let heap = SharedHeap::create(&name.0, 1 << 20).unwrap();
    assert!(heap.resolve(ShmPtr::<u64>::null()).is_none());
    assert!(heap.resolve(ShmPtr::<u64>::from_offset(1 << 20)).is_none());
    assert!(heap
        .resolve(ShmPtr::<u64>::from_offset((1 << 20) - 4))
        .is_none());
    assert!(heap.resolve(ShmPtr::<u64>::from_offset(4100)).is_none());
    assert!(heap.resolve(ShmPtr::<u64>::from_offset(u64::MAX)).is_none());
    assert!(heap
        .resolve(ShmPtr::<[u8; 4096]>::from_offset((1 << 20) - 100))
        .is_none());
    assert!(heap.resolve(ShmPtr::<u64>::from_offset(4096)).is_some());

    // Pointers that are not blocks of the heap are ignored by free.
    let used = heap.stats().unwrap().used;
    let mut local = 0u64;
    // SAFETY: free_bytes ignores pointers outside the heap.
    unsafe {
        heap.free_bytes(&raw mut local as *mut u8);
        heap.free_bytes(std::ptr::null_mut());
    }
    let p = heap.alloc_bytes(100).unwrap();
    // SAFETY: the interior of a live block: ignored.
    unsafe { heap.free_bytes(p.as_ptr().add(16)) };
    heap.check().unwrap();
    assert!(heap.stats().unwrap().used > used);
    assert_eq!(heap.offset_of(&raw const local), 0);
}

#[test]
fn read_only_handles_read_but_never_write() {
    let name = Name::new("ro");
    let rw = SharedHeap::create(&name.0, 1 << 20).unwrap();
    let (c, _) = rw.named::<AtomicU64>("n").unwrap();
    rw.get(c).unwrap().store(42, Ordering::Relaxed);

    let ro = SharedHeap::open_read_only(&name.0).unwrap();
    assert!(!ro.is_writable());
    let (c2, created) = ro.named::<AtomicU64>("n").unwrap();
    assert!(!created);
    assert_eq!(ro.get(c2).unwrap().load(Ordering::Relaxed), 42);
    assert_eq!(ro.alloc_bytes(16).unwrap_err().raw_os_error(), Some(30));
    assert!(ShmBox::new_in(&ro, 1u64).is_err());
    assert_eq!(
        ro.named::<u64>("missing").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    match ro.lock() {
        Err(LockError::Io(e)) => assert_eq!(e.raw_os_error(), Some(30)),
        other => panic!("a read-only lock: {other:?}"),
    }
    // SAFETY: nothing else uses this value.
    assert!(unsafe { ro.deref_mut(c2) }.is_none());
    ro.check().unwrap();
}

#[test]
fn errors_are_the_documented_ones() {
    let name = Name::new("errors");
    let _h = SharedHeap::create(&name.0, 1 << 20).unwrap();
    assert_eq!(
        SharedHeap::create(&name.0, 1 << 20).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let einval = |r: std::io::Result<SharedHeap>| r.unwrap_err().raw_os_error();
    assert_eq!(einval(SharedHeap::create("no-slash", 1 << 20)), Some(22));
    assert_eq!(einval(SharedHeap::create("/a/b", 1 << 20)), Some(22));
    let small = Name::new("small");
    assert_eq!(einval(SharedHeap::create(&small.0, 4096)), Some(22));
    assert_eq!(
        SharedHeap::create_with_mode(&small.0, 1 << 20, 0o7777)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        SharedHeap::open(&Name::new("missing").0)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // A file that is not a memkit heap.
    let other = Name::new("other");
    std::fs::write(format!("/dev/shm{}", &other.0), vec![0u8; 1 << 20]).unwrap();
    assert_eq!(einval(SharedHeap::open(&other.0)), Some(22));
    // A key too long.
    let h = SharedHeap::open(&name.0).unwrap();
    assert_eq!(
        h.named::<u64>(&"k".repeat(48)).unwrap_err().raw_os_error(),
        Some(22)
    );
}

#[test]
fn mode_is_applied_exactly() {
    use std::os::unix::fs::PermissionsExt;
    let name = Name::new("mode");
    let _h = SharedHeap::create_with_mode(&name.0, 1 << 20, 0o640).unwrap();
    let meta = std::fs::metadata(format!("/dev/shm{}", &name.0)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let name2 = Name::new("mode");
    let _h2 = SharedHeap::create(&name2.0, 1 << 20).unwrap();
    let meta = std::fs::metadata(format!("/dev/shm{}", &name2.0)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn exhaustion_is_enomem_and_freeing_recovers() {
    let name = Name::new("full");
    let heap = SharedHeap::create(&name.0, 1 << 20).unwrap();
    let mut blocks = Vec::new();
    let full = loop {
        match heap.alloc_bytes(1000) {
            Ok(p) => blocks.push(p),
            Err(e) => break e,
        }
        assert!(blocks.len() < 2000, "1000-byte blocks never run out");
    };
    assert_eq!(full.kind(), ErrorKind::OutOfMemory);
    assert!(blocks.len() > 500, "only {} blocks in 1 MiB", blocks.len());
    let n = blocks.len();
    for p in blocks.drain(..) {
        // SAFETY: ours, unused.
        unsafe { heap.free_bytes(p.as_ptr()) };
    }
    heap.check().unwrap();
    // All of it can be had again, as one large block too.
    let big = heap.alloc_bytes(n * 1000 / 2).unwrap();
    // SAFETY: ours.
    unsafe { heap.free_bytes(big.as_ptr()) };
    heap.check().unwrap();
}

#[test]
fn a_dead_lock_holder_is_reported_like_poison() {
    let name = Name::new("died");
    let heap = SharedHeap::create(&name.0, 1 << 20).unwrap();
    // SAFETY: the child only takes the lock and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let taken = heap.lock().map(std::mem::forget).is_ok();
        // SAFETY: ends the child at once, the lock still held.
        unsafe { libc::_exit(if taken { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0, "the child took the lock");
    match heap.lock() {
        Err(LockError::OwnerDied(g)) => assert!(g.previous_owner_died()),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // Released by the guard's drop: a plain guard now.
    let g = heap.lock().unwrap();
    assert!(!g.previous_owner_died());
    drop(g);
    heap.check().unwrap();
}

#[test]
fn anonymous_heap_through_fork_and_fd() {
    let heap = SharedHeap::create_anon(1 << 20).unwrap();
    let (c, _) = heap.named::<AtomicU64>("hits").unwrap();
    // SAFETY: the child uses the heap (no allocation from the process's
    // own heap) and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = ShmBox::new_in(&heap, 1u64).map(ShmBox::into_ptr).is_ok();
        heap.get(c).unwrap().fetch_add(1, Ordering::SeqCst);
        // SAFETY: ends the child.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0);
    assert_eq!(heap.get(c).unwrap().load(Ordering::SeqCst), 1);

    let other = SharedHeap::open_fd(heap.fd(), true).unwrap();
    let (c2, created) = other.named::<AtomicU64>("hits").unwrap();
    assert!(!created);
    assert_eq!(other.get(c2).unwrap().load(Ordering::SeqCst), 1);
    heap.check().unwrap();
}

#[test]
fn a_block_freed_twice_is_handed_out_once() {
    let name = Name::new("twice");
    let heap = SharedHeap::create(&name.0, 1 << 20).unwrap();
    for size in [16, 64, 1000, 5000, 20000] {
        let p = heap.alloc_bytes(size).unwrap();
        let other = heap.alloc_bytes(size).unwrap();
        // SAFETY: ours; the second free is the bug under test.
        unsafe {
            heap.free_bytes(p.as_ptr());
            heap.free_bytes(other.as_ptr());
            heap.free_bytes(p.as_ptr());
        }
        let a = heap.alloc_bytes(size).unwrap();
        let b = heap.alloc_bytes(size).unwrap();
        let c = heap.alloc_bytes(size).unwrap();
        assert!(a != b && b != c && a != c, "{size} B: {a:?} {b:?} {c:?}");
        heap.check().unwrap();
        // SAFETY: ours.
        unsafe {
            for q in [a, b, c] {
                heap.free_bytes(q.as_ptr());
            }
        }
    }
    heap.check().unwrap();
}

#[test]
fn locking_twice_in_one_thread_is_an_error_not_a_hang() {
    let name = Name::new("relock");
    let heap = SharedHeap::create(&name.0, 1 << 20).unwrap();
    let g = heap.lock().unwrap();
    match heap.lock() {
        Err(LockError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EDEADLK)),
        other => panic!("a second lock in the same thread: {other:?}"),
    }
    drop(g);
    // Another thread takes it once this one let go.
    std::thread::scope(|s| {
        s.spawn(|| drop(heap.lock().unwrap()));
    });
}

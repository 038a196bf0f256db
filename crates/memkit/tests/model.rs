//! Property tests of the allocator core against a model: a map of live blocks
//! with their sizes and contents. Random sequences of malloc, calloc, realloc,
//! aligned allocation and free check contents, alignment, usable size and
//! that no two live blocks overlap.

use std::collections::BTreeMap;

use std::os::unix::process::ExitStatusExt;

use memkit::raw;
use memkit_tests::child;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    Aligned(u32, usize),
    Realloc(usize, usize),
    Free(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=256,
        4 => 257usize..=16 * 1024,
        2 => 16 * 1024usize..=300 * 1024,
        1 => 300 * 1024usize..=3 * 1024 * 1024,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => size().prop_map(Op::Malloc),
        1 => (0usize..64, 0usize..512).prop_map(|(n, s)| Op::Calloc(n, s)),
        1 => (4u32..=22, size()).prop_map(|(a, s)| Op::Aligned(a, s)),
        2 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        4 => any::<usize>().prop_map(Op::Free),
    ]
}

struct Live {
    size: usize,
    seed: u8,
}

fn fill(p: *mut u8, n: usize, seed: u8) {
    // SAFETY: p has at least n usable bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, n) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

fn check(p: *mut u8, n: usize, seed: u8) -> bool {
    // SAFETY: p has at least n usable bytes.
    let s = unsafe { std::slice::from_raw_parts(p, n) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == seed.wrapping_add(i as u8))
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut seed = 1u8;
    for op in ops {
        seed = seed.wrapping_add(37);
        // SAFETY: every pointer passed back to the core is a live block.
        unsafe {
            let (p, n, align) = match op {
                Op::Malloc(n) => (raw::malloc(n), n, 16),
                Op::Calloc(a, b) => {
                    let p = raw::calloc(a, b);
                    let n = a * b;
                    prop_assert!(!p.is_null());
                    prop_assert!(
                        std::slice::from_raw_parts(p, n).iter().all(|&x| x == 0),
                        "calloc not zeroed"
                    );
                    (p, n, 16)
                }
                Op::Aligned(a, n) => (raw::aligned_alloc(1 << a, n), n, 1usize << a),
                Op::Realloc(i, n) if !live.is_empty() && n > 0 => {
                    let k = *live.keys().nth(i % live.len()).unwrap();
                    let old = live.remove(&k).unwrap();
                    prop_assert!(
                        check(k as *mut u8, old.size, old.seed),
                        "contents lost before realloc"
                    );
                    let q = raw::realloc(k as *mut u8, n);
                    prop_assert!(!q.is_null());
                    let keep = old.size.min(n);
                    prop_assert!(check(q, keep, old.seed), "realloc lost contents");
                    (q, n, 16)
                }
                Op::Free(i) if !live.is_empty() => {
                    let k = *live.keys().nth(i % live.len()).unwrap();
                    let old = live.remove(&k).unwrap();
                    prop_assert!(
                        check(k as *mut u8, old.size, old.seed),
                        "contents changed while live"
                    );
                    raw::free(k as *mut u8);
                    continue;
                }
                _ => continue,
            };
            prop_assert!(!p.is_null());
            prop_assert_eq!(p as usize % align.max(16), 0, "misaligned for {}", align);
            let usable = raw::usable_size(p);
            prop_assert!(usable >= n, "usable {} < requested {}", usable, n);
            // No overlap with any live block (using the full usable size).
            let end = p as usize + usable.max(1);
            if let Some((&k, v)) = live.range(..end).next_back() {
                prop_assert!(k + v.size.max(1) <= p as usize || k >= end, "overlap");
            }
            // Write all the way to the usable size: it must be safe.
            fill(p, usable, seed);
            live.insert(p as usize, Live { size: usable, seed });
        }
    }
    for (k, v) in live {
        prop_assert!(check(k as *mut u8, v.size, v.seed));
        // SAFETY: live block.
        unsafe { raw::free(k as *mut u8) };
    }
    prop_assert!(raw::check_thread_heap(), "heap invariants broken");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..400)) {
        run(ops)?;
    }
}

#[test]
fn freeing_foreign_pointers_is_ignored() {
    let on_stack = 5u64;
    let boxed = Box::new(7u64);
    // SAFETY: the core ignores pointers it never handed out.
    unsafe {
        raw::free(&on_stack as *const u64 as *mut u8);
        raw::free(&*boxed as *const u64 as *mut u8);
        raw::free(std::ptr::null_mut());
        assert_eq!(raw::usable_size(&on_stack as *const u64 as *mut u8), 0);
    }
    assert_eq!(*boxed, 7);
}

/// Writes nothing when `p` is ignored: a block pushed on a free list gets a
/// link written into its first word.
///
/// # Safety
/// `p` must be readable and not a live block.
unsafe fn free_ignored(p: usize) {
    // SAFETY: per the contract.
    unsafe {
        let before = *(p as *const u64);
        raw::free(p as *mut u8);
        assert_eq!(
            *(p as *const u64),
            before,
            "free({p:#x}) wrote into memkit's metadata"
        );
    }
}

/// Runs test `name` in a child twice: hardened (the default), where the
/// bad free must stop the process with memkit's message, and with
/// `MEMKIT_HARDEN=off`, where it must be ignored without a write.
fn aborts_hardened_ignored_otherwise(name: &str) {
    let o = child::run_self(name, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(6), "{}", child::describe(&o));
    assert!(
        err.contains("memkit: free(): invalid pointer")
            && err.contains("inside memkit's memory but in no block"),
        "{}",
        child::describe(&o)
    );
    let o = child::run_self(name, &[("MEMKIT_HARDEN", "off")]);
    assert!(child::passed(&o), "{}", child::describe(&o));
}

#[test]
fn pointers_into_segment_headers_abort_or_are_ignored() {
    const NAME: &str = "pointers_into_segment_headers_abort_or_are_ignored";
    if !child::is_child(NAME) {
        return aborts_hardened_ignored_otherwise(NAME);
    }
    // SAFETY: raw allocations of this test, freed once; the other frees are
    // of addresses inside the block's segment header, which stays mapped.
    unsafe {
        let mine = raw::malloc(16);
        assert!(!mine.is_null());
        let seg = mine as usize & !((4 << 20) - 1);
        // The segment header slice of this thread's own heap: the page
        // descriptors live there.
        free_ignored(seg + 64);
        free_ignored(seg + 4096);
        raw::free(mine);
    }
    assert!(raw::check_thread_heap(), "heap invariants broken");
}

#[test]
fn frees_from_another_thread_check_the_pointer_first() {
    const NAME: &str = "frees_from_another_thread_check_the_pointer_first";
    if !child::is_child(NAME) {
        return aborts_hardened_ignored_otherwise(NAME);
    }
    // SAFETY: this thread's heap exists before the other thread starts, so
    // the other thread's blocks are in a segment of another heap.
    let mine = unsafe { raw::malloc(16) };
    assert!(!mine.is_null());
    // Blocks of a heap of another thread: a plain one, an aligned one (its
    // pointer is inside its block).
    let (plain, aligned) = std::thread::spawn(|| {
        // SAFETY: raw allocations, handed to the main thread.
        unsafe {
            let p = raw::malloc(100);
            let a = raw::aligned_alloc(256, 200);
            assert!(!p.is_null() && !a.is_null());
            p.write_bytes(0x5a, 100);
            a.write_bytes(0xa5, 200);
            (p as usize, a as usize)
        }
    })
    .join()
    .unwrap();
    let seg = plain & !((4 << 20) - 1);
    assert_ne!(
        seg,
        mine as usize & !((4 << 20) - 1),
        "one segment for two heaps"
    );
    // SAFETY: the core ignores pointers it never handed out; the blocks are
    // live and freed once.
    unsafe {
        free_ignored(seg + 64);
        free_ignored(seg + 4096);
        assert_eq!(*(plain as *const u8).add(99), 0x5a);
        assert_eq!(*(aligned as *const u8).add(199), 0xa5);
        raw::free(plain as *mut u8);
        raw::free(aligned as *mut u8);
        // Both went to this thread's cache or home: the next allocations of
        // those sizes work and do not overlap.
        let a = raw::malloc(100);
        let b = raw::aligned_alloc(256, 200);
        assert!(!a.is_null() && !b.is_null() && (b as usize).is_multiple_of(256));
        a.write_bytes(1, 100);
        b.write_bytes(2, 200);
        assert_eq!(*a.add(99), 1);
        raw::free(a);
        raw::free(b);
        raw::free(mine);
    }
    assert!(raw::check_thread_heap(), "heap invariants broken");
}

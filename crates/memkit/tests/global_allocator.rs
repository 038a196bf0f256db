//! A Rust program running on `#[global_allocator] static A: memkit::MemKit`.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: memkit::MemKit = memkit::MemKit;

#[test]
fn collections_strings_and_threads_work_on_memkit() {
    let before = memkit::stats().allocs;
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..50_000u32 {
        m.entry(format!("key-{}", i % 5000)).or_default().push(i);
    }
    assert_eq!(m.len(), 5000);
    assert_eq!(m["key-42"].len(), 10);
    let b: BTreeMap<u32, String> = (0..20_000).map(|i| (i, i.to_string())).collect();
    assert_eq!(b[&12345], "12345");
    assert!(
        memkit::stats().allocs > before + 50_000,
        "allocations must go through memkit"
    );

    // Blocks allocated on one thread and freed on another.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let producer = thread::spawn(move || {
        for i in 0..20_000usize {
            tx.send(vec![(i % 251) as u8; 1 + i % 3000]).unwrap();
        }
    });
    let mut n = 0;
    for (i, v) in rx.iter().enumerate() {
        assert_eq!(v.len(), 1 + i % 3000);
        assert!(v.iter().all(|&x| x == (i % 251) as u8));
        n += 1;
    }
    producer.join().unwrap();
    assert_eq!(n, 20_000);
}

#[test]
fn over_aligned_layouts_are_honoured() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let v: Vec<Box<Page>> = (0..64).map(|_| Box::new(Page([7; 4096]))).collect();
    for p in &v {
        assert_eq!(p.as_ref() as *const Page as usize % 4096, 0);
        assert_eq!(p.0[4095], 7);
    }
    for align in [
        32usize,
        64,
        256,
        4096,
        65536,
        1 << 20,
        4 << 20,
        8 << 20,
        32 << 20,
    ] {
        let layout = std::alloc::Layout::from_size_align(100, align).unwrap();
        // SAFETY: a non-zero size layout; freed with the same layout.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align}");
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|&b| b == 0));
            let q = std::alloc::realloc(p, layout, 5000);
            assert_eq!(q as usize % align, 0, "realloc keeps align {align}");
            std::alloc::dealloc(q, std::alloc::Layout::from_size_align(5000, align).unwrap());
        }
    }
}

#[test]
fn huge_vectors_grow_without_losing_contents() {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..4_000_000u64 {
        v.push(i);
    }
    assert_eq!(v[3_999_999], 3_999_999);
    assert_eq!(v.iter().sum::<u64>(), 3_999_999 * 4_000_000 / 2);
    drop(v);
    assert!(memkit::trim() > 0 || memkit::stats().huge_live == 0);
}

#[test]
fn huge_blocks_grow_by_moving_their_pages() {
    use memkit::raw;
    // SAFETY: raw blocks are used within their usable size and freed once.
    unsafe {
        for align in [16usize, 4096, 1 << 20, 4 << 20] {
            let a = raw::aligned_alloc(align, 6 << 20);
            assert!(
                !a.is_null() && (a as usize).is_multiple_of(align),
                "align {align}"
            );
            for off in (0..6 << 20).step_by(4096) {
                *a.add(off) = (off >> 12) as u8;
            }
            // A neighbour that makes growing in place unlikely.
            let blocker = raw::malloc(6 << 20);
            let b = raw::realloc(a, 40 << 20);
            assert!(!b.is_null());
            assert!(raw::usable_size(b) >= 40 << 20);
            for off in (0..6 << 20).step_by(4096) {
                assert_eq!(
                    *b.add(off),
                    (off >> 12) as u8,
                    "align {align}, offset {off}"
                );
            }
            *b.add((40 << 20) - 1) = 1;
            raw::free(b);
            raw::free(blocker);
            // Freed blocks are really gone: usable_size of the old pointer is 0.
            assert_eq!(raw::usable_size(b), 0);
        }
    }
}

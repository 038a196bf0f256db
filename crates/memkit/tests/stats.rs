//! The statistics add up: calls, bytes allocated and bytes in use move by
//! exactly what a thread did, frees on another thread included. Alone in its
//! binary (no `#[global_allocator]`: std's own allocations stay out of the
//! figures), with everything in one test so nothing runs beside it.

use memkit::raw::{free, malloc};

const N: usize = 1000;

struct Blocks(Vec<usize>);

fn alloc_all() -> (Blocks, u64) {
    let mut v = Vec::with_capacity(N);
    let mut requested = 0;
    for i in 0..N {
        let size = 1 + (i * 37) % 4000;
        // SAFETY: plain allocation.
        let p = unsafe { malloc(size) };
        assert!(!p.is_null());
        requested += size as u64;
        v.push(p as usize);
    }
    (Blocks(v), requested)
}

fn free_all(b: Blocks) {
    for p in b.0 {
        // SAFETY: each block is live and freed once.
        unsafe { free(p as *mut u8) };
    }
}

#[test]
fn statistics_add_up() {
    let s0 = memkit::stats();
    let (blocks, requested) = alloc_all();
    let s1 = memkit::stats();
    assert_eq!(s1.allocs - s0.allocs, N as u64);
    let in_use = s1.small_in_use - s0.small_in_use;
    // Block sizes: at least the requests, at most 12.5% (or 16 bytes) above each.
    assert!(
        in_use >= requested,
        "in use {in_use} < requested {requested}"
    );
    assert!(
        in_use <= requested + requested / 8 + 16 * N as u64,
        "in use {in_use}"
    );
    assert_eq!(s1.allocated - s0.allocated, in_use);

    // Freed on another thread: counted there, and in use drops back exactly.
    std::thread::spawn(move || free_all(blocks)).join().unwrap();
    let s2 = memkit::stats();
    assert_eq!(s2.frees - s1.frees, N as u64);
    assert_eq!(s2.small_in_use, s0.small_in_use);
    assert_eq!(s2.allocs, s1.allocs);

    // Freed on this thread.
    let (blocks, _) = alloc_all();
    free_all(blocks);
    let s3 = memkit::stats();
    assert_eq!(s3.allocs - s2.allocs, N as u64);
    assert_eq!(s3.frees - s2.frees, N as u64);
    assert_eq!(s3.small_in_use, s0.small_in_use);

    // A huge block counts its request.
    // SAFETY: plain allocation, freed once.
    unsafe {
        let p = malloc(3 << 20);
        assert!(!p.is_null());
        let s4 = memkit::stats();
        assert_eq!(s4.allocs - s3.allocs, 1);
        assert_eq!(s4.allocated - s3.allocated, 3 << 20);
        assert!(s4.huge_live_bytes >= 3 << 20);
        free(p);
        assert_eq!(memkit::stats().frees - s4.frees, 1);
    }

    // A huge block from a thread that never allocated before, freed here:
    // one allocation, one free.
    let before = memkit::stats();
    // SAFETY: plain allocation, freed once below.
    let big = std::thread::spawn(|| unsafe { memkit::raw::aligned_alloc(64, 2 << 20) } as usize)
        .join()
        .unwrap();
    assert_ne!(big, 0);
    // SAFETY: a live block of ours, freed once.
    unsafe { free(big as *mut u8) };
    let after = memkit::stats();
    assert_eq!(after.allocs - before.allocs, 1);
    assert_eq!(after.frees - before.frees, 1);

    // The sampled peak sees 16 MiB of small blocks that are gone again.
    let many: Vec<usize> = (0..(16 << 20) / 64)
        // SAFETY: plain allocation.
        .map(|_| unsafe { malloc(64) } as usize)
        .collect();
    assert!(many.iter().all(|&p| p != 0));
    free_all(Blocks(many));
    let s5 = memkit::stats();
    assert_eq!(s5.small_in_use, s0.small_in_use);
    assert!(
        s5.peak_in_use >= 15 << 20,
        "peak {} after 16 MiB",
        s5.peak_in_use
    );
}

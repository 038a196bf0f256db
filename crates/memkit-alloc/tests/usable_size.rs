//! `usable_size` on the calling heap's own blocks (its fast path: a block
//! of a segment in the heap's table) agrees with the general path: a live
//! block's size, 0 for interior pointers and freed blocks (hardened, the
//! default), blocks of full pages and of aligned pages included.

use memkit_alloc::{aligned_alloc, free, malloc, usable_size};

fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f).join().expect("test thread");
}

#[test]
fn own_blocks_live_interior_freed() {
    on_fresh_thread(|| {
        for size in [1usize, 16, 24, 100, 1000, 5000, 40_000, 200_000] {
            // SAFETY: plain allocations, each freed once.
            unsafe {
                let p = malloc(size);
                assert!(!p.is_null());
                let u = usable_size(p);
                assert!(
                    u >= size && u < size * 2 + 16,
                    "usable_size(malloc({size})) = {u}"
                );
                p.write_bytes(1, u);
                assert_eq!(usable_size(p.add(16)), 0, "interior of malloc({size})");
                assert_eq!(
                    usable_size(p.add(1)),
                    0,
                    "misaligned interior of malloc({size})"
                );
                free(p);
                assert_eq!(usable_size(p), 0, "malloc({size}) after free");
            }
        }
        // SAFETY: null is a valid argument.
        assert_eq!(unsafe { usable_size(core::ptr::null_mut()) }, 0);
    });
}

#[test]
fn blocks_of_full_and_aligned_pages() {
    on_fresh_thread(|| {
        // SAFETY: plain allocations, each freed once.
        unsafe {
            // Enough 48-byte blocks to fill several pages: the early ones'
            // pages are full when they are asked about.
            let blocks: Vec<*mut u8> = (0..5000).map(|_| malloc(48)).collect();
            for &b in &blocks {
                assert_eq!(usable_size(b), 48);
            }
            for &b in &blocks {
                free(b);
                assert_eq!(usable_size(b), 0);
            }
            // An aligned block in a small page: its page is marked aligned,
            // and the block's size counts from the aligned pointer.
            let a = aligned_alloc(256, 100);
            assert!(!a.is_null() && a as usize % 256 == 0);
            let u = usable_size(a);
            assert!(u >= 100, "usable_size(aligned_alloc(256, 100)) = {u}");
            a.write_bytes(2, u);
            free(a);
        }
    });
}

/// An alignment that a size class's block size is a multiple of is served
/// from that class, whose blocks are aligned where they lie: the smallest
/// such class at least the size, unless over-allocating would take less.
/// `memalign(4096, 100)` is a 4 KiB block (it was a 4.5 KiB one from
/// `malloc(4195)`, on a page marked for interior pointers).
#[test]
fn aligned_requests_take_an_aligned_class() {
    on_fresh_thread(|| {
        // SAFETY: our own allocations, each freed once.
        unsafe {
            for (align, size, usable) in [
                (64, 100, 128),
                (64, 64, 64),
                (32, 48, 64),
                (4096, 100, 4096),
                (4096, 4097, 8192),
                (256, 2049, 2304),
                (65536, 10, 65536),
            ] {
                let mut blocks = Vec::new();
                for _ in 0..50 {
                    let p = aligned_alloc(align, size);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "aligned_alloc({align}, {size})");
                    assert_eq!(usable_size(p), usable, "aligned_alloc({align}, {size})");
                    p.write_bytes(0x5a, usable);
                    blocks.push(p);
                }
                for p in blocks {
                    free(p);
                }
            }
        }
    });
}

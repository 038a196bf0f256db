//! `calloc` of a huge block taken again from the cache: every byte reads
//! zero, whatever its last use wrote, and only the pages that use left
//! resident are written (the others are dropped, which zeroes them), so a
//! `calloc` whose program touches little stays small in memory and cheap.
//! One test: the huge-block cache is process-wide.

use memkit_alloc::{calloc, free, malloc};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// Resident pages of `[p, p + len)` (`len` a multiple of 256 pages).
fn resident(p: *mut u8, len: usize) -> usize {
    let mut n = 0;
    let mut off = 0;
    while off < len {
        // SAFETY: p..p+len is a live block of ours; `off` is page-aligned.
        n += unsafe { memkit_sys::resident_pages(p.add(off), 256) }.expect("mincore");
        off += 256 * PAGE;
    }
    n
}

fn all_zero(p: *const u8, len: usize) -> Option<usize> {
    // SAFETY: p..p+len is a live block of ours.
    let s = unsafe { core::slice::from_raw_parts(p, len) };
    s.iter().position(|&b| b != 0)
}

/// Whether the kernel backs anonymous memory with huge pages unasked
/// (THP `always`): then a fault fills a whole 2 MiB page and khugepaged
/// may collapse a sparse range at any time, so residency proves nothing.
fn thp_always() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]"))
}

#[test]
fn calloc_of_a_reused_mapping_is_zero_and_stays_sparse() {
    // Both blocks stay below the 6 MiB from which a mapping used densely
    // and taken again gets MADV_HUGEPAGE (khugepaged then collapses a 2
    // MiB range around a single present page: all of it resident).
    // SAFETY: plain allocations of ours, each freed once, written only
    // within their size.
    unsafe {
        // Sparse first, in a fresh mapping: one page in three written,
        // the rest never touched.
        let size = 5 * MIB;
        let p = malloc(size);
        assert!(!p.is_null());
        let mut off = 0;
        while off < size {
            p.add(off).write_bytes(0xcd, PAGE);
            off += 3 * PAGE;
        }
        let written = resident(p, size);
        free(p);
        let q = calloc(size, 1);
        assert_eq!(q, p, "the cached mapping is taken again");
        let after = resident(q, size);
        assert!(
            thp_always() || after <= written + 2,
            "calloc made {after} pages resident, its last use {written}"
        );
        assert_eq!(
            all_zero(q, size),
            None,
            "a byte of the sparse mapping not zeroed"
        );
        free(q);

        // Dense: every byte written; a calloc of an odd size taken from it.
        let size = 4 * MIB + 123;
        let p = malloc(size);
        assert!(!p.is_null());
        p.write_bytes(0xab, size);
        free(p);
        let q = calloc(1, size);
        assert_eq!(q, p, "the cached mapping is taken again");
        assert_eq!(
            all_zero(q, size),
            None,
            "a byte of the dense mapping not zeroed"
        );
        free(q);
    }
}

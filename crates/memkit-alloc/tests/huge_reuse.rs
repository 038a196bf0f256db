//! A freed huge block's mapping, taken again for a smaller request, keeps a
//! long tail when its last use touched few of its pages (so that a later,
//! larger request finds those pages resident), and is cut to the request
//! when it was used densely (its tail would be resident memory nobody
//! uses). One test: the huge-block cache is process-wide, and a second test
//! running beside it could take the mapping this one expects back.

use memkit_alloc::{free, malloc, usable_size};

const MIB: usize = 1 << 20;

/// Writes one byte every `stride` bytes of `len` bytes at `p`.
///
/// # Safety
/// `p` is writable for `len` bytes.
unsafe fn touch(p: *mut u8, len: usize, stride: usize) {
    let mut off = 0;
    while off < len {
        // SAFETY: off < len.
        unsafe { p.add(off).write_volatile(1) };
        off += stride;
    }
}

#[test]
fn sparse_mapping_keeps_its_tail_dense_one_is_cut() {
    // SAFETY: plain allocations of ours, each freed once, written only
    // within their usable size.
    unsafe {
        // Sparse: one byte per 256 KiB (and nothing else), as the classic
        // malloc-large benchmark writes its blocks.
        let p = malloc(20 * MIB);
        assert!(!p.is_null());
        touch(p, 20 * MIB, 256 << 10);
        free(p);
        let q = malloc(5 * MIB);
        assert_eq!(q, p, "the cached mapping is taken again");
        let kept = usable_size(q);
        assert!(
            kept >= 20 * MIB,
            "a sparse mapping keeps its tail: usable {kept} for 5 MiB"
        );
        touch(q, 5 * MIB, 256 << 10);
        free(q);

        // Dense: every page written. Taken again for 5 MiB, the tail goes.
        let p = malloc(20 * MIB);
        assert!(!p.is_null());
        touch(p, 20 * MIB, 4096);
        free(p);
        let q = malloc(5 * MIB);
        assert!(!q.is_null());
        let cut = usable_size(q);
        assert!(
            (5 * MIB..10 * MIB).contains(&cut),
            "a dense mapping is cut to the request: usable {cut} for 5 MiB"
        );
        q.write_bytes(2, cut);
        free(q);
    }
}

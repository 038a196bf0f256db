//! A segment that empties goes to the segment cache, and the next heap
//! that needs one takes it from there instead of mapping a new one (the
//! cache is skipped without its lock only while it is empty:
//! `segment::CACHE_EMPTY`). One test in its own binary: no other test's
//! segments come and go beside it.

const SIZE: usize = 1024;
/// More than a segment's 63 data slices of 1 KiB blocks.
const BLOCKS: usize = 6 << 10;

fn churn_on_a_thread() -> (u64, u64) {
    std::thread::spawn(|| {
        let blocks: Vec<_> = (0..BLOCKS)
            .map(|i| {
                // SAFETY: a plain allocation, written within its size.
                unsafe {
                    let p = memkit_alloc::malloc(SIZE);
                    assert!(!p.is_null());
                    p.write_bytes(i as u8, SIZE);
                    p
                }
            })
            .collect();
        let during = memkit_alloc::stats().cached_segments;
        for b in blocks {
            // SAFETY: each block is live and freed once.
            unsafe { memkit_alloc::free(b) };
        }
        (during, memkit_alloc::stats().segment_mapped)
    })
    .join()
    .expect("test thread")
}

#[test]
fn an_emptied_segment_is_taken_from_the_cache() {
    let (_, _) = churn_on_a_thread();
    // The thread's exit gave its empty segments to the cache.
    let after_first = memkit_alloc::stats();
    assert!(
        after_first.cached_segments >= 1,
        "no segment cached after a thread freed everything and exited"
    );
    let (cached_during, mapped_during) = churn_on_a_thread();
    assert!(
        cached_during < after_first.cached_segments,
        "the second thread took no cached segment ({cached_during} cached while it ran, {} before)",
        after_first.cached_segments
    );
    assert!(
        mapped_during <= after_first.segment_mapped,
        "the second thread mapped new segments: {mapped_during} bytes mapped, {} before",
        after_first.segment_mapped
    );
}

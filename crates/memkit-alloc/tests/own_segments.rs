//! A heap's table of its own segments (`Heap::seg_mine`), which lets `free`
//! prove a block is the heap's with one compare: it must never name a
//! segment the heap no longer has. After a heap of more segments than the
//! table has slots is freed and trimmed, anonymous memory mapped where those
//! segments were is not memkit's: a `free` of a pointer into it is ignored
//! and writes nothing there.
//!
//! One test in its own binary: it maps pages at fixed addresses, checked
//! to be unmapped first, and nothing else may allocate from memkit meanwhile.

use memkit_alloc::heap::SEG_MINE;
use memkit_alloc::segment::{is_owned, SEGMENT_SIZE, SLICE_SIZE};

/// Medium blocks: a segment holds about twenty, so a few thousand span
/// more segments than the table has slots.
const BS: usize = 192 * 1024;

/// Whether any mapping of this process overlaps `start..start + len`.
fn mapped(start: usize, len: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let a = usize::from_str_radix(a, 16).unwrap_or(0);
        let b = usize::from_str_radix(b, 16).unwrap_or(0);
        a < start + len && start < b
    })
}

#[test]
fn segments_given_back_are_not_taken_for_the_heaps() {
    std::thread::spawn(|| {
        let mut blocks = Vec::new();
        let mut segs = Vec::new();
        while segs.len() <= SEG_MINE + 8 {
            // SAFETY: a plain allocation, freed below.
            let p = unsafe { memkit_alloc::malloc(BS) };
            assert!(!p.is_null());
            let seg = p as usize & !(SEGMENT_SIZE - 1);
            if !segs.contains(&seg) {
                segs.push(seg);
            }
            blocks.push(p);
        }
        // Blocks of segments that lost their slot to a later one are
        // still freed as the heap's (the ownership bitmap's way).
        for &p in blocks.iter().rev() {
            // SAFETY: each block is live and freed once.
            unsafe { memkit_alloc::free(p) };
        }
        memkit_alloc::trim();
        let mut tried = 0;
        for &seg in &segs {
            // The header's page and the page of a block's start, as a
            // segment would have them.
            let pages = [seg, seg + SLICE_SIZE];
            if is_owned(seg) || pages.iter().any(|&a| mapped(a, 4096)) {
                continue;
            }
            for &a in &pages {
                // SAFETY: nothing is mapped there (checked just now), and
                // nothing else in this process maps memory meanwhile.
                unsafe { memkit_sys::file_map::map_zero_page(a as *mut u8, true) }
                    .expect("map a page where a segment was");
                // SAFETY: the page just mapped.
                unsafe { (a as *mut u8).write_bytes(0xa5, 4096) };
            }
            let p = (seg + SLICE_SIZE + 64) as *mut u8;
            // SAFETY: free ignores pointers memkit did not hand out.
            unsafe { memkit_alloc::free(p) };
            for &a in &pages {
                // SAFETY: the page mapped above.
                let bytes = unsafe { std::slice::from_raw_parts(a as *const u8, 4096) };
                assert!(
                    bytes.iter().all(|&b| b == 0xa5),
                    "free({p:p}) wrote into memory mapped where segment {seg:#x} was"
                );
                // SAFETY: the page mapped above, no longer used.
                unsafe { memkit_sys::unmap(a as *mut u8, 4096) };
            }
            tried += 1;
        }
        assert!(
            tried >= SEG_MINE / 2,
            "only {tried} of {} former segments could be mapped again",
            segs.len()
        );
    })
    .join()
    .expect("test thread");
}

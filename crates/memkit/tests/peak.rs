//! The sampled peak of bytes in use counts huge blocks. Alone in its test
//! binary: other tests' allocations would refresh the peak and hide a miss.

#[global_allocator]
static A: memkit::MemKit = memkit::MemKit;

#[test]
fn the_peak_in_use_counts_huge_blocks() {
    // black_box: the compiler may otherwise elide an allocation it can see through.
    let v = std::hint::black_box(vec![7u8; 48 << 20]);
    assert_eq!(v[(48 << 20) - 1], 7);
    drop(v);
    // Gone now, but the peak remembers it.
    let peak = memkit::stats().peak_in_use;
    assert!(peak >= 47 << 20, "peak {peak} after a 48 MiB block");
}

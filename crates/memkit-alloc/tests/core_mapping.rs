//! `core_mapping_len` names the core's own mappings from their first chunk
//! (check mode's leak check skips them when it scans anonymous memory), and
//! nothing else.

const SEG: usize = memkit_alloc::segment::SEGMENT_SIZE;

#[test]
fn segments_and_huge_mappings_are_named_from_their_chunk() {
    // SAFETY: plain allocations, freed at the end.
    unsafe {
        let small = memkit_alloc::malloc(64);
        let chunk = small as usize & !(SEG - 1);
        assert_eq!(memkit_alloc::core_mapping_len(chunk), Some(SEG));
        let huge = memkit_alloc::malloc(10 << 20);
        let hchunk = huge as usize & !(SEG - 1);
        let len = memkit_alloc::core_mapping_len(hchunk).unwrap();
        assert!(hchunk + len >= huge as usize + (10 << 20), "{len}");
        // A 4 MiB-aligned block: its data chunk is named too.
        let aligned = memkit_alloc::aligned_alloc(SEG, 5 << 20);
        assert_eq!(memkit_alloc::core_mapping_len(aligned as usize), Some(SEG));
        let stack = &chunk as *const usize as usize & !(SEG - 1);
        assert_eq!(memkit_alloc::core_mapping_len(stack), None);
        memkit_alloc::free(aligned);
        memkit_alloc::free(huge);
        memkit_alloc::free(small);
    }
}

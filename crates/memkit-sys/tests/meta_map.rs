//! `map_meta` records memkit's own bookkeeping mappings, and forgets the
//! ones given back with `unmap_meta`.

#[test]
fn meta_mappings_are_found_and_forgotten() {
    let a = memkit_sys::map_meta(3 * 4096).unwrap() as usize;
    assert_eq!(memkit_sys::meta_end(a), Some(a + 3 * 4096));
    assert_eq!(memkit_sys::meta_end(a + 3 * 4096 - 1), Some(a + 3 * 4096));
    assert_eq!(memkit_sys::meta_end(a + 3 * 4096), None);
    let plain = memkit_sys::map(4096).unwrap() as usize;
    assert_eq!(memkit_sys::meta_end(plain), None);
    // SAFETY: our own mappings, unused.
    unsafe {
        memkit_sys::unmap_meta(a as *mut u8, 3 * 4096);
        memkit_sys::unmap(plain as *mut u8, 4096);
    }
    assert_eq!(memkit_sys::meta_end(a), None);
    assert!(memkit_sys::meta_complete());
}

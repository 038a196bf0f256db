//! Huge blocks used again (taken from the cache, or grown by `realloc`) get
//! `MADV_HUGEPAGE`; a block allocated once does not. The advice shows as the
//! `hg` VmFlag of the mapping in /proc/self/smaps, whatever the kernel's THP
//! mode. Alone in its binary: the huge-block cache is process-wide.

use memkit::raw::{free, malloc, realloc, usable_size};

const MIB: usize = 1 << 20;

fn touch(p: *mut u8, len: usize) {
    for off in (0..len).step_by(4096) {
        // SAFETY: p..p+len is a live block of ours.
        unsafe { p.add(off).write(1) };
    }
}

#[test]
fn reused_huge_blocks_get_huge_page_advice() {
    if std::env::var_os("MEMKIT_THP").is_some() {
        eprintln!("skipped: MEMKIT_THP is set, the default policy is not in force");
        return;
    }
    // SAFETY: plain allocations, each used within its size and freed once.
    unsafe {
        let a = malloc(20 * MIB);
        assert!(!a.is_null());
        touch(a, 20 * MIB);
        let flags = memkit_tests::vm_flags(a);
        assert!(
            !flags.iter().any(|f| f == "hg"),
            "fresh block advised: {flags:?}"
        );
        free(a);

        // The cached mapping comes back for a larger request: advised, and
        // rounded to whole 2 MiB pages so a later regrowth starts aligned.
        let b = malloc(23 * MIB + 5);
        assert!(!b.is_null());
        touch(b, 23 * MIB + 5);
        let flags = memkit_tests::vm_flags(b);
        assert!(
            flags.iter().any(|f| f == "hg"),
            "reused block not advised: {flags:?}"
        );
        let usable = usable_size(b);
        assert!(usable >= 23 * MIB + 5);
        assert_eq!(
            (b as usize + usable) % (2 * MIB),
            0,
            "end not on a 2 MiB boundary"
        );

        // A small huge block is never advised (its only 2 MiB range holds the header).
        let c = malloc(MIB);
        let c2 = realloc(c, 3 * MIB);
        assert!(!c2.is_null());
        assert!(!memkit_tests::vm_flags(c2).iter().any(|f| f == "hg"));
        free(c2);

        // Growing a block with realloc advises it too, and keeps the data.
        let d = malloc(12 * MIB);
        assert!(!d.is_null());
        d.write_bytes(0x5a, 12 * MIB);
        let d2 = realloc(d, 30 * MIB);
        assert!(!d2.is_null());
        assert!(memkit_tests::vm_flags(d2).iter().any(|f| f == "hg"));
        assert!((0..12 * MIB).step_by(4093).all(|i| *d2.add(i) == 0x5a));
        free(d2);
        free(b);

        // A big cached mapping taken for a small request is cut down to it,
        // without the advice or the 2 MiB rounding.
        memkit::trim();
        let x = malloc(30 * MIB);
        assert!(!x.is_null());
        touch(x, 30 * MIB);
        free(x);
        let y = malloc(300 << 10);
        assert!(!y.is_null());
        assert!(usable_size(y) < MIB, "usable {}", usable_size(y));
        assert!(
            !memkit_tests::vm_flags(y).iter().any(|f| f == "hg"),
            "small reuse advised"
        );
        free(y);
    }
}

//! glibc 2.36's argument rules for the aligned and page-sized calls, in
//! one place for every C front-end (libmemkit.so, libmemkit_check.so).

use memkit_sys::OS_PAGE;

/// `posix_memalign` accepts `align` (else it returns EINVAL): a power of
/// two and a multiple of `sizeof(void *)`.
pub const fn posix_memalign_accepts(align: usize) -> bool {
    align.is_power_of_two() && align.is_multiple_of(core::mem::size_of::<usize>())
}

/// The alignment `memalign` and `aligned_alloc` use for `align`: rounded up
/// to a power of two (0 counts as 1); `None` when that overflows (EINVAL).
pub const fn memalign_alignment(align: usize) -> Option<usize> {
    let a = if align == 0 { 1 } else { align };
    a.checked_next_power_of_two()
}

/// The size `pvalloc` allocates for `size`: whole pages, at least one;
/// `None` when that overflows (ENOMEM).
pub const fn pvalloc_size(size: usize) -> Option<usize> {
    let s = if size == 0 { 1 } else { size };
    s.checked_next_multiple_of(OS_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(posix_memalign_accepts(8) && posix_memalign_accepts(4096));
        assert!(
            !posix_memalign_accepts(4) && !posix_memalign_accepts(24) && !posix_memalign_accepts(0)
        );
        assert_eq!(memalign_alignment(0), Some(1));
        assert_eq!(memalign_alignment(24), Some(32));
        assert_eq!(memalign_alignment(usize::MAX), None);
        assert_eq!(pvalloc_size(0), Some(OS_PAGE));
        assert_eq!(pvalloc_size(OS_PAGE + 1), Some(2 * OS_PAGE));
        assert_eq!(pvalloc_size(usize::MAX), None);
    }
}
